//! The stub's seccomp filter (vmm-stub/src/seccomp.rs) under the real
//! /dev/kvm: active on every thread once the guest runs, a forbidden call
//! kills with SIGSYS, a panic still ends with 125, `--smolvm-no-seccomp`
//! turns it off. Uses a stub built with the `test-hooks` feature (never in
//! release images) in its own target directory.

mod stub_common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;
use stub_common::*;

const SIGSYS: i32 = 31;

/// `Seccomp:` and `NoNewPrivs:` of every thread of `pid`.
fn thread_status(pid: u32) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).expect("task dir") {
        let s = std::fs::read_to_string(t.expect("task").path().join("status")).unwrap_or_default();
        let field = |k: &str| s.lines().find_map(|l| l.strip_prefix(k)).unwrap_or("").trim().to_string();
        v.push((field("Seccomp:"), field("NoNewPrivs:")));
    }
    v
}

/// Starts the spinning guest, waits for it to run, returns each thread's
/// (Seccomp, NoNewPrivs) and kills it.
fn spin_status(img: &std::path::Path, args: &[&str]) -> Vec<(String, String)> {
    let mut child = Command::new(img)
        .args(args)
        .env("SMOLVM_LOG", "kernel")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stderr = child.stderr.take().expect("stderr");
    // The guest's first line, read on a thread so a stub that never prints
    // it (or never exits) fails the test after a minute instead of hanging.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut first = [0u8; 9];
        let got = std::io::Read::read_exact(&mut stderr, &mut first).map(|()| first);
        let _ = tx.send(got);
    });
    let first = rx.recv_timeout(Duration::from_secs(60));
    let st = thread_status(child.id());
    let (fds, limits) = (fd_flags(child.id()), std::fs::read_to_string(format!("/proc/{}/limits", child.id())));
    let _ = child.kill();
    let _ = child.wait();
    let first = match first {
        Ok(Ok(line)) => line,
        Ok(Err(e)) => panic!("the guest's first line did not come: {e}"),
        Err(_) => panic!("no first line from the guest within 60 s (stub killed)"),
    };
    assert_eq!(&first, b"spinning\n", "{:?}", String::from_utf8_lossy(&first));
    // Every host fd beyond stdio is close-on-exec (O_CLOEXEC = 0o2000000).
    assert!(fds.len() >= 3, "the image, VM and vCPU fds: {fds:?}");
    assert!(fds.iter().all(|&(_, flags)| flags & 0o2000000 != 0), "{fds:?}");
    // The fd limit is frozen (soft = hard) and core files are off.
    let limits = limits.expect("limits");
    let row = |name: &str| limits.lines().find(|l| l.starts_with(name)).map(|l| l.split_whitespace().rev().skip(1).take(2).collect::<Vec<_>>());
    let nofile = row("Max open files").expect("nofile");
    assert_eq!(nofile[0], nofile[1], "{limits}");
    assert_eq!(row("Max core file size"), Some(vec!["0", "0"]), "{limits}");
    st
}

/// (fd, flags) from /proc/<pid>/fdinfo.
fn fd_flags(pid: u32) -> Vec<(u32, u32)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).expect("fdinfo") {
        let e = e.expect("fdinfo entry");
        let fd: u32 = e.file_name().to_string_lossy().parse().expect("fd number");
        let info = std::fs::read_to_string(e.path()).unwrap_or_default();
        // Only the stub's own opens (fds inherited from the harness stay as given).
        let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap_or_default();
        let t = target.to_string_lossy();
        if !(t.contains("kvm") || t.ends_with(".vm")) {
            continue;
        }
        let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).map(|f| u32::from_str_radix(f.trim(), 8).expect("octal"));
        v.push((fd, flags.unwrap_or(0)));
    }
    v
}

#[test]
fn seccomp_filters_every_thread_kills_forbidden_calls_and_keeps_125_on_panic() {
    if !have_kvm() {
        return;
    }
    let stub = hooked_stub();
    // The only test in this binary: set before stub_common::stub() reads it.
    std::env::set_var("SMOLVM_STUB", &stub);
    let out = Command::new(&stub).arg("--smolvm-help").output().expect("run stub");
    let help = text(&out.stdout);
    assert!(help.contains("--smolvm-no-seccomp") && help.contains("UNSAFE"), "{help}");

    // Filter mode 2 and no-new-privs on the vCPU and the stdin thread.
    let spin = image("sec-spin", &guest("sec-spin", "MODE_SPIN", &[]), 64);
    let st = spin_status(&spin, &[]);
    assert!(st.len() >= 2, "vCPU and stdin threads: {st:?}");
    assert!(st.iter().all(|(s, n)| s == "2" && n == "1"), "{st:?}");
    // --smolvm-no-seccomp and SMOLVM_NO_SECCOMP=1 turn it off.
    let st = spin_status(&spin, &["--smolvm-no-seccomp"]);
    assert!(st.iter().all(|(s, _)| s == "0"), "{st:?}");

    let hello = image("sec-hello", &guest("sec-hello", "MODE_HELLO", &[]), 64);
    // The filtered run loop still does its whole job.
    let out = run_serial(&hello, &[]);
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(0), "hello from the guest\n".into()), "{out:?}");

    // A call outside the list: SIGSYS, the whole process, at once.
    let out = run_with_limit(Command::new(&hello).env("SMOLVM_TEST_HOOK", "forbidden"), Duration::from_secs(60));
    assert_eq!(out.status.signal(), Some(SIGSYS), "{out:?}");
    let out = run_with_limit(
        Command::new(&hello).env("SMOLVM_TEST_HOOK", "forbidden").env("SMOLVM_NO_SECCOMP", "1"),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(0), "without the filter the call is harmless: {out:?}");

    // An image other users may write is refused before anything runs.
    let open = image("sec-open", &guest("sec-hello", "MODE_HELLO", &[]), 64);
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o757)).expect("chmod");
    let out = run_with_limit(&mut Command::new(&open), Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(text(&out.stderr).contains("writable by other users") && text(&out.stderr).lines().count() == 1, "{out:?}");

    // A panic after the filter: the documented 125 and one line, not SIGSYS.
    let out = run_with_limit(Command::new(&hello).env("SMOLVM_TEST_HOOK", "panic"), Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(text(&out.stderr).starts_with("smolvm:"), "{out:?}");
}
