//! A data disk as `--smolvm-disk` and `smolvm build --disk` take it:
//! `PATH[:ro][:/GUEST/PATH]`. One parser for the stub (run-time flag and the
//! image's `default-disk` records) and the builder (which checks `--disk`).

/// Most data disks a VM has (run-time flags or image defaults).
pub const MAX_DISKS: usize = 8;

/// Longest guest path a disk is mounted at (Linux's PATH_MAX is 4096).
pub const MAX_GUEST_PATH: usize = 1024;

/// Most files `--smolvm-add` places in one run. Each travels as one more
/// read-only disk after the data disks (an `add` runtime record), which
/// smol-init copies to its guest path before the app starts.
pub const MAX_ADDS: usize = 4;

/// An absolute path in normal form, as an added file's guest path must be:
/// `/` and components none of which is empty, `.` or `..` (so not `/`
/// itself, no `//`, no trailing `/`), at most [`MAX_GUEST_PATH`] bytes, no NUL.
pub fn is_normal_absolute(path: &[u8]) -> bool {
    if path.first() != Some(&b'/') || path.len() > MAX_GUEST_PATH {
        return false;
    }
    // Where the current component starts, and whether it is all dots so far.
    let (mut start, mut dots) = (1, true);
    for i in 1..=path.len() {
        match path.get(i) {
            Some(0) => return false,
            // A component ends: ``, `.` or `..` is refused.
            None | Some(b'/') if i == start || (dots && i - start <= 2) => return false,
            None | Some(b'/') => (start, dots) = (i + 1, true),
            Some(&b) => dots &= b == b'.',
        }
    }
    true
}

/// `--smolvm-disk=PATH[:ro][:/GUEST/PATH]` (or `SMOLVM_DISK`): a host file
/// the guest sees as `/dev/vdb`, `/dev/vdc`, ... in order; read-write
/// unless `:ro`. With a guest path smol-init mounts the disk's ext4 or
/// squashfs file system there. PATH may contain `:` but not `:/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskSpec<'a> {
    /// No NUL byte, not empty.
    pub path: &'a [u8],
    pub read_only: bool,
    /// Where to mount it: absolute, not `/` itself, no `:` or NUL byte, at
    /// most [`MAX_GUEST_PATH`] bytes.
    pub guest: Option<&'a [u8]>,
}

/// Splits a trailing `:ro`/`:rw` off `v`: (rest, read_only), or None.
fn split_mode(v: &[u8]) -> Option<(&[u8], bool)> {
    v.strip_suffix(b":ro").map(|p| (p, true)).or_else(|| v.strip_suffix(b":rw").map(|p| (p, false)))
}

impl<'a> DiskSpec<'a> {
    pub fn parse(v: &'a [u8]) -> Option<DiskSpec<'a>> {
        // The mode may stand before or after the guest path, once.
        let (mut rest, mut mode) = match split_mode(v) {
            Some((rest, ro)) => (rest, Some(ro)),
            None => (v, None),
        };
        let mut guest = None;
        if let Some(i) = rest.windows(2).rposition(|w| w == b":/") {
            guest = rest.get(i.wrapping_add(1)..);
            rest = rest.get(..i)?;
            if mode.is_none() {
                if let Some((r, ro)) = split_mode(rest) {
                    (rest, mode) = (r, Some(ro));
                }
            }
        }
        let guest_ok = guest.is_none_or(|g| g.len() > 1 && g.len() <= MAX_GUEST_PATH && !g.contains(&b':'));
        let ok = !rest.is_empty() && !v.contains(&0) && guest_ok;
        ok.then_some(DiskSpec { path: rest, read_only: mode.unwrap_or(false), guest })
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn added_file_paths_are_normal_and_absolute() {
        for ok in [&b"/bin/sh"[..], b"/x", b"/a b/c:d", b"/.hidden/..x/x.."] {
            assert!(is_normal_absolute(ok), "{:?}", core::str::from_utf8(ok));
        }
        let longest = [b"/".as_slice(), &[b'a'; MAX_GUEST_PATH - 1]].concat();
        assert!(is_normal_absolute(&longest));
        let too_long = [longest.as_slice(), b"a"].concat();
        for bad in [&b""[..], b"/", b"//", b"bin/sh", b"/bin/", b"/bin//sh", b"/./sh", b"/bin/.", b"/../etc/x", b"/a/../b",
            b"/a\0b", &too_long] {
            assert!(!is_normal_absolute(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
