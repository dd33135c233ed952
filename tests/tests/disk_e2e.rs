//! Data disks that mount, and the root's mode at run time (issue 26), end
//! to end through the real stub and smol-init (the KVM lab, or hardware
//! KVM directly):
//! - `--smolvm-disk=disk.ext4:/data`: the guest reads the host's file and
//!   writes a new one, which the host reads back with debugfs after exit
//!   (the disk was unmounted cleanly: e2fsck finds nothing to fix);
//! - `:ro` refuses writes; a squashfs disk mounts read-only;
//! - a disk with an unknown file system stays a raw device (readable
//!   /dev/vdb, no mount, no mount point) with a note under --smolvm-log=debug;
//! - `--smolvm-read-only` seals the writable root; `--smolvm-read-only=no`
//!   opens an image built `--read-only`;
//! - `smolvm build --disk def.ext4:/data`: the image's default disk, its
//!   relative path opened from the caller's directory, mounted at /data;
//!   any `--smolvm-disk` replaces it (`=none` too); missing, it is 125 with
//!   one line naming it; `smolvm inspect` lists it.
//!
//! Needs `target/<profile>/{vmm-stub,smol-init,smolvm}`, the guest kernel
//! (with EXT4_FS), busybox-static, e2fsprogs and squashfs-tools.

use smolvm_tests::lab::{self, Case};
use smolvm_tests::{product, qemu};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// An image in `dir` named `name`: busybox `sh -c` as the entry.
fn image(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let root = dir.join(format!("rootfs-{name}"));
    let applets = ["sh", "cat", "echo", "ls", "dd", "grep", "cut", "sync"];
    product::busybox_rootfs(&root, &applets, &["proc", "sys", "dev", "tmp"]);
    let mut args = vec!["--mem", "128M"];
    args.extend(extra);
    product::build_image(&root, "/bin/sh", &args, &dir.join(format!("{name}.vm")))
}

