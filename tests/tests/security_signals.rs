//! Host signals to a running stub (bare-metal spinning guest, no init to
//! forward to): SIGPIPE is ignored, SIGHUP/SIGINT/SIGTERM end it with
//! 128 + N and a clean exit (not death by the signal).

mod stub_common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use stub_common::*;

fn spinning(img: &std::path::Path) -> std::process::Child {
    let mut child = Command::new(img)
        .env("SMOLVM_LOG", "kernel")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = [0u8; 9];
    std::io::Read::read_exact(child.stderr.as_mut().expect("stderr"), &mut first).expect("guest output");
    assert_eq!(&first, b"spinning\n");
    child
}

fn kill(child: &std::process::Child, sig: &str) {
    Command::new("kill").arg(format!("-{sig}")).arg(child.id().to_string()).status().expect("kill");
}

fn wait_limited(child: &mut std::process::Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            return st;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("stub did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigpipe_is_ignored_and_hup_int_term_exit_with_128_plus_n() {
    if !have_kvm() {
        return;
    }
    let img = image("sig-spin", &guest("sig-spin", "MODE_SPIN", &[]), 64);
    for (sig, code) in [("HUP", 129), ("INT", 130), ("TERM", 143)] {
        let mut child = spinning(&img);
        kill(&child, "PIPE");
        std::thread::sleep(Duration::from_millis(300));
        assert!(child.try_wait().expect("wait").is_none(), "SIGPIPE ended the stub");
        kill(&child, sig);
        let st = wait_limited(&mut child);
        assert_eq!((st.code(), st.signal()), (Some(code), None), "SIG{sig}: {st:?}");
    }
}
