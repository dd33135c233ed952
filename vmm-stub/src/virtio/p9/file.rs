//! Open files: lopen, lcreate, read, write, readdir, fsync, lock, getlock.
//! Data moves straight between the host fd and the request/reply buffers.

use super::host::{self, Name};
use super::server::{Reply, Server};
use super::wire::{Qid, Reader, Writer, IO_HEADER, QID_LEN, QTDIR, QTFILE, QTSYMLINK};
use core::mem::MaybeUninit;
use rustix::fd::AsFd;
use crate::sys::io::IoBuf;
use rustix::fs::{self, FileType, Mode, OFlags, RawDir, SeekFrom};
use rustix::io::{self, Errno};

/// Open flags 9P2000.L carries (Linux's values) that we pass on; anything
/// else (O_CREAT, O_NOFOLLOW, O_DIRECT, O_ASYNC, ...) is dropped.
const O_TRUNC: u32 = 0o1000;
const O_APPEND: u32 = 0o2000;
const O_DSYNC: u32 = 0o10000;
const O_SYNC: u32 = 0o4000000;
const O_DIRECTORY: u32 = 0o200000;

/// Lock types of Tlock/Tgetlock and the status Rlock reports.
const LOCK_UNLCK: u8 = 2;
const LOCK_SUCCESS: u8 = 0;

impl Server {
    fn open_flags(&self, raw: u32) -> Result<OFlags, Errno> {
        let mut flags = match raw & 3 {
            0 => OFlags::RDONLY,
            1 => OFlags::WRONLY,
            2 => OFlags::RDWR,
            _ => return Err(Errno::INVAL),
        };
        if raw & 3 != 0 || raw & O_TRUNC != 0 {
            self.share.writable()?;
        }
        for (bit, flag) in [
            (O_TRUNC, OFlags::TRUNC),
            (O_APPEND, OFlags::APPEND),
            (O_DSYNC, OFlags::DSYNC),
            (O_SYNC, OFlags::SYNC),
            (O_DIRECTORY, OFlags::DIRECTORY),
        ] {
            if raw & bit != 0 {
                flags |= flag;
            }
        }
        Ok(flags)
    }

    fn iounit(&self) -> u32 {
        self.msize.saturating_sub(IO_HEADER)
    }

