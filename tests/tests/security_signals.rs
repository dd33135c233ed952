//! Host signals to a running stub.
//! - Bare-metal spinning guest, no init to forward to (real /dev/kvm):
//!   SIGPIPE is ignored, SIGHUP/SIGINT/SIGTERM end it with 128 + N and a
//!   clean exit (not death by the signal).
//! - Bare-metal guest that listens on the control port as init does (real
//!   /dev/kvm, stdin/stdout on a pseudo-terminal): a first SIGINT is
//!   forwarded, a second ends the stub at once with 130; SIGHUP is only
//!   forwarded (no grace period: the VM outlives it); SIGTERM is forwarded
//!   and ends the VM with 143 after the 10 s grace; the terminal is restored
//!   after each.
//! - The whole product (a `smolvm build` busybox image: our kernel, init,
//!   stub; directly on hardware KVM, else in the KVM lab): the signal
//!   reaches the app through init; a trapped SIGINT leaves the VM running
//!   and a second SIGINT ends the stub at once with 130; an app that
//!   ignores SIGTERM is ended after the grace period with 143; an app killed
//!   by an untrapped SIGHUP gives 129. Signals are sent when the app's
//!   stdout shows it reached the right state (timing under TCG varies).
//!
//! The lab test needs `target/<profile>/{vmm-stub,smol-init,smolvm}`
//! (`cargo build --release -p vmm-stub`, `-p smol-init`, `-p builder`), the
//! guest kernel (see `qemu::kernel`) and busybox-static.

mod stub_common;

use smolvm_tests::lab::{self, Case};
use smolvm_tests::{product, qemu};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
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

/// `dir/sh.vm`: a busybox rootfs whose entry is `/bin/sh`.
fn busybox_image(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    product::busybox_rootfs(&root, &["sh", "echo", "sleep"], &["proc", "sys", "dev", "tmp"]);
    product::build_image(&root, "/bin/sh", &["--mem", "128M"], &dir.join("sh.vm"))
}

/// The numbers of the app's `tick N` lines.
fn ticks(stdout: &str) -> Vec<u32> {
    stdout.lines().filter_map(|l| l.strip_prefix("tick ")?.parse().ok()).collect()
}

/// A loop that prints `tick N` about every second.
const TICKING: &str = "i=0; while :; do sleep 1; i=$((i+1)); echo tick $i; done";

#[test]
fn signals_reach_the_app_through_init_and_end_the_vm_as_documented() {
    lab::prewarm(); // L1 boots while the image is built
    let work = qemu::scratch_dir("security-signals");
    let sh = busybox_image(&work);
    let long = Duration::from_secs(240);
    let (int, hup, term) = (2, 1, 15);
    let trap_int = format!("trap 'echo got INT' INT; echo ready; {TICKING}");
    let ignore_term = format!("trap '' TERM; echo ready; {TICKING}");
    let trap_hup = format!("trap 'echo got HUP' HUP; echo ready; {TICKING}");
    let cases = [
        // SIGINT once: forwarded, trapped, the VM runs on (tick 1 comes
        // after it); a second SIGINT ends the stub at once.
        Case::image(&sh, &["-c", &trap_int])
            .signal_on_stdout("ready", int)
            .signal_on_stdout("tick 1", int)
            .timeout(long),
        // SIGTERM ignored by the app: the stub waits the grace period.
        Case::image(&sh, &["-c", &ignore_term]).signal_on_stdout("tick 2", term).timeout(long),
        // SIGHUP, not trapped: the app dies of it, the status says so.
        Case::image(&sh, &["-c", "echo ready; while :; do sleep 1; done"]).signal_on_stdout("ready", hup).timeout(long),
        // SIGHUP trapped (a daemon's "reload"): no grace period, the VM runs
        // on past it until a SIGTERM the app does not trap.
        Case::image(&sh, &["-c", &trap_hup])
            .signal_on_stdout("ready", hup)
            .signal_on_stdout("tick 13", term)
            .timeout(long),
    ];
    // (lab::run_images runs the batch once more if the lab itself fails.)
    let out = lab::run_images(&cases);
    let show = |i: usize| {
        let o = &out[i];
        format!("case {i}: status {:?} after {:?}\nstdout: {}\nstderr: {}", o.status, o.elapsed, o.stdout_lossy(), o.stderr_lossy())
    };
    for i in 0..out.len() {
        eprintln!("{}", show(i));
    }

    // 1: the trap ran and the app kept running; the second SIGINT ended the
    // VM promptly (the 10 s grace would have let ~10 more ticks through).
    let (o, s) = (&out[0], out[0].stdout_lossy());
    assert_eq!(o.status, Some(130), "{}", show(0));
    assert!(s.starts_with("ready\ngot INT\ntick 1\n"), "{}", show(0));
    assert!(ticks(&s).len() <= 3, "the second SIGINT did not end the VM at once: {}", show(0));
    assert_eq!(s.matches("got INT").count(), 1, "the second SIGINT is not forwarded: {}", show(0));
    assert_eq!(o.stderr_lossy(), "", "{}", show(0));

    // 2: SIGTERM after tick 2; the app ignores it and ticks on until the
    // stub ends it 10 s later with 128 + 15.
    let (o, s) = (&out[1], out[1].stdout_lossy());
    assert_eq!(o.status, Some(143), "{}", show(1));
    assert!(s.starts_with("ready\ntick 1\ntick 2\n"), "{}", show(1));
    let after = ticks(&s).iter().filter(|&&n| n > 2).count();
    assert!(after >= 4, "the stub ended before the grace period: {}", show(1));
    assert!(after <= 14, "the grace period did not end the VM: {}", show(1));
    assert_eq!(o.stderr_lossy(), "", "{}", show(1));

    // 3: the app was killed by SIGHUP: 128 + 1, init says so in one line.
    let (o, e) = (&out[2], out[2].stderr_lossy());
    assert_eq!((o.status, o.stdout_lossy()), (Some(129), "ready\n".into()), "{}", show(2));
    assert!(e.lines().count() == 1 && e.contains("killed by signal 1 (SIGHUP)"), "{}", show(2));

    // 4: the trap ran and the app ticked on for more than the grace period
    // (13 ticks after SIGHUP), then died of the SIGTERM.
    let (o, s, e) = (&out[3], out[3].stdout_lossy(), out[3].stderr_lossy());
    assert_eq!(o.status, Some(143), "{}", show(3));
    assert!(s.starts_with("ready\ngot HUP\ntick 1\n") && s.contains("tick 13\n"), "{}", show(3));
    assert!(e.lines().count() == 1 && e.contains("killed by signal 15 (SIGTERM)"), "{}", show(3));

    std::fs::remove_dir_all(&work).ok();
}

