//! Attributes: getattr, setattr, statfs, readlink. All work on the fid's fd
//! (`O_PATH` is enough) with `AT_EMPTY_PATH`, never on a path.

use super::host::{self, bits, signed};
use super::server::{Reply, Server};
use super::wire::{Reader, Writer};
use rustix::fd::AsFd;
use rustix::fs::{self, AtFlags, Gid, Mode, OFlags, Timespec, Timestamps, Uid, UTIME_NOW, UTIME_OMIT};
use rustix::io::Errno;

/// Rgetattr fields we fill: mode..blocks (P9_STATS_BASIC).
const STATS_BASIC: u64 = 0x7ff;

/// Tsetattr `valid` bits.
const SET_MODE: u32 = 1;
const SET_UID: u32 = 2;
const SET_GID: u32 = 4;
const SET_SIZE: u32 = 8;
const SET_ATIME: u32 = 16;
const SET_MTIME: u32 = 32;
const SET_ATIME_SET: u32 = 128;
const SET_MTIME_SET: u32 = 256;

/// Longest symlink target we return (PATH_MAX without the NUL).
const TARGET_MAX: usize = 4095;

#[allow(clippy::cast_possible_truncation)]
fn low32(v: u64) -> u32 {
    v as u32
}

/// One utimensat timestamp: unchanged, now, or the guest's value.
fn time(valid: u32, change: u32, set: u32, sec: u64, nsec: u64) -> Timespec {
    let tv_nsec = if valid & change == 0 {
        UTIME_OMIT
    } else if valid & set == 0 {
        UTIME_NOW
    } else {
        signed(nsec)
    };
    Timespec { tv_sec: signed(sec), tv_nsec }
}

impl Server {
    pub(super) fn getattr(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Reply {
        let (fid, _mask) = (r.u32()?, r.u64()?);
        let st = fs::fstat(&self.fids.get(fid)?.fd)?;
        w.u64(STATS_BASIC)?;
        w.qid(host::qid(&st))?;
        w.u32(st.st_mode)?;
        w.u32(st.st_uid)?;
        w.u32(st.st_gid)?;
        for v in [st.st_nlink, st.st_rdev, bits(st.st_size), bits(st.st_blksize), bits(st.st_blocks)] {
            w.u64(v)?;
        }
        for (sec, nsec) in [(st.st_atime, st.st_atime_nsec), (st.st_mtime, st.st_mtime_nsec), (st.st_ctime, st.st_ctime_nsec)] {
            w.u64(bits(sec))?;
            w.u64(nsec)?;
        }
        // btime, gen, data_version: not reported (outside STATS_BASIC).
        (0..4).try_for_each(|_| w.u64(0))
    }

    pub(super) fn setattr(&mut self, r: &mut Reader<'_>) -> Reply {
        let (fid, valid, mode, uid, gid) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?, r.u32()?);
        let (size, asec, ansec, msec, mnsec) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?);
        self.share.writable()?;
        let fd = &self.fids.get(fid)?.fd;
        if valid & SET_MODE != 0 {
            self.share.chmod(fd.as_fd(), Mode::from_bits_truncate(mode & 0o7777))?;
        }
        if valid & (SET_UID | SET_GID) != 0 {
            let owner = (valid & SET_UID != 0).then(|| Uid::from_raw(uid));
            let group = (valid & SET_GID != 0).then(|| Gid::from_raw(gid));
            fs::chownat(fd, c"", owner, group, AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW)?;
        }
        if valid & SET_SIZE != 0 {
            let file = self.share.reopen(fd.as_fd(), OFlags::WRONLY)?;
            fs::ftruncate(&file, size)?;
        }
        if valid & (SET_ATIME | SET_MTIME) != 0 {
            let times = Timestamps {
                last_access: time(valid, SET_ATIME, SET_ATIME_SET, asec, ansec),
                last_modification: time(valid, SET_MTIME, SET_MTIME_SET, msec, mnsec),
            };
            fs::utimensat(fd, c"", &times, AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW)?;
        }
        Ok(())
    }

    pub(super) fn statfs(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Reply {
        let fid = r.u32()?;
        let fd = &self.fids.get(fid)?.fd;
        let st = fs::fstatfs(fd)?;
        let dev = fs::fstat(fd)?.st_dev;
        w.u32(low32(bits(st.f_type)))?;
        w.u32(low32(bits(st.f_bsize)))?;
        for v in [st.f_blocks, st.f_bfree, st.f_bavail, st.f_files, st.f_ffree, dev] {
            w.u64(v)?;
        }
        w.u32(low32(bits(st.f_namelen)))
    }

    /// Treadlink: the target goes to the guest as bytes; the host never
    /// resolves it.
    pub(super) fn readlink(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Reply {
        let fid = r.u32()?;
        let fd = &self.fids.get(fid)?.fd;
        let at = w.pos();
        w.u16(0)?;
        let room = w.space().min(TARGET_MAX + 1);
        let buf = w.reserve(room)?;
        let n = fs::readlinkat_raw(fd, c"", buf)?;
        if n >= room {
            return Err(Errno::NAMETOOLONG); // possibly truncated
        }
        w.unreserve(room - n);
        w.patch(at, &u16::try_from(n).map_err(|_| Errno::NAMETOOLONG)?.to_le_bytes());
        Ok(())
    }
}
