//! virtio devices of vmm-stub under the real /dev/kvm, driven by bare-metal
//! test guests (tests/guests/virtio.c, a minimal polling virtio-mmio
//! driver built with gcc) packed into images like `smolvm build` does.
//!
//! - echo: host stdin → control device stdin port (2) → guest → hvc0 → host
//!   stdout, ending at the host's EOF (delivered as a port disconnect).
//! - blk: reads of the image's rootfs section, GET_ID, read-only and range
//!   checks answered IOERR, an extra `--smolvm-disk` written and flushed.
//! - hostile: one malformed queue per case → NEEDS_RESET (never a crash,
//!   hang or access outside guest RAM), then the device works after reset.
//!
//! Each guest exits through the exit port with 0, or the number of the
//! check that failed. Guest kernel code is emulated on nested hosts (~1
//! µs/instruction): the guests do little.

mod stub_common;

use linker::config::{self, Key};
use stub_common::{have_kvm, stub, workspace, write_exe};
use linker::cpio::CpioWriter;
use linker::image::Kind;
use linker::write::ImageWriter;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("smolvm-virtio-tests-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("scratch dir");
        d
    })
}

fn guest(name: &str, mode: &str, defines: &[&str]) -> Vec<u8> {
    stub_common::guest_from("virtio.c", name, mode, defines)
}

/// The rootfs section the blk guest checks: byte `i` is `i * 7 + 3`.
fn rootfs_pattern() -> Vec<u8> {
    (0..4096u32).map(|i| (i.wrapping_mul(7).wrapping_add(3) & 0xff) as u8).collect()
}

/// An image: stub, `kernel` (the guest), initramfs, manifest, and a rootfs
/// section with [`rootfs_pattern`].
fn image(name: &str, kernel: &[u8]) -> PathBuf {
    let stub = std::fs::read(stub()).expect("stub binary");
    let manifest = config::to_vec(&[(Key::Entry, &[b"/bin/app"]), (Key::Mem, &[b"64"]), (Key::Rootfs, &[b"squashfs"])])
        .expect("manifest");
    let mut cpio = vec![0u8; 4096];
    let mut w = CpioWriter::new(&mut cpio, 1);
    w.file(b"init", 0o755, b"#!/not-used\n").expect("fits");
    let n = w.finish().expect("fits");
    cpio.truncate(n);
    let mut out = ImageWriter::new(Vec::new());
    out.add_bytes(Kind::Stub, 0, &stub).expect("stub");
    out.add_bytes(Kind::Kernel, 0, kernel).expect("kernel");
    out.add_bytes(Kind::Initramfs, 0, &cpio).expect("initramfs");
    out.add_bytes(Kind::Rootfs, 0, &rootfs_pattern()).expect("rootfs");
    out.add_bytes(Kind::Manifest, 0, &manifest).expect("manifest");
    let bytes = out.finish().expect("image").0;
    write_exe(name, &bytes)
}

/// Runs `cmd` with `stdin` bytes, killing it (and failing) after `limit`.
fn run(cmd: &mut Command, stdin: &[u8], limit: Duration) -> Output {
    stub_common::run_limited(cmd, Some(stdin), limit).expect("spawn")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn console_echoes_stdin_to_stdout_until_eof() {
    if !have_kvm() {
        return;
    }
    let img = image("echo", &guest("echo", "MODE_ECHO", &[]));
    let input = b"hello through virtio-console\nsecond line, no newline at the end";
    // With 2 vCPUs too: the stdin watcher's kicks reach vCPU 0's thread.
    for args in [&[][..], &["--smolvm-cpus=2", "--smolvm-force"]] {
        let out = run(Command::new(&img).args(args), input, Duration::from_secs(120));
        assert_eq!(out.status.code(), Some(0), "failed check = exit status; {out:?}");
        assert_eq!(text(&out.stdout), text(input));
    }
    // Empty stdin: EOF at once.
    let out = run(&mut Command::new(&img), b"", Duration::from_secs(120));
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), String::new()), "{out:?}");
}

