//! Helpers shared by the stub_* tests: build bare-metal guests with gcc,
//! pack them into images with the linker crate's writer (as `smolvm build`
//! does), and run images with a time limit.
#![allow(dead_code)]

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
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("smolvm-stub-tests-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("scratch dir");
        d
    })
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// The stub binary: `$SMOLVM_STUB`, else the one cargo built next to this
/// test (built on demand with the same profile).
pub fn stub() -> &'static Path {
    static STUB: OnceLock<PathBuf> = OnceLock::new();
    STUB.get_or_init(|| {
        if let Some(p) = std::env::var_os("SMOLVM_STUB") {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().expect("test exe");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
        // Always ask cargo (a no-op when fresh): a stale stub must not be tested.
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut c = Command::new(env!("CARGO"));
        c.args(["build", "-p", "vmm-stub"]).current_dir(workspace());
        if release {
            c.arg("--release");
        }
        assert!(c.status().expect("cargo").success(), "building vmm-stub failed");
        profile_dir.join("vmm-stub")
    })
}

/// Compiles a guest mode of tests/guests/guest.c.
pub fn guest(name: &str, mode: &str, defines: &[&str]) -> Vec<u8> {
    guest_from("guest.c", name, mode, defines)
}

/// Compiles a guest mode of `tests/guests/<source>`.
pub fn guest_from(source: &str, name: &str, mode: &str, defines: &[&str]) -> Vec<u8> {
    // Tests run in parallel: build privately, then rename into place.
    let out = scratch().join(format!("guest-{name}"));
    let tmp = scratch().join(format!("guest-{name}.{:?}", std::thread::current().id()));
    let status = Command::new(workspace().join("tests/guests/build.sh"))
        .env("GUEST_SRC", source)
        .arg(&tmp)
        .arg(mode)
        .args(defines)
        .status()
        .expect("run tests/guests/build.sh (needs gcc)");
    assert!(status.success(), "building guest {name} failed");
    std::fs::rename(&tmp, &out).expect("rename guest");
    std::fs::read(out).expect("guest binary")
}

/// An image: the stub, `kernel`, a minimal initramfs and a manifest.
pub fn image(name: &str, kernel: &[u8], mem_mib: u32) -> PathBuf {
    write_exe(name, &image_bytes(kernel, mem_mib))
}

/// Writes `bytes` as an executable `<name>.vm` in the scratch directory.
///
/// `cp` writes the final file, not this process: tests run in threads, and
/// a child another thread forks inherits any write fd we hold until it
/// execs; executing the image meanwhile fails with "Text file busy".
pub fn write_exe(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch().join(format!("{name}.vm"));
    let staged = scratch().join(format!("{name}.vm.{:?}", std::thread::current().id()));
    std::fs::write(&staged, bytes).expect("write image");
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let _ = std::fs::remove_file(&path);
    let copied = Command::new("cp").arg("-p").arg(&staged).arg(&path).status().expect("run cp");
    assert!(copied.success(), "cp {} failed", path.display());
    std::fs::remove_file(&staged).expect("remove staged image");
    path
}

/// The bytes of an image holding the stub, `kernel`, a minimal initramfs
/// and a manifest asking for `mem_mib` MiB.
pub fn image_bytes(kernel: &[u8], mem_mib: u32) -> Vec<u8> {
    image_bytes_flags(kernel, 0, mem_mib)
}

/// As [`image_bytes`], with the kernel section's flags (`FLAG_BZIMAGE`).
pub fn image_bytes_flags(kernel: &[u8], kernel_flags: u32, mem_mib: u32) -> Vec<u8> {
    image_bytes_with(stub(), kernel, kernel_flags, mem_mib)
}

/// As [`image_bytes_flags`], with the stub binary at `stub`.
pub fn image_bytes_with(stub: &Path, kernel: &[u8], kernel_flags: u32, mem_mib: u32) -> Vec<u8> {
    let stub = std::fs::read(stub).expect("stub binary");
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
    out.add_bytes(Kind::Kernel, kernel_flags, kernel).expect("kernel");
    out.add_bytes(Kind::Initramfs, 0, &cpio).expect("initramfs");
    out.add_bytes(Kind::Manifest, 0, &manifest).expect("manifest");
    out.finish().expect("image").0
}

