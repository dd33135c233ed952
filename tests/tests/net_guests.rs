//! virtio-net of vmm-stub under the real /dev/kvm, driven by bare-metal
//! test guests (tests/guests/net.c, a minimal polling driver) against
//! either the real passt (`--smolvm-net`) or a backend the test holds: one
//! end of a stream socketpair handed to the stub built with `test-hooks`
//! (`SMOLVM_TEST_NET_FD`), spoken in passt's framing (4-byte big-endian
//! length + frame).
//!
//! Cases (each guest exits 0, or the number of the check that failed):
//! - passt: an ARP request for the gateway 10.0.2.2 gets passt's reply;
//!   SIGKILL of the stub leaves no passt behind; a taken published port
//!   and a missing passt are one-line errors, exit 125, before booting.
//! - echo: a 1514-byte and the largest frame (MTU + 18) both ways, bytes intact.
//! - hostile transmit chains (runt, header only, 13-byte frame, one byte over
//!   the limit, device-writable) are returned and dropped; a valid frame split
//!   over a zero-length descriptor and the largest frame still pass.
//! - hostile receive chains (read-only, too small, header only) come back
//!   empty, the next good chain gets the right frame.
//! - a guest that never posts receive buffers: the stub reads (almost)
//!   nothing from the backend however much it sends, and transmit keeps working.
//! - a transmit flood of 3000 frames through a 16-entry ring with one notify
//!   per refill: all arrive, in order (the device's per-pass budget comes back
//!   by itself).
//! - the backend goes away: link down + config interrupt, chains still returned,
//!   one line on stderr.
//! - TAP (root only: the test makes one with `ip tuntap`): the host kernel
//!   answers the guest's ARP request through it; a missing TAP is 125.

mod stub_common;

use rustix::io::FdFlags;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use stub_common::{guest_from, have_kvm, hooked_stub, image_bytes_with, stub, text, write_exe};

const MTU: usize = 65520;
const MAX_FRAME: usize = MTU + 18;

fn hooked() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(hooked_stub)
}

fn net_image(name: &str, case: u32, stub_path: &Path) -> PathBuf {
    let g = guest_from("net.c", &format!("net{case}-{name}"), "MODE_NET", &[&format!("-DCASE={case}")]);
    write_exe(name, &image_bytes_with(stub_path, &g, 0, 64))
}

/// Starts `image` with our end's peer as the stub's backend fd.
fn spawn_with_backend(image: &Path) -> (Child, UnixStream) {
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    // Inherited by the stub (the cases run one after another in one test,
    // so no other child can pick it up); back to close-on-exec after.
    rustix::io::fcntl_setfd(&theirs, FdFlags::empty()).expect("fcntl");
    let child = Command::new(image)
        .env("SMOLVM_TEST_NET_FD", theirs.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(theirs);
    (child, ours)
}

/// Waits for `child` at most `limit` (then kills it and fails).
fn finish(child: Child, limit: Duration) -> Output {
    let pid = child.id();
    let start = Instant::now();
    let watchdog = std::thread::spawn(move || {
        while start.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(50));
            if std::fs::metadata(format!("/proc/{pid}")).is_err() {
                return;
            }
        }
        let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
    });
    let out = child.wait_with_output().expect("wait");
    let _ = watchdog;
    assert!(start.elapsed() < limit, "timed out after {limit:?}: {out:?}");
    out
}

fn send(s: &mut UnixStream, frame: &[u8]) -> std::io::Result<()> {
    let mut w = (frame.len() as u32).to_be_bytes().to_vec();
    w.extend_from_slice(frame);
    s.write_all(&w)
}

