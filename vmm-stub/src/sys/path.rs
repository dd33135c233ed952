//! Byte-string paths as C strings, for the system calls that take one.
//! rustix accepts a `&[u8]` path too, but makes its C string inline at
//! every call site (~300 bytes of stub each); this is that copy, once.

use core::ffi::CStr;
use rustix::io::Errno;

/// Linux's `PATH_MAX`: the longest path, its NUL included.
pub const PATH_MAX: usize = 4096;

/// `path` NUL-terminated in `buf`. Fails as rustix would: `ENAMETOOLONG`
/// when it does not fit, `EINVAL` when it holds a NUL byte.
pub fn c_path<'b>(path: &[u8], buf: &'b mut [u8; PATH_MAX]) -> Result<&'b CStr, Errno> {
    let n = path.len();
    if n >= PATH_MAX {
        return Err(Errno::NAMETOOLONG);
    }
    buf[..n].copy_from_slice(path);
    buf[n] = 0;
    CStr::from_bytes_with_nul(&buf[..=n]).map_err(|_| Errno::INVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminates_and_refuses_like_rustix() {
        let mut buf = [b'x'; PATH_MAX];
        assert_eq!(c_path(b"/a/b", &mut buf), Ok(c"/a/b"));
        assert_eq!(c_path(b"", &mut buf), Ok(c""));
        assert_eq!(c_path(b"a\0b", &mut buf), Err(Errno::INVAL));
        let longest = [b'a'; PATH_MAX - 1];
        assert_eq!(c_path(&longest, &mut buf).map(|c| c.to_bytes().len()), Ok(PATH_MAX - 1));
        assert_eq!(c_path(&[b'a'; PATH_MAX], &mut buf), Err(Errno::NAMETOOLONG));
    }
}
