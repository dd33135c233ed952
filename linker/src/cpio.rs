//! cpio "newc" archives, the format Linux unpacks as initramfs.
//!
//! * [`CpioWriter`] (`no_std`, no allocation) writes into a caller's buffer:
//!   the stub uses it at every start for the runtime archive holding
//!   [`crate::abi::GUEST_RUNTIME_PATH`]. Linux unpacks concatenated archives;
//!   each must start 4-byte aligned relative to the start of the initrd
//!   (zero bytes between them are skipped).
//! * [`Archive`] (`std`) is the builder's deterministic writer: entries
//!   sorted by path, inode numbers assigned in that order from 1, uid/gid 0,
//!   one fixed mtime (0 or `SOURCE_DATE_EPOCH`), missing parents created.
//!
//! Each entry is a 110-byte ASCII header (`070701` + 13 hex fields), the
//! NUL-terminated name, padding to 4, the data, padding to 4; the archive
//! ends with an entry named `TRAILER!!!`.

pub const S_IFMT: u32 = 0o170_000;
pub const S_IFREG: u32 = 0o100_000;
pub const S_IFDIR: u32 = 0o040_000;
pub const S_IFLNK: u32 = 0o120_000;
pub const S_IFCHR: u32 = 0o020_000;
pub const S_IFBLK: u32 = 0o060_000;
pub const S_IFIFO: u32 = 0o010_000;

const HEADER_LEN: usize = 110;
const TRAILER_NAME: &[u8] = b"TRAILER!!!";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpioError {
    /// The buffer is full.
    Full,
    /// Empty name, NUL in a name, a name longer than 4 KiB, or `TRAILER!!!`.
    BadName,
    /// Data larger than 4 GiB (newc sizes are 32-bit).
    TooLarge,
}

impl CpioError {
    pub fn message(self) -> &'static str {
        match self {
            CpioError::Full => "cpio: archive does not fit in its buffer",
            CpioError::BadName => "cpio: empty, reserved or too long name, or NUL in a name",
            CpioError::TooLarge => "cpio: file larger than 4 GiB",
        }
    }
}

/// Metadata of one entry (uid and gid are always 0).
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    pub ino: u32,
    /// File type and permission bits (`S_IF* | 0o755`).
    pub mode: u32,
    pub nlink: u32,
    pub mtime: u32,
    pub rdev_major: u32,
    pub rdev_minor: u32,
}

const MAX_NAME: usize = 4096;

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// Bytes one entry takes (header, name, data, padding), `None` on overflow.
pub fn entry_len(name_len: usize, data_len: usize) -> Option<usize> {
    let head = HEADER_LEN.checked_add(name_len)?.checked_add(1)?;
    let head = head.checked_add(pad4(head))?;
    head.checked_add(data_len)?.checked_add(pad4(data_len))
}

fn header(meta: &Meta, name_len: usize, data_len: usize) -> Result<[u8; HEADER_LEN], CpioError> {
    let filesize = u32::try_from(data_len).map_err(|_| CpioError::TooLarge)?;
    let namesize = u32::try_from(name_len.wrapping_add(1)).map_err(|_| CpioError::BadName)?;
    let fields = [
        meta.ino,
        meta.mode,
        0, // uid
        0, // gid
        meta.nlink,
        meta.mtime,
        filesize,
        0, // devmajor
        0, // devminor
        meta.rdev_major,
        meta.rdev_minor,
        namesize,
        0, // check
    ];
    let mut h = [0u8; HEADER_LEN];
    let (magic, hex) = h.split_at_mut(6);
    magic.copy_from_slice(b"070701");
    for (digits, v) in hex.chunks_exact_mut(8).zip(fields) {
        for (d, shift) in digits.iter_mut().zip([28, 24, 20, 16, 12, 8, 4, 0]) {
            *d = b"0123456789ABCDEF"[(v >> shift) as usize & 0xf];
        }
    }
    Ok(h)
}

fn check_name(name: &[u8]) -> Result<(), CpioError> {
    // `TRAILER!!!` would end the archive early.
    if name.is_empty() || name.len() > MAX_NAME || name.contains(&0) || name == TRAILER_NAME {
        return Err(CpioError::BadName);
    }
    Ok(())
}

