//! Services beside the app, end to end (issue 23): real images run by the
//! real stub, on hardware KVM, else inside the KVM lab's L1 (one batch).
//! smol-init's service logic alone is tested under QEMU TCG in
//! init_guest.rs; here: a real pair from Debian's packages (redis-server
//! as a service, redis-cli as the app), SIGTERM to the stub reaching the
//! app before the services stop, and `--smolvm-no-services`.
//!
//! Needs `target/<profile>/{vmm-stub,smol-init,smolvm}`, the guest kernel,
//! busybox-static and redis-server + redis-tools (Makefile APT_PACKAGES).

use smolvm_tests::lab::{self, Case, Outcome};
use smolvm_tests::{prereq, product, qemu};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn smolvm_build(args: &[&str], out: &Path) {
    let o = Command::new(product::smolvm())
        .arg("build")
        .args(args)
        .arg("--kernel")
        .arg(qemu::kernel())
        .arg("--init")
        .arg(product::init())
        .arg("--stub")
        .arg(product::stub())
        .arg("-o")
        .arg(out)
        .output()
        .expect("run smolvm build");
    assert!(o.status.success(), "smolvm build {}: {}", out.display(), String::from_utf8_lossy(&o.stderr));
}

/// redis-server (a service, ready when 127.0.0.1:6379 accepts) and
/// redis-cli (the app), packed from the host with their libraries.
fn redis_image(dir: &Path) -> PathBuf {
    let out = dir.join("redis.vm");
    smolvm_build(
        &[
            "--exec",
            "/usr/bin/redis-server",
            "--exec",
            "/usr/bin/redis-cli",
            "--entry",
            "redis-cli",
            "--service",
            "redis=redis-server --port 6379 --save '' --appendonly no",
            "--service-ready",
            "redis=tcp:6379",
            "--service-ready-timeout",
            "redis=120",
        ],
        &out,
    );
    out
}

/// busybox `sh` as the app, with one busybox `sh -c SCRIPT` service `svc`.
fn busybox_image(dir: &Path, script: &str) -> PathBuf {
    let root = dir.join("bb-root");
    product::busybox_rootfs(&root, &["sh", "sleep", "echo", "true"], &["proc", "sys", "dev", "tmp", "etc"]);
    let service = format!("svc=/bin/sh -c \"{script}\"");
    product::build_image(&root, "/bin/sh", &["--service", &service, "--service-restart", "svc=always"], &dir.join("bb.vm"))
}

fn show(o: &Outcome) -> String {
    format!("status {:?}\nstdout:\n{}\nstderr:\n{}", o.status, o.stdout_lossy(), o.stderr_lossy())
}

/// Microseconds between two debug-log steps of init (`[   1.234567] text`).
fn step_gap_us(log: &str, from: &str, to: &str) -> Option<u64> {
    let at = |what: &str| -> Option<u64> {
        let line = log.lines().find(|l| l.contains(what))?;
        let stamp = line.split('[').nth(1)?.split(']').next()?.trim();
        let (s, us) = stamp.split_once('.')?;
        Some(s.parse::<u64>().ok()? * 1_000_000 + us.parse::<u64>().ok()?)
    };
    at(to)?.checked_sub(at(from)?)
}

