//! A streaming tar reader for untrusted archives (rootfs tarballs, image
//! layers): ustar, GNU long names (`L`/`K`) and PAX headers (`path`,
//! `linkpath`, `size`, `uid`, `gid`). Every header's checksum is checked,
//! sizes are bounded, and a truncated archive is an error naming the entry.

use crate::bail;
use crate::error::{Error, Result};
use std::io::{self, Read, Write};

const BLOCK: usize = 512;
/// Longest name or PAX record accepted.
const MAX_META: u64 = 64 * 1024;
/// Largest entry accepted (also keeps the padding arithmetic far from overflow).
const MAX_ENTRY: u64 = 1 << 40;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    HardLink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub path: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub link: Vec<u8>,
    /// Extended attributes the entry carries (PAX `SCHILY.xattr.*`,
    /// `LIBARCHIVE.xattr.*`); counted, not kept.
    pub xattrs: u32,
}

impl Entry {
    /// The entry's path for messages (see [`shown`]).
    pub fn name(&self) -> String {
        shown(&self.path)
    }
}

/// An archive's name or path as one line of a message: control bytes
/// escaped (a hostile name must not forge lines), at most 120 characters.
pub fn shown(name: &[u8]) -> String {
    const MAX: usize = 120;
    let text = String::from_utf8_lossy(name);
    let mut out: String = text.chars().flat_map(|c| if c.is_control() { c.escape_default().collect() } else { vec![c] }).take(MAX).collect();
    if text.chars().count() > MAX {
        out.push('…');
    }
    out
}

pub struct TarReader<R: Read> {
    r: R,
    /// Data bytes (plus padding) of the current entry not read yet.
    unread: u64,
    done: bool,
}

fn octal(field: &[u8]) -> Option<u64> {
    // GNU base-256: high bit of the first byte set.
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let s: Vec<u8> = field
        .iter()
        .copied()
        .take_while(|&b| b != 0)
        .filter(|b| *b != b' ')
        .collect();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&s).ok()?, 8).ok()
}

fn cstr(field: &[u8]) -> Vec<u8> {
    field.iter().copied().take_while(|&b| b != 0).collect()
}

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK as u64) * BLOCK as u64
}

impl<R: Read> TarReader<R> {
    pub fn new(r: R) -> Self {
        TarReader {
            r,
            unread: 0,
            done: false,
        }
    }

    fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        self.r.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => Error(format!("truncated archive at {what}")),
            _ => Error(format!("reading archive at {what}: {e}")),
        })
    }

    fn skip(&mut self, mut n: u64, what: &str) -> Result<()> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let k = usize::try_from(n.min(buf.len() as u64)).unwrap_or(buf.len());
            self.read_exact(&mut buf[..k], what)?;
            n -= k as u64;
        }
        Ok(())
    }

    /// Data of an extension header (long name, PAX), bounded.
    fn meta(&mut self, size: u64, what: &str) -> Result<Vec<u8>> {
        if size > MAX_META {
            bail!("archive header at {what} is larger than {MAX_META} bytes");
        }
        let mut v = vec![0u8; usize::try_from(padded(size)).unwrap_or(0)];
        self.read_exact(&mut v, what)?;
        v.truncate(usize::try_from(size).unwrap_or(0));
        Ok(v)
    }

    /// The next entry; its data must be consumed with [`Self::copy_data`]
    /// (or is skipped by the next call).
    pub fn next_entry(&mut self) -> Result<Option<Entry>> {
        if self.done {
            return Ok(None);
        }
        let unread = self.unread;
        self.skip(unread, "the previous entry's data")?;
        self.unread = 0;
        let (mut long_name, mut long_link) = (None, None);
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        loop {
            let mut h = [0u8; BLOCK];
            let last = long_name
                .as_ref()
                .map_or("the archive's end".to_string(), |n: &Vec<u8>| shown(n));
            match self.r.read(&mut h[..1]) {
                Ok(0) => {
                    // No end-of-archive blocks: accepted (many tools omit them).
                    self.done = true;
                    return Ok(None);
                }
                Ok(_) => self.read_exact(&mut h[1..], &last)?,
                Err(e) => bail!("reading archive: {e}"),
            }
            if h.iter().all(|&b| b == 0) {
                self.done = true;
                return Ok(None);
            }
            let name = cstr(&h[0..100]);
            let label = shown(&name);
            let sum = octal(&h[148..156])
                .ok_or_else(|| Error(format!("not a tar archive, or a corrupt header at entry `{label}`")))?;
            let computed: u64 = h
                .iter()
                .enumerate()
                .map(|(i, &b)| {
                    if (148..156).contains(&i) {
                        32
                    } else {
                        u64::from(b)
                    }
                })
                .sum();
            if sum != computed {
                bail!("corrupt archive header (checksum) at entry {label}");
            }
            let num = |r: std::ops::Range<usize>| {
                octal(&h[r])
                    .ok_or_else(|| Error(format!("corrupt archive header at entry {label}")))
            };
            let mut size = num(124..136)?;
            let typeflag = h[156];
            match typeflag {
                b'L' => {
                    long_name = Some(cstr(&self.meta(size, &label)?));
                    continue;
                }
                b'K' => {
                    long_link = Some(cstr(&self.meta(size, &label)?));
                    continue;
                }
                b'x' => {
                    pax = parse_pax(&self.meta(size, &label)?)
                        .ok_or_else(|| Error(format!("corrupt PAX header at entry {label}")))?;
                    continue;
                }
                b'g' => {
                    self.meta(size, &label)?;
                    continue;
                }
                _ => {}
            }
            let mut path = name;
            if &h[257..262] == b"ustar" && h[345] != 0 {
                let mut p = cstr(&h[345..500]);
                p.push(b'/');
                p.extend_from_slice(&path);
                path = p;
            }
            let mut link = cstr(&h[157..257]);
            let (mut uid, mut gid) = (num(108..116)?, num(116..124)?);
            if let Some(n) = long_name.take() {
                path = n;
            }
            if let Some(l) = long_link.take() {
                link = l;
            }
            let mut xattrs = 0u32;
            for (k, v) in &pax {
                let n = || {
                    std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                };
                match k.as_slice() {
                    b"path" => path = v.clone(),
                    b"linkpath" => link = v.clone(),
                    b"size" => {
                        size = n().ok_or_else(|| Error(format!("bad PAX size at {label}")))?
                    }
                    b"uid" => uid = n().unwrap_or(uid),
                    b"gid" => gid = n().unwrap_or(gid),
                    k if k.starts_with(b"SCHILY.xattr.") || k.starts_with(b"LIBARCHIVE.xattr.") => {
                        xattrs = xattrs.saturating_add(1)
                    }
                    _ => {}
                }
            }
            let kind = match typeflag {
                b'0' | 0 | b'7' => Kind::File,
                b'1' => Kind::HardLink,
                b'2' => Kind::Symlink,
                b'3' => Kind::Char,
                b'4' => Kind::Block,
                b'5' => Kind::Dir,
                b'6' => Kind::Fifo,
                t => bail!(
                    "unsupported archive entry type `{}` at {}",
                    char::from(t).escape_default(),
                    shown(&path)
                ),
            };
            if kind != Kind::File {
                size = if matches!(kind, Kind::HardLink | Kind::Symlink | Kind::Dir) {
                    0
                } else {
                    size
                };
            }
            if size > MAX_ENTRY {
                bail!(
                    "archive entry {} claims {size} bytes: refused",
                    shown(&path)
                );
            }
            let mode = u32::try_from(num(100..108)? & 0o7777).unwrap_or(0o644);
            self.unread = padded(size);
            let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
            return Ok(Some(Entry {
                path,
                kind,
                mode,
                uid: clamp(uid),
                gid: clamp(gid),
                size,
                link,
                xattrs,
            }));
        }
    }

    /// The underlying reader (positioned after what was read).
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.r
    }

    /// Copies the current entry's data to `out`.
    pub fn copy_data(&mut self, entry: &Entry, out: &mut impl Write) -> Result<()> {
        let what = entry.name();
        let mut left = entry.size;
        let mut buf = vec![0u8; 64 * 1024];
        while left > 0 {
            let k = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            self.read_exact(&mut buf[..k], &what)?;
            out.write_all(&buf[..k])
                .map_err(|e| Error(format!("writing {what}: {e}")))?;
            left -= k as u64;
        }
        let pad = self.unread - entry.size;
        self.unread = 0;
        self.skip(pad, &what)
    }
}

