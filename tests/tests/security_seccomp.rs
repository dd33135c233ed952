//! The stub's seccomp filter (vmm-stub/src/seccomp.rs) under the real
//! /dev/kvm: active on every thread once the guest runs, a forbidden call
//! kills with SIGSYS, a panic still ends with 125, `--smolvm-no-seccomp`
//! turns it off. Uses a stub built with the `test-hooks` feature (never in
//! release images) in its own target directory.

mod stub_common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use stub_common::*;

const SIGSYS: i32 = 31;

fn hooked_stub() -> std::path::PathBuf {
    let dir = workspace().join("target/security-hooks");
    let st = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "vmm-stub", "--features", "test-hooks", "--target-dir"])
        .arg(&dir)
        .current_dir(workspace())
        .status()
        .expect("cargo");
    assert!(st.success(), "building vmm-stub with test-hooks failed");
    dir.join("release/vmm-stub")
}

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
    let mut first = [0u8; 9];
    let start = Instant::now();
    let ok = std::io::Read::read_exact(&mut stderr, &mut first).is_ok();
    let st = thread_status(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok && &first == b"spinning\n" && start.elapsed() < Duration::from_secs(60), "{first:?}");
    st
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

    // A panic after the filter: the documented 125 and one line, not SIGSYS.
    let out = run_with_limit(Command::new(&hello).env("SMOLVM_TEST_HOOK", "panic"), Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(text(&out.stderr).starts_with("smolvm:"), "{out:?}");
}
