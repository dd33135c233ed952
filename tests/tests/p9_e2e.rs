//! virtio-9p end to end: a busybox image run by the real stub (directly on
//! hardware KVM, else through the lab) works in a shared host directory,
//! and the host sees exactly what it did; a read-only share refuses writes;
//! paths that climb out of the share stay in the guest.
//!
//! Needs `target/<profile>/{vmm-stub,smol-init,smolvm}` (`cargo build
//! -p vmm-stub -p smol-init -p builder`, same profile), the guest kernel
//! (see `qemu::kernel`) and busybox-static.

use smolvm_tests::lab::{self, Case};
use smolvm_tests::{product, qemu};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

/// `app.vm` in `dir`: busybox `sh -c` as the entry.
fn image(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    let applets = ["sh", "cat", "echo", "ls", "mv", "ln", "rm", "mkdir", "rmdir", "readlink", "sort", "stat", "dd", "cmp", "sync"];
    product::busybox_rootfs(&root, &applets, &["data", "ro", "proc", "sys", "dev", "tmp"]);
    product::build_image(&root, "/bin/sh", &["--mem", "128M"], &dir.join("app.vm"))
}

#[test]
fn busybox_works_in_shared_directories_and_cannot_leave_them() {
    let work = qemu::scratch_dir("p9-e2e");
    let app = image(&work);
    // Writable in both lab modes; the image itself is only read.
    let w = lab::writable_dir().expect("writable dir");
    let (rw, ro) = (w.path().join("rw"), w.path().join("ro"));
    fs::create_dir_all(rw.join("keep")).expect("mkdir");
    fs::create_dir_all(&ro).expect("mkdir");
    fs::write(rw.join("keep/old"), "old\n").expect("write");
    fs::write(ro.join("file"), "read-only data\n").expect("write");
    fs::write(w.path().join("secret"), "HOST SECRET\n").expect("write");
    symlink("../secret", rw.join("up")).expect("symlink");
    symlink("/proc/self/root/etc/hostname", rw.join("hostname")).expect("symlink");
    let rw_opt = format!("--smolvm-share={}:/data", rw.display());
    let ro_opt = format!("--smolvm-share={}:/ro:ro", ro.display());

    let work_script = "cd /data && echo hello > new && cat new && mkdir dir && mv new dir/moved \
        && ln -s moved dir/link && readlink dir/link && cat dir/link && ln dir/moved dir/hard \
        && rm dir/hard keep/old && rmdir keep && dd if=/dev/zero of=big bs=64k count=16 2>/dev/null \
        && stat -c %s big && ls | sort && sync && echo done";
    let ro_script = "cat /ro/file; echo x > /ro/new; echo write=$?; mkdir /ro/d; echo mkdir=$?; rm /ro/file; echo rm=$?";
    let escape_script = "cat /data/../secret /data/../../secret /data/up /data/hostname; ls -1 /data/..; echo end";
    // setattr (chmod, truncate, utimes) and statfs: calls the stub's seccomp
    // filter must allow when a share is attached. (mknod of a fifo is in the
    // server's unit tests: the lab's own 9p export refuses it with ENXIO.)
    let attr_script = "mkdir /data/attrs && cd /data/attrs && echo x > f && busybox chmod 640 f && stat -c %a f \
        && busybox truncate -s 5 f && stat -c %s f && busybox touch -d '2020-01-01 00:00:00' f && stat -c %Y f \
        && busybox df /data > /dev/null && echo ok";
    let out = lab::run_images(&[
        Case::image(&app, &[&rw_opt, "-c", work_script]),
        Case::image(&app, &[&ro_opt, "-c", ro_script]),
        Case::image(&app, &[&rw_opt, "-c", escape_script]),
        Case::image(&app, &[&rw_opt, "-c", attr_script]),
    ]);

    let o = &out[0];
    assert_eq!(o.status, Some(0), "stdout: {}\nstderr: {}", o.stdout_lossy(), o.stderr_lossy());
    assert_eq!(o.stdout_lossy(), "hello\nmoved\nhello\n1048576\nbig\ndir\nhostname\nup\ndone\n");
    assert_eq!(fs::read_to_string(rw.join("dir/moved")).expect("host sees the file"), "hello\n");
    assert_eq!(fs::read_link(rw.join("dir/link")).expect("host sees the symlink"), Path::new("moved"));
    assert!(!rw.join("dir/hard").exists() && !rw.join("keep").exists() && !rw.join("new").exists());
    assert_eq!(fs::metadata(rw.join("big")).expect("big").len(), 1 << 20);

    let o = &out[1];
    assert_eq!(o.stdout_lossy(), "read-only data\nwrite=1\nmkdir=1\nrm=1\n", "stderr: {}", o.stderr_lossy());
    assert!(o.stderr_lossy().contains("Read-only file system"), "{}", o.stderr_lossy());
    assert_eq!(fs::read_dir(&ro).expect("list").count(), 1);

    let o = &out[2];
    assert!(o.stdout_lossy().ends_with("end\n"), "{}", o.stdout_lossy());
    assert!(!o.stdout_lossy().contains("HOST SECRET"), "escaped: {}", o.stdout_lossy());
    // `/data/..` is the guest's root, not the host directory holding the share.
    assert!(o.stdout_lossy().contains("bin\n") && !o.stdout_lossy().contains("secret"), "{}", o.stdout_lossy());

    let o = &out[3];
    assert_eq!(o.stdout_lossy(), "640\n5\n1577836800\nok\n", "stderr: {}", o.stderr_lossy());
    let meta = fs::symlink_metadata(rw.join("attrs/f")).expect("host sees f");
    assert_eq!((meta.len(), std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777), (5, 0o640));
}