/// Writes a newc archive into a fixed buffer. Inodes count up from the
/// first one given; every entry gets `mtime` 0 and uid/gid 0.
pub struct CpioWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
    next_ino: u32,
}

impl<'b> CpioWriter<'b> {
    /// `first_ino` lets a second archive avoid the first one's inode numbers.
    pub fn new(buf: &'b mut [u8], first_ino: u32) -> Self {
        CpioWriter {
            buf,
            len: 0,
            next_ino: first_ino,
        }
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), CpioError> {
        self.buf
            .get_mut(self.len..)
            .and_then(|b| b.get_mut(..bytes.len()))
            .ok_or(CpioError::Full)?
            .copy_from_slice(bytes);
        self.len = self.len.wrapping_add(bytes.len()); // it fit in the buffer
        Ok(())
    }

    /// Appends one entry with explicit metadata; nothing is written on error.
    pub fn entry(&mut self, meta: &Meta, name: &[u8], data: &[u8]) -> Result<(), CpioError> {
        check_name(name)?;
        self.raw_entry(meta, name, data)
    }

    fn raw_entry(&mut self, meta: &Meta, name: &[u8], data: &[u8]) -> Result<(), CpioError> {
        let total = entry_len(name.len(), data.len()).ok_or(CpioError::Full)?;
        if self.buf.len().saturating_sub(self.len) < total {
            return Err(CpioError::Full);
        }
        let h = header(meta, name.len(), data.len())?;
        self.put(&h)?;
        self.put(name)?;
        // entry_len checked these sums.
        self.put(&[0; 4][..1 + pad4(HEADER_LEN.wrapping_add(name.len()).wrapping_add(1))])?;
        self.put(data)?;
        self.put(&[0; 4][..pad4(data.len())])
    }

    fn simple(&mut self, mode: u32, name: &[u8], data: &[u8]) -> Result<(), CpioError> {
        let nlink = if mode & S_IFMT == S_IFDIR { 2 } else { 1 };
        let meta = Meta {
            ino: self.next_ino,
            mode,
            nlink,
            mtime: 0,
            rdev_major: 0,
            rdev_minor: 0,
        };
        self.entry(&meta, name, data)?;
        self.next_ino = self.next_ino.wrapping_add(1);
        Ok(())
    }

    pub fn dir(&mut self, name: &[u8], perm: u32) -> Result<(), CpioError> {
        self.simple(S_IFDIR | (perm & 0o7777), name, &[])
    }

    pub fn file(&mut self, name: &[u8], perm: u32, data: &[u8]) -> Result<(), CpioError> {
        self.simple(S_IFREG | (perm & 0o7777), name, data)
    }

    pub fn symlink(&mut self, name: &[u8], target: &[u8]) -> Result<(), CpioError> {
        self.simple(S_IFLNK | 0o777, name, target)
    }

    /// Writes the `TRAILER!!!` entry and returns the archive's length.
    pub fn finish(mut self) -> Result<usize, CpioError> {
        let meta = Meta {
            ino: 0,
            mode: 0,
            nlink: 1,
            mtime: 0,
            rdev_major: 0,
            rdev_minor: 0,
        };
        self.raw_entry(&meta, TRAILER_NAME, &[])?;
        Ok(self.len)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(feature = "std")]
pub use archive::{Archive, FileData, Node};

#[cfg(feature = "std")]
mod archive {
    use super::*;
    use std::collections::BTreeMap;
    use std::io::{self, Read, Write};
    use std::path::PathBuf;
    use std::vec::Vec;

    /// Where a regular file's bytes come from (read when the archive is written).
    #[derive(Clone, Debug)]
    pub enum FileData {
        Bytes(Vec<u8>),
        Path(PathBuf),
    }

    #[derive(Clone, Debug)]
    pub enum Node {
        Dir {
            perm: u32,
        },
        File {
            perm: u32,
            data: FileData,
        },
        Symlink {
            target: Vec<u8>,
        },
        /// Character or block device: `mode` holds `S_IFCHR`/`S_IFBLK` and perms.
        Device {
            mode: u32,
            major: u32,
            minor: u32,
        },
        Fifo {
            perm: u32,
        },
    }

