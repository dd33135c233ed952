//! `smolvm rekernel` on the command line: the kernel and kernel-info
//! sections are replaced, every other section keeps its bytes and digests,
//! the result verifies, is byte-identical when made twice, and bad inputs
//! (another format version, a damaged image, a non-kernel) are refused with
//! one line and no output file. Kernels are placeholder files here; booting
//! a rekernel'd image is tested by `tests/tests/field_e2e.rs`.

use linker::image::{seal, Image, Kind, FLAG_BZIMAGE, TRAILER_LEN};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SMOLVM: &str = env!("CARGO_BIN_EXE_smolvm");

struct Tmp(PathBuf);

impl Tmp {
    fn new(name: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!("smolvm-rekernel-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("tmp dir");
        Tmp(p)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn smolvm(dir: &Path, args: &[&str]) -> Output {
    Command::new(SMOLVM)
        .current_dir(dir)
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("SMOLVM_KERNEL")
        .output()
        .expect("smolvm runs")
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A bzImage-shaped placeholder: setup header magic and a version string.
fn bzimage(version: &str) -> Vec<u8> {
    let mut b = vec![0u8; 0x1000];
    b[0x202..0x206].copy_from_slice(b"HdrS");
    b[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
    b[0x300..0x300 + version.len()].copy_from_slice(version.as_bytes());
    b
}

/// Builds `old.vm` in `dir` from a busybox rootfs with `kernel` (file name in `dir`).
fn old_image(dir: &Path, kernel: &str) {
    fs::create_dir_all(dir.join("rootfs/bin")).expect("mkdir");
    fs::copy("/bin/busybox", dir.join("rootfs/bin/busybox")).expect("busybox-static is installed");
    let _ = symlink("busybox", dir.join("rootfs/bin/sh"));
    fs::write(dir.join("stub"), b"\x7fELF placeholder stub").expect("write");
    fs::write(dir.join("init"), b"\x7fELF placeholder init").expect("write");
    ok(&smolvm(
        dir,
        &[
            "build", "--rootfs", "rootfs", "--kernel", kernel, "--stub", "stub", "--init", "init",
            "--entry", "/bin/sh", "-o", "old.vm",
        ],
    ));
}

fn table(bytes: &[u8]) -> Image {
    Image::parse_slice(&bytes[bytes.len() - TRAILER_LEN..], bytes.len() as u64).expect("valid image")
}

fn bytes_of<'a>(bytes: &'a [u8], img: &Image, kind: Kind) -> &'a [u8] {
    let s = img.section(kind).expect("section present");
    &bytes[usize::try_from(s.offset).expect("fits")..usize::try_from(s.end()).expect("fits")]
}

#[test]
fn rekernel_swaps_only_the_kernel_and_is_reproducible() {
    let t = Tmp::new("swap");
    let d = &t.0;
    fs::write(d.join("vmlinux"), b"\x7fELF...Linux version 6.1.0-old #1\n\0").expect("write");
    fs::write(d.join("bzImage"), bzimage("6.1.99-new (smolvm@smolvm) #2")).expect("write");
    old_image(d, "vmlinux");
    let old = fs::read(d.join("old.vm")).expect("old");

    let said = ok(&smolvm(d, &["rekernel", "old.vm", "--kernel", "bzImage", "-o", "new.vm"]));
    assert!(said.contains("6.1.0-old -> 6.1.99-new"), "{said}");
    ok(&smolvm(d, &["rekernel", "old.vm", "--kernel", "bzImage", "-o", "again.vm"]));
    let new = fs::read(d.join("new.vm")).expect("new");
    assert!(new == fs::read(d.join("again.vm")).expect("again"), "two rekernels differ");
    assert!(old == fs::read(d.join("old.vm")).expect("old"), "the input changed");
    ok(&smolvm(d, &["verify", "new.vm"]));

    let (a, b) = (table(&old), table(&new));
    for kind in [Kind::Stub, Kind::Initramfs, Kind::Rootfs, Kind::Manifest] {
        let (x, y) = (a.section(kind).expect("old"), b.section(kind).expect("new"));
        assert_eq!((x.sha256, x.fast_digest, x.len, x.flags), (y.sha256, y.fast_digest, y.len, y.flags), "{kind:?}");
        assert!(bytes_of(&old, &a, kind) == bytes_of(&new, &b, kind), "{kind:?} bytes");
    }
    let kernel = b.section(Kind::Kernel).expect("kernel");
    assert_eq!(kernel.flags, FLAG_BZIMAGE);
    assert!(bytes_of(&new, &b, Kind::Kernel) == bzimage("6.1.99-new (smolvm@smolvm) #2").as_slice());
    let info = String::from_utf8_lossy(bytes_of(&new, &b, Kind::KernelInfo)).into_owned();
    assert_eq!(info, "version=6.1.99-new (smolvm@smolvm) #2\n");
    let shown = ok(&smolvm(d, &["inspect", "new.vm"]));
    assert!(shown.contains("version: 6.1.99-new") && shown.contains("bzImage"), "{shown}");
    assert!(shown.contains("cached kernel (smolvm kernel path):"), "{shown}");

    // Back to the first kernel, in place: the original image again, byte for byte.
    ok(&smolvm(d, &["rekernel", "new.vm", "--kernel", "vmlinux", "-o", "new.vm"]));
    assert!(old == fs::read(d.join("new.vm")).expect("new"), "rekernel back did not restore the image");
}

#[test]
fn a_signature_is_dropped_with_a_line_saying_to_sign_again() {
    let t = Tmp::new("signed");
    let d = &t.0;
    fs::write(d.join("vmlinux"), b"\x7fELF...Linux version 6.1.0-old #1\n\0").expect("write");
    fs::write(d.join("bzImage"), bzimage("6.1.99 #2")).expect("write");
    old_image(d, "vmlinux");
    // A stub that knows signatures carries the mark `smolvm sign` looks for.
    let mut stub = b"\x7fELF placeholder stub ".to_vec();
    stub.extend_from_slice(linker::signature::STUB_MARK);
    fs::write(d.join("stub"), &stub).expect("write");
    ok(&smolvm(
        d,
        &["build", "--rootfs", "rootfs", "--kernel", "vmlinux", "--stub", "stub", "--init", "init", "--entry", "/bin/sh", "-o", "old.vm"],
    ));
    ok(&smolvm(d, &["keygen", "-o", "key"]));
    ok(&smolvm(d, &["sign", "--key", "key", "old.vm"]));
    let said = ok(&smolvm(d, &["rekernel", "old.vm", "--kernel", "bzImage", "-o", "new.vm"]));
    assert!(said.contains("signature was dropped") && said.contains("smolvm sign --key KEY new.vm"), "{said}");
    let new = fs::read(d.join("new.vm")).expect("new");
    assert!(table(&new).section(Kind::Signature).is_none());
    ok(&smolvm(d, &["sign", "--key", "key", "new.vm"]));
    ok(&smolvm(d, &["verify", "new.vm"]));
}

#[test]
fn an_image_without_kernel_info_gets_one() {
    let t = Tmp::new("noinfo");
    let d = &t.0;
    // No version string and no .config beside it: the builder records no kernel info.
    fs::write(d.join("vmlinux"), b"\x7fELF no banner").expect("write");
    fs::write(d.join("bzImage"), bzimage("6.1.200 #1")).expect("write");
    old_image(d, "vmlinux");
    let old = fs::read(d.join("old.vm")).expect("old");
    assert!(table(&old).section(Kind::KernelInfo).is_none());
    let said = ok(&smolvm(d, &["rekernel", "old.vm", "--kernel", "bzImage", "-o", "new.vm"]));
    assert!(said.contains("unknown -> 6.1.200"), "{said}");
    let new = fs::read(d.join("new.vm")).expect("new");
    let b = table(&new);
    assert_eq!(bytes_of(&new, &b, Kind::KernelInfo), b"version=6.1.200 #1\n");
    assert_eq!(b.sections().last().map(|s| s.kind), Some(Kind::KernelInfo));
}

/// Fails with one `smolvm: …` line containing every `want`, leaving no output.
fn refused(dir: &Path, o: &Output, want: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    for w in want {
        assert!(err.starts_with("smolvm: ") && err.contains(w), "want `{w}` in: {err}");
    }
    let left: Vec<String> = fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("new") || n.starts_with(".new"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn other_versions_damage_and_bad_kernels_are_refused() {
    let t = Tmp::new("refuse");
    let d = &t.0;
    fs::write(d.join("vmlinux"), b"\x7fELF...Linux version 6.1.0-old #1\n\0").expect("write");
    fs::write(d.join("bzImage"), bzimage("6.1.99 #2")).expect("write");
    old_image(d, "vmlinux");
    let old = fs::read(d.join("old.vm")).expect("old");
    let rekernel = |image: &str, kernel: &str| smolvm(d, &["rekernel", image, "--kernel", kernel, "-o", "new.vm"]);

    // A newer format version (trailer re-sealed, so only the version differs).
    let mut v2 = old.clone();
    let at = v2.len() - TRAILER_LEN;
    let mut trailer: [u8; TRAILER_LEN] = v2[at..].try_into().expect("trailer");
    trailer[8] = 2;
    seal(&mut trailer);
    v2[at..].copy_from_slice(&trailer);
    fs::write(d.join("v2.vm"), &v2).expect("write");
    refused(d, &rekernel("v2.vm", "bzImage"), &["format v2", "only v1", "rebuild"]);

    let mut damaged = old.clone();
    let rootfs = table(&old).section(Kind::Rootfs).expect("rootfs");
    damaged[usize::try_from(rootfs.offset + 100).expect("fits")] ^= 1;
    fs::write(d.join("damaged.vm"), &damaged).expect("write");
    refused(d, &rekernel("damaged.vm", "bzImage"), &["rootfs", "damaged"]);

    fs::write(d.join("notakernel"), b"#!/bin/sh\n").expect("write");
    refused(d, &rekernel("old.vm", "notakernel"), &["neither an ELF vmlinux nor a bzImage"]);
    refused(d, &rekernel("old.vm", "missing"), &["missing"]);
    refused(d, &rekernel("stub", "bzImage"), &["not a smolvm image"]);
    fs::create_dir(d.join("new.vm")).expect("mkdir");
    let o = smolvm(d, &["rekernel", "old.vm", "--kernel", "bzImage", "-o", "new.vm"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is a directory"));
}