/// The stub built with the `test-hooks` feature (`SMOLVM_TEST_HOOK`; never
/// in release images), in its own target directory.
pub fn hooked_stub() -> PathBuf {
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

/// Whether the test can run its guest: see `smolvm_tests::prereq` (fails
/// under CI, a visible `SKIPPED:` line elsewhere).
pub fn have_kvm() -> bool {
    smolvm_tests::prereq::kvm()
}

/// Runs `cmd` to completion, killing it (and failing) after `limit`.
pub fn run_with_limit(cmd: &mut Command, limit: Duration) -> Output {
    try_run_with_limit(cmd, limit).expect("spawn")
}

/// As [`run_with_limit`], but `None` when the program cannot be executed.
pub fn try_run_with_limit(cmd: &mut Command, limit: Duration) -> Option<Output> {
    run_limited(cmd, None, limit)
}

/// Runs `cmd` with `stdin` bytes written to its stdin (`None`: stdin is
/// /dev/null), collecting its output; kills it and fails the test when it
/// is still running after `limit`. `None` when it cannot be executed.
pub fn run_limited(cmd: &mut Command, stdin: Option<&[u8]>, limit: Duration) -> Option<Output> {
    use std::io::Read;
    let mut child = cmd
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let writer = match (stdin, child.stdin.take()) {
        (Some(data), Some(mut pipe)) => {
            let data = data.to_vec();
            // An early exit of the child is a broken pipe here, not an error.
            Some(std::thread::spawn(move || drop(std::io::Write::write_all(&mut pipe, &data))))
        }
        _ => None,
    };
    fn collect(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    }
    let (stdout, stderr) = (collect(child.stdout.take()), collect(child.stderr.take()));
    // The watchdog is this loop: the child is polled, never waited on
    // blindly, and killed through its handle (no pid that could be reused).
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break Some(status);
        }
        if start.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if let Some(w) = writer {
        w.join().expect("stdin writer");
    }
    let (stdout, stderr) = (stdout.join().expect("stdout reader"), stderr.join().expect("stderr reader"));
    let Some(status) = status else {
        panic!("timed out after {limit:?} (killed): stdout {:?} stderr {:?}", text(&stdout), text(&stderr));
    };
    Some(Output { status, stdout, stderr })
}

pub fn run(image: &Path, args: &[&str]) -> Output {
    run_with_limit(Command::new(image).args(args), Duration::from_secs(60))
}

/// Runs with `SMOLVM_LOG=kernel`: the guest's serial console goes to stderr.
/// (By default it only feeds the crash tail: the virtio consoles carry the
/// app's stdio, and a Linux kernel's log must not mix into it.)
pub fn run_serial(image: &Path, args: &[&str]) -> Output {
    run_with_limit(Command::new(image).env("SMOLVM_LOG", "kernel").args(args), Duration::from_secs(60))
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}


/// Turns a guest ELF linked at 16 MiB (`-Wl,-Ttext-segment=0x1000000`) into
/// a bzImage: a 2.15 setup header (one setup sector), then the protected-mode
/// payload loaded at its preferred address 16 MiB, whose 64-bit entry at
/// +0x200 jumps to the ELF entry.
pub fn bzimage_from_elf(elf: &[u8]) -> Vec<u8> {
    const PREF: u64 = 0x100_0000;
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().expect("2"));
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().expect("8"));
    let entry = u64_at(24);
    let (phoff, phnum) = (u64_at(32) as usize, u16_at(56) as usize);
    let mut payload = Vec::new();
    for i in 0..phnum {
        let ph = phoff + i * 56;
        if u32::from_le_bytes(elf[ph..ph + 4].try_into().expect("4")) != 1 {
            continue;
        }
        let (off, paddr, filesz, memsz) = (u64_at(ph + 8), u64_at(ph + 24), u64_at(ph + 32), u64_at(ph + 40));
        let at = (paddr - PREF) as usize;
        payload.resize(payload.len().max(at + memsz as usize), 0);
        payload[at..at + filesz as usize].copy_from_slice(&elf[off as usize..(off + filesz) as usize]);
    }
    // jmp rel32 at +0x200 (inside the ELF header page's zero padding).
    assert!(payload[0x200..0x205].iter().all(|&b| b == 0), "room for the entry jump");
    let rel = (entry - (PREF + 0x205)) as u32;
    payload[0x200] = 0xe9;
    payload[0x201..0x205].copy_from_slice(&rel.to_le_bytes());
    let mut setup = vec![0u8; 2 * 512];
    setup[0x1f1] = 1; // setup_sects
    setup[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    setup[0x201] = 0x6a; // header ends at 0x26c
    setup[0x202..0x206].copy_from_slice(b"HdrS");
    setup[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    setup[0x211] = 1; // LOADED_HIGH
    setup[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    setup[0x230..0x234].copy_from_slice(&0x20_0000u32.to_le_bytes());
    setup[0x234] = 1; // relocatable
    setup[0x236..0x238].copy_from_slice(&1u16.to_le_bytes()); // XLF_KERNEL_64
    setup[0x238..0x23c].copy_from_slice(&2047u32.to_le_bytes());
    setup[0x258..0x260].copy_from_slice(&PREF.to_le_bytes());
    setup[0x260..0x264].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    setup.extend_from_slice(&payload);
    setup
}
