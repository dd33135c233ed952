//! The guest's file systems: the basic kernel ones, the root switch, tmpfs
//! and 9p shares. Mount points that are already mounted (EBUSY) are fine.

use crate::out::Line;
use crate::plan::{RootFs, Share};
use crate::Fail;
use alloc::ffi::CString;
use core::ffi::CStr;
use linker::abi;
use rustix::fs::Mode;
use rustix::io::Errno;
use rustix::mount::{mount, mount_bind, mount_move, mount_remount, MountFlags};

/// Where the new root is assembled before it becomes `/`.
const NEW_ROOT: &CStr = c"/newroot";
/// The initramfs directory holding an initramfs-format root (`/rootfs`).
const INITRAMFS_ROOT: &CStr = c"/rootfs";

struct Basic {
    dir: &'static str,
    fstype: &'static CStr,
    flags: MountFlags,
    data: &'static CStr,
}

/// Mounted in the initramfs first, then moved into the new root.
const BASICS: [Basic; 5] = [
    Basic { dir: "/dev", fstype: c"devtmpfs", flags: MountFlags::NOSUID, data: c"mode=0755" },
    Basic { dir: "/proc", fstype: c"proc", flags: NOSUID_NODEV_NOEXEC, data: c"" },
    Basic { dir: "/sys", fstype: c"sysfs", flags: NOSUID_NODEV_NOEXEC, data: c"" },
    Basic { dir: "/tmp", fstype: c"tmpfs", flags: NOSUID_NODEV, data: c"mode=1777" },
    Basic { dir: "/run", fstype: c"tmpfs", flags: NOSUID_NODEV, data: c"mode=0755" },
];
const NOSUID_NODEV: MountFlags = MountFlags::NOSUID.union(MountFlags::NODEV);
const NOSUID_NODEV_NOEXEC: MountFlags = NOSUID_NODEV.union(MountFlags::NOEXEC);

/// 9p over virtio. `cache=mmap`: no stale data when the host changes files,
/// yet `mmap` works; msize 256 KiB keeps round trips few for big reads.
const NINEP_OPTIONS: &str = "trans=virtio,version=9p2000.L,msize=262144,cache=mmap";

fn cstr(bytes: &[u8]) -> Result<CString, Errno> {
    CString::new(bytes).map_err(|_| Errno::INVAL)
}

fn ignore(err: Errno, harmless: Errno) -> Result<(), Errno> {
    if err == harmless {
        Ok(())
    } else {
        Err(err)
    }
}

fn mkdir(path: &[u8]) -> Result<(), Errno> {
    rustix::fs::mkdir(cstr(path)?.as_c_str(), Mode::from_raw_mode(0o755)).or_else(|e| ignore(e, Errno::EXIST))
}

/// `mkdir -p`.
pub fn mkdir_all(path: &[u8]) -> Result<(), Errno> {
    for (i, &c) in path.iter().enumerate().skip(1) {
        if c == b'/' {
            mkdir(&path[..i])?;
        }
    }
    mkdir(path)
}

fn mount_failed(what: &str, target: &[u8], err: Errno) -> Fail {
    Fail::new(Line::new().s("cannot mount ").s(what).s(" on ").b(target).s(": ").e(err))
}

/// /dev, /proc, /sys, /tmp and /run in the initramfs, plus /dev/shm and the
/// /dev/fd family that programs expect.
pub fn mount_basics() -> Result<(), Fail> {
    for m in &BASICS {
        let done = mkdir(m.dir.as_bytes())
            .and_then(|()| mount(m.fstype, m.dir, m.fstype, m.flags, m.data))
            .or_else(|e| ignore(e, Errno::BUSY));
        done.map_err(|e| mount_failed(m.fstype.to_str().unwrap_or("?"), m.dir.as_bytes(), e))?;
        Line::new().s("mounted ").s(m.dir).debug();
    }
    // Conveniences; an app that needs them will say so itself if they fail.
    let _ = mkdir(b"/dev/shm").and_then(|()| mount(c"tmpfs", c"/dev/shm", c"tmpfs", NOSUID_NODEV, c"mode=1777"));
    for (target, link) in [
        (c"/proc/self/fd", c"/dev/fd"),
        (c"/proc/self/fd/0", c"/dev/stdin"),
        (c"/proc/self/fd/1", c"/dev/stdout"),
        (c"/proc/self/fd/2", c"/dev/stderr"),
    ] {
        let _ = rustix::fs::symlink(target, link);
    }
    Ok(())
}

