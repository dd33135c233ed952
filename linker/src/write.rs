//! `std` side of the image format: the streaming writer used by `smolvm
//! build`, and the full check used by `smolvm verify` / `inspect`.

use crate::abi::SECTION_ALIGN;
use crate::image::{Image, ImageError, Kind, Section, TRAILER_LEN};
use crate::sha256::Sha256;
use crate::xxh64::Xxh64;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::vec::Vec;

const ZEROS: [u8; 4096] = [0; 4096];
const CHUNK: usize = 256 * 1024;

/// Writes sections one after another (each 4 KiB aligned, zero padding in
/// between) while digesting them, then the trailer.
pub struct ImageWriter<W: Write> {
    out: W,
    pos: u64,
    sections: Vec<Section>,
}

fn format_error(e: ImageError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, std::format!("{e}"))
}

impl<W: Write> ImageWriter<W> {
    pub fn new(out: W) -> Self {
        ImageWriter {
            out,
            pos: 0,
            sections: Vec::new(),
        }
    }

    /// `align` is a power of two.
    fn pad_to(&mut self, align: u64) -> io::Result<()> {
        while self.pos & (align - 1) != 0 {
            let n = (align - self.pos % align).min(ZEROS.len() as u64);
            // n <= 4096.
            let n = usize::try_from(n).unwrap_or(ZEROS.len());
            self.out.write_all(&ZEROS[..n])?;
            self.pos += n as u64;
        }
        Ok(())
    }

    /// Appends a section whose bytes come from `data`.
    pub fn add(&mut self, kind: Kind, flags: u32, mut data: impl Read) -> io::Result<Section> {
        self.pad_to(SECTION_ALIGN)?;
        let offset = self.pos;
        let mut digest = (Xxh64::new(), Sha256::new());
        let mut buf = std::vec![0u8; CHUNK];
        loop {
            let n = match data.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.put(&mut digest, &buf[..n])?;
        }
        Ok(self.close(kind, flags, offset, digest))
    }

    /// Same bytes and table entry as `add(kind, flags, data)`, without the
    /// intermediate buffer (no 256 KiB allocation and copy per section).
    pub fn add_bytes(&mut self, kind: Kind, flags: u32, data: &[u8]) -> io::Result<Section> {
        self.pad_to(SECTION_ALIGN)?;
        let offset = self.pos;
        let mut digest = (Xxh64::new(), Sha256::new());
        self.put(&mut digest, data)?;
        Ok(self.close(kind, flags, offset, digest))
    }

    /// Digests and writes the next bytes of the open section.
    fn put(&mut self, digest: &mut (Xxh64, Sha256), bytes: &[u8]) -> io::Result<()> {
        digest.0.update(bytes);
        digest.1.update(bytes);
        self.out.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Ends the section that started at `offset` and records it.
    fn close(&mut self, kind: Kind, flags: u32, offset: u64, digest: (Xxh64, Sha256)) -> Section {
        let s = Section {
            kind,
            flags,
            offset,
            len: self.pos - offset,
            fast_digest: digest.0.finish(),
            sha256: digest.1.finish(),
        };
        self.sections.push(s);
        s
    }

    /// Writes the trailer (validated by the reader first) and returns the
    /// output and the image's table.
    pub fn finish(mut self) -> io::Result<(W, Image)> {
        let file_len = self.pos + TRAILER_LEN as u64;
        let trailer = Image::encode(&self.sections, file_len).map_err(format_error)?;
        self.out.write_all(&trailer)?;
        self.out.flush()?;
        let image = Image::parse(&trailer, file_len).map_err(format_error)?;
        Ok((self.out, image))
    }
}

/// Why `verify` failed.
#[derive(Debug)]
pub enum VerifyError {
    Io(io::Error),
    Format(ImageError),
    /// The section's SHA-256 or XXH64 does not match the trailer.
    Digest(Kind),
    /// Non-zero bytes in the padding that follows this section.
    Padding(Kind),
}

impl core::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VerifyError::Io(e) => write!(f, "image: {e}"),
            VerifyError::Format(e) => write!(f, "{e}"),
            VerifyError::Digest(k) => write!(
                f,
                "image: section {} is damaged (digest mismatch)",
                k.name()
            ),
            VerifyError::Padding(k) => {
                write!(f, "image: padding after section {} is damaged", k.name())
            }
        }
    }
}

impl From<io::Error> for VerifyError {
    fn from(e: io::Error) -> Self {
        VerifyError::Io(e)
    }
}

/// Reads and validates an image's trailer.
pub fn read_table(file: &mut File) -> Result<Image, VerifyError> {
    let len = file.metadata()?.len();
    let at = crate::image::trailer_offset(len).map_err(VerifyError::Format)?;
    let mut t = [0u8; TRAILER_LEN];
    file.seek(SeekFrom::Start(at))?;
    file.read_exact(&mut t)?;
    Image::parse(&t, len).map_err(VerifyError::Format)
}