    /// A deterministic archive: the same inserts (in any order) always
    /// produce the same bytes.
    #[derive(Clone, Debug, Default)]
    pub struct Archive {
        nodes: BTreeMap<Vec<u8>, Node>,
        mtime: u32,
    }

    fn invalid(msg: std::string::String) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, msg)
    }

    /// `a//b/./c/` → `a/b/c`; refuses `..`, NUL and the empty path.
    fn normalize(path: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(path.len());
        for part in path.split(|&b| b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => return Err(invalid(std::format!("cpio: `..` in path {}", show(path)))),
                p => {
                    if !out.is_empty() {
                        out.push(b'/');
                    }
                    out.extend_from_slice(p);
                }
            }
        }
        if check_name(&out).is_err() {
            return Err(invalid(std::format!("cpio: bad path {}", show(path))));
        }
        Ok(out)
    }

    fn show(path: &[u8]) -> std::string::String {
        std::string::String::from_utf8_lossy(path).into_owned()
    }

    impl Archive {
        /// `mtime` is stamped on every entry (0, or `SOURCE_DATE_EPOCH`).
        pub fn new(mtime: u32) -> Self {
            Archive {
                nodes: BTreeMap::new(),
                mtime,
            }
        }

        /// Adds (or replaces) `path`, creating missing parent directories
        /// with mode 0755. A directory never replaces a non-directory's
        /// children: replacing a directory by a file is refused.
        pub fn insert(&mut self, path: &[u8], node: Node) -> io::Result<()> {
            let path = normalize(path)?;
            for (i, _) in path.iter().enumerate().filter(|(_, &b)| b == b'/') {
                let parent = &path[..i];
                match self.nodes.get(parent) {
                    None => {
                        self.nodes
                            .insert(parent.to_vec(), Node::Dir { perm: 0o755 });
                    }
                    Some(Node::Dir { .. }) => {}
                    Some(_) => {
                        return Err(invalid(std::format!(
                            "cpio: {} is not a directory",
                            show(parent)
                        )))
                    }
                }
            }
            if let (Some(Node::Dir { .. }), false) =
                (self.nodes.get(&path), matches!(node, Node::Dir { .. }))
            {
                let mut prefix = path.clone();
                prefix.push(b'/');
                if self
                    .nodes
                    .range(prefix.clone()..)
                    .next()
                    .is_some_and(|(k, _)| k.starts_with(&prefix))
                {
                    return Err(invalid(std::format!(
                        "cpio: {} is a non-empty directory",
                        show(&path)
                    )));
                }
            }
            self.nodes.insert(path, node);
            Ok(())
        }

        pub fn contains(&self, path: &[u8]) -> bool {
            normalize(path).is_ok_and(|p| self.nodes.contains_key(&p))
        }

        pub fn len(&self) -> usize {
            self.nodes.len()
        }

        pub fn is_empty(&self) -> bool {
            self.nodes.is_empty()
        }

        /// Writes the archive (with its trailer); returns the bytes written.
        pub fn write_to(&self, out: &mut impl Write) -> io::Result<u64> {
            let mut written = 0u64;
            let mut emit = |meta: &Meta, name: &[u8], data: &[u8]| -> io::Result<()> {
                let h = header(meta, name.len(), data.len())
                    .map_err(|e| invalid(std::format!("{}: {}", e.message(), show(name))))?;
                let name_pad = 1 + pad4(HEADER_LEN + name.len() + 1);
                out.write_all(&h)?;
                out.write_all(name)?;
                out.write_all(&[0; 4][..name_pad])?;
                out.write_all(data)?;
                out.write_all(&[0; 4][..pad4(data.len())])?;
                // usize -> u64 is lossless on every supported target.
                written +=
                    (HEADER_LEN + name.len() + name_pad + data.len() + pad4(data.len())) as u64;
                Ok(())
            };
            for (ino, (name, node)) in (1u32..).zip(&self.nodes) {
                let mut meta = Meta {
                    ino,
                    mode: 0,
                    nlink: 1,
                    mtime: self.mtime,
                    rdev_major: 0,
                    rdev_minor: 0,
                };
                let mut owned = Vec::new();
                let data: &[u8] = match node {
                    Node::Dir { perm } => {
                        meta.mode = S_IFDIR | (perm & 0o7777);
                        meta.nlink = 2;
                        &[]
                    }
                    Node::File { perm, data } => {
                        meta.mode = S_IFREG | (perm & 0o7777);
                        match data {
                            FileData::Bytes(b) => b,
                            FileData::Path(p) => {
                                std::fs::File::open(p)
                                    .and_then(|mut f| f.read_to_end(&mut owned))
                                    .map_err(|e| {
                                        io::Error::new(
                                            e.kind(),
                                            std::format!("{}: {e}", p.display()),
                                        )
                                    })?;
                                &owned
                            }
                        }
                    }
                    Node::Symlink { target } => {
                        meta.mode = S_IFLNK | 0o777;
                        target
                    }
                    Node::Device { mode, major, minor } => {
                        meta.mode = *mode;
                        meta.rdev_major = *major;
                        meta.rdev_minor = *minor;
                        &[]
                    }
                    Node::Fifo { perm } => {
                        meta.mode = S_IFIFO | (perm & 0o7777);
                        &[]
                    }
                };
                emit(&meta, name, data)?;
            }
            let meta = Meta {
                ino: 0,
                mode: 0,
                nlink: 1,
                mtime: 0,
                rdev_major: 0,
                rdev_minor: 0,
            };
            emit(&meta, TRAILER_NAME, &[])?;
            Ok(written)
        }

        pub fn to_vec(&self) -> io::Result<Vec<u8>> {
            let mut v = Vec::new();
            self.write_to(&mut v)?;
            Ok(v)
        }
    }
}

