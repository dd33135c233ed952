//! A data disk as `--smolvm-disk` and `smolvm build --disk` take it:
//! `PATH[:ro][:/GUEST/PATH]`. One parser for the stub (run-time flag and the
//! image's `default-disk` records) and the builder (which checks `--disk`).

/// Most data disks a VM has (run-time flags or image defaults).
pub const MAX_DISKS: usize = 8;

/// Longest guest path a disk is mounted at (Linux's PATH_MAX is 4096).
pub const MAX_GUEST_PATH: usize = 1024;

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
