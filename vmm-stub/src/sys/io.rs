//! `read`/`write`/`pread`/`pwrite`/`pwritev` on memory named by pointer and
//! length instead of a slice. Guest RAM is memory no Rust reference may
//! point into (`mem.rs`); through these a device moves its bytes to and from
//! a file or socket with no bounce copy. Host buffers convert with `From`.

use super::syscall::{syscall, SYS_PREAD64, SYS_PWRITE64, SYS_PWRITEV, SYS_READ, SYS_WRITE};
use core::marker::PhantomData;
use rustix::fd::{AsRawFd, BorrowedFd};
use rustix::io::{self, Errno};

/// Bytes the kernel may read for `'a` (the source of a write), laid out as
/// `struct iovec` so a slice of them is an iovec array.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IoBuf<'a> {
    base: *const u8,
    len: usize,
    _life: PhantomData<&'a [u8]>,
}

/// Bytes the kernel may write for `'a` (the destination of a read).
#[derive(Clone, Copy)]
pub struct IoBufMut<'a> {
    base: *mut u8,
    len: usize,
    _life: PhantomData<&'a mut [u8]>,
}

impl<'a> IoBuf<'a> {
    /// # Safety
    /// `[base, base + len)` stays mapped and readable for `'a`.
    pub unsafe fn from_raw(base: *const u8, len: usize) -> Self {
        IoBuf { base, len, _life: PhantomData }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes after the first `n` (none if `n >= len`).
    pub fn skip(self, n: usize) -> Self {
        let n = n.min(self.len);
        // `base + n` stays inside (or one past) the buffer: n <= len.
        IoBuf { base: self.base.wrapping_add(n), len: self.len - n, _life: PhantomData }
    }
}

impl<'a> IoBufMut<'a> {
    /// # Safety
    /// `[base, base + len)` stays mapped and writable for `'a`, and no Rust
    /// reference into it is alive meanwhile (the kernel changes its bytes).
    pub unsafe fn from_raw(base: *mut u8, len: usize) -> Self {
        IoBufMut { base, len, _life: PhantomData }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes after the first `n` (none if `n >= len`).
    pub fn skip(self, n: usize) -> Self {
        let n = n.min(self.len);
        IoBufMut { base: self.base.wrapping_add(n), len: self.len - n, _life: PhantomData }
    }
}

impl<'a> From<&'a [u8]> for IoBuf<'a> {
    fn from(s: &'a [u8]) -> Self {
        IoBuf { base: s.as_ptr(), len: s.len(), _life: PhantomData }
    }
}

impl<'a> From<&'a mut [u8]> for IoBufMut<'a> {
    fn from(s: &'a mut [u8]) -> Self {
        IoBufMut { base: s.as_mut_ptr(), len: s.len(), _life: PhantomData }
    }
}

/// A file offset as a system call argument (lossless: x86_64 only).
fn off(offset: u64) -> usize {
    usize::try_from(offset).unwrap_or(usize::MAX)
}

fn fd_arg(fd: BorrowedFd<'_>) -> usize {
    // A descriptor is a small non-negative number; the kernel takes it as an int.
    fd.as_raw_fd().cast_unsigned() as usize
}

/// `read(2)` into `buf`.
pub fn read(fd: BorrowedFd<'_>, buf: IoBufMut<'_>) -> io::Result<usize> {
    // SAFETY: `buf` is writable memory no reference points into (its contract); the kernel writes at most `len` bytes there.
    unsafe { syscall(SYS_READ, [fd_arg(fd), buf.base as usize, buf.len, 0]) }
}

/// `pread(2)` into `buf` from file offset `offset`.
pub fn pread(fd: BorrowedFd<'_>, buf: IoBufMut<'_>, offset: u64) -> io::Result<usize> {
    // SAFETY: as for `read`.
    unsafe { syscall(SYS_PREAD64, [fd_arg(fd), buf.base as usize, buf.len, off(offset)]) }
}

/// `write(2)` from `buf`.
pub fn write(fd: BorrowedFd<'_>, buf: IoBuf<'_>) -> io::Result<usize> {
    // SAFETY: `buf` is readable memory (its contract); the kernel only reads it.
    unsafe { syscall(SYS_WRITE, [fd_arg(fd), buf.base as usize, buf.len, 0]) }
}

