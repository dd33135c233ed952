//! Images made by `smolvm build` boot: the sections of a real image (its
//! initramfs with smol-init and the manifest, its squashfs or initramfs
//! root) are handed to the real guest kernel under QEMU TCG
//! (`tests/src/qemu.rs`), exactly as the stub lays them out, and the app's
//! output and exit status are checked. The stub itself is not run here (a
//! placeholder ELF fills its section); the whole product runs in the stub's
//! and the lab's tests.
//!
//! Needs `target/<profile>/{smolvm,smol-init}` (`cargo build -p builder -p
//! smol-init`), a guest kernel (see `qemu::kernel`), qemu-system-x86,
//! busybox-static and squashfs-tools.

use linker::config::{self, Key};
use linker::cpio::CpioWriter;
use linker::image::{Image, Kind, TRAILER_LEN};
use smolvm_tests::product;
use smolvm_tests::qemu::{self, Guest, Outcome};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A busybox rootfs with a file to read, in `dir/rootfs`.
fn rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    product::busybox_rootfs(&root, &["sh", "cat", "echo"], &["etc"]);
    fs::write(root.join("etc/greeting"), b"greetings from the rootfs\n").expect("write");
    root
}

/// Builds `app.vm` in `dir` from a busybox rootfs and returns its bytes.
fn build(dir: &Path, format: &str, script: &str) -> Vec<u8> {
    let root = rootfs(dir);
    let mut args: Vec<std::ffi::OsString> = vec!["--rootfs".into(), root.into()];
    for a in [
        "--entry",
        "/bin/sh",
        "--arg",
        "-c",
        "--arg",
        script,
        "--env",
        "WHO=manifest",
        "--rootfs-format",
        format,
    ] {
        args.push(a.into());
    }
    build_with(dir, &args)
}

