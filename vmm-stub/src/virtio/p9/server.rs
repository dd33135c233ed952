//! The 9P2000.L server loop: one request in, one reply out, over fixed
//! buffers. Any failure becomes `Rlerror(errno)`; nothing the guest sends can
//! end the VM. Session ops (version, attach, walk, clunk, flush) live here;
//! the others in `file.rs`, `attr.rs` and `dir.rs`.

use super::fids::{Fid, FidTable};
use super::host::{self, Share};
use super::wire::{self, msg, Qid, Reader, Writer, MAX_MSIZE, MAX_WALK, MIN_MSIZE, NOTAG};
use rustix::fd::AsFd;
use rustix::io::Errno;

pub struct Server {
    pub(super) share: Share,
    pub(super) fids: FidTable,
    /// Negotiated by Tversion; bounds every request and reply.
    pub(super) msize: u32,
}

/// Result of an op: the reply body was written, or an errno to send back.
pub(super) type Reply = Result<(), Errno>;

impl Server {
    /// Serves the host directory `host_dir`; with `read_only` every mutation
    /// is refused with `EROFS`. Fails if the directory (or /proc) is missing.
    pub fn new(host_dir: &[u8], read_only: bool) -> Result<Self, Errno> {
        Ok(Self { share: Share::open(host_dir, read_only)?, fids: FidTable::new(), msize: MAX_MSIZE })
    }

    /// The negotiated msize: the device needs request and reply buffers of
    /// this size (at most [`MAX_MSIZE`]).
    pub fn msize(&self) -> u32 {
        self.msize
    }

    /// The driver reset the device: a new session starts with Tversion.
    pub fn reset(&mut self) {
        self.fids.clear();
        self.msize = MAX_MSIZE;
    }

    /// Answers one request; returns the reply's length in `response` (0 only
    /// when `response` cannot hold even an Rlerror, i.e. < 11 bytes).
    pub fn handle(&mut self, request: &[u8], response: &mut [u8]) -> usize {
        let cap = response.len().min(self.msize as usize);
        let response = response.get_mut(..cap).unwrap_or_default(); // cap <= len: the min
        let tag = request.get(5..7).map_or(NOTAG, |t| u16::from_le_bytes([t[0], t[1]]));
        let h = match wire::header(request, self.msize) {
            Ok(h) => h,
            Err(e) => return wire::lerror(response, tag, e),
        };
        let reply = Writer::reply(response, h.kind.wrapping_add(1), h.tag).and_then(|mut w| {
            self.dispatch(h.kind, &mut Reader::new(h.body), &mut w)?;
            Ok(w.finish())
        });
        reply.unwrap_or_else(|e| wire::lerror(response, h.tag, e))
    }

    fn dispatch(&mut self, kind: u8, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Reply {
        match kind {
            msg::TVERSION => self.version(r, w),
            msg::TATTACH => self.attach(r, w),
            msg::TWALK => self.walk(r, w),
            msg::TCLUNK => self.fids.remove(r.u32()?).map(drop),
            msg::TFLUSH => r.u16().map(drop), // requests complete in order: nothing to cancel
            msg::TLOPEN => self.lopen(r, w),
            msg::TLCREATE => self.lcreate(r, w),
            msg::TREAD => self.read(r, w),
            msg::TWRITE => self.write(r, w),
            msg::TREADDIR => self.readdir(r, w),
            msg::TFSYNC => self.fsync(r),
            msg::TLOCK => self.lock(r, w),
            msg::TGETLOCK => self.getlock(r, w),
            msg::TGETATTR => self.getattr(r, w),
            msg::TSETATTR => self.setattr(r),
            msg::TSTATFS => self.statfs(r, w),
            msg::TREADLINK => self.readlink(r, w),
            msg::TMKDIR => self.mkdir(r, w),
            msg::TSYMLINK => self.symlink(r, w),
            msg::TMKNOD => self.mknod(r, w),
            msg::TLINK => self.link(r),
            msg::TRENAME => self.rename(r),
            msg::TRENAMEAT => self.renameat(r),
            msg::TUNLINKAT => self.unlinkat(r),
            msg::TREMOVE => self.remove(r),
            // No extended attributes: Linux then reports EOPNOTSUPP to apps.
            msg::TXATTRWALK | msg::TXATTRCREATE => Err(Errno::OPNOTSUPP),
            // Tauth (no authentication), R-messages, legacy 9P2000 ops.
            _ => Err(Errno::OPNOTSUPP),
        }
    }

    /// Tversion: negotiates msize and starts a new session (all fids go).
    fn version(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Reply {
        let msize = r.u32()?;
        let version = r.str()?;
        if msize < MIN_MSIZE {
            return Err(Errno::MSGSIZE);
        }
        self.fids.clear();
        self.msize = msize.min(MAX_MSIZE);
        w.u32(self.msize)?;
        w.str(if version == b"9P2000.L" { version } else { b"unknown" })
    }

    /// Tattach: `fid` becomes the share root (uname/aname are ignored: the
    /// share is the only tree and host permissions are the stub's).
    fn attach(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Reply {
        let fid = r.u32()?;
        let _afid = r.u32()?;
        let (_uname, _aname, _n_uname) = (r.str()?, r.str()?, r.u32()?);
        let fd = rustix::io::fcntl_dupfd_cloexec(self.share.root(), 0)?;
        let qid = host::qid(&rustix::fs::fstat(&fd)?);
        self.fids.insert(fid, Fid { fd, parent: None })?;
        w.qid(qid)
    }

    /// Twalk: up to 16 names, one component at a time from `fid`. A failure
    /// after the first step answers the qids walked so far and leaves newfid
    /// unset, as the protocol says.
    fn walk(&mut self, r: &mut Reader<'_>, w: &mut Writer<'_>) -> Reply {
        let (fid, newfid) = (r.u32()?, r.u32()?);
        let count = usize::from(r.u16()?);
        if count > MAX_WALK {
            return Err(Errno::INVAL);
        }
        let mut names: [&[u8]; MAX_WALK] = [&[]; MAX_WALK];
        for name in names.iter_mut().take(count) {
            *name = r.str()?;
        }
        if newfid != fid && self.fids.contains(newfid) {
            return Err(Errno::INVAL);
        }
        let start = self.fids.get(fid)?;
        let dup = |fd: rustix::fd::BorrowedFd<'_>| rustix::io::fcntl_dupfd_cloexec(fd, 0);
        let mut cur = dup(start.fd.as_fd())?;
        let mut parent = match &start.parent {
            Some(p) => Some(dup(p.as_fd())?),
            None => None,
        };
        let mut qids = [Qid::default(); MAX_WALK];
        let mut walked = 0;
        for (name, qid) in names[..count].iter().zip(&mut qids) {
            let up = *name == b"..";
            let step = if up { self.share.parent(cur.as_fd()) } else { self.share.lookup(cur.as_fd(), name) };
            let next = match step {
                Ok(next) => next,
                Err(e) if walked == 0 => return Err(e),
                Err(_) => break,
            };
            *qid = host::qid(&rustix::fs::fstat(&next)?);
            let prev = core::mem::replace(&mut cur, next);
            parent = if up { None } else { Some(prev) };
            walked += 1;
        }
        if walked == count {
            self.fids.replace(newfid, Fid { fd: cur, parent })?;
        }
        w.u16(u16::try_from(walked).map_err(|_| Errno::INVAL)?)?;
        qids.get(..walked).unwrap_or_default().iter().try_for_each(|q| w.qid(*q)) // walked <= count <= MAX_WALK
    }
}