fn run(program: &str, args: &[&str]) -> String {
    let o = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(o.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A fresh ext4 image of 16 MiB holding `hello` (mkfs.ext4 -d needs no root).
fn ext4_disk(dir: &Path, name: &str) -> PathBuf {
    let content = dir.join(format!("{name}-content"));
    fs::create_dir_all(&content).expect("mkdir");
    fs::write(content.join("hello"), "hello from the host\n").expect("write");
    let img = dir.join(name);
    run("/sbin/mkfs.ext4", &["-q", "-F", "-d", &content.display().to_string(), &img.display().to_string(), "16M"]);
    img
}

#[test]
fn data_disks_mount_and_the_root_mode_follows_the_flags() {
    let work = qemu::scratch_dir("disk-e2e");
    let app = image(&work, "app", &[]);
    let strict = image(&work, "strict", &["--read-only"]);
    let with_disk = image(&work, "with-disk", &["--disk", "def.ext4:/data"]);
    let w = lab::writable_dir().expect("writable dir");
    let rw_disk = ext4_disk(w.path(), "rw.ext4");
    let ro_disk = ext4_disk(w.path(), "ro.ext4");
    let _default_disk = ext4_disk(w.path(), "def.ext4");
    let other_disk = ext4_disk(w.path(), "other.ext4");
    let squash_src = w.path().join("squash-content");
    fs::create_dir_all(&squash_src).expect("mkdir");
    fs::write(squash_src.join("packed"), "in a squashfs\n").expect("write");
    let squash = w.path().join("data.squashfs");
    run("mksquashfs", &[&squash_src.display().to_string(), &squash.display().to_string(), "-quiet", "-noappend"]);
    let raw = w.path().join("raw.img");
    let mut raw_bytes = b"RAW-CONTENTS".to_vec();
    raw_bytes.resize(64 << 10, 0xA5);
    fs::write(&raw, &raw_bytes).expect("write");

    let disk = |path: &Path, suffix: &str| format!("--smolvm-disk={}{suffix}", path.display());
    let (rw_opt, ro_opt) = (disk(&rw_disk, ":/data"), disk(&ro_disk, ":ro:/mnt/ro"));
    let (squash_opt, raw_opt) = (disk(&squash, ":/srv/packed"), disk(&raw, ":/raw"));
    let rw_script = "cat /data/hello && echo written in the guest > /data/newfile && cat /data/newfile \
        && grep ' /data ' /proc/mounts | cut -d' ' -f1-3 && grep -q ' /data ext4 rw,' /proc/mounts && echo ok";
    let ro_script = "cat /mnt/ro/hello; echo x > /mnt/ro/new; echo write=$?; cat /srv/packed/packed; echo x > /srv/packed/n; echo sq=$?";
    let raw_script = "dd if=/dev/vdb bs=12 count=1 2>/dev/null; echo; grep -c vdb /proc/mounts; [ -e /raw ] && echo exists || echo absent";
    let root_write = "echo x > /root-file && cat /root-file";
    let other_opt = disk(&other_disk, ":/other");
    let mounts = "grep -E ' /(data|other) ' /proc/mounts | cut -d' ' -f1-3; cat /data/hello /other/hello 2>/dev/null; true";
    let out = lab::run_images(&[
        Case::image(&app, &[&rw_opt, "-c", rw_script]),
        Case::image(&app, &[&ro_opt, &squash_opt, "-c", ro_script]),
        Case::image(&app, &["--smolvm-log=debug", &raw_opt, "-c", raw_script]),
        Case::image(&app, &["-c", root_write]),
        Case::image(&app, &["--smolvm-read-only", "-c", root_write]),
        Case::image(&strict, &["-c", root_write]),
        Case::image(&strict, &["--smolvm-read-only=no", "-c", root_write]),
        Case::image(&strict, &["-c", root_write]).env("SMOLVM_READ_ONLY", "0"),
        // 8-11: the image's default disk, from the caller's directory; replaced; none; missing.
        Case::image(&with_disk, &["-c", mounts]).cwd(w.path()),
        Case::image(&with_disk, &[&other_opt, "-c", mounts]),
        Case::image(&with_disk, &["--smolvm-disk=none", "-c", mounts]),
        Case::image(&with_disk, &["-c", mounts]),
    ]);
    let show = |i: usize| format!("case {i}: status {:?}\nstdout: {}\nstderr: {}", out[i].status, out[i].stdout_lossy(), out[i].stderr_lossy());

    // ext4, read-write: the guest sees the host's file, the host the guest's.
    assert_eq!(out[0].status, Some(0), "{}", show(0));
    assert_eq!(
        out[0].stdout_lossy(),
        "hello from the host\nwritten in the guest\n/dev/vdb /data ext4\nok\n",
        "{}",
        show(0)
    );
    let rw = rw_disk.display().to_string();
    assert_eq!(run("/sbin/debugfs", &["-R", "cat /newfile", &rw]), "written in the guest\n");
    // Unmounted at the end: clean, nothing for e2fsck to replay or fix.
    run("/sbin/e2fsck", &["-fn", &rw]);
    assert!(run("/sbin/dumpe2fs", &["-h", &rw]).contains("Filesystem state:         clean"));

    // :ro refuses writes; a squashfs mounts read-only.
    assert_eq!(
        out[1].stdout_lossy(),
        "hello from the host\nwrite=1\nin a squashfs\nsq=1\n",
        "{}",
        show(1)
    );
    assert!(out[1].stderr_lossy().contains("Read-only file system"), "{}", show(1));
    assert!(!run("/sbin/debugfs", &["-R", "ls", &ro_disk.display().to_string()]).contains("new"));

    // An unknown file system: a raw device, not mounted, with a debug note.
    assert_eq!(out[2].stdout_lossy(), "RAW-CONTENTS\n0\nabsent\n", "{}", show(2));
    assert!(out[2].stderr_lossy().contains("no ext4 or squashfs file system, left as a raw device"), "{}", show(2));
    assert_eq!(fs::read(&raw).expect("raw disk"), raw_bytes, "the raw disk is untouched");

    // The root: writable by default, sealed by the flag; an image built
    // --read-only is sealed unless the flag or variable says no.
    assert_eq!((out[3].status, out[3].stdout_lossy().as_str()), (Some(0), "x\n"), "{}", show(3));
    for i in [4, 5] {
        assert_ne!(out[i].status, Some(0), "{}", show(i));
        assert!(out[i].stderr_lossy().contains("Read-only file system"), "{}", show(i));
    }
    for i in [6, 7] {
        assert_eq!((out[i].status, out[i].stdout_lossy().as_str()), (Some(0), "x\n"), "{}", show(i));
    }

    // The image's default disk: the relative path from the caller's directory.
    assert_eq!(
        (out[8].status, out[8].stdout_lossy().as_str()),
        (Some(0), "/dev/vdb /data ext4\nhello from the host\n"),
        "{}",
        show(8)
    );
    // A run-time disk replaces it (from `/`, where def.ext4 is not: it is never opened).
    assert_eq!(
        (out[9].status, out[9].stdout_lossy().as_str()),
        (Some(0), "/dev/vdb /other ext4\nhello from the host\n"),
        "{}",
        show(9)
    );
    assert_eq!((out[10].status, out[10].stdout_lossy().as_str()), (Some(0), ""), "{}", show(10));
    // Missing: 125, one line naming the file and the way out.
    assert_eq!(out[11].status, Some(125), "{}", show(11));
    assert_eq!(out[11].stdout_lossy(), "", "{}", show(11));
    let err = out[11].stderr_lossy();
    assert_eq!(err.lines().count(), 1, "{}", show(11));
    assert!(err.starts_with("smolvm: disk def.ext4 (an image default; --smolvm-disk=PATH or =none replaces it): "), "{}", show(11));

    // inspect lists the default, as text and JSON.
    let smolvm = product::smolvm().display().to_string();
    let text = run(&smolvm, &["inspect", &with_disk.display().to_string()]);
    assert!(text.contains("disks (attached by default") && text.contains("\n  def.ext4:/data\n"), "{text}");
    let json = run(&smolvm, &["inspect", "--json", &with_disk.display().to_string()]);
    assert!(json.contains("\"disks\":[\"def.ext4:/data\"]"), "{json}");
}