#[test]
fn block_reads_the_rootfs_section_and_writes_a_disk() {
    if !have_kvm() {
        return;
    }
    let img = image("blk", &guest("blk", "MODE_BLK", &[]));
    let disk = scratch().join("disk.img");
    std::fs::write(&disk, vec![0u8; 8192]).expect("disk");
    let arg = format!("--smolvm-disk={}", disk.display());
    let out = run(Command::new(&img).arg(&arg), b"", Duration::from_secs(120));
    assert_eq!(out.status.code(), Some(0), "failed check = exit status; {out:?}");
    let back = std::fs::read(&disk).expect("disk");
    let sector2 = &back[1024..1536];
    assert!(sector2.chunks(24).all(|c| b"smolvm-disk-write-test!\n".starts_with(c)), "{:?}", text(sector2));
    assert!(back[..1024].iter().chain(&back[1536..]).all(|&b| b == 0));
    // The image file itself is never written.
    let img_bytes = std::fs::read(&img).expect("image");
    let pattern = rootfs_pattern();
    assert!(img_bytes.windows(pattern.len()).any(|w| w == pattern));

    // A missing disk is a one-line error, exit 125, before booting.
    let out = run(Command::new(&img).arg("--smolvm-disk=/nonexistent/disk.img"), b"", Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(text(&out.stderr).contains("/nonexistent/disk.img: no such file"), "{out:?}");
}

#[test]
fn block_requests_complete_once_with_every_vcpu_hammering_the_device() {
    if !have_kvm() {
        return;
    }
    // The BSP reads the rootfs 64 times and checks every byte while the
    // other vCPUs notify the same queue and read its registers nonstop:
    // each exit is handled under the device lock, so no request is lost,
    // doubled or torn (the guest checks the used ring and the data).
    let img = image("smp-blk", &guest("smp-blk", "MODE_SMP_BLK", &[]));
    for cpus in ["1", "2", "4"] {
        let out = run(Command::new(&img).args([&format!("--smolvm-cpus={cpus}"), "--smolvm-force"]), b"", Duration::from_secs(120));
        assert_eq!(out.status.code(), Some(0), "{cpus} vCPUs: failed check = exit status; {out:?}");
    }
}

#[test]
fn hostile_queues_get_needs_reset_and_the_stub_survives() {
    if !have_kvm() {
        return;
    }
    let cases = [
        (1, "queue size 0"),
        (2, "queue size not a power of two"),
        (3, "queue size above the maximum"),
        (4, "misaligned descriptor table"),
        (5, "used ring outside RAM"),
        (6, "looping chain"),
        (7, "next out of range"),
        (8, "head out of range"),
        (9, "buffer outside RAM"),
        (10, "address + length wraps u64"),
        (11, "chain longer than 2^32 bytes"),
        (12, "avail index jumps past the queue size"),
        (13, "indirect descriptor not offered"),
    ];
    for (n, what) in cases {
        let img = image(&format!("hostile{n}"), &guest(&format!("hostile{n}"), "MODE_HOSTILE", &[&format!("-DCASE={n}")]));
        let out = run(&mut Command::new(&img), b"", Duration::from_secs(120));
        assert_eq!(out.status.code(), Some(0), "case {n} ({what}): failed check = exit status; {out:?}");
        assert_eq!(text(&out.stderr), "", "case {n} ({what})");
    }
}

/// A pseudo-terminal: (master, slave), the slave in its default cooked mode.
fn pty() -> (std::fs::File, std::fs::File) {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
    grantpt(&master).expect("grantpt");
    unlockpt(&master).expect("unlockpt");
    let name = ptsname(&master, Vec::new()).expect("ptsname");
    let slave = std::fs::OpenOptions::new().read(true).write(true).open(name.to_str().expect("utf-8")).expect("slave");
    (std::fs::File::from(master), slave)
}

fn lflag(tty: &std::fs::File) -> rustix::termios::LocalModes {
    rustix::termios::tcgetattr(tty).expect("tcgetattr").local_modes
}

/// With stdin and stdout on a terminal the stub switches it to raw mode, and
/// every exit path puts it back: a guest crash (125) and a signal (143).
#[test]
fn terminal_is_raw_while_running_and_restored_on_every_exit() {
    use rustix::termios::LocalModes;
    use std::os::unix::process::ExitStatusExt;
    if !have_kvm() {
        return;
    }
    let build = |name: &str, mode: &str| {
        let out = scratch().join(format!("guest-{name}"));
        let ok = Command::new(workspace().join("tests/guests/build.sh")).arg(&out).arg(mode).status().expect("build.sh");
        assert!(ok.success());
        image(name, &std::fs::read(out).expect("guest"))
    };
    let cooked = LocalModes::ICANON | LocalModes::ECHO | LocalModes::ISIG;
    let (master, slave) = pty();
    let before = lflag(&slave);
    assert!(before.contains(cooked));
    let drain = |m: &std::fs::File| {
        let mut m = m.try_clone().expect("dup");
        std::thread::spawn(move || std::io::copy(&mut m, &mut std::io::sink()))
    };
    let _d = drain(&master);

    // A guest that triple-faults: 125, terminal restored.
    let crash = build("tty-triple", "MODE_TRIPLE");
    let out = Command::new(&crash)
        .stdin(slave.try_clone().expect("dup"))
        .stdout(slave.try_clone().expect("dup"))
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert_eq!(lflag(&slave), before, "terminal left changed after a crash");

    // A spinning guest: raw while it runs, restored after SIGTERM (no init
    // listens for signals, so the stub ends at once with 128 + 15).
    let spin = build("tty-spin", "MODE_SPIN");
    let mut child = Command::new(&spin)
        .stdin(slave.try_clone().expect("dup"))
        .stdout(slave.try_clone().expect("dup"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    while lflag(&slave).intersects(cooked) {
        assert!(start.elapsed() < Duration::from_secs(30), "terminal never went raw");
        std::thread::sleep(Duration::from_millis(20));
    }
    Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("kill");
    let status = child.wait().expect("wait");
    assert_eq!((status.code(), status.signal()), (Some(143), None), "{status:?}");
    assert_eq!(lflag(&slave), before, "terminal left raw after SIGTERM");
}