/// PAX records: `"<len> <key>=<value>\n"`.
fn parse_pax(mut data: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let sp = data.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&data[..sp]).ok()?.parse().ok()?;
        let rec = data.get(sp + 1..len)?;
        let rec = rec.strip_suffix(b"\n")?;
        let eq = rec.iter().position(|&b| b == b'=')?;
        out.push((rec[..eq].to_vec(), rec[eq + 1..].to_vec()));
        data = &data[len..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn gnu_tar(dir: &std::path::Path, format: &str) -> Vec<u8> {
        let out = Command::new("tar")
            .args(["-c", "--sort=name", "--format", format, "-C"])
            .arg(dir)
            .arg(".")
            .output()
            .expect("tar");
        assert!(out.status.success());
        out.stdout
    }

    fn listing(bytes: &[u8]) -> Vec<(String, Kind, Vec<u8>, Vec<u8>)> {
        let mut r = TarReader::new(bytes);
        let mut v = Vec::new();
        while let Some(e) = r.next_entry().expect("valid") {
            let mut data = Vec::new();
            r.copy_data(&e, &mut data).expect("data");
            v.push((String::from_utf8_lossy(&e.path).into_owned(), e.kind, e.link.clone(), data));
        }
        v
    }

    #[test]
    fn names_in_messages_are_one_line_and_bounded() {
        assert_eq!(shown(b"bin/x\nsmolvm: forged\r"), "bin/x\\nsmolvm: forged\\r");
        assert_eq!(shown("é/ü".as_bytes()), "é/ü");
        let long = shown(&[b'a'; 500]);
        assert_eq!((long.chars().count(), long.ends_with('…')), (121, true));
    }

    #[test]
    fn reads_gnu_and_pax_archives_with_long_names() {
        let d = std::env::temp_dir().join(format!("smolvm-tar-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let long = "d".repeat(120);
        std::fs::create_dir_all(d.join(&long)).expect("mkdir");
        std::fs::write(d.join(&long).join("f".repeat(150)), b"long").expect("write");
        std::fs::write(d.join("a.txt"), b"hello").expect("write");
        std::os::unix::fs::symlink("a.txt".repeat(30), d.join("ln")).expect("ln");
        std::fs::hard_link(d.join("a.txt"), d.join("hard")).expect("ln");
        for format in ["gnu", "pax", "ustar"] {
            if format == "ustar" {
                std::fs::remove_file(d.join("ln")).expect("rm");
                std::fs::remove_dir_all(d.join(&long)).expect("rm");
            }
            let list = listing(&gnu_tar(&d, format));
            let get = |n: &str| {
                list.iter()
                    .find(|e| e.0 == n)
                    .unwrap_or_else(|| panic!("{format}: {n}: {list:?}"))
            };
            assert_eq!(get("./a.txt").3, b"hello");
            assert_eq!(get("./hard").1, Kind::HardLink);
            if format != "ustar" {
                assert_eq!(get(&format!("./{long}/{}", "f".repeat(150))).3, b"long");
                assert_eq!(get("./ln").2, "a.txt".repeat(30).into_bytes());
            }
        }
        std::fs::remove_dir_all(&d).expect("cleanup");
    }

    #[test]
    fn pax_xattrs_are_counted() {
        let script = "import tarfile, io, sys\n\
            t = tarfile.open(fileobj=sys.stdout.buffer, mode='w|', format=tarfile.PAX_FORMAT)\n\
            i = tarfile.TarInfo('ping'); i.size = 1\n\
            i.pax_headers = {'SCHILY.xattr.security.capability': 'x', 'SCHILY.xattr.user.a': 'y'}\n\
            t.addfile(i, io.BytesIO(b'p')); t.close()\n";
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut r = TarReader::new(&out.stdout[..]);
        let e = r.next_entry().expect("valid").expect("an entry");
        assert_eq!((e.name().as_str(), e.xattrs, e.size), ("ping", 2, 1));
    }

    #[test]
    fn absurd_pax_size_is_refused() {
        // A valid header preceded by a PAX record claiming u64::MAX bytes.
        let mut pax = Vec::new();
        let rec = format!(" size={}\n", u64::MAX);
        let rec = format!("{}{rec}", rec.len() + 2);
        pax.extend_from_slice(rec.as_bytes());
        let header = |name: &str, typeflag: u8, size: usize| {
            let mut h = [0u8; BLOCK];
            h[..name.len()].copy_from_slice(name.as_bytes());
            h[100..107].copy_from_slice(b"0000644");
            h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
            h[156] = typeflag;
            h[148..156].copy_from_slice(b"        ");
            let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
            h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
            h
        };
        let mut tar = header("pax", b'x', pax.len()).to_vec();
        tar.extend_from_slice(&pax);
        tar.resize(2 * BLOCK, 0);
        tar.extend_from_slice(&header("big", b'0', 0));
        let err = TarReader::new(&tar[..]).next_entry().expect_err("refused");
        assert!(err.0.contains("claims"), "{err}");
    }

    #[test]
    fn truncation_and_corruption_are_errors_naming_the_entry() {
        let d = std::env::temp_dir().join(format!("smolvm-tar-bad-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("big.bin"), vec![7u8; 5000]).expect("write");
        let good = gnu_tar(&d, "gnu");
        let read_all = |b: &[u8]| -> Result<()> {
            let mut r = TarReader::new(b);
            while let Some(e) = r.next_entry()? {
                r.copy_data(&e, &mut io::sink())?;
            }
            Ok(())
        };
        read_all(&good).expect("valid");
        let e = read_all(&good[..BLOCK * 3 + 100]).expect_err("truncated");
        assert!(e.0.contains("truncated archive at ./big.bin"), "{e}");
        for cut in (1..good.len()).step_by(97) {
            let _ = read_all(&good[..cut]);
        }
        let mut bad = good.clone();
        bad[BLOCK + 10] ^= 1;
        let e = read_all(&bad).expect_err("checksum");
        assert!(e.0.contains("checksum"), "{e}");
        std::fs::remove_dir_all(&d).expect("cleanup");
    }
}
