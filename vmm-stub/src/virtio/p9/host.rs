//! The host side of one share and the only place that turns guest names into
//! host files. The rules that keep the guest inside the shared directory:
//! - a name is one component: never empty, `.`, `..`, or containing `/` or NUL;
//! - a lookup opens that one component `O_PATH | O_NOFOLLOW` below a directory
//!   fd with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so a symlink is
//!   handed back to the guest as itself and never followed on the host;
//! - `..` is resolved by the walker, which stays put at the share root;
//! - a file is opened for I/O only when it is a regular file or directory,
//!   by reopening the fid's own `O_PATH` fd through `/proc/self/fd` (no
//!   guest-supplied path is involved), so fifos, sockets and devices are
//!   never opened on the host;
//! - every fd is `O_CLOEXEC`.

use super::wire::{Qid, QTDIR, QTFILE, QTSYMLINK};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self, AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;
use rustix::path::DecInt;
use crate::sys::path::{c_path, PATH_MAX};
use core::ffi::CStr;

/// Longest name of one directory entry.
pub const NAME_MAX: usize = 255;

/// One shared host directory.
pub struct Share {
    root: OwnedFd,
    /// `(st_dev, st_ino)` of the root: `..` from here stays here.
    root_id: (u64, u64),
    /// `/proc/self/fd`, to reopen an `O_PATH` fd without any path lookup.
    proc_fd: OwnedFd,
    pub read_only: bool,
}

/// Refuses anything but one plain directory-entry name.
pub fn check_name(name: &[u8]) -> Result<&[u8], Errno> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
        return Err(Errno::INVAL);
    }
    if name.len() > NAME_MAX {
        return Err(Errno::NAMETOOLONG);
    }
    Ok(name)
}

/// A checked name, NUL-terminated in place so rustix passes it to the
/// kernel as is (one small copy here instead of one per call site).
pub struct Name {
    buf: [u8; NAME_MAX + 1],
    len: usize,
}

impl Name {
    pub fn new(name: &[u8]) -> Result<Self, Errno> {
        let name = check_name(name)?;
        let mut buf = [0; NAME_MAX + 1];
        // name.len() <= NAME_MAX (check_name): all of it fits, the last 0 stays.
        buf.get_mut(..name.len()).ok_or(Errno::NAMETOOLONG)?.copy_from_slice(name);
        Ok(Self { buf, len: name.len() })
    }

    /// From a directory entry the kernel returned (already one component).
    pub fn of(entry: &CStr) -> Result<Self, Errno> {
        Self::new(entry.to_bytes())
    }

    pub fn c(&self) -> &CStr {
        // buf[len] is 0 and no byte before it is (check_name).
        self.buf.get(..=self.len).and_then(|b| CStr::from_bytes_with_nul(b).ok()).unwrap_or(c"")
    }
}

/// The qid of a stat: inode number as path, type from the mode, and a
/// version that changes with mtime and size (as QEMU does).
pub fn qid(st: &Stat) -> Qid {
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => QTDIR,
        FileType::Symlink => QTSYMLINK,
        _ => QTFILE,
    };
    let version = bits(st.st_mtime) ^ (bits(st.st_size) << 8);
    Qid { kind, version: low32(version), path: st.st_ino }
}

/// Two's-complement reinterpretation: 9P carries times and sizes unsigned.
#[allow(clippy::cast_sign_loss)]
pub fn bits(v: i64) -> u64 {
    v as u64
}

/// Inverse of [`bits`], for times the guest sends.
#[allow(clippy::cast_possible_wrap)]
pub fn signed(v: u64) -> i64 {
    v as i64
}

#[allow(clippy::cast_possible_truncation)]
fn low32(v: u64) -> u32 {
    v as u32
}

impl Share {
    /// Opens `host_dir` (the user's choice: symlinks in it are followed once,
    /// here) as the root of a share.
    pub fn open(host_dir: &[u8], read_only: bool) -> Result<Self, Errno> {
        let dir = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let mut path = [0; PATH_MAX];
        let root = fs::openat(fs::CWD, c_path(host_dir, &mut path)?, dir, Mode::empty())?;
        let st = fs::fstat(&root)?;
        let proc_fd = fs::openat(fs::CWD, c"/proc/self/fd", dir, Mode::empty())?;
        raise_fd_limit();
        Ok(Self { root, root_id: (st.st_dev, st.st_ino), proc_fd, read_only })
    }