/// `pwrite(2)` from `buf` at file offset `offset`.
pub fn pwrite(fd: BorrowedFd<'_>, buf: IoBuf<'_>, offset: u64) -> io::Result<usize> {
    // SAFETY: as for `write`.
    unsafe { syscall(SYS_PWRITE64, [fd_arg(fd), buf.base as usize, buf.len, off(offset)]) }
}

/// `pwritev(2)` from `bufs` at file offset `offset`.
pub fn pwritev(fd: BorrowedFd<'_>, bufs: &[IoBuf<'_>], offset: u64) -> io::Result<usize> {
    // SAFETY: `IoBuf` is `struct iovec` (repr(C): pointer, length), each readable (their contract); on x86_64 the whole offset goes in `pos_l` (pos_h, r8, is shifted out by the kernel).
    unsafe { syscall(SYS_PWRITEV, [fd_arg(fd), bufs.as_ptr() as usize, bufs.len(), off(offset)]) }
}

/// Reads exactly `buf.len()` bytes at `offset`, retrying short reads and
/// `EINTR`; `EIO` if the file ends first.
pub fn pread_exact(fd: BorrowedFd<'_>, mut buf: IoBufMut<'_>, mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match pread(fd, buf, offset) {
            Ok(0) => return Err(Errno::IO), // the file shrank under us
            Ok(n) => {
                buf = buf.skip(n);
                offset = offset.checked_add(n as u64).ok_or(Errno::INVAL)?;
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes all of `buf` at `offset`, retrying short writes and `EINTR`.
pub fn pwrite_all(fd: BorrowedFd<'_>, mut buf: IoBuf<'_>, mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match pwrite(fd, buf, offset) {
            Ok(0) => return Err(Errno::IO),
            Ok(n) => {
                buf = buf.skip(n);
                offset = offset.checked_add(n as u64).ok_or(Errno::INVAL)?;
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn moves_bytes_between_files_and_raw_buffers() {
        let path = std::env::temp_dir().join(format!("smolvm-sys-io-{}", std::process::id()));
        let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).expect("tmp");
        std::fs::remove_file(&path).expect("unlink");
        let fd = f.as_fd();
        assert_eq!(pwrite(fd, IoBuf::from(&b"hello, world"[..]), 0), Ok(12));
        let parts = [IoBuf::from(&b"HE"[..]), IoBuf::from(&b"xLLO"[..]).skip(1)];
        assert_eq!(pwritev(fd, &parts, 0), Ok(5));
        let mut back = [0u8; 16];
        assert_eq!(pread(fd, IoBufMut::from(&mut back[..]).skip(2), 0), Ok(12));
        assert_eq!(&back[2..14], b"HELLO, world");
        assert_eq!(pread(fd, IoBufMut::from(&mut back[..]), 100), Ok(0), "past the end");
        assert_eq!(IoBuf::from(&b"ab"[..]).skip(5).len(), 0);
        let (r, w) = rustix::pipe::pipe().expect("pipe");
        assert_eq!(write(w.as_fd(), IoBuf::from(&b"pipe"[..])), Ok(4));
        let mut got = [0u8; 8];
        assert_eq!(read(r.as_fd(), IoBufMut::from(&mut got[..])), Ok(4));
        assert_eq!(&got[..4], b"pipe");
        assert_eq!(read(w.as_fd(), IoBufMut::from(&mut got[..])), Err(Errno::BADF));
    }

    #[test]
    fn exact_reads_and_whole_writes() {
        let path = std::env::temp_dir().join(format!("smolvm-sys-io-exact-{}", std::process::id()));
        let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).expect("tmp");
        std::fs::remove_file(&path).expect("unlink");
        let fd = f.as_fd();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        pwrite_all(fd, IoBuf::from(&data[..]), 10).expect("write");
        let mut back = vec![0u8; data.len()];
        pread_exact(fd, IoBufMut::from(&mut back[..]), 10).expect("read");
        assert_eq!(back, data);
        assert_eq!(pread_exact(fd, IoBufMut::from(&mut back[..2]), 300_009), Err(Errno::IO), "past the end");
        pread_exact(fd, IoBufMut::from(&mut back[..0]), u64::MAX).expect("nothing to read");
        assert_eq!(pwrite_all(fd, IoBuf::from(&b"x"[..]), u64::MAX), Err(Errno::INVAL));
    }
}
