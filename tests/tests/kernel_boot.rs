//! The guest kernel end to end: `smolvm kernel` builds it (or finds it cached), it boots
//! under QEMU software emulation (`-M microvm,acpi=off -accel tcg`, as on a host without
//! usable KVM) to a marker printed by a test initramfs, it has the features smol-init and
//! apps rely on, a fragment asking for an impossible option fails the configuration, and
//! a second `smolvm kernel build` reuses the cache without running make.
//!
//! Needs `target/<profile>/smolvm` (`make test` builds it; or set `SMOLVM_BIN`), QEMU
//! (`qemu-system-x86`), `busybox-static` and `squashfs-tools`. The first run builds the
//! kernel (~5 min on 2 cores).
use linker::cpio::{Archive, FileData, Node};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const MARKER: &str = "SMOLVM-KERNEL-MARKER";
/// Generous: TCG on a busy 2-core machine; a healthy boot takes 1-3 s.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
const BUSYBOX: &str = "/bin/busybox";

/// The `smolvm` binary of this build profile (next to the test's `deps/` dir).
fn smolvm() -> PathBuf {
    if let Some(p) = std::env::var_os("SMOLVM_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
    let bin = profile_dir.join("smolvm");
    assert!(bin.is_file(), "{} missing: build it first (`cargo build -p builder`, or `make test`)", bin.display());
    bin
}

fn smolvm_cmd(args: &[&str]) -> Output {
    Command::new(smolvm()).args(args).stdin(Stdio::null()).output().expect("run smolvm")
}

/// `smolvm kernel path <args>`, building the kernel the first time (serialised by
/// the cache lock when tests run in parallel).
fn kernel_path(args: &[&str]) -> PathBuf {
    let mut all = vec!["kernel", "path"];
    all.extend_from_slice(args);
    let out = smolvm_cmd(&all);
    assert!(out.status.success(), "smolvm {all:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(p.is_file(), "{} is not a file", p.display());
    p
}

fn vmlinux() -> &'static Path {
    static V: OnceLock<PathBuf> = OnceLock::new();
    V.get_or_init(|| kernel_path(&[]))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("smolvm-kernel-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// An initramfs: static busybox, `/dev/console` (so init has stdio before it mounts
/// devtmpfs), and `/init` = `script` run by busybox sh (tests ELF and `#!` binfmts).
fn initramfs(dir: &Path, script: &str) -> PathBuf {
    assert!(Path::new(BUSYBOX).is_file(), "{BUSYBOX} missing: apt-get install busybox-static");
    let mut a = Archive::new(0);
    let mut put = |path: &str, node: Node| a.insert(path.as_bytes(), node).expect("cpio insert");
    put("bin/busybox", Node::File { perm: 0o755, data: FileData::Path(BUSYBOX.into()) });
    put("init", Node::File { perm: 0o755, data: FileData::Bytes(format!("#!/bin/busybox sh\n{script}").into_bytes()) });
    put("dev/console", Node::Device { mode: 0o020_600, major: 5, minor: 1 });
    for d in ["proc", "sys", "tmp", "mnt", "share"] {
        put(d, Node::Dir { perm: 0o755 });
    }
    let path = dir.join("initramfs.cpio");
    let mut f = std::fs::File::create(&path).expect("create cpio");
    a.write_to(&mut f).expect("write cpio");
    path
}

/// Kills and reaps QEMU on every path out of `boot`, panics included.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Boots `kernel` with `initrd` under TCG microvm; returns the serial console output
/// once QEMU exits (the guest reboots, `-no-reboot` turns that into an exit).
fn boot(kernel: &Path, initrd: &Path, extra: &[String]) -> String {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-M", "microvm,acpi=off", "-accel", "tcg", "-cpu", "max", "-m", "256M"])
        .args(["-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 reboot=t panic=-1"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut qemu = Qemu(cmd.spawn().expect("run qemu-system-x86_64 (apt-get install qemu-system-x86)"));
    let console = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = qemu.0.stdout.take().expect("piped stdout");
    let sink = Arc::clone(&console);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            sink.lock().expect("console lock").extend_from_slice(&buf[..n]);
        }
    });
    let deadline = Instant::now() + BOOT_TIMEOUT;
    let status = loop {
        if let Some(s) = qemu.0.try_wait().expect("wait qemu") {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if status.is_some() {
        let _ = reader.join();
        if let Some(mut e) = qemu.0.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
    }
    let out = String::from_utf8_lossy(&console.lock().expect("console lock")).into_owned();
    drop(qemu);
    match status {
        None => panic!("guest did not finish within {BOOT_TIMEOUT:?}; console:\n{out}"),
        Some(s) => assert!(s.success(), "qemu failed ({s}): {stderr}\nconsole:\n{out}"),
    }
    out
}

fn assert_marker(console: &str) {
    assert!(console.contains("Linux version 6.1"), "no kernel banner:\n{console}");
    // The script echoes the marker; the kernel's own log never contains it.
    assert!(console.lines().any(|l| l.trim() == MARKER), "marker missing:\n{console}");
}

const MARKER_INIT: &str = "echo SMOLVM-KERNEL-MARKER\n/bin/busybox reboot -f\n";

#[test]
fn vmlinux_boots_to_the_marker() {
    let dir = scratch("vmlinux");
    let console = boot(vmlinux(), &initramfs(&dir, MARKER_INIT), &[]);
    assert_marker(&console);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn every_bzimage_boots_to_the_marker() {
    let dir = scratch("bzimage");
    let initrd = initramfs(&dir, MARKER_INIT);
    for c in ["lz4", "zstd", "xz"] {
        let bz = kernel_path(&["--bzimage", "--compression", c]);
        assert!(bz.ends_with(format!("bzImage-{c}")), "{}", bz.display());
        assert_marker(&boot(&bz, &initrd, &[]));
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// One squashfs image per compressor, each holding `comp` = its compressor's name.
fn squashfs_images(dir: &Path) -> Vec<String> {
    let mut qemu_args = Vec::new();
    for comp in ["gzip", "lz4", "zstd", "xz"] {
        let content = dir.join(format!("sq-{comp}"));
        std::fs::create_dir_all(&content).expect("mkdir");
        std::fs::write(content.join("comp"), comp).expect("write");
        let img = dir.join(format!("{comp}.sqfs"));
        let st = Command::new("mksquashfs")
            .arg(&content)
            .arg(&img)
            .args(["-comp", comp, "-noappend", "-quiet", "-no-progress"])
            .status()
            .expect("run mksquashfs (apt-get install squashfs-tools)");
        assert!(st.success(), "mksquashfs -comp {comp} failed");
        qemu_args.push("-drive".into());
        qemu_args.push(format!("file={},format=raw,if=none,id=sq{comp},readonly=on", img.display()));
        qemu_args.push("-device".into());
        qemu_args.push(format!("virtio-blk-device,drive=sq{comp}"));
    }
    qemu_args
}

#[test]
fn kernel_has_what_init_and_apps_need() {
    let dir = scratch("features");
    let share = dir.join("share");
    std::fs::create_dir_all(&share).expect("mkdir");
    std::fs::write(share.join("hello"), "from-host").expect("write");
    let hvc = dir.join("hvc0.out");
    let mut args = squashfs_images(&dir);
    for a in [
        "-fsdev".into(),
        format!("local,id=fs0,path={},security_model=none,readonly=on", share.display()),
        "-device".into(),
        "virtio-9p-device,fsdev=fs0,mount_tag=smolvm0".into(),
        "-chardev".into(),
        format!("file,id=hvc,path={}", hvc.display()),
        "-device".into(),
        "virtio-serial-device".into(),
        "-device".into(),
        "virtconsole,chardev=hvc".into(),
    ] {
        args.push(a);
    }
    let script = "\
B=/bin/busybox
$B mount -t proc proc /proc && echo fs=proc
$B mount -t sysfs sys /sys && echo fs=sysfs
$B mount -t devtmpfs dev /dev && echo fs=devtmpfs
$B mount -t tmpfs tmp /tmp && echo fs=tmpfs
for d in a b c d; do
  $B mkdir -p /mnt/$d
  $B mount -t squashfs -o ro /dev/vd$d /mnt/$d && echo squashfs=$($B cat /mnt/$d/comp)
done
$B mount -t 9p -o trans=virtio,version=9p2000.L,ro smolvm0 /share && echo 9p=$($B cat /share/hello)
echo from-guest > /dev/hvc0 && echo hvc=ok
[ -e /proc/net/unix ] && echo unix=ok
[ -e /proc/modules ] || echo modules=none
[ -e /sys/bus/pci ] || echo pci=none
echo SMOLVM-KERNEL-MARKER
$B reboot -f
";
    let console = boot(vmlinux(), &initramfs(&dir, script), &args);
    assert_marker(&console);
    let lines: Vec<&str> = console.lines().map(str::trim).collect();
    for want in [
        "fs=proc",
        "fs=sysfs",
        "fs=devtmpfs",
        "fs=tmpfs",
        "squashfs=gzip",
        "squashfs=lz4",
        "squashfs=zstd",
        "squashfs=xz",
        "9p=from-host",
        "hvc=ok",
        "unix=ok",
        "modules=none",
        "pci=none",
    ] {
        assert!(lines.contains(&want), "guest did not report {want}:\n{console}");
    }
    let hvc_out = std::fs::read_to_string(&hvc).expect("virtio console output file");
    assert_eq!(hvc_out.trim(), "from-guest");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_fragment_option_that_cannot_be_set_fails_the_configuration() {
    let dir = scratch("impossible");
    let frag = dir.join("impossible.config");
    // PCI_MSI depends on PCI, which 90-trims.config turns off: olddefconfig drops it.
    std::fs::write(&frag, "CONFIG_PCI_MSI=y\n").expect("write fragment");
    let frag_arg = frag.display().to_string();
    let out = smolvm_cmd(&["kernel", "config", "--fragment", &frag_arg]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "stderr: {stderr}");
    assert!(stderr.contains(&format!("CONFIG_PCI_MSI=y (from {frag_arg})")), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "no config path on failure");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn missing_source_or_tools_is_one_line_naming_the_packages() {
    let out = smolvm_cmd(&["kernel", "build", "--source", "/nonexistent/linux.tar.xz"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("/nonexistent/linux.tar.xz"), "stderr: {stderr}");

    // A configuration nobody built (so the cache cannot answer) and no tools on PATH.
    let dir = scratch("notools");
    let frag = dir.join("uncached.config");
    std::fs::write(&frag, format!("CONFIG_LOG_BUF_SHIFT={}\n", 12 + std::process::id() % 8)).expect("write");
    let out = Command::new(smolvm())
        .args(["kernel", "build", "--fragment"])
        .arg(&frag)
        .env("PATH", "/nonexistent")
        .stdin(Stdio::null())
        .output()
        .expect("run smolvm");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "stderr: {stderr}");
    let error: Vec<&str> = stderr.lines().filter(|l| l.starts_with("smolvm:")).collect();
    assert_eq!(error.len(), 1, "stderr: {stderr}");
    for pkg in ["apt-get install", "bc", "flex", "bison", "build-essential"] {
        assert!(error[0].contains(pkg), "{pkg} not named: {stderr}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn second_build_reuses_the_cache_without_running_make() {
    let entry = vmlinux().parent().expect("entry dir").to_path_buf();
    let mtime = |f: &str| std::fs::metadata(entry.join(f)).and_then(|m| m.modified()).expect("entry file");
    let before = [mtime("kernel.meta"), mtime("vmlinux"), mtime("build.log")];
    // No build tool is reachable: a rebuild attempt would fail on the missing make.
    let out = Command::new(smolvm())
        .args(["kernel", "build"])
        .env("PATH", "/nonexistent")
        .stdin(Stdio::null())
        .output()
        .expect("run smolvm");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr: {stderr}");
    assert!(stderr.contains("kernel cached, no rebuild"), "stderr: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("vmlinux: {}", entry.join("vmlinux").display())), "{stdout}");
    assert_eq!(before, [mtime("kernel.meta"), mtime("vmlinux"), mtime("build.log")]);
}
