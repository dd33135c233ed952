//! The guest's file systems: the basic kernel ones, the root switch, tmpfs
//! and 9p shares (data disks: `disks.rs`). Mount points that are already mounted (EBUSY) are fine.
//!
//! The root is writable by default, as a container's is: an overlay of the
//! read-only squashfs (lower) and a tmpfs (upper), so writes land in guest
//! memory and vanish at exit. `read-only` images get the same overlay, sealed
//! read-only once the mount points of tmpfs and shares exist, so a share at a
//! path the image lacks works in both modes.

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
/// Where the squashfs is mounted as the overlay's lower layer.
const LOWER: &CStr = c"/lower";
/// The tmpfs holding the overlay's upper and work directories (one file
/// system: overlayfs needs both on the same one).
const UPPER_FS: &CStr = c"/upper";
const OVERLAY_OPTIONS: &CStr = c"lowerdir=/lower,upperdir=/upper/root,workdir=/upper/work";

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
const NOSUID_NOEXEC: MountFlags = MountFlags::NOSUID.union(MountFlags::NOEXEC);

/// 9p over virtio. `cache=mmap`: no stale data when the host changes files,
/// yet `mmap` works; msize 256 KiB keeps round trips few for big reads.
const NINEP_OPTIONS: &str = "trans=virtio,version=9p2000.L,msize=262144,cache=mmap";

pub(crate) fn cstr(bytes: &[u8]) -> Result<CString, Errno> {
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

/// `what`: bytes, as names from the configs are (no UTF-8 check needed).
pub(crate) fn mount_failed(what: &[u8], target: &[u8], err: Errno) -> Fail {
    Fail::new(Line::new().s("cannot mount ").b(what).s(" on ").b(target).s(": ").e(err))
}

/// /dev, /proc, /sys, /tmp and /run in the initramfs, plus /dev/shm and the
/// /dev/fd family that programs expect.
pub fn mount_basics() -> Result<(), Fail> {
    for m in &BASICS {
        let done = mkdir(m.dir.as_bytes())
            .and_then(|()| mount(m.fstype, m.dir, m.fstype, m.flags, m.data))
            .or_else(|e| ignore(e, Errno::BUSY));
        done.map_err(|e| mount_failed(m.fstype.to_bytes(), m.dir.as_bytes(), e))?;
        Line::new().s("mounted ").s(m.dir).debug();
    }
    // Conveniences; an app that needs them will say so itself if they fail.
    // /dev/shm: POSIX shared memory and semaphores (sem_open, multiprocessing).
    let _ = mkdir(b"/dev/shm").and_then(|()| mount(c"tmpfs", c"/dev/shm", c"tmpfs", NOSUID_NODEV, c"mode=1777"));
    // /dev/pts: Unix98 ptys. devtmpfs's /dev/ptmx finds this instance as its
    // sibling `pts` (Linux >= 4.7), so openpty() and `script` work.
    let pts = mkdir(b"/dev/pts")
        .and_then(|()| mount(c"devpts", c"/dev/pts", c"devpts", NOSUID_NOEXEC, c"mode=0620,ptmxmode=0666"));
    if let Err(e) = pts {
        Line::new().s("no /dev/pts (devpts): ").e(e).debug();
    }
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

/// Mounts the app's root filesystem (see the module comment), moves the
/// basic mounts into it and makes it `/` (what `switch_root` does).
pub fn switch_root(rootfs: RootFs) -> Result<(), Fail> {
    let new_root = match rootfs {
        RootFs::Squashfs => {
            mkdir(LOWER.to_bytes()).map_err(|e| mount_failed(b"the root", LOWER.to_bytes(), e))?;
            mount(abi::GUEST_ROOT_DEV, LOWER, c"squashfs", MountFlags::RDONLY, None)
                .map_err(|e| mount_failed(b"the squashfs root filesystem (/dev/vda)", LOWER.to_bytes(), e))?;
            overlay_root()?
        }
        RootFs::Initramfs => {
            // The initramfs is already in memory and writable: bind it in place,
            // so it becomes a mount point that can move to `/` and be sealed.
            let root = INITRAMFS_ROOT;
            mount_bind(root, root)
                .map_err(|e| mount_failed(b"the initramfs root (rootfs/ of the image)", root.to_bytes(), e))?;
            root
        }
    };
    for m in &BASICS {
        let target = [new_root.to_bytes(), m.dir.as_bytes()].concat();
        match mkdir(&target).and_then(|()| mount_move(m.dir, cstr(&target)?.as_c_str())) {
            Ok(()) => {}
            // The root stayed read-only and lacks this directory: the app runs without it.
            Err(Errno::NOENT | Errno::ROFS) => Line::new().s("no ").s(m.dir).s(" in the root filesystem, skipped").debug(),
            Err(e) => return Err(mount_failed(m.dir.as_bytes(), &target, e)),
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

/// The overlay of `LOWER` and a fresh tmpfs on `NEW_ROOT`. A kernel without
/// overlayfs (a custom `--kernel`) gets the squashfs itself, read-only.
fn overlay_root() -> Result<&'static CStr, Fail> {
    let upper = mkdir(UPPER_FS.to_bytes())
        .and_then(|()| mount(c"tmpfs", UPPER_FS, c"tmpfs", MountFlags::NOSUID, c"mode=0755"))
        .and_then(|()| mkdir(b"/upper/root"))
        .and_then(|()| mkdir(b"/upper/work"));
    upper.map_err(|e| mount_failed(b"the tmpfs of the writable root", UPPER_FS.to_bytes(), e))?;
    mkdir(NEW_ROOT.to_bytes()).map_err(|e| mount_failed(b"the root", NEW_ROOT.to_bytes(), e))?;
    match mount(c"overlay", NEW_ROOT, c"overlay", MountFlags::empty(), OVERLAY_OPTIONS) {
        Ok(()) => {
            Line::new().s("mounted the root: overlay of the squashfs and a tmpfs").debug();
            Ok(NEW_ROOT)
        }
        Err(e) => {
            Line::new().s("no writable root (overlay: ").e(e).s("), the squashfs stays read-only").debug();
            Ok(LOWER)
        }
    }
}

/// Makes `/` read-only (`read-only` images), after the mount points exist.
pub fn seal_root() -> Result<(), Fail> {
    mount_remount(c"/", MountFlags::BIND | MountFlags::RDONLY, c"")
        .map_err(|e| Fail::new(Line::new().s("cannot make the root filesystem read-only: ").e(e)))?;
    Line::new().s("root filesystem read-only").debug();
    Ok(())
}

pub(crate) fn mount_point(path: &[u8], what: &[u8]) -> Result<CString, Fail> {
    mkdir_all(path).and_then(|()| cstr(path)).map_err(|e| {
        Fail::new(Line::new().s("cannot create the mount point ").b(path).s(" for ").b(what).s(": ").e(e))
    })
}

/// A writable tmpfs the manifest asks for (Docker's `--tmpfs` mode 1777).
pub fn mount_tmpfs(path: &[u8]) -> Result<(), Fail> {
    let target = mount_point(path, b"a tmpfs")?;
    mount(c"tmpfs", target.as_c_str(), c"tmpfs", NOSUID_NODEV, c"mode=1777")
        .map_err(|e| mount_failed(b"a tmpfs", path, e))?;
    Line::new().s("mounted tmpfs on ").b(path).debug();
    Ok(())
}

/// A host directory shared over 9p (virtio transport, tag `smolvmN`).
pub fn mount_share(share: &Share<'_>) -> Result<(), Fail> {
    let what = &[b"the shared directory ".as_slice(), share.tag].concat();
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