    pub fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// `EROFS` on a read-only share; called first by every mutating op.
    pub fn writable(&self) -> Result<(), Errno> {
        if self.read_only {
            return Err(Errno::ROFS);
        }
        Ok(())
    }

    pub fn is_root(&self, st: &Stat) -> bool {
        (st.st_dev, st.st_ino) == self.root_id
    }

    /// Looks up one name below `dir` without following anything.
    pub fn lookup(&self, dir: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd, Errno> {
        lookup_at(dir, &Name::new(name)?)
    }

    /// The parent of `dir`; the root is its own parent.
    pub fn parent(&self, dir: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
        if self.is_root(&fs::fstat(dir)?) {
            return rustix::io::fcntl_dupfd_cloexec(dir, 0);
        }
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        open_at(dir, c"..", flags, Mode::empty(), ResolveFlags::empty())
    }

    /// Opens the file `fd` refers to for I/O with `flags`, if it is a regular
    /// file or a directory. Special files are refused with `EPERM`.
    pub fn reopen(&self, fd: BorrowedFd<'_>, flags: OFlags) -> Result<OwnedFd, Errno> {
        let extra = match FileType::from_raw_mode(fs::fstat(fd)?.st_mode) {
            FileType::RegularFile => OFlags::empty(),
            FileType::Directory => OFlags::DIRECTORY,
            FileType::Symlink => return Err(Errno::LOOP),
            _ => return Err(Errno::PERM),
        };
        let flags = flags | extra | OFlags::CLOEXEC | OFlags::NOCTTY;
        open_at(self.proc_fd.as_fd(), DecInt::from_fd(fd).as_c_str(), flags, Mode::empty(), ResolveFlags::empty())
    }

    /// `chmod` of the inode `fd` refers to; the `/proc/self/fd` entry is
    /// resolved by the kernel to that inode, so nothing is opened.
    pub fn chmod(&self, fd: BorrowedFd<'_>, mode: Mode) -> Result<(), Errno> {
        if FileType::from_raw_mode(fs::fstat(fd)?.st_mode) == FileType::Symlink {
            return Err(Errno::OPNOTSUPP);
        }
        fs::chmodat(&self.proc_fd, DecInt::from_fd(fd), mode, AtFlags::empty())
    }

    /// A new hard link `dir/name` to the inode `fd` refers to.
    pub fn link(&self, fd: BorrowedFd<'_>, dir: BorrowedFd<'_>, name: &Name) -> Result<(), Errno> {
        fs::linkat(&self.proc_fd, DecInt::from_fd(fd), dir, name.c(), AtFlags::SYMLINK_FOLLOW)
    }
}

/// A full fid table holds up to two fds per fid: lift the soft fd limit
/// (often 1024) toward the hard one. Failing leaves EMFILE as the guest's
/// answer once fds run out, which is still correct behaviour.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let want = 4 * super::fids::MAX_FIDS as u64 + 64;
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|cur| cur < want) {
        let current = Some(limit.maximum.map_or(want, |max| max.min(want)));
        let _ = setrlimit(Resource::Nofile, Rlimit { current, maximum: limit.maximum });
    }
}

/// `lstat` of one checked name below `dir` (an `O_PATH` open and `fstat`:
/// no `newfstatat` in the seccomp list).
pub fn stat_at(dir: BorrowedFd<'_>, name: &Name) -> Result<Stat, Errno> {
    fs::fstat(lookup_at(dir, name)?)
}

/// Opens one checked name below `dir` as `O_PATH`, following nothing.
fn lookup_at(dir: BorrowedFd<'_>, name: &Name) -> Result<OwnedFd, Errno> {
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    open_at(dir, name.c(), flags, Mode::empty(), resolve)
}

/// Every open after set-up goes through `openat2`, so the seccomp list
/// needs no `openat`. Kernels before 5.6 (ENOSYS) get `openat` with the same
/// flags: every path here is one checked name, `..` or a `/proc/self/fd`
/// entry, and `O_NOFOLLOW` keeps a name from following a symlink; the
/// filter then allows `openat` (`seccomp::install` probes `openat2`).
pub fn open_at<P: rustix::path::Arg + Copy>(
    dir: BorrowedFd<'_>,
    path: P,
    flags: OFlags,
    mode: Mode,
    resolve: ResolveFlags,
) -> Result<OwnedFd, Errno> {
    match fs::openat2(dir, path, flags, mode, resolve) {
        Err(Errno::NOSYS) => fs::openat(dir, path, flags, mode),
        other => other,
    }
}