/// Big sequential writes with fsync (the stub takes Twrite data straight
/// from guest RAM) and reads, in block sizes around msize (256 KiB: one
/// message each) and unaligned ones: the host file holds exactly the bytes.
#[test]
fn big_writes_with_fsync_reach_the_host_byte_exact() {
    let work = qemu::scratch_dir("p9-e2e-big");
    let app = image(&work);
    let w = lab::writable_dir().expect("writable dir");
    let share = w.path().join("big");
    fs::create_dir_all(&share).expect("mkdir");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let src: Vec<u8> = (0..3 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[3]
        })
        .collect();
    fs::write(share.join("src"), &src).expect("write");
    let opt = format!("--smolvm-share={}:/data", share.display());
    let script = "cd /data && dd if=src of=a bs=256k conv=fsync 2>/dev/null && dd if=src of=b bs=100000 conv=fsync 2>/dev/null \
        && dd if=src of=c bs=4k count=100 seek=7 conv=fsync 2>/dev/null && dd if=src of=d bs=1M 2>/dev/null && sync \
        && cmp src a && cmp src b && cmp src d && echo ok";
    let out = lab::run_images(&[Case::image(&app, &[&opt, "-c", script]).timeout(std::time::Duration::from_secs(300))]);
    let o = &out[0];
    assert_eq!((o.status, o.stdout_lossy().as_str()), (Some(0), "ok\n"), "stderr: {}", o.stderr_lossy());
    for f in ["a", "b", "d"] {
        assert!(fs::read(share.join(f)).expect("host file") == src, "{f} differs from src");
    }
    let c = fs::read(share.join("c")).expect("host file");
    assert_eq!(c.len(), (7 + 100) * 4096);
    assert!(c[..7 * 4096].iter().all(|&b| b == 0) && c[7 * 4096..] == src[..100 * 4096]);
}

/// Twelve shares fill device slots 4-15, IRQs 9-20: the lines past 15 exist
/// only on the IOAPIC, which the stub's MP table announces (on the 8259 PIC
/// the share in slot 11 failed to mount: exit 125).
#[test]
fn twelve_shares_use_every_device_slot() {
    let work = qemu::scratch_dir("p9-e2e-slots");
    let app = image(&work);
    let w = lab::writable_dir().expect("writable dir");
    let mut args = Vec::new();
    for i in 0..12 {
        let dir = w.path().join(format!("s{i}"));
        fs::create_dir_all(&dir).expect("mkdir");
        args.push(format!("--smolvm-share={}:/tmp/s{i}", dir.display()));
    }
    let script = "i=0; while [ $i -lt 12 ]; do echo share$i > /tmp/s$i/f || exit 1; i=$((i+1)); done; sync; echo ok";
    let mut argv: Vec<&str> = args.iter().map(String::as_str).collect();
    argv.extend(["-c", script]);
    let out = lab::run_images(&[Case::image(&app, &argv)]);
    let o = &out[0];
    assert_eq!((o.status, o.stdout_lossy().as_str()), (Some(0), "ok\n"), "stderr: {}", o.stderr_lossy());
    for i in 0..12 {
        assert_eq!(fs::read_to_string(w.path().join(format!("s{i}/f"))).expect("host file"), format!("share{i}\n"));
    }
}
