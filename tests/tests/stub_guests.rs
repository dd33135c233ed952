//! vmm-stub under the real /dev/kvm with bare-metal test guests
//! (tests/guests/guest.c, built with gcc: no extra Rust targets needed),
//! packed into images by the linker crate's writer exactly like
//! `smolvm build` does, and run as `./image.vm args...`.
//!
//! Guest kernel-mode code is emulated on nested hosts (~1 µs/instruction),
//! so every guest does only a few hundred instructions.

use linker::config::{self, Key};
use linker::cpio::CpioWriter;
use linker::image::Kind;
use linker::write::ImageWriter;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Directory for this test process's guests and images.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("smolvm-stub-tests-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("scratch dir");
        d
    })
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// The stub binary: `$SMOLVM_STUB`, else the one cargo built next to this
/// test (built on demand with the same profile).
fn stub() -> &'static Path {
    static STUB: OnceLock<PathBuf> = OnceLock::new();
    STUB.get_or_init(|| {
        if let Some(p) = std::env::var_os("SMOLVM_STUB") {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().expect("test exe");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
        let stub = profile_dir.join("vmm-stub");
        if !stub.exists() {
            let release = profile_dir.file_name().is_some_and(|n| n == "release");
            let mut c = Command::new(env!("CARGO"));
            c.args(["build", "-p", "vmm-stub"]).current_dir(workspace());
            if release {
                c.arg("--release");
            }
            assert!(c.status().expect("cargo").success(), "building vmm-stub failed");
        }
        stub
    })
}

/// Compiles a guest mode of tests/guests/guest.c.
fn guest(name: &str, mode: &str, defines: &[&str]) -> Vec<u8> {
    let out = scratch().join(format!("guest-{name}"));
    let status = Command::new(workspace().join("tests/guests/build.sh"))
        .arg(&out)
        .arg(mode)
        .args(defines)
        .status()
        .expect("run tests/guests/build.sh (needs gcc)");
    assert!(status.success(), "building guest {name} failed");
    std::fs::read(out).expect("guest binary")
}

/// An image: the stub, `kernel`, a minimal initramfs and a manifest.
fn image(name: &str, kernel: &[u8], mem_mib: u32) -> PathBuf {
    let stub = std::fs::read(stub()).expect("stub binary");
    let mem = mem_mib.to_string();
    let manifest = config::to_vec(&[
        (Key::Entry, &[b"/bin/app"]),
        (Key::Arg, &[b"default-arg"]),
        (Key::Mem, &[mem.as_bytes()]),
        (Key::Rootfs, &[b"initramfs"]),
    ])
    .expect("manifest");
    let mut cpio = vec![0u8; 4096];
    let mut w = CpioWriter::new(&mut cpio, 1);
    w.file(b"init", 0o755, b"#!/not-used\n").expect("fits");
    w.dir(b"smolvm", 0o755).expect("fits");
    w.file(b"smolvm/manifest", 0o644, &manifest).expect("fits");
    let n = w.finish().expect("fits");
    cpio.truncate(n);
    let mut out = ImageWriter::new(Vec::new());
    out.add_bytes(Kind::Stub, 0, &stub).expect("stub");
    out.add_bytes(Kind::Kernel, 0, kernel).expect("kernel");
    out.add_bytes(Kind::Initramfs, 0, &cpio).expect("initramfs");
    out.add_bytes(Kind::Manifest, 0, &manifest).expect("manifest");
    let bytes = out.finish().expect("image").0;
    let path = scratch().join(format!("{name}.vm"));
    std::fs::write(&path, bytes).expect("write image");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn have_kvm() -> bool {
    let ok = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    if !ok {
        eprintln!("skipped: /dev/kvm is not usable here");
    }
    ok
}

/// Runs `cmd` to completion, killing it (and failing) after `limit`.
fn run_with_limit(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let watchdog = std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < limit {
            if flag.load(std::sync::atomic::Ordering::SeqCst) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
        true
    });
    let out = child.wait_with_output().expect("wait");
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(!watchdog.join().expect("watchdog"), "timed out after {limit:?}: {out:?}");
    out
}

fn run(image: &Path, args: &[&str]) -> Output {
    run_with_limit(Command::new(image).args(args), Duration::from_secs(60))
}