/// Mounts the app's root filesystem read-only, moves the basic mounts into
/// it and makes it `/` (what `switch_root` does).
pub fn switch_root(rootfs: RootFs) -> Result<(), Fail> {
    let new_root = match rootfs {
        RootFs::Squashfs => {
            mkdir(NEW_ROOT.to_bytes()).map_err(|e| mount_failed("the root", NEW_ROOT.to_bytes(), e))?;
            mount(abi::GUEST_ROOT_DEV, NEW_ROOT, c"squashfs", MountFlags::RDONLY, None)
                .map_err(|e| mount_failed("the squashfs root filesystem (/dev/vda)", NEW_ROOT.to_bytes(), e))?;
            NEW_ROOT
        }
        RootFs::Initramfs => {
            let root = INITRAMFS_ROOT;
            // The mount points must exist before the tree turns read-only.
            for m in &BASICS {
                let dir = [root.to_bytes(), m.dir.as_bytes()].concat();
                mkdir(&dir).map_err(|e| mount_failed(m.dir, &dir, e))?;
            }
            mount_bind(root, root)
                .and_then(|()| mount_remount(root, MountFlags::BIND | MountFlags::RDONLY, c""))
                .map_err(|e| mount_failed("the initramfs root (rootfs/ of the image)", root.to_bytes(), e))?;
            root
        }
    };
    Line::new().s("mounted the root filesystem read-only on ").b(new_root.to_bytes()).debug();
    for m in &BASICS {
        let target = [new_root.to_bytes(), m.dir.as_bytes()].concat();
        match mount_move(m.dir, cstr(&target).map_err(|e| mount_failed(m.dir, &target, e))?.as_c_str()) {
            Ok(()) => {}
            // The image lacks this directory: the app runs without it.
            Err(Errno::NOENT) => Line::new().s("no ").s(m.dir).s(" in the root filesystem, skipped").debug(),
            Err(e) => return Err(mount_failed(m.dir, &target, e)),
        }
    }
    let switched = rustix::process::chdir(new_root)
        .and_then(|()| mount_move(c".", c"/"))
        .and_then(|()| rustix::process::chroot(c"."))
        .and_then(|()| rustix::process::chdir(c"/"));
    switched.map_err(|e| Fail::new(Line::new().s("cannot switch to the root filesystem: ").e(e)))?;
    Line::new().s("switched root").debug();
    Ok(())
}

fn mount_point(path: &[u8], what: &str) -> Result<CString, Fail> {
    mkdir_all(path).and_then(|()| cstr(path)).map_err(|e| {
        Fail::new(Line::new().s("cannot create the mount point ").b(path).s(" for ").s(what).s(": ").e(e))
    })
}

/// A writable tmpfs the manifest asks for (Docker's `--tmpfs` mode 1777).
pub fn mount_tmpfs(path: &[u8]) -> Result<(), Fail> {
    let target = mount_point(path, "a tmpfs")?;
    mount(c"tmpfs", target.as_c_str(), c"tmpfs", NOSUID_NODEV, c"mode=1777")
        .map_err(|e| mount_failed("a tmpfs", path, e))?;
    Line::new().s("mounted tmpfs on ").b(path).debug();
    Ok(())
}

/// A host directory shared over 9p (virtio transport, tag `smolvmN`).
pub fn mount_share(share: &Share<'_>) -> Result<(), Fail> {
    let what = [b"the shared directory ".as_slice(), share.tag].concat();
    let what = core::str::from_utf8(&what).unwrap_or("a shared directory");
    let target = mount_point(share.path, what)?;
    let source = cstr(share.tag).map_err(|e| mount_failed(what, share.path, e))?;
    let flags = if share.read_only { MountFlags::RDONLY } else { MountFlags::empty() } | MountFlags::NODEV;
    let options = cstr(NINEP_OPTIONS.as_bytes()).map_err(|e| mount_failed(what, share.path, e))?;
    mount(source.as_c_str(), target.as_c_str(), c"9p", flags, options.as_c_str())
        .map_err(|e| mount_failed(what, share.path, e))?;
    Line::new().s("mounted share ").b(share.tag).s(" on ").b(share.path).s(if share.read_only { " (ro)" } else { " (rw)" }).debug();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mkdir_all_creates_nested_dirs_and_tolerates_existing_ones() {
        let base = std::env::temp_dir().join(std::format!("smol-init-mkdir-{}", std::process::id()));
        let nested = base.join("a/b/c");
        let bytes = nested.to_str().expect("utf8 temp dir").as_bytes();
        mkdir_all(bytes).expect("created");
        mkdir_all(bytes).expect("existing is fine");
        assert!(nested.is_dir());
        std::fs::write(base.join("file"), b"").expect("file");
        let under_file = base.join("file/x");
        assert_eq!(mkdir_all(under_file.to_str().expect("utf8").as_bytes()), Err(Errno::NOTDIR));
        std::fs::remove_dir_all(&base).expect("cleanup");
    }

    #[test]
    fn options_are_valid_c_strings() {
        assert!(cstr(NINEP_OPTIONS.as_bytes()).is_ok());
        assert_eq!(cstr(b"a\0b"), Err(Errno::INVAL));
    }
}