    /// Tlopen: the fid's file is opened for I/O (regular files and
    /// directories only; see `Share::reopen`).
    pub(super) fn lopen(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Reply {
        let (fid, flags) = (r.u32()?, r.u32()?);
        let flags = self.open_flags(flags)?;
        let f = self.fids.get_mut(fid)?;
        let fd = self.share.reopen(f.fd.as_fd(), flags)?;
        let qid = host::qid(&fs::fstat(&fd)?);
        f.fd = fd;
        w.qid(qid)?;
        w.u32(self.iounit())
    }

    /// Tlcreate: creates a regular file in the directory `fid` and turns
    /// `fid` into that file, open. Always `O_EXCL`, so an existing file
    /// (a fifo, a device, a symlink) is never opened by this path.
    pub(super) fn lcreate(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Reply {
        let (fid, name, flags, mode, _gid) = (r.u32()?, r.str()?, r.u32()?, r.u32()?, r.u32()?);
        self.share.writable()?;
        let name = Name::new(name)?;
        let flags = self.open_flags(flags & !O_DIRECTORY)?
            | OFlags::CREATE
            | OFlags::EXCL
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC
            | OFlags::NOCTTY;
        let f = self.fids.get_mut(fid)?;
        let mode = Mode::from_bits_truncate(mode & 0o7777);
        let fd = host::open_at(f.fd.as_fd(), name.c(), flags, mode, rustix::fs::ResolveFlags::empty())?;
        let qid = host::qid(&fs::fstat(&fd)?);
        f.parent = Some(core::mem::replace(&mut f.fd, fd));
        w.qid(qid)?;
        w.u32(self.iounit())
    }

    /// Tread: `count` is capped by what the reply can hold (msize).
    pub(super) fn read(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Reply {
        let (fid, offset, count) = (r.u32()?, r.u64()?, r.u32()?);
        let f = self.fids.get(fid)?;
        let at = w.pos();
        w.u32(0)?;
        let want = w.space().min(count as usize);
        let buf = w.reserve(want)?;
        let got = io::pread(&f.fd, buf, offset)?;
        w.unreserve(want - got);
        w.patch(at, &u32::try_from(got).map_err(|_| Errno::IO)?.to_le_bytes());
        Ok(())
    }

    /// Twrite: the data must be inside the request (so `count <= msize`).
    pub(super) fn write(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Reply {
        let (fid, offset, count) = (r.u32()?, r.u64()?, r.u32()?);
        let data = r.bytes(count as usize)?;
        w.u32(self.write_at(fid, offset, &[data.into()])?)
    }

    /// Twrite's data to the file of `fid`: from the request, or straight
    /// from guest RAM (the device's zero-copy path, see `wire::WriteOp`).
    pub fn write_at(&self, fid: u32, offset: u64, data: &[IoBuf<'_>]) -> Result<u32, Errno> {
        self.share.writable()?;
        let n = crate::sys::io::pwritev(self.fids.get(fid)?.fd.as_fd(), data, offset)?;
        u32::try_from(n).map_err(|_| Errno::IO)
    }

    /// Treaddir: entries from the directory cookie `offset` on, as many as
    /// fit in `count`. The cookie of each entry is the kernel's `d_off`, so
    /// the next call seeks exactly past the last entry sent.
    pub(super) fn readdir(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Reply {
        let (fid, offset, count) = (r.u32()?, r.u64()?, r.u32()?);
        let f = self.fids.get(fid)?;
        fs::seek(&f.fd, SeekFrom::Start(offset))?;
        let at = w.pos();
        w.u32(0)?;
        let start = w.pos();
        let room = w.space().min(count as usize);
        let mut scratch = [MaybeUninit::<u8>::uninit(); 4096];
        let mut dir = RawDir::new(f.fd.as_fd(), &mut scratch);
        while let Some(entry) = dir.next() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) if w.pos() == start => return Err(e),
                Err(_) => break,
            };
            let name = entry.file_name().to_bytes();
            if w.pos() - start + QID_LEN + 8 + 1 + 2 + name.len() > room {
                break;
            }
            let (kind, dtype) = dirent_type(entry.file_type());
            w.qid(Qid { kind, version: 0, path: entry.ino() })?;
            w.u64(entry.next_entry_cookie())?;
            w.u8(dtype)?;
            w.str(name)?;
        }
        let len = w.pos() - start;
        w.patch(at, &u32::try_from(len).map_err(|_| Errno::IO)?.to_le_bytes());
        Ok(())
    }

    /// Tfsync: `datasync` (newer clients) selects fdatasync.
    pub(super) fn fsync(&mut self, r: &mut Reader<'_>) -> Reply {
        let fid = r.u32()?;
        let datasync = if r.rest() >= 4 { r.u32()? } else { 0 };
        let f = self.fids.get(fid)?;
        if datasync != 0 {
            fs::fdatasync(&f.fd)
        } else {
            fs::fsync(&f.fd)
        }
    }

    /// Tlock: POSIX locks are enforced by the guest kernel among the guest's
    /// processes before it sends this; like QEMU we grant it and do not
    /// lock the host file (one guest is the share's only 9p client).
    pub(super) fn lock(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Reply {
        let (fid, kind, _flags, _start, _len, _pid) = (r.u32()?, r.u8()?, r.u32()?, r.u64()?, r.u64()?, r.u32()?);
        let _client = r.str()?;
        self.fids.get(fid)?;
        if kind > LOCK_UNLCK {
            return Err(Errno::INVAL);
        }
        w.u8(LOCK_SUCCESS)
    }

    /// Tgetlock: no host-side lock conflicts exist (see [`Self::lock`]).
    pub(super) fn getlock(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Reply {
        let (fid, kind, start, len, pid) = (r.u32()?, r.u8()?, r.u64()?, r.u64()?, r.u32()?);
        let client = r.str()?;
        self.fids.get(fid)?;
        if kind > LOCK_UNLCK {
            return Err(Errno::INVAL);
        }
        w.u8(LOCK_UNLCK)?;
        w.u64(start)?;
        w.u64(len)?;
        w.u32(pid)?;
        w.str(client)
    }
}

/// Qid type and Linux `DT_*` value of a directory entry.
fn dirent_type(t: FileType) -> (u8, u8) {
    match t {
        FileType::Directory => (QTDIR, 4),
        FileType::Symlink => (QTSYMLINK, 10),
        FileType::RegularFile => (QTFILE, 8),
        FileType::Fifo => (QTFILE, 1),
        FileType::CharacterDevice => (QTFILE, 2),
        FileType::BlockDevice => (QTFILE, 6),
        FileType::Socket => (QTFILE, 12),
        _ => (QTFILE, 0),
    }
}