/// One entry read back by [`read_entries`].
#[cfg(feature = "std")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadEntry {
    pub name: std::vec::Vec<u8>,
    pub mode: u32,
    pub data: std::vec::Vec<u8>,
}

/// Reads entries back (tests, `smolvm inspect`); `None` if malformed.
#[cfg(feature = "std")]
pub fn read_entries(mut bytes: &[u8]) -> Option<std::vec::Vec<ReadEntry>> {
    let field = |h: &[u8], i: usize| -> Option<usize> {
        let s = core::str::from_utf8(h.get(6 + i * 8..14 + i * 8)?).ok()?;
        usize::from_str_radix(s, 16).ok()
    };
    let mut out = std::vec::Vec::new();
    loop {
        let h = bytes.get(..HEADER_LEN)?;
        if &h[..6] != b"070701" {
            return None;
        }
        let (mode, size, namesize) = (field(h, 1)?, field(h, 6)?, field(h, 11)?);
        let name_end = HEADER_LEN.checked_add(namesize)?;
        let name = bytes.get(HEADER_LEN..name_end.checked_sub(1)?)?.to_vec();
        let data_at = name_end + pad4(name_end);
        let data = bytes.get(data_at..data_at.checked_add(size)?)?.to_vec();
        bytes = bytes.get(data_at + size + pad4(size)..)?;
        if name == TRAILER_NAME {
            return Some(out);
        }
        out.push(ReadEntry {
            name,
            mode: u32::try_from(mode).ok()?,
            data,
        });
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn no_std_writer_round_trips_and_refuses_overflow() {
        let mut buf = [0u8; 1024];
        let mut w = CpioWriter::new(&mut buf, 1000);
        w.dir(b"smolvm", 0o755).expect("fits");
        w.file(b"smolvm/run", 0o644, b"SMOLCFG1arg\0x\0")
            .expect("fits");
        w.symlink(b"link", b"smolvm/run").expect("fits");
        assert_eq!(w.file(b"big", 0o644, &[1; 2000]), Err(CpioError::Full));
        assert_eq!(w.file(b"a\0b", 0o644, b""), Err(CpioError::BadName));
        assert_eq!(w.file(b"", 0o644, b""), Err(CpioError::BadName));
        assert_eq!(w.file(b"TRAILER!!!", 0o644, b""), Err(CpioError::BadName));
        let len = w.finish().expect("fits");
        assert_eq!(len % 4, 0);
        let entries = read_entries(&buf[..len]).expect("well formed");
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[1].name, b"smolvm/run");
        assert_eq!(entries[1].mode, S_IFREG | 0o644);
        assert_eq!(entries[1].data, b"SMOLCFG1arg\0x\0");
        assert_eq!(entries[2].data, b"smolvm/run");
    }

    #[test]
    fn writer_never_writes_past_a_small_buffer() {
        for size in 0..300 {
            let mut buf = std::vec![0u8; size];
            let mut w = CpioWriter::new(&mut buf, 1);
            let ok = w.file(b"smolvm/run", 0o644, &[7; 50]).is_ok() && w.finish().is_ok();
            let need = entry_len(10, 50).zip(entry_len(10, 0)).map(|(a, b)| a + b);
            assert_eq!(ok, Some(size) >= need);
        }
    }

    fn sample(order_reversed: bool, mtime: u32) -> Archive {
        let mut a = Archive::new(mtime);
        let mut items = std::vec![
            (
                &b"bin/app"[..],
                Node::File {
                    perm: 0o755,
                    data: FileData::Bytes(b"#!x".to_vec())
                }
            ),
            (
                b"etc/hostname",
                Node::File {
                    perm: 0o644,
                    data: FileData::Bytes(b"vm\n".to_vec())
                }
            ),
            (
                b"bin/sh",
                Node::Symlink {
                    target: b"app".to_vec()
                }
            ),
            (
                b"dev/console",
                Node::Device {
                    mode: S_IFCHR | 0o600,
                    major: 5,
                    minor: 1
                }
            ),
            (b"tmp", Node::Dir { perm: 0o1777 }),
        ];
        if order_reversed {
            items.reverse();
        }
        for (p, n) in items {
            a.insert(p, n).expect("valid");
        }
        a
    }

    #[test]
    fn archive_is_deterministic_sorted_and_complete() {
        let a = sample(false, 0).to_vec().expect("writes");
        assert_eq!(a, sample(true, 0).to_vec().expect("writes"));
        assert_ne!(a, sample(false, 1).to_vec().expect("writes"));
        let names: std::vec::Vec<_> = read_entries(&a)
            .expect("parses")
            .into_iter()
            .map(|e| e.name)
            .collect();
        let want: [&[u8]; 8] = [
            b"bin",
            b"bin/app",
            b"bin/sh",
            b"dev",
            b"dev/console",
            b"etc",
            b"etc/hostname",
            b"tmp",
        ];
        assert_eq!(names, want);
    }

    #[test]
    fn archive_refuses_escapes_and_type_clashes() {
        let mut a = Archive::new(0);
        let f = || Node::File {
            perm: 0o644,
            data: FileData::Bytes(std::vec::Vec::new()),
        };
        assert!(a.insert(b"../x", f()).is_err());
        assert!(a.insert(b"a/../../x", f()).is_err());
        assert!(a.insert(b"/", f()).is_err());
        assert!(a.insert(b"TRAILER!!!", f()).is_err());
        a.insert(b"/a//b/./c", f()).expect("normalized");
        assert!(a.contains(b"a/b/c"));
        assert!(a.insert(b"a/b/c/d", f()).is_err());
        assert!(a.insert(b"a/b", f()).is_err());
    }

    #[test]
    fn gnu_cpio_reads_the_archive() {
        let bytes = sample(false, 0).to_vec().expect("writes");
        let mut child = Command::new("cpio")
            .args(["-i", "-t", "-v", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cpio is installed (Debian package cpio)");
        std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), &bytes).expect("pipe");
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("cpio ran");
        assert!(out.status.success());
        let listing = std::string::String::from_utf8_lossy(&out.stdout);
        assert!(listing.contains("bin/sh -> app"), "{listing}");
        assert!(listing.contains("crw-------"), "{listing}");
        assert!(listing.contains("drwxrwxrwt"), "{listing}");
        assert_eq!(listing.lines().count(), 8, "{listing}");
    }
}
