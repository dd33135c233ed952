//! Reader for the initramfs: concatenated cpio "newc" archives, as the kernel
//! accepts them (NUL padding between archives is skipped). Input is
//! untrusted: every field is hex-checked and every length bounded by the data.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpioError(pub String);

impl fmt::Display for CpioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const HEADER_LEN: usize = 110;
const TRAILER_NAME: &[u8] = b"TRAILER!!!";
const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;

/// One archive member. `data` is a range of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub mode: u32,
    pub data: std::ops::Range<usize>,
    /// Bytes of the member in the archive: header, name, data, padding.
    pub archive_len: usize,
}

impl Entry {
    pub fn is_file(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }
}

fn hex_field(d: &[u8], at: usize, field: usize) -> Result<u32, CpioError> {
    let start = at + 6 + field * 8;
    let bytes = &d[start..start + 8];
    let text = std::str::from_utf8(bytes).ok();
    match text.and_then(|t| u32::from_str_radix(t, 16).ok()) {
        Some(v) => Ok(v),
        None => Err(CpioError(format!("bad cpio header field at byte {start}"))),
    }
}

fn align4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Every member of every archive in `d`, in order. Trailer entries are not
/// returned; their bytes count in `overhead` of [`Summary`].
pub fn entries(d: &[u8]) -> Result<Vec<Entry>, CpioError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < d.len() {
        if d[at] == 0 {
            at += 1;
            continue;
        }
        let magic = d.get(at..at + 6);
        if magic != Some(b"070701") && magic != Some(b"070702") {
            return Err(CpioError(format!("not a cpio newc archive at byte {at} (compressed initramfs?)")));
        }
        if d.len() - at < HEADER_LEN {
            return Err(CpioError(format!("truncated cpio header at byte {at}")));
        }
        for field in 0..13 {
            hex_field(d, at, field)?;
        }
        let mode = hex_field(d, at, 1)?;
        let file_len = hex_field(d, at, 6)? as usize;
        let name_len = hex_field(d, at, 11)? as usize;
        let name_end = at + HEADER_LEN + name_len;
        let data_start = align4(name_end);
        let data_end = data_start.checked_add(file_len).filter(|&e| e <= d.len());
        let Some(data_end) = data_end.filter(|_| name_len > 0 && name_end <= d.len()) else {
            return Err(CpioError(format!("cpio member at byte {at} extends past the end")));
        };
        let raw_name = &d[at + HEADER_LEN..name_end - 1];
        let next = align4(data_end).min(d.len());
        if raw_name != TRAILER_NAME {
            out.push(Entry {
                name: String::from_utf8_lossy(raw_name).into_owned(),
                mode,
                data: data_start..data_end,
                archive_len: next - at,
            });
        }
        at = next;
    }
    Ok(out)
}

/// Where the initramfs's bytes go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Data of the file named `init`.
    pub init: u64,
    /// Data of regular files under the rootfs directory.
    pub rootfs: u64,
    /// Data of every other regular file.
    pub other: u64,
    /// Headers, names, padding, trailers, directories, links.
    pub overhead: u64,
}

/// Splits `d` into init, rootfs files, other files and archive overhead;
/// the four add up to `d.len()`.
pub fn summarize(d: &[u8], rootfs_dir: &str, init_path: &str) -> Result<Summary, CpioError> {
    let mut s = Summary::default();
    let mut data = 0u64;
    for e in entries(d)? {
        if !e.is_file() {
            continue;
        }
        let n = e.data.len() as u64;
        data += n;
        let name = e.name.trim_start_matches("./").trim_start_matches('/');
        if name == init_path {
            s.init += n;
        } else if name.strip_prefix(rootfs_dir).is_some_and(|rest| rest.starts_with('/')) {
            s.rootfs += n;
        } else {
            s.other += n;
        }
    }
    s.overhead = d.len() as u64 - data;
    Ok(s)
}

/// Contents of the regular file `path` (last one wins, as in the kernel).
pub fn find<'a>(d: &'a [u8], path: &str) -> Result<Option<&'a [u8]>, CpioError> {
    let found = entries(d)?
        .into_iter()
        .rfind(|e| e.is_file() && e.name.trim_start_matches("./").trim_start_matches('/') == path);
    Ok(found.map(|e| &d[e.data]))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A newc archive of (name, mode, data) members plus the trailer.
    pub fn archive(members: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let trailer = [(std::str::from_utf8(TRAILER_NAME).unwrap_or_default(), 0, &[][..])];
        for (i, (name, mode, data)) in members.iter().chain(trailer.iter()).enumerate() {
            let fields = [i as u32 + 1, *mode, 0, 0, 1, 0, data.len() as u32, 0, 0, 0, 0, name.len() as u32 + 1, 0];
            out.extend_from_slice(b"070701");
            for f in fields {
                out.extend_from_slice(format!("{f:08x}").as_bytes());
            }
            out.extend_from_slice(name.as_bytes());
            out.push(0);
            out.resize(align4(out.len()), 0);
            out.extend_from_slice(data);
            out.resize(align4(out.len()), 0);
        }
        out
    }

    #[test]
    fn summary_adds_up_and_finds_init() {
        let a = archive(&[
            ("init", 0o100_755, b"\x7fELF-init-bytes"),
            ("smolvm", 0o040_755, b""),
            ("smolvm/manifest", 0o100_644, b"SMOLCFG1"),
            ("rootfs", 0o040_755, b""),
            ("rootfs/bin/app", 0o100_755, b"app!!"),
        ]);
        let mut two = a.clone();
        two.extend_from_slice(&[0; 512]);
        two.extend_from_slice(&archive(&[("extra", 0o100_644, b"x")]));
        let s = summarize(&two, "rootfs", "init").expect("valid");
        assert_eq!(s.init, 15);
        assert_eq!(s.rootfs, 5);
        assert_eq!(s.other, 9);
        assert_eq!(s.init + s.rootfs + s.other + s.overhead, two.len() as u64);
        assert_eq!(find(&two, "init").expect("valid"), Some(&b"\x7fELF-init-bytes"[..]));
        assert_eq!(find(&two, "missing").expect("valid"), None);
    }

    #[test]
    fn rejects_corrupt_archives() {
        let a = archive(&[("init", 0o100_755, b"0123456789")]);
        assert!(entries(&a[..50]).is_err());
        assert!(entries(&a[..HEADER_LEN + 8]).is_err());
        let mut bad = a.clone();
        bad[6] = b'g';
        assert!(entries(&bad).is_err());
        assert!(entries(b"\x1f\x8b\x08compressed").unwrap_err().0.contains("compressed"));
        let mut huge = a.clone();
        huge[6 + 6 * 8..6 + 7 * 8].copy_from_slice(b"ffffffff");
        assert!(entries(&huge).is_err());
    }
}