/// `smolvm build ARGS` with the test's kernel, init and a placeholder stub.
fn build_with(dir: &Path, args: &[std::ffi::OsString]) -> Vec<u8> {
    let stub = dir.join("placeholder-stub");
    fs::write(
        &stub,
        b"\x7fELF placeholder: the stub is not run by this test",
    )
    .expect("write");
    let out = Command::new(product::smolvm())
        .arg("build")
        .args(args)
        .args(["--mem", "256M"])
        .arg("--kernel")
        .arg(qemu::kernel())
        .arg("--init")
        .arg(product::init())
        .arg("--stub")
        .arg(&stub)
        .arg("-o")
        .arg(dir.join("app.vm"))
        .output()
        .expect("run smolvm build");
    assert!(
        out.status.success(),
        "smolvm build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::read(dir.join("app.vm")).expect("image written")
}

fn section(image: &[u8], kind: Kind) -> Option<&[u8]> {
    let table = Image::parse_slice(&image[image.len() - TRAILER_LEN..], image.len() as u64)
        .expect("valid image");
    let s = table.section(kind)?;
    let bytes = &image[usize::try_from(s.offset).ok()?..usize::try_from(s.end()).ok()?];
    s.check_fast(bytes).expect("fast digest");
    Some(bytes)
}

/// The runtime archive the stub appends (`smolvm/run`), written with the
/// same no_std writer the stub uses.
fn runtime_cpio(args: &[&str]) -> Vec<u8> {
    let fields: Vec<[&[u8]; 1]> = args.iter().map(|a| [a.as_bytes()]).collect();
    let records: Vec<(Key, &[&[u8]])> = fields.iter().map(|f| (Key::Arg, &f[..])).collect();
    let run = config::to_vec(&records).expect("valid runtime config");
    let mut buf = vec![0u8; 4096];
    let mut w = CpioWriter::new(&mut buf, 1 << 30);
    w.file(linker::abi::GUEST_RUNTIME_PATH.as_bytes(), 0o644, &run)
        .expect("fits");
    let n = w.finish().expect("fits");
    buf.truncate(n);
    buf
}

/// Boots the image's sections; `runtime` is appended to its initramfs.
fn boot(dir: &Path, image: &[u8], runtime: Option<Vec<u8>>) -> Outcome {
    let mut initrd = section(image, Kind::Initramfs).expect("initramfs").to_vec();
    if let Some(r) = runtime {
        // Concatenated archives must start 4-byte aligned.
        initrd.resize(initrd.len().next_multiple_of(4), 0);
        initrd.extend_from_slice(&r);
    }
    fs::write(dir.join("initrd"), &initrd).expect("write");
    let mut guest = Guest::new(qemu::kernel(), dir.join("initrd"));
    if let Some(sq) = section(image, Kind::Rootfs) {
        fs::write(dir.join("rootfs.sqfs"), sq).expect("write");
        guest.rootfs = Some(dir.join("rootfs.sqfs"));
    }
    let run_dir = dir.join("qemu");
    fs::create_dir_all(&run_dir).expect("mkdir");
    guest.run(&run_dir)
}

const SCRIPT: &str = "echo hello from $WHO; cat /etc/greeting; echo oops >&2; exit 7";

fn check_default_run(out: &Outcome) {
    assert_eq!(out.status, Some(7), "{}", out.describe());
    assert_eq!(
        out.stdout_str(),
        "hello from manifest\ngreetings from the rootfs\n",
        "{}",
        out.describe()
    );
    assert_eq!(out.stderr_str(), "oops\n", "{}", out.describe());
}

#[test]
fn squashfs_image_boots_and_runs_the_entry() {
    let dir = qemu::scratch_dir("image-squashfs");
    let image = build(&dir, "squashfs", SCRIPT);
    assert!(section(&image, Kind::Rootfs).is_some());
    check_default_run(&boot(&dir, &image, None));
    // Runtime args replace the manifest's, as when the stub passes ./app.vm ARGS.
    let out = boot(
        &dir,
        &image,
        Some(runtime_cpio(&[
            "-c",
            "echo runtime args; ls /data /mnt >/dev/null && exit 3",
        ])),
    );
    assert_eq!(out.status, Some(3), "{}", out.describe());
    assert_eq!(out.stdout_str(), "runtime args\n", "{}", out.describe());
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn initramfs_image_boots_and_runs_the_entry() {
    let dir = qemu::scratch_dir("image-initramfs");
    let image = build(&dir, "initramfs", SCRIPT);
    assert!(section(&image, Kind::Rootfs).is_none());
    check_default_run(&boot(&dir, &image, None));
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn exec_image_runs_a_dynamically_linked_host_program() {
    let dir = qemu::scratch_dir("image-exec");
    let input = dir.join("input.txt");
    fs::write(&input, "pear\napple\nfig\nbanana\n").expect("write");
    let args: Vec<std::ffi::OsString> = vec![
        "--exec".into(),
        "/usr/bin/sort".into(),
        "--add".into(),
        format!("{}:/input.txt", input.display()).into(),
        "--arg".into(),
        "-r".into(),
        "--arg".into(),
        "/input.txt".into(),
    ];
    let image = build_with(&dir, &args);
    let host = Command::new("/usr/bin/sort")
        .arg("-r")
        .arg(&input)
        .output()
        .expect("host sort");
    let out = boot(&dir, &image, None);
    assert_eq!(out.status, Some(0), "{}", out.describe());
    assert_eq!(out.stdout, host.stdout, "{}", out.describe());
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn docker_archive_image_runs_its_default_command_as_its_user() {
    let dir = qemu::scratch_dir("image-docker");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../builder/tests/make_image.py"
    );
    let archive = dir.join("img.tar");
    let o = Command::new("python3")
        .arg(script)
        .arg("docker")
        .arg(&archive)
        .output()
        .expect("python3");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let image = build_with(&dir, &["--from-docker-archive".into(), archive.into()]);
    let out = boot(&dir, &image, None);
    assert_eq!(out.status, Some(0), "{}", out.describe());
    // Env from the config, whiteout and opaque dir applied, User app, WorkingDir /opt.
    assert_eq!(
        out.stdout_str(),
        "hello\ngone\nb\n1000\n/opt\n",
        "{}",
        out.describe()
    );
    fs::remove_dir_all(&dir).ok();
}