/// Runs with `SMOLVM_LOG=kernel`: the guest's serial console goes to stderr.
/// (By default it only feeds the crash tail: the virtio consoles carry the
/// app's stdio, and a Linux kernel's log must not mix into it.)
fn run_serial(image: &Path, args: &[&str]) -> Output {
    run_with_limit(Command::new(image).env("SMOLVM_LOG", "kernel").args(args), Duration::from_secs(60))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn serial_output_reaches_stderr_only_with_log_kernel() {
    if !have_kvm() {
        return;
    }
    let img = image("hello", &guest("hello", "MODE_HELLO", &[]), 64);
    let out = run_serial(&img, &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(text(&out.stderr), "hello from the guest\n");
    assert_eq!(text(&out.stdout), "");
    let out = run(&img, &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!((text(&out.stdout), text(&out.stderr)), (String::new(), String::new()));
}

#[test]
fn exit_port_status_becomes_the_exit_status() {
    if !have_kvm() {
        return;
    }
    for n in [0u8, 1, 42, 255] {
        let g = guest(&format!("exit{n}"), "MODE_EXIT", &[&format!("-DSTATUS={n}")]);
        let img = image(&format!("exit{n}"), &g, 64);
        let out = run_serial(&img, &[]);
        assert_eq!(out.status.code(), Some(i32::from(n)), "{out:?}");
        assert_eq!(text(&out.stderr), "exiting\n");
    }
}

#[test]
fn boot_params_e820_cmdline_and_initrd_are_as_promised() {
    if !have_kvm() {
        return;
    }
    // The manifest says 32 MiB; the flag overrides it to 48, which the guest
    // checks against the e820 map. The arguments after the flag are the
    // app's and must appear in the runtime cpio.
    let g = guest("bootparams", "MODE_BOOTPARAMS", &["-DEXPECT_MEM_MIB=48"]);
    let img = image("bootparams", &g, 32);
    let out = run_serial(&img, &["--smolvm-mem=48", "MARKER-one", "two words"]);
    assert_eq!(out.status.code(), Some(0), "failed check = exit status; {out:?}");
    assert_eq!(text(&out.stderr), "boot_params ok\n");
    // SMOLVM_MEM works too, and the flag beats it.
    let mut cmd = Command::new(&img);
    cmd.env("SMOLVM_MEM", "48").args(["MARKER-one", "two words"]);
    let out = run_with_limit(&mut cmd, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let mut cmd = Command::new(&img);
    cmd.env("SMOLVM_MEM", "32").args(["--smolvm-mem=48", "MARKER-one", "two words"]);
    let out = run_with_limit(&mut cmd, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn triple_fault_is_125_with_the_console_tail() {
    if !have_kvm() {
        return;
    }
    let img = image("triple", &guest("triple", "MODE_TRIPLE", &[]), 64);
    let out = run(&img, &[]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.starts_with("smolvm: guest kernel crashed (triple fault)\n"), "{err}");
    assert!(err.contains("guest: about to triple fault"), "{err}");
}

#[test]
fn a_spinning_guest_ends_on_sigterm() {
    if !have_kvm() {
        return;
    }
    let img = image("spin", &guest("spin", "MODE_SPIN", &[]), 64);
    let mut child = Command::new(&img)
        .env("SMOLVM_LOG", "kernel")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Never hang the suite: whatever goes wrong, the stub dies within 30 s
    // (then the reads below see EOF and the asserts fail).
    let pid = child.id().to_string();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let guard = std::thread::spawn(move || {
        let start = Instant::now();
        while !flag.load(std::sync::atomic::Ordering::SeqCst) && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !flag.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = Command::new("kill").arg("-KILL").arg(&pid).status();
        }
    });
    // Wait until the guest runs (it prints before spinning).
    let mut stderr = child.stderr.take().expect("stderr");
    let mut first = [0u8; 9];
    std::io::Read::read_exact(&mut stderr, &mut first).expect("guest output");
    assert_eq!(&first, b"spinning\n");
    std::thread::sleep(Duration::from_millis(100));
    assert!(child.try_wait().expect("try_wait").is_none(), "guest must still run");
    let t = Instant::now();
    Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("kill");
    let status = child.wait().expect("wait");
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    guard.join().expect("guard");
    assert!(t.elapsed() < Duration::from_secs(10), "stub ignored SIGTERM");
    use std::os::unix::process::ExitStatusExt;
    // Either killed by the signal or exited with 128+15: both end the VM.
    assert!(status.signal() == Some(15) || status.code() == Some(143), "{status:?}");
}