/// Fills `buf`, waiting out `WouldBlock` (the no-rx case shares a
/// non-blocking description with its writer); `false` at end of stream.
fn fill(s: &mut UnixStream, buf: &mut [u8]) -> bool {
    let mut at = 0;
    while at < buf.len() {
        match s.read(&mut buf[at..]) {
            Ok(0) => return false,
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(1)),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

/// The next frame, or `None` at end of stream.
fn recv(s: &mut UnixStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    if !fill(s, &mut len) {
        return None;
    }
    let len = u32::from_be_bytes(len) as usize;
    assert!((14..=MAX_FRAME).contains(&len), "frame length {len} on the wire");
    let mut f = vec![0u8; len];
    assert!(fill(s, &mut f), "torn frame");
    Some(f)
}

/// The cases hand an inheritable fd to their child: no two tests of this
/// file spawn at the same time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A frame as the guest's `make_frame` builds it.
fn guest_frame(len: usize, seed: u8, seq: u32) -> Vec<u8> {
    let mut f = vec![0xffu8; 6];
    f.extend_from_slice(&[0x02, b's', b'm', b'o', b'l', 0x01, 0x88, 0xb5]);
    f.extend((14..len).map(|i| seed.wrapping_add((i as u32).wrapping_mul(7) as u8)));
    if len >= 18 {
        f[14..18].copy_from_slice(&seq.to_le_bytes());
    }
    f
}

fn seq(f: &[u8]) -> u32 {
    u32::from_le_bytes(f[14..18].try_into().expect("4 bytes"))
}

#[test]
fn with_passt_arp_kill_and_start_errors() {
    if !have_kvm() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let have_passt = Command::new("sh").args(["-c", "command -v passt"]).output().is_ok_and(|o| o.status.success());
    let img = net_image("net-arp", 1, stub());
    // passt missing: one line naming the package, before booting.
    let out = stub_common::run_with_limit(Command::new(&img).env("PATH", "/nonexistent").arg("--smolvm-net"), Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.starts_with("smolvm: ") && err.contains("apt install passt") && err.lines().count() == 1, "{err}");
    if !have_passt {
        eprintln!("skipped the passt runs: passt is not installed");
        return;
    }
    // A taken host port: named, exit 125.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let out = stub_common::run_with_limit(Command::new(&img).arg(format!("--smolvm-publish={port}:80")), Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}/tcp")) && err.contains("already taken"), "{err}");
    drop(taken);

    // passt answers the guest's ARP request for the gateway.
    let out = stub_common::run_with_limit(Command::new(&img).arg("--smolvm-net"), Duration::from_secs(120));
    assert_eq!(out.status.code(), Some(0), "failed check = exit status; {out:?}");
    assert_eq!(text(&out.stderr), "");

    // SIGKILL of the stub: its passt goes too.
    let spin = net_image("net-spin", 5, stub());
    let child = Command::new(&spin).arg("--smolvm-net").stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
    let stub_pid = child.id();
    let passt_pid = (0..200)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            children_of(stub_pid).into_iter().find(|&p| comm(p).starts_with("passt")) // passt or passt.avx2
        })
        .expect("passt started");
    let mut child = child;
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    let gone = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        let st = std::fs::read_to_string(format!("/proc/{passt_pid}/stat")).unwrap_or_default();
        st.is_empty() || st.contains(") Z ")
    });
    assert!(gone, "passt {passt_pid} outlived the stub");
}

/// An existing TAP (made here with `ip tuntap`, so only as root): the
/// guest's ARP request for the host side's address gets the host kernel's
/// reply through the TAP, virtio-net headers and all.
#[test]
fn over_an_existing_tap() {
    if !have_kvm() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tap = format!("smoltap{}", std::process::id() % 10000);
    let ip = |args: &[&str]| Command::new("ip").args(args).output().is_ok_and(|o| o.status.success());
    if !ip(&["tuntap", "add", &tap, "mode", "tap"]) {
        eprintln!("skipped: cannot create a TAP here (needs root and iproute2)");
        return;
    }
    let configured = ip(&["addr", "add", "10.213.0.1/24", "dev", &tap]) && ip(&["link", "set", &tap, "up"]);
    let g = guest_from(
        "net.c",
        "net-tap-arp",
        "MODE_NET",
        &["-DCASE=1", "-DMTU=1500", "-DARP_SELF=10,213,0,2", "-DARP_TARGET=10,213,0,1"],
    );
    let img = write_exe("net-tap", &image_bytes_with(stub(), &g, 0, 64));
    let out = stub_common::run_with_limit(
        Command::new(&img).arg(format!("--smolvm-net=tap:{tap}")).arg("--smolvm-ip=10.213.0.2/24@10.213.0.1"),
        Duration::from_secs(120),
    );
    // A name that is no interface is refused (not created), exit 125.
    let missing = stub_common::run_with_limit(
        Command::new(&img).arg("--smolvm-net=tap:smolnone0").arg("--smolvm-ip=10.213.0.2/24"),
        Duration::from_secs(60),
    );
    let _ = ip(&["tuntap", "del", &tap, "mode", "tap"]);
    assert!(configured, "could not configure {tap}");
    assert_eq!(out.status.code(), Some(0), "failed check = exit status; {out:?}");
    assert_eq!(missing.status.code(), Some(125), "{missing:?}");
    assert!(text(&missing.stderr).contains("no such device (create it with: ip tuntap add smolnone0"), "{missing:?}");
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
}

fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        // pid (comm) state ppid ...: comm may hold spaces, split after ')'.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)).and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