pub fn open(path: &Path) -> Result<(File, Image), VerifyError> {
    let mut f = File::open(path)?;
    let image = read_table(&mut f)?;
    Ok((f, image))
}

/// Reads one section whole (for the small ones: manifest, kernel info).
pub fn read_section(file: &mut File, s: &Section) -> io::Result<Vec<u8>> {
    let len = usize::try_from(s.len).map_err(|_| io::Error::other("section too large"))?;
    let mut v = std::vec![0u8; len];
    file.seek(SeekFrom::Start(s.offset))?;
    file.read_exact(&mut v)?;
    Ok(v)
}

/// Full check: trailer, both digests of every section, zero padding.
pub fn verify(file: &mut File) -> Result<Image, VerifyError> {
    let image = read_table(file)?;
    let mut buf = std::vec![0u8; CHUNK];
    let sections = image.sections();
    for (i, s) in sections.iter().enumerate() {
        let (mut fast, mut sha) = (Xxh64::new(), Sha256::new());
        file.seek(SeekFrom::Start(s.offset))?;
        let mut left = s.len;
        while left > 0 {
            let n = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
            file.read_exact(&mut buf[..n])?;
            fast.update(&buf[..n]);
            sha.update(&buf[..n]);
            left -= n as u64;
        }
        if fast.finish() != s.fast_digest || sha.finish() != s.sha256 {
            return Err(VerifyError::Digest(s.kind));
        }
        let next = sections
            .get(i + 1)
            .map_or(image.file_len() - TRAILER_LEN as u64, |n| n.offset);
        let mut gap = next - s.end();
        while gap > 0 {
            let n = usize::try_from(gap.min(CHUNK as u64)).unwrap_or(CHUNK);
            file.read_exact(&mut buf[..n])?;
            if buf[..n].iter().any(|&b| b != 0) {
                return Err(VerifyError::Padding(s.kind));
            }
            gap -= n as u64;
        }
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    /// A reader that hands out at most `step` bytes per call.
    struct Dribble<'a>(&'a [u8], usize);

    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn add_bytes_writes_what_add_writes() {
        let big: Vec<u8> = (0..CHUNK * 2 + 4097).map(|i| (i * 7 + i / 251).to_le_bytes()[0]).collect();
        let lens = [0, 1, 4095, 4096, 4097, CHUNK - 1, CHUNK, CHUNK + 1, big.len()];
        for (i, &len) in lens.iter().enumerate() {
            let second = &big[..lens[(i + 3) % lens.len()]];
            let (mut direct, mut streamed) = (ImageWriter::new(Vec::new()), ImageWriter::new(Vec::new()));
            let sections = [(Kind::Stub, &big[..len]), (Kind::Kernel, second), (Kind::Initramfs, &big[5..9]), (Kind::Manifest, &big[..1])];
            for (kind, bytes) in sections {
                let a = direct.add_bytes(kind, 0, bytes).expect("vec");
                let b = streamed.add(kind, 0, Dribble(bytes, 1000 + i)).expect("vec");
                assert_eq!(a, b, "section {len}");
            }
            // An empty section is refused by both alike.
            let sealed = |w: ImageWriter<Vec<u8>>| w.finish().map(|(v, _)| v).map_err(|e| e.to_string());
            let (a, b) = (sealed(direct), sealed(streamed));
            assert_eq!(a.is_ok(), len > 0 && !second.is_empty(), "{len}: {:?}", a.as_ref().err());
            assert!(a == b, "add_bytes and add wrote different images ({len})");
        }
    }

    #[test]
    fn written_image_verifies_and_damage_is_named() {
        let dir = std::env::temp_dir().join(std::format!("linker-write-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let path = dir.join("img");
        let bytes = testing::sample_image();
        std::fs::write(&path, &bytes).expect("write");
        let img = verify(&mut File::open(&path).expect("open")).expect("intact");
        assert_eq!(img.sections().len(), 6);
        for s in img.sections() {
            let kind = s.kind;
            let mut damaged = bytes.clone();
            let at = usize::try_from(s.offset + s.len / 2).expect("small");
            damaged[at] ^= 0x10;
            std::fs::write(&path, &damaged).expect("write");
            match verify(&mut File::open(&path).expect("open")) {
                Err(VerifyError::Digest(k)) => assert_eq!(k, kind),
                other => panic!("{kind:?}: {other:?}"),
            }
        }
        let stub = img.section(Kind::Stub).expect("stub");
        let mut damaged = bytes.clone();
        damaged[usize::try_from(stub.end()).expect("small")] = 1;
        std::fs::write(&path, &damaged).expect("write");
        assert!(matches!(
            verify(&mut File::open(&path).expect("open")),
            Err(VerifyError::Padding(Kind::Stub))
        ));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
