//! Directory changes: mkdir, symlink, mknod, link, rename, renameat,
//! unlinkat, remove. Each names one checked component below a directory fid.

use super::host::{self, stat_at, Name};
use super::server::{Reply, Server};
use super::wire::{Reader, Writer};
use core::mem::MaybeUninit;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self, AtFlags, FileType, Mode, OFlags, RawDir};
use rustix::io::Errno;
use crate::sys::path::{c_path, PATH_MAX};

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFIFO: u32 = 0o010000;
const AT_REMOVEDIR: u32 = 0x200;

fn perms(mode: u32) -> Mode {
    Mode::from_bits_truncate(mode & 0o7777)
}

impl Server {
    fn dir_fd(&self, fid: u32) -> Result<BorrowedFd<'_>, Errno> {
        Ok(self.fids.get(fid)?.fd.as_fd())
    }

    /// Answers the qid of the entry just created as `dir/name`.
    fn created(&self, dir: BorrowedFd<'_>, name: &Name, w: &mut Writer<'_>) -> Reply {
        w.qid(host::qid(&stat_at(dir, name)?))
    }

    pub(super) fn mkdir(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Reply {
        let (fid, name, mode, _gid) = (r.u32()?, r.str()?, r.u32()?, r.u32()?);
        self.share.writable()?;
        let (dir, name) = (self.dir_fd(fid)?, Name::new(name)?);
        fs::mkdirat(dir, name.c(), perms(mode))?;
        self.created(dir, &name, w)
    }

    /// Tsymlink: the target is stored as given; it is only ever read back.
    pub(super) fn symlink(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Reply {
        let (fid, name, target, _gid) = (r.u32()?, r.str()?, r.str()?, r.u32()?);
        self.share.writable()?;
        let (dir, name) = (self.dir_fd(fid)?, Name::new(name)?);
        let mut buf = [0; PATH_MAX];
        fs::symlinkat(c_path(target, &mut buf)?, dir, name.c())?;
        self.created(dir, &name, w)
    }

    /// Tmknod: regular files and fifos only; device nodes and sockets are
    /// refused (`EPERM`), whatever the host privileges.
    pub(super) fn mknod(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Reply {
        let (fid, name, mode, _major, _minor, _gid) = (r.u32()?, r.str()?, r.u32()?, r.u32()?, r.u32()?, r.u32()?);
        self.share.writable()?;
        let kind = match mode & S_IFMT {
            0 | S_IFREG => FileType::RegularFile,
            S_IFIFO => FileType::Fifo,
            _ => return Err(Errno::PERM),
        };
        let (dir, name) = (self.dir_fd(fid)?, Name::new(name)?);
        fs::mknodat(dir, name.c(), kind, perms(mode), 0)?;
        self.created(dir, &name, w)
    }

    /// Tlink: `dfid/name` becomes another name of `fid`'s file.
    pub(super) fn link(&mut self, r: &mut Reader<'_>) -> Reply {
        let (dfid, fid, name) = (r.u32()?, r.u32()?, r.str()?);
        self.share.writable()?;
        self.share.link(self.dir_fd(fid)?, self.dir_fd(dfid)?, &Name::new(name)?)
    }

    pub(super) fn renameat(&mut self, r: &mut Reader<'_>) -> Reply {
        let (old_fid, old, new_fid, new) = (r.u32()?, r.str()?, r.u32()?, r.str()?);
        self.share.writable()?;
        let (old, new) = (Name::new(old)?, Name::new(new)?);
        fs::renameat_with(self.dir_fd(old_fid)?, old.c(), self.dir_fd(new_fid)?, new.c(), fs::RenameFlags::empty())
    }

    pub(super) fn unlinkat(&mut self, r: &mut Reader<'_>) -> Reply {
        let (fid, name, flags) = (r.u32()?, r.str()?, r.u32()?);
        self.share.writable()?;
        let flags = match flags {
            0 => AtFlags::empty(),
            AT_REMOVEDIR => AtFlags::REMOVEDIR,
            _ => return Err(Errno::INVAL),
        };
        fs::unlinkat(self.dir_fd(fid)?, Name::new(name)?.c(), flags)
    }

    /// Trename (the pre-renameat form): moves `fid`'s file to `dfid/name`.
    pub(super) fn rename(&mut self, r: &mut Reader<'_>) -> Reply {
        let (fid, dfid, new) = (r.u32()?, r.u32()?, r.str()?);
        self.share.writable()?;
        let new = Name::new(new)?;
        let (parent, old) = self.locate(fid)?;
        let dir = self.dir_fd(dfid)?;
        fs::renameat_with(&parent, old.c(), dir, new.c(), fs::RenameFlags::empty())?;
        let moved_to = rustix::io::fcntl_dupfd_cloexec(dir, 0)?;
        self.fids.get_mut(fid)?.parent = Some(moved_to);
        Ok(())
    }

    /// Tremove: unlinks `fid`'s file; the fid is clunked even on failure.
    pub(super) fn remove(&mut self, r: &mut Reader<'_>) -> Reply {
        let fid = r.u32()?;
        let result = self.share.writable().and_then(|()| {
            let (parent, name) = self.locate(fid)?;
            let is_dir = fs::fstat(&self.fids.get(fid)?.fd)?.st_mode & S_IFMT == 0o040000;
            let flags = if is_dir { AtFlags::REMOVEDIR } else { AtFlags::empty() };
            fs::unlinkat(&parent, name.c(), flags)
        });
        self.fids.remove(fid)?;
        result
    }

    /// The directory holding `fid`'s file and the file's name there, found
    /// by inode among the directory's entries (a fid keeps no path). The
    /// share root has no name: `EBUSY`.
    fn locate(&self, fid: u32) -> Result<(OwnedFd, Name), Errno> {
        let f = self.fids.get(fid)?;
        let me = fs::fstat(&f.fd)?;
        if self.share.is_root(&me) {
            return Err(Errno::BUSY);
        }
        let parent = match &f.parent {
            Some(p) => rustix::io::fcntl_dupfd_cloexec(p, 0)?,
            None => self.share.parent(f.fd.as_fd())?,
        };
        let listing = self.share.reopen(parent.as_fd(), OFlags::RDONLY)?;
        let mut scratch = [MaybeUninit::<u8>::uninit(); 4096];
        let mut entries = RawDir::new(listing.as_fd(), &mut scratch);
        while let Some(entry) = entries.next() {
            let entry = entry?;
            if entry.ino() != me.st_ino {
                continue;
            }
            let Ok(name) = Name::of(entry.file_name()) else { continue }; // `.`, `..`
            match stat_at(parent.as_fd(), &name) {
                Ok(st) if (st.st_dev, st.st_ino) == (me.st_dev, me.st_ino) => return Ok((parent, name)),
                _ => continue,
            }
        }
        Err(Errno::NOENT)
    }
}