#[test]
fn hostile_guests_against_a_test_backend() {
    if !have_kvm() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let stub = hooked();
    let limit = Duration::from_secs(180);

    // echo: frames both ways, the largest included.
    let img = net_image("net-echo", 2, stub);
    let (child, mut s) = spawn_with_backend(&img);
    for (k, len) in [(0u32, 1514usize), (1, MAX_FRAME)] {
        let f = recv(&mut s).expect("a frame from the guest");
        assert_eq!(f, guest_frame(len, k as u8 + 1, k), "frame {k}");
        let back: Vec<u8> = f.iter().enumerate().map(|(i, &b)| if i >= 14 { b.wrapping_add(1) } else { b }).collect();
        send(&mut s, &back).expect("send back");
    }
    let out = finish(child, limit);
    assert_eq!(out.status.code(), Some(0), "echo: failed check = exit status; {out:?}");

    // hostile transmit chains: only the two valid frames come out.
    let img = net_image("net-hostile-tx", 3, stub);
    let (child, mut s) = spawn_with_backend(&img);
    let out = finish(child, limit);
    assert_eq!(out.status.code(), Some(0), "hostile tx: failed check = exit status; {out:?}");
    let mut frames = Vec::new();
    while let Some(f) = recv(&mut s) {
        frames.push(f);
    }
    assert_eq!(frames.len(), 2, "only the valid frames reach the backend");
    assert_eq!(frames[0], guest_frame(100, 0x40, 0x1111_1111));
    assert_eq!(frames[1], guest_frame(MAX_FRAME, 0x50, 0x2222_2222));
    assert_eq!(text(&out.stderr), "");

    // hostile receive chains: the fourth frame lands in the fourth chain.
    let img = net_image("net-hostile-rx", 4, stub);
    let (child, mut s) = spawn_with_backend(&img);
    for k in 1..=4u32 {
        send(&mut s, &guest_frame(100, 0, k)).expect("send");
    }
    let out = finish(child, limit);
    assert_eq!(out.status.code(), Some(0), "hostile rx: failed check = exit status; {out:?}");

    // A guest that never reads: the backend's writes stall at the socket
    // buffer (the stub holds nothing more), transmit keeps flowing.
    let img = net_image("net-no-rx", 5, stub);
    let (mut child, s) = spawn_with_backend(&img);
    let mut writer = s.try_clone().expect("dup");
    writer.set_nonblocking(true).expect("nonblocking");
    let mut reader = s;
    let rx_thread = std::thread::spawn(move || {
        let mut seqs = Vec::new();
        while seqs.len() < 20 {
            match recv(&mut reader) {
                Some(f) => seqs.push(seq(&f)),
                None => break,
            }
        }
        seqs
    });
    let frame = {
        let mut f = guest_frame(1500, 9, 0);
        let mut w = (f.len() as u32).to_be_bytes().to_vec();
        w.append(&mut f);
        w
    };
    let mut accepted = 0usize;
    let mut last_progress = Instant::now();
    let start = Instant::now();
    while last_progress.elapsed() < Duration::from_secs(2) && start.elapsed() < Duration::from_secs(30) {
        match writer.write(&frame) {
            Ok(n) => {
                accepted += n;
                last_progress = Instant::now();
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("backend write: {e}"),
        }
        assert!(accepted < 8 << 20, "the stub keeps reading frames the guest has no buffer for");
    }
    let seqs = rx_thread.join().expect("reader");
    assert_eq!(seqs, (0..20).collect::<Vec<u32>>(), "transmit kept going in order");
    assert!(child.try_wait().expect("try_wait").is_none(), "the stub is still running");
    child.kill().expect("kill");
    let _ = child.wait();
    eprintln!("no-rx: the backend could write {accepted} bytes before it stalled");

    // Transmit flood through a small ring.
    let img = net_image("net-flood", 6, stub);
    let (child, mut s) = spawn_with_backend(&img);
    let reader = std::thread::spawn(move || {
        let mut n = 0u32;
        while let Some(f) = recv(&mut s) {
            assert_eq!(f, guest_frame(64 + (n as usize * 37) % 1450, n as u8, n), "frame {n}");
            n += 1;
        }
        n
    });
    let out = finish(child, limit);
    assert_eq!(out.status.code(), Some(0), "flood: failed check = exit status; {out:?}");
    assert_eq!(reader.join().expect("reader"), 3000);

    // The backend goes away.
    let img = net_image("net-link-down", 7, stub);
    let (child, mut s) = spawn_with_backend(&img);
    assert_eq!(recv(&mut s).map(|f| seq(&f)), Some(7));
    drop(s);
    let out = finish(child, limit);
    assert_eq!(out.status.code(), Some(0), "link down: failed check = exit status; {out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("network backend closed the connection") && err.lines().count() == 1, "{err}");
}
