//! Several vCPUs (`--smolvm-cpus`) under the real /dev/kvm with the
//! bare-metal SMP guests (tests/guests/smp.c and smp.h; virtio.c
//! MODE_SMP_BLK): the BSP starts the others with INIT/SIPI through the
//! in-kernel LAPIC; each reports its APIC ids and work. This host has 2
//! cores; 4 vCPUs run with --smolvm-force (more vCPUs than host CPUs).

mod stub_common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;
use stub_common::*;

fn smp_guest(case: u32) -> Vec<u8> {
    guest_from("smp.c", &format!("smp{case}"), "MODE_SMP", &[&format!("-DCASE={case}")])
}

fn run_cpus(img: &std::path::Path, cpus: u32) -> std::process::Output {
    run_with_limit(
        Command::new(img).env("SMOLVM_LOG", "kernel").args([format!("--smolvm-cpus={cpus}"), "--smolvm-force".into()]),
        Duration::from_secs(120),
    )
}

/// Sum the guest computes on the CPU with APIC id `id`.
fn work(id: u64) -> u64 {
    (0..1000).map(|i| i * (id + 1)).sum()
}

#[test]
fn every_vcpu_comes_up_with_its_own_apic_id_and_does_its_work() {
    if !have_kvm() {
        return;
    }
    let img = image("smp-count", &smp_guest(1), 64);
    for n in [1u64, 2, 4] {
        let out = run_cpus(&img, n as u32);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{n} vCPUs: {out:?}");
        let mut lines = err.lines();
        assert_eq!(lines.next(), Some(format!("cpus {n}").as_str()), "CPUID leaf 1 count; {err}");
        let mut seen = BTreeMap::new();
        for l in lines {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!((f.len(), f[0], f[1], f[3], f[5], f[7]), (9, "cpu", "apic", "lapic", "x2apic", "work"), "{l}");
            let num = |i: usize| f[i].parse::<u64>().expect("number");
            let id = num(2);
            assert_eq!(num(4), id, "LAPIC ID register = CPUID APIC id; {l}");
            // x2APIC id from leaf 0xB where the CPU has it (4294967295: none).
            assert!(num(6) == id || num(6) == u64::from(u32::MAX), "{l}");
            assert_eq!(num(8), work(id), "the work of CPU {id} ran there; {l}");
            assert!(seen.insert(id, ()).is_none(), "APIC id {id} twice: {err}");
        }
        assert_eq!(seen.keys().copied().collect::<Vec<_>>(), (0..n).collect::<Vec<_>>(), "{n} distinct APIC ids: {err}");
    }
}

#[test]
fn an_ap_ends_the_vm_through_the_exit_port_or_by_a_triple_fault() {
    if !have_kvm() {
        return;
    }
    // The AP with APIC id 1 writes status 7 to the exit port; the BSP spins.
    let img = image("smp-exit", &smp_guest(2), 64);
    for n in [2, 4] {
        let out = run_cpus(&img, n);
        assert_eq!(out.status.code(), Some(7), "{n} vCPUs: {out:?}");
    }
    // The AP with APIC id 1 triple-faults: 125, the crash line, the console tail.
    let img = image("smp-triple", &smp_guest(3), 64);
    let out = run_with_limit(Command::new(&img).args(["--smolvm-cpus=2"]), Duration::from_secs(120));
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.starts_with("smolvm: guest kernel crashed (triple fault)\n"), "{err}");
    assert!(err.contains("ap 1: about to triple fault"), "{err}");
}

