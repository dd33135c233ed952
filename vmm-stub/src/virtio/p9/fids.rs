//! The fid table: a fixed number of slots, so a guest that never clunks gets
//! `EMFILE` instead of growing the VMM. A fid holds file descriptors (an
//! `O_PATH` one, or the one `Tlopen` opened), never a path string.

use super::wire::NOFID;
use rustix::fd::OwnedFd;
use rustix::io::Errno;

/// Fids one session may hold at once. Linux keeps one per cached dentry and
/// one per open file; each costs up to two host fds.
pub const MAX_FIDS: usize = 1024;

pub struct Fid {
    /// The file itself: `O_PATH` after a walk, a real open file after
    /// Tlopen/Tlcreate. Always `O_CLOEXEC`.
    pub fd: OwnedFd,
    /// The directory it was walked from, kept for Tremove/Trename which name
    /// the file only by its fid. `None` for the root and after `..`.
    pub parent: Option<OwnedFd>,
}

pub struct FidTable {
    /// `ids[i]` names `slots[i]`; `NOFID` marks a free slot. Kept apart so a
    /// lookup scans 4 KiB of ids, not the slots.
    ids: [u32; MAX_FIDS],
    slots: [Option<Fid>; MAX_FIDS],
}

impl FidTable {
    pub fn new() -> Self {
        Self { ids: [NOFID; MAX_FIDS], slots: [const { None }; MAX_FIDS] }
    }

    fn index(&self, id: u32) -> Option<usize> {
        if id == NOFID {
            return None;
        }
        self.ids.iter().position(|&x| x == id)
    }

    pub fn get(&self, id: u32) -> Result<&Fid, Errno> {
        self.index(id).and_then(|i| self.slots[i].as_ref()).ok_or(Errno::BADF)
    }

    pub fn get_mut(&mut self, id: u32) -> Result<&mut Fid, Errno> {
        self.index(id).and_then(|i| self.slots[i].as_mut()).ok_or(Errno::BADF)
    }

    pub fn contains(&self, id: u32) -> bool {
        self.index(id).is_some()
    }

    /// Adds a new fid; `EINVAL` if `id` is in use or NOFID, `EMFILE` if full.
    pub fn insert(&mut self, id: u32, fid: Fid) -> Result<(), Errno> {
        if id == NOFID || self.contains(id) {
            return Err(Errno::INVAL);
        }
        let i = self.index_free().ok_or(Errno::MFILE)?;
        self.ids[i] = id;
        self.slots[i] = Some(fid);
        Ok(())
    }

    /// Adds or replaces `id` (a walk whose newfid equals fid).
    pub fn replace(&mut self, id: u32, fid: Fid) -> Result<(), Errno> {
        match self.index(id) {
            Some(i) => {
                self.slots[i] = Some(fid);
                Ok(())
            }
            None => self.insert(id, fid),
        }
    }

    fn index_free(&self) -> Option<usize> {
        self.ids.iter().position(|&x| x == NOFID)
    }

    /// Removes `id`, closing its fds.
    pub fn remove(&mut self, id: u32) -> Result<Fid, Errno> {
        let i = self.index(id).ok_or(Errno::BADF)?;
        self.ids[i] = NOFID;
        self.slots[i].take().ok_or(Errno::BADF)
    }

    /// Drops every fid (Tversion starts a new session).
    pub fn clear(&mut self) {
        for i in 0..MAX_FIDS {
            self.ids[i] = NOFID;
            self.slots[i] = None;
        }
    }
}

impl Default for FidTable {
    fn default() -> Self {
        Self::new()
    }
}
