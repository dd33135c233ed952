//! Several vCPUs end to end (issue #25): real images run by the real stub with the SMP
//! kernel and smol-init, in a KVM lab whose L1 has 2 CPUs (directly on hardware KVM).
//! With `--smolvm-cpus=2` the app sees 2 CPUs (nproc, /proc/cpuinfo, its affinity) and a
//! thread pinned to each CPU runs a CPU-bound loop there (tests/smp/cpus.c: the test
//! asserts where the work ran, never how long it took); `smolvm build --cpus 2` is the
//! image's default; more vCPUs than the host has is exit 125 with one line; the exit
//! status, SIGTERM and stdin's end reach the app as with one vCPU.
//!
//! Needs `target/<profile>/{vmm-stub,smol-init,smolvm}` (built per package), the guest
//! kernel (see `qemu::kernel`), busybox-static and gcc with a static libc.

use smolvm_tests::lab::{self, Case};
use smolvm_tests::{product, qemu};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// `dir/NAME.vm`: busybox and the CPU probe (`/bin/cpus`), entry `/bin/sh`.
fn image(dir: &Path, name: &str, build_args: &[&str]) -> PathBuf {
    let root = dir.join(format!("rootfs-{name}"));
    product::busybox_rootfs(&root, &["sh", "cat", "sleep", "grep"], &["proc", "sys", "dev", "tmp"]);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smp/cpus.c");
    let out = Command::new("gcc")
        .args(["-static", "-O2", "-pthread", "-o"])
        .arg(root.join("bin/cpus"))
        .arg(&src)
        .output()
        .expect("run gcc (apt-get install build-essential)");
    assert!(out.status.success(), "gcc -static cpus.c: {}", String::from_utf8_lossy(&out.stderr));
    let mut args = vec!["--mem", "128M"];
    args.extend_from_slice(build_args);
    product::build_image(&root, "/bin/sh", &args, &dir.join(format!("{name}.vm")))
}

fn lines(o: &lab::Outcome) -> Vec<String> {
    o.stdout_lossy().lines().map(String::from).collect()
}

/// The probe saw `n` CPUs every way it looks.
fn assert_sees(o: &lab::Outcome, n: u32, show: &str) {
    let l = lines(o);
    for want in [format!("nproc {n}"), format!("cpuinfo {n}"), format!("affinity {n}")] {
        assert!(l.contains(&want), "no `{want}`: {show}");
    }
}

/// The image run with its own default: no `SMOLVM_CPUS`, even when the lab adds one to
/// every case (`SMOLVM_TEST_CPUS`).
fn without_cpus_env(name: &str, image: &Path, args: &[&str]) -> Case {
    let mut argv = vec!["env".into(), "-u".into(), "SMOLVM_CPUS".into(), image.as_os_str().to_owned()];
    argv.extend(args.iter().map(std::ffi::OsString::from));
    Case::new(name, argv)
}

#[test]
fn two_vcpus_run_work_on_each_and_end_like_one() {
    lab::require_l1_cpus(2);
    lab::prewarm();
    let work = qemu::scratch_dir("smp-e2e");
    let (one, two) = (&image(&work, "one", &[]), &image(&work, "two", &["--cpus", "2"]));
    let long = Duration::from_secs(180);
    let trap = "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 1; done";
    // One vCPU more than this host (L1 in the lab) has online.
    let too_many = format!("exec {} --smolvm-cpus=$(( $(nproc) + 1 )) -c 'echo booted'", one.display());
    let out = lab::run_images(&[
        Case::image(one, &["--smolvm-cpus=2", "-c", "cpus work 20"]).timeout(long),
        without_cpus_env("two-default", two, &["-c", "cpus"]).timeout(long),
        Case::image(one, &["-c", "cpus"]).env("SMOLVM_CPUS", "2").timeout(long),
        Case::new("too-many", ["sh", "-c", too_many.as_str()]).timeout(long),
        Case::image(one, &["--smolvm-cpus=2", "-c", "exit 3"]).timeout(long),
        Case::image(one, &["--smolvm-cpus=2", "-c", trap]).timeout(long).signal_on_stdout("ready", 15),
        Case::image(one, &["--smolvm-cpus=2", "-c", "cat; echo eof"]).stdin(&b"in\0put\n"[..]).timeout(long),
        without_cpus_env("one-default", one, &["-c", "cpus"]).timeout(long),
        // What every case gets: SMOLVM_CPUS=N when the lab reruns tests at N vCPUs
        // (SMOLVM_TEST_CPUS), else nothing.
        Case::image(one, &["-c", "cpus"]).timeout(long),
    ]);
    let show = |i: usize| {
        format!("case {i}: status {:?}\nstdout: {}\nstderr: {}", out[i].status, out[i].stdout_lossy(), out[i].stderr_lossy())
    };

    // --smolvm-cpus=2: two CPUs, and the pinned loop ran on each.
    assert_eq!(out[0].status, Some(0), "{}", show(0));
    assert_sees(&out[0], 2, &show(0));
    for cpu in 0..2 {
        let ran = format!("ran cpu={cpu} rounds=20 ");
        assert!(lines(&out[0]).iter().any(|l| l.starts_with(&ran)), "no work on CPU {cpu}: {}", show(0));
    }
    // The image default (`smolvm build --cpus 2`) and SMOLVM_CPUS.
    assert_eq!(out[1].status, Some(0), "{}", show(1));
    assert_sees(&out[1], 2, &show(1));
    assert_eq!(out[2].status, Some(0), "{}", show(2));
    assert_sees(&out[2], 2, &show(2));
    // More vCPUs than the host has: smolvm's own failure, one line, no boot.
    assert_eq!(out[3].status, Some(125), "{}", show(3));
    assert_eq!(out[3].stderr_lossy().lines().count(), 1, "{}", show(3));
    assert!(!out[3].stdout_lossy().contains("booted"), "{}", show(3));
    // Exit status, SIGTERM and stdin's end with two vCPUs.
    assert_eq!(out[4].status, Some(3), "{}", show(4));
    assert_eq!((out[5].status, out[5].stdout_lossy()), (Some(7), "ready\ngot TERM\n".into()), "{}", show(5));
    assert_eq!((out[6].status, &out[6].stdout[..]), (Some(0), &b"in\0put\neof\n"[..]), "{}", show(6));
    // The default stays one vCPU.
    assert_eq!(out[7].status, Some(0), "{}", show(7));
    assert_sees(&out[7], 1, &show(7));
    let test_cpus = lab::test_cpus().expect("SMOLVM_TEST_CPUS").unwrap_or(1);
    assert_eq!(out[8].status, Some(0), "{}", show(8));
    assert_sees(&out[8], test_cpus, &show(8));
    std::fs::remove_dir_all(&work).ok();
}