/// A pseudo-terminal: (master, slave), the slave in its default cooked mode.
fn pty() -> (std::fs::File, std::fs::File) {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).expect("openpt");
    grantpt(&master).expect("grantpt");
    unlockpt(&master).expect("unlockpt");
    let name = ptsname(&master, Vec::new()).expect("ptsname");
    let slave = std::fs::OpenOptions::new().read(true).write(true).open(name.to_str().expect("utf-8")).expect("slave");
    (std::fs::File::from(master), slave)
}

/// The terminal settings that raw mode changes.
fn modes(tty: &std::fs::File) -> String {
    let t = rustix::termios::tcgetattr(tty).expect("tcgetattr");
    format!("{:?} {:?} {:?}", t.local_modes, t.input_modes, t.output_modes)
}

/// Everything the guest wrote to the terminal so far.
type Screen = std::sync::Arc<std::sync::Mutex<Vec<u8>>>;

/// Starts the one thread that reads `master` (two readers would split the
/// output between them).
fn record(master: &std::fs::File) -> Screen {
    let screen = Screen::default();
    let (mut m, s) = (master.try_clone().expect("dup"), screen.clone());
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = std::io::Read::read(&mut m, &mut buf) {
            if n == 0 {
                return;
            }
            s.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&buf[..n]);
        }
    });
    screen
}

fn wait_for(screen: &Screen, text: &str, child: &mut std::process::Child) {
    let start = Instant::now();
    loop {
        if String::from_utf8_lossy(&screen.lock().unwrap_or_else(|e| e.into_inner())).contains(text) {
            return;
        }
        if let Some(st) = child.try_wait().expect("wait") {
            panic!("stub ended ({st:?}) before the guest printed {text:?}");
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let seen = String::from_utf8_lossy(&screen.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
            panic!("the guest never printed {text:?}; the terminal shows {seen:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_listening_guest_gets_int_hup_term_and_the_terminal_comes_back() {
    if !have_kvm() {
        return;
    }
    let img = image("sig-listen", &guest_from("virtio.c", "sig-listen", "MODE_SIGNALS", &[]), 64);
    let (master, slave) = pty();
    let before = modes(&slave);
    let screen = record(&master);
    let spawn = |args: &[&str]| {
        screen.lock().unwrap_or_else(|e| e.into_inner()).clear();
        Command::new(&img)
            .args(args)
            .stdin(slave.try_clone().expect("dup"))
            .stdout(slave.try_clone().expect("dup"))
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };

    // SIGINT: forwarded, the VM runs on; a second SIGINT: 130 at once (the
    // grace period started by the first would take 10 s). With 2 vCPUs the
    // signal may land on the second one's thread (waiting for a SIPI in
    // KVM_RUN): that thread polls the devices, so it is delivered the same.
    for args in [&[][..], &["--smolvm-cpus=2", "--smolvm-force"]] {
        let mut child = spawn(args);
        wait_for(&screen, "listening\n", &mut child);
        assert_ne!(modes(&slave), before, "terminal mode: the terminal is raw while the VM runs");
        let first = Instant::now();
        kill(&child, "INT");
        wait_for(&screen, "signal 2\n", &mut child);
        assert!(child.try_wait().expect("wait").is_none(), "one SIGINT ended the VM ({args:?})");
        kill(&child, "INT");
        let st = wait_limited(&mut child);
        assert_eq!((st.code(), st.signal()), (Some(130), None), "{st:?} ({args:?})");
        assert!(first.elapsed() < Duration::from_secs(9), "the second SIGINT waited for the grace period");
        assert_eq!(modes(&slave), before, "terminal left raw after a second SIGINT");
    }

    // SIGHUP is only passed on: the VM outlives the grace period. SIGTERM
    // starts it: 143 no sooner than 10 s later.
    let mut child = spawn(&[]);
    wait_for(&screen, "listening\n", &mut child);
    kill(&child, "HUP");
    wait_for(&screen, "signal 1\n", &mut child);
    std::thread::sleep(Duration::from_secs(12));
    assert!(child.try_wait().expect("wait").is_none(), "SIGHUP ended the VM");
    let term = Instant::now();
    kill(&child, "TERM");
    wait_for(&screen, "signal 15\n", &mut child);
    let st = wait_limited(&mut child);
    assert_eq!((st.code(), st.signal()), (Some(143), None), "{st:?}");
    assert!(term.elapsed() >= Duration::from_millis(9500), "SIGTERM ended the VM before the grace period");
    assert_eq!(modes(&slave), before, "terminal left raw after the grace period");
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().expect("stderr"), &mut err).expect("stderr");
    assert_eq!(err, "", "a signal exit prints nothing");
}