/// Threads of process `pid` (its /proc/PID/task entries), or none once it is gone.
fn tasks(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

/// The state letter of process `pid` (`/proc/PID/stat`'s third field).
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

#[test]
fn sigterm_and_sigkill_end_every_vcpu_thread() {
    if !have_kvm() {
        return;
    }
    let img = image("smp-spin", &smp_guest(4), 64);
    for signal in ["TERM", "KILL"] {
        let mut child = Command::new(&img)
            .env("SMOLVM_LOG", "kernel")
            .args(["--smolvm-cpus=4", "--smolvm-force"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let pid = child.id();
        let mut stderr = child.stderr.take().expect("stderr");
        let mut first = [0u8; 9];
        let read = std::io::Read::read_exact(&mut stderr, &mut first);
        if read.is_err() {
            let _ = child.kill();
        }
        read.expect("guest output");
        assert_eq!(&first, b"spinning\n");
        // Four vCPU threads (three APs spin, the BSP too) and the stdin
        // thread, every one under the seccomp filter (TSYNC).
        assert!(tasks(pid) >= 5, "{} tasks", tasks(pid));
        for t in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
            let status = std::fs::read_to_string(t.expect("task").path().join("status")).expect("status");
            assert!(status.lines().any(|l| l == "Seccomp:\t2"), "{status}");
        }
        Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().expect("kill");
        // Not reaped yet: the process turns zombie and its other threads
        // finish dying, leaving only the leader in /proc/PID/task (a thread
        // left behind would stay listed).
        let start = std::time::Instant::now();
        while state(pid) != Some('Z') || tasks(pid) > 1 {
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("SIG{signal}: the stub did not end ({} tasks)", tasks(pid));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = child.wait().expect("wait");
        use std::os::unix::process::ExitStatusExt;
        let want = if signal == "TERM" { 15 } else { 9 };
        assert!(status.signal() == Some(want) || status.code() == Some(128 + want), "SIG{signal}: {status:?}");
        assert_eq!(tasks(pid), 0, "SIG{signal}: {pid} is gone");
    }
}

#[test]
fn all_vcpus_hammering_the_uart_lose_no_byte() {
    if !have_kvm() {
        return;
    }
    // Every CPU writes its letter ('a' + APIC id) 400 times at once.
    let img = image("smp-serial", &smp_guest(5), 64);
    let out = run_cpus(&img, 4);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let err = text(&out.stderr);
    let body = err.strip_suffix("\nserial done\n").expect("ends with the BSP's line");
    let mut counts = BTreeMap::new();
    for c in body.chars() {
        *counts.entry(c).or_insert(0) += 1;
    }
    assert_eq!(counts, BTreeMap::from([('a', 400), ('b', 400), ('c', 400), ('d', 400)]), "{err}");
}

/// The count guest in an image whose manifest asks for `cpus` (`smolvm
/// build --cpus`).
fn image_with_cpus(name: &str, cpus: &str) -> std::path::PathBuf {
    use linker::config::{self, Key};
    use linker::image::Kind;
    let manifest = config::to_vec(&[(Key::Entry, &[b"/bin/app"]), (Key::Mem, &[b"64"]), (Key::Cpus, &[cpus.as_bytes()])]).expect("manifest");
    let mut cpio = vec![0u8; 4096];
    let mut w = linker::cpio::CpioWriter::new(&mut cpio, 1);
    w.file(b"init", 0o755, b"#!/not-used\n").expect("fits");
    let n = w.finish().expect("fits");
    cpio.truncate(n);
    let mut out = linker::write::ImageWriter::new(Vec::new());
    out.add_bytes(Kind::Stub, 0, &std::fs::read(stub()).expect("stub")).expect("stub");
    out.add_bytes(Kind::Kernel, 0, &smp_guest(1)).expect("kernel");
    out.add_bytes(Kind::Initramfs, 0, &cpio).expect("initramfs");
    out.add_bytes(Kind::Manifest, 0, &manifest).expect("manifest");
    write_exe(name, &out.finish().expect("image").0)
}

fn cpus_line(out: &std::process::Output) -> String {
    text(&out.stderr).lines().next().unwrap_or("").to_string()
}

#[test]
fn cpus_from_the_manifest_the_variable_and_the_flag_and_bad_counts() {
    if !have_kvm() {
        return;
    }
    let img = image_with_cpus("smp-manifest", "2");
    let run = |env: Option<&str>, args: &[&str]| {
        let mut cmd = Command::new(&img);
        cmd.env("SMOLVM_LOG", "kernel").args(args);
        if let Some(v) = env {
            cmd.env("SMOLVM_CPUS", v);
        }
        run_with_limit(&mut cmd, Duration::from_secs(120))
    };
    // The image's default, then the variable over it, then the flag over both.
    let out = run(None, &[]);
    assert_eq!((out.status.code(), cpus_line(&out)), (Some(0), "cpus 2".into()), "{out:?}");
    let out = run(Some("1"), &[]);
    assert_eq!((out.status.code(), cpus_line(&out)), (Some(0), "cpus 1".into()), "{out:?}");
    let out = run(Some("2"), &["--smolvm-cpus=1"]);
    assert_eq!((out.status.code(), cpus_line(&out)), (Some(0), "cpus 1".into()), "{out:?}");
    // Each limit: one line naming it, 125, before any VM runs.
    let host = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cases: Vec<(String, &str)> = vec![
        ("0".into(), "ask for 1 or more (the least)"),
        ("65".into(), "ask for 64 or fewer (smolvm's limit)"),
        (format!("{}", host + 1), "or fewer (the host CPUs this process may use; --smolvm-force runs more)"),
    ];
    for (n, why) in &cases {
        for out in [run(None, &[&format!("--smolvm-cpus={n}")]), run(Some(n), &[])] {
            assert_eq!(out.status.code(), Some(125), "{n}: {out:?}");
            let err = text(&out.stderr);
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.starts_with(&format!("smolvm: --smolvm-cpus (or the image's cpus) is {n}: ")) && err.contains(why), "{err}");
        }
    }
    for bad in ["two", "-1", "", "1.5"] {
        let out = run(None, &[&format!("--smolvm-cpus={bad}")]);
        assert_eq!(out.status.code(), Some(125), "{bad}: {out:?}");
        assert_eq!(text(&out.stderr), format!("smolvm: bad value in --smolvm-cpus={bad} (see --smolvm-help)\n"));
    }
    // A manifest asking for more than this host has fails the same way;
    // --smolvm-force runs them anyway.
    let img = image_with_cpus("smp-manifest-many", "4");
    let out = run_with_limit(Command::new(&img).env("SMOLVM_LOG", "kernel"), Duration::from_secs(120));
    if host < 4 {
        assert_eq!(out.status.code(), Some(125), "{out:?}");
        let out = run_with_limit(Command::new(&img).env("SMOLVM_LOG", "kernel").arg("--smolvm-force"), Duration::from_secs(120));
        assert_eq!((out.status.code(), cpus_line(&out)), (Some(0), "cpus 4".into()), "{out:?}");
    }
}
