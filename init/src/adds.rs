//! Files the host added for one run (`--smolvm-add=HOST:GUEST`): the stub
//! puts the n-th one in the runtime cpio as `smolvm/add<n>`
//! (`linker::abi::GUEST_ADD_PREFIX`); init opens them
//! before the root switch (the initramfs is out of reach after it) and
//! copies each to its guest path in the new root, creating the missing
//! directories, before the root is sealed. Permission bits are kept.

use crate::mounts::{cstr, mkdir_all};
use crate::out::Line;
use crate::Fail;
use alloc::vec::Vec;
use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

/// `/` + `abi::GUEST_ADD_PREFIX` + the digit + NUL (checked by a test).
const NAME: [u8; 13] = *b"/smolvm/add0\0";

/// The added files, open, with the guest path each goes to.
pub struct Added<'a>(Vec<(OwnedFd, &'a [u8])>);

/// Opens `/smolvm/add<n>` for each guest path (call before the root switch).
pub fn open<'a>(paths: &[&'a [u8]]) -> Result<Added<'a>, Fail> {
    let mut files = Vec::new();
    for (n, &guest) in paths.iter().enumerate() {
        // `/smolvm/add<n>`: n < MAX_ADDS (the plan's limit) < 10, one digit.
        let mut name = NAME;
        name[NAME.len() - 2] = b'0'.wrapping_add(u8::try_from(n).unwrap_or(9));
        let fd = core::ffi::CStr::from_bytes_with_nul(&name)
            .map_err(|_| Errno::INVAL)
            .and_then(|name| rustix::fs::open(name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()))
            .map_err(|e| Fail::new(Line::new().s("cannot add ").b(guest).s(": ").e(e)))?;
        files.push((fd, guest));
    }
    Ok(Added(files))
}

impl Added<'_> {
    /// Copies each file to its guest path (call after the root switch).
    pub fn place(self) -> Result<(), Fail> {
        for (src, guest) in self.0 {
            copy(&src, guest).map_err(|e| Fail::new(Line::new().s("cannot add ").b(guest).s(": ").e(e)))?;
        }
        Ok(())
    }
}

fn copy(src: &OwnedFd, guest: &[u8]) -> Result<(), Errno> {
    if let Some(i) = guest.iter().rposition(|&b| b == b'/').filter(|&i| i > 0) {
        mkdir_all(&guest[..i])?;
    }
    let path = cstr(guest)?;
    // Replaces what is there (a symlink such as /bin/sh -> dash included).
    match rustix::fs::unlink(path.as_c_str()) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(e) => return Err(e),
    }
    let stat = rustix::fs::fstat(src)?;
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
    let dst = rustix::fs::open(path.as_c_str(), flags, Mode::from_raw_mode(stat.st_mode & 0o7777))?;
    let mut left = u64::try_from(stat.st_size).unwrap_or(0);
    while left > 0 {
        match rustix::fs::sendfile(&dst, src, None, usize::try_from(left).unwrap_or(1 << 30).min(1 << 30)) {
            Ok(0) => return Err(Errno::IO),
            Ok(n) => left = left.saturating_sub(n as u64),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_follow_the_abi_prefix() {
        assert_eq!(&super::NAME[1..11], linker::abi::GUEST_ADD_PREFIX.as_bytes());
    }
}