#[test]
fn services_end_to_end() {
    for (what, path) in [("redis-server (apt-get install redis-server)", "/usr/bin/redis-server"), ("redis-cli (apt-get install redis-tools)", "/usr/bin/redis-cli")] {
        if !prereq::require(Path::new(path).exists(), what) {
            return;
        }
    }
    lab::prewarm();
    let work = qemu::scratch_dir("services-e2e");
    let redis = redis_image(&work);
    let bb = busybox_image(&work, "trap 'echo svc got TERM; exit 0' TERM; echo svc started; while :; do sleep 0.1; done");
    let (redis, bb) = (redis.display().to_string(), bb.display().to_string());

    // --smolvm-info lists the services without booting.
    let info = Command::new(&redis).arg("--smolvm-info").output().expect("run --smolvm-info");
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(info.status.success() && text.contains("service redis redis-server\n") && text.contains("service-ready redis tcp:6379 120\n"), "{text}");

    // smolvm inspect shows them, as text and JSON.
    let inspect = |json: bool| {
        let mut cmd = Command::new(product::smolvm());
        cmd.arg("inspect").arg(&redis);
        if json {
            cmd.arg("--json");
        }
        let o = cmd.output().expect("run smolvm inspect");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let text = inspect(false);
    assert!(
        text.contains("  redis: [\"redis-server\", \"--port\", \"6379\", \"--save\", \"\", \"--appendonly\", \"no\"], restart on-failure, the app waits for tcp:6379 (up to 120 s)\n"),
        "{text}"
    );
    let json = inspect(true);
    assert!(
        json.contains(r#""services":[{"name":"redis","command":["redis-server","--port","6379","--save","","--appendonly","no"],"restart":"on-failure","ready":{"condition":"tcp:6379","timeout_s":120},"env":[],"user":null,"workdir":null}]"#),
        "{json}"
    );

    let app_waits = "trap 'echo app got TERM; exit 7' TERM; echo ready; while :; do sleep 0.1; done";
    let out = lab::run_images(&[
        // 0: redis-cli sets a key and reads it back from the redis-server service.
        Case::image(&redis, &[]).stdin("SET greeting hello\nGET greeting\n").timeout(Duration::from_secs(400)),
        // 1: SIGTERM to the stub reaches the app; the service is stopped after it.
        Case::image(&bb, &["-c", app_waits]).signal_on_stdout("ready", 15).timeout(Duration::from_secs(400)),
        // 2: --smolvm-no-services: the app alone.
        Case::image(&bb, &["--smolvm-no-services", "-c", "echo alone"]).timeout(Duration::from_secs(400)),
        // 3-8: the start-up cost of one service: init's debug log, and
        // whole runs with and without it, alternating.
        Case::image(&bb, &["--smolvm-log=debug", "-c", "true"]).timeout(Duration::from_secs(400)),
        Case::image(&bb, &["--smolvm-log=debug", "--smolvm-no-services", "-c", "true"]).timeout(Duration::from_secs(400)),
        Case::image(&bb, &["-c", "true"]).timeout(Duration::from_secs(400)),
        Case::image(&bb, &["--smolvm-no-services", "-c", "true"]).timeout(Duration::from_secs(400)),
        Case::image(&bb, &["-c", "true"]).timeout(Duration::from_secs(400)),
        Case::image(&bb, &["--smolvm-no-services", "-c", "true"]).timeout(Duration::from_secs(400)),
    ]);
    let mut failed = Vec::new();
    let mut check = |ok: bool, what: &str, o: &Outcome| {
        if !ok {
            failed.push(format!("{what}: {}", show(o)));
        }
    };
    let o = &out[0];
    let err = o.stderr_lossy();
    check(
        o.status == Some(0) && o.stdout_lossy() == "OK\nhello\n" && err.contains("[redis] ") && err.lines().all(|l| l.starts_with("[redis] ")),
        "redis-cli against the redis-server service: the app's output and status, the service's lines prefixed",
        o,
    );
    let o = &out[1];
    // The service's whole process group gets SIGTERM: its shell may also
    // report its `sleep` child as "Terminated".
    let err = o.stderr_lossy();
    check(
        o.status == Some(7)
            && o.stdout_lossy() == "ready\napp got TERM\n"
            && err.starts_with("[svc] svc started\n")
            && err.ends_with("[svc] svc got TERM\n")
            && err.lines().all(|l| l.starts_with("[svc] ")),
        "SIGTERM to the stub: the app first, then the service",
        o,
    );
    let o = &out[2];
    check(o.status == Some(0) && o.stdout_lossy() == "alone\n" && !o.stderr_lossy().contains("[svc]"), "--smolvm-no-services", o);
    let (with, without) = (out[3].stderr_lossy(), out[4].stderr_lossy());
    let cost = step_gap_us(&with, "started service svc", "started the app");
    check(out[3].status == Some(0) && cost.is_some(), "debug log with a service", &out[3]);
    check(out[4].status == Some(0) && !without.contains("started service"), "debug log without services", &out[4]);
    let steps: Vec<&str> = with.lines().filter(|l| l.contains("service") || l.contains("the app")).collect();
    eprintln!(
        "services: starting one service (no readiness condition) before the app: {cost:?} us inside the guest (lab: nested TCG)\n{}\nwhole runs with it: {:?} {:?}; without: {:?} {:?}",
        steps.join("\n"),
        out[5].elapsed,
        out[7].elapsed,
        out[6].elapsed,
        out[8].elapsed
    );
    assert!(failed.is_empty(), "{} of {} cases failed:\n\n{}", failed.len(), out.len(), failed.join("\n\n"));
}
