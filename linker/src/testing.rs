//! Hostile-input generator for every reader of the image format (this
//! crate's tests, the stub's tests against its binary, fuzz seeds).
//!
//! [`cases`] lists corruptions of a valid image: truncation at every offset
//! of its last 64 KiB and at sampled offsets before, appended bytes, every
//! single-bit flip of the trailer, and re-sealed (valid checksum) trailers
//! that break one rule each: magic, version, count, offsets past EOF,
//! overlaps, overflowing lengths, misalignment, unknown kinds... Each must be
//! refused by [`Image::parse`] with an error, never a panic.

use crate::config::{self, Key};
use crate::cpio::CpioWriter;
use crate::image::{self, seal, Image, ImageError, Kind, ENTRY_LEN, HEADER_LEN, TRAILER_LEN};
use crate::write::ImageWriter;
use std::string::{String, ToString};
use std::vec::Vec;

/// Deterministic filler bytes.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| i.to_le_bytes()[0].wrapping_mul(31).wrapping_add(seed) ^ i.to_le_bytes()[1])
        .collect()
}

/// A small but complete, valid image (≈ 110 KiB) with every section kind.
/// Its sections hold placeholder bytes except the initramfs (a real cpio)
/// and the manifest (real config records).
pub fn sample_image() -> Vec<u8> {
    let mut stub = b"\x7fELF".to_vec();
    stub.extend(pattern(5000, 1));
    let mut kernel = b"\x7fELF".to_vec();
    kernel.extend(pattern(80 * 1024 + 17, 2));
    let manifest = config::to_vec(&[
        (Key::Entry, &[b"/bin/app"]),
        (Key::Arg, &[b"hello"]),
        (Key::Mem, &[b"128"]),
        (Key::Rootfs, &[b"squashfs"]),
    ])
    .expect("fits");
    let mut cpio = std::vec![0u8; 16 * 1024];
    let mut w = CpioWriter::new(&mut cpio, 1);
    w.file(b"init", 0o755, &pattern(3000, 3)).expect("fits");
    w.dir(b"smolvm", 0o755).expect("fits");
    w.file(b"smolvm/manifest", 0o644, &manifest).expect("fits");
    let n = w.finish().expect("fits");
    cpio.truncate(n);
    let mut out = ImageWriter::new(Vec::new());
    out.add_bytes(Kind::Stub, 0, &stub).expect("vec");
    out.add_bytes(Kind::Kernel, 0, &kernel).expect("vec");
    out.add_bytes(Kind::Initramfs, 0, &cpio).expect("vec");
    out.add_bytes(Kind::Rootfs, 0, &pattern(9000, 4))
        .expect("vec");
    out.add_bytes(Kind::Manifest, 0, &manifest).expect("vec");
    out.add_bytes(Kind::KernelInfo, 0, b"version=6.1.0 test\n")
        .expect("vec");
    out.finish().expect("valid").0
}

#[derive(Clone, Debug)]
pub enum Mutation {
    /// Keep only the first n bytes.
    Truncate(u64),
    /// Append n bytes of 0xAA.
    Append(u64),
    /// Flip one bit of the trailer (bit index from the trailer's start).
    FlipTrailerBit(usize),
    /// Replace the trailer (these are re-sealed: the checksum is valid).
    Trailer(std::boxed::Box<[u8; TRAILER_LEN]>),
}

#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub mutation: Mutation,
}

impl Case {
    /// The corrupted file.
    pub fn apply(&self, image: &[u8]) -> Vec<u8> {
        let mut v = image.to_vec();
        let t_at = image.len() - TRAILER_LEN;
        match &self.mutation {
            Mutation::Truncate(n) => v.truncate(usize::try_from(*n).unwrap_or(usize::MAX)),
            Mutation::Append(n) => v.resize(image.len() + usize::try_from(*n).unwrap_or(0), 0xAA),
            Mutation::FlipTrailerBit(bit) => v[t_at + bit / 8] ^= 1 << (bit % 8),
            Mutation::Trailer(t) => v[t_at..].copy_from_slice(&t[..]),
        }
        v
    }

    /// What a reader of the corrupted file sees, without building the whole
    /// file: its last `TRAILER_LEN` bytes (fewer if it is shorter) and its length.
    pub fn tail(&self, image: &[u8]) -> (Vec<u8>, u64) {
        let t_at = image.len() - TRAILER_LEN;
        match &self.mutation {
            Mutation::Truncate(n) => {
                let n = usize::try_from(*n).unwrap_or(usize::MAX).min(image.len());
                (image[n.saturating_sub(TRAILER_LEN)..n].to_vec(), n as u64)
            }
            Mutation::Append(n) => {
                let f = self.apply(image);
                (f[f.len() - TRAILER_LEN..].to_vec(), image.len() as u64 + n)
            }
            Mutation::FlipTrailerBit(_) | Mutation::Trailer(_) => {
                (self.apply(image)[t_at..].to_vec(), image.len() as u64)
            }
        }
    }

    /// The reader's verdict on the corrupted file.
    pub fn parse(&self, image: &[u8]) -> Result<Image, ImageError> {
        let (tail, len) = self.tail(image);
        Image::parse_slice(&tail, len)
    }
}

fn entry_field(t: &mut [u8; TRAILER_LEN], entry: usize, at: usize, bytes: &[u8]) {
    let start = HEADER_LEN + entry * ENTRY_LEN + at;
    t[start..start + bytes.len()].copy_from_slice(bytes);
}

/// Every corruption described in the module doc, for a valid `image`
/// (truncations of the last 64 KiB: 65 536 cases, cheap through [`Case::tail`]).
pub fn cases(image: &[u8]) -> Vec<Case> {
    let len = image.len() as u64;
    let mut v = Vec::new();
    let tail_start = len.saturating_sub(64 * 1024);
    for n in tail_start..len {
        v.push(Case {
            name: std::format!("truncated to {n} bytes"),
            mutation: Mutation::Truncate(n),
        });
    }
    let mut n = 0;
    while n < tail_start {
        v.push(Case {
            name: std::format!("truncated to {n} bytes"),
            mutation: Mutation::Truncate(n),
        });
        n += 997;
    }
    for extra in [1, 4096, TRAILER_LEN as u64] {
        v.push(Case {
            name: std::format!("{extra} bytes appended"),
            mutation: Mutation::Append(extra),
        });
    }
    for bit in 0..TRAILER_LEN * 8 {
        v.push(Case {
            name: std::format!("trailer bit {bit} flipped"),
            mutation: Mutation::FlipTrailerBit(bit),
        });
    }
    let mut good = [0u8; TRAILER_LEN];
    good.copy_from_slice(&image[image.len() - TRAILER_LEN..]);
    let Ok(table) = Image::parse(&good, len) else {
        return v;
    };
    let count = table.sections().len();
    let last = count - 1;
    let mut edit = |name: &str, f: &dyn Fn(&mut [u8; TRAILER_LEN])| {
        let mut t = good;
        f(&mut t);
        seal(&mut t);
        v.push(Case {
            name: name.to_string(),
            mutation: Mutation::Trailer(std::boxed::Box::new(t)),
        });
    };
    let le = |x: u64| x.to_le_bytes();
    edit("wrong magic", &|t| t[..8].copy_from_slice(b"SMOLIMG2"));
    edit("version 0", &|t| {
        t[8..12].copy_from_slice(&0u32.to_le_bytes())
    });
    edit("version 2", &|t| {
        t[8..12].copy_from_slice(&2u32.to_le_bytes())
    });
    edit("count 0", &|t| {
        t[12..16].copy_from_slice(&0u32.to_le_bytes())
    });
    edit("count over the ceiling", &|t| {
        t[12..16].copy_from_slice(&9u32.to_le_bytes())
    });
    edit("count u32::MAX", &|t| {
        t[12..16].copy_from_slice(&u32::MAX.to_le_bytes())
    });
    edit("recorded file length + 1", &|t| {
        t[16..24].copy_from_slice(&le(len + 1))
    });
    edit("reserved header byte", &|t| t[31] = 1);
    edit("unused entry not zero", &|t| {
        entry_field(t, image::MAX_SECTIONS - 1, 8, &le(4096))
    });
    edit("count lowered", &|t| {
        t[12..16].copy_from_slice(&u32::try_from(last).unwrap_or(0).to_le_bytes())
    });
    edit("unknown kind", &|t| {
        entry_field(t, 1, 0, &99u32.to_le_bytes())
    });
    edit("kind 0", &|t| entry_field(t, 1, 0, &0u32.to_le_bytes()));
    edit("duplicate kind", &|t| {
        entry_field(t, 2, 0, &(Kind::Kernel as u32).to_le_bytes())
    });
    edit("stub not first", &|t| {
        entry_field(t, 0, 0, &(Kind::Kernel as u32).to_le_bytes());
        entry_field(t, 1, 0, &(Kind::Stub as u32).to_le_bytes());
    });
    edit("unknown flag", &|t| {
        entry_field(t, 1, 4, &0x8000_0000u32.to_le_bytes())
    });
    edit("misaligned offset", &|t| {
        entry_field(t, 2, 8, &le(table.sections()[2].offset + 512))
    });
    edit("offset past EOF", &|t| {
        entry_field(t, last, 8, &le(len.next_multiple_of(4096) + 4096))
    });
    edit("offset u64::MAX aligned", &|t| {
        entry_field(t, last, 8, &le(u64::MAX - 4095))
    });
    edit("length past EOF", &|t| entry_field(t, 1, 16, &le(len)));
    edit("length into the trailer", &|t| {
        let s = table.sections()[last];
        entry_field(t, last, 16, &le(len - TRAILER_LEN as u64 - s.offset + 1));
    });
    edit("length u64::MAX", &|t| entry_field(t, 1, 16, &le(u64::MAX)));
    edit("offset + length overflows", &|t| {
        entry_field(t, 1, 8, &le(1 << 63));
        entry_field(t, 1, 16, &le(1 << 63));
    });
    edit("zero length", &|t| entry_field(t, 1, 16, &le(0)));
    edit("overlapping sections", &|t| {
        let s = table.sections()[1];
        entry_field(t, 1, 16, &le(s.len + 4096));
    });
    edit("sections out of order", &|t| {
        let (a, b) = (table.sections()[1], table.sections()[2]);
        entry_field(t, 1, 8, &le(b.offset));
        entry_field(t, 1, 16, &le(b.len));
        entry_field(t, 2, 8, &le(a.offset));
        entry_field(t, 2, 16, &le(a.len));
    });
    edit("manifest over its limit", &|t| {
        if let Some(i) = table
            .sections()
            .iter()
            .position(|s| s.kind == Kind::Manifest)
        {
            entry_field(t, i, 16, &le(config::MAX_CONFIG_LEN as u64 + 1));
        }
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_is_valid_and_every_case_is_refused() {
        let image = sample_image();
        assert!(image.len() > 100 * 1024);
        let (t, len) = (&image[image.len() - TRAILER_LEN..], image.len() as u64);
        Image::parse_slice(t, len).expect("sample is valid");
        let cases = cases(&image);
        assert!(cases.len() > 64 * 1024 + TRAILER_LEN * 8 + 20);
        for case in &cases {
            match case.parse(&image) {
                Ok(_) => panic!("accepted: {}", case.name),
                Err(e) => assert!(!e.message().contains('\n'), "{}", case.name),
            }
        }
    }

    #[test]
    fn tail_matches_the_materialized_file() {
        let image = sample_image();
        for case in cases(&image).iter().step_by(101) {
            let f = case.apply(&image);
            let (tail, len) = case.tail(&image);
            assert_eq!(len, f.len() as u64, "{}", case.name);
            assert_eq!(
                &f[f.len().saturating_sub(TRAILER_LEN)..],
                &tail[..],
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn structured_cases_hit_their_rule() {
        let image = sample_image();
        let named = |name: &str| {
            let c = cases(&image)
                .into_iter()
                .find(|c| c.name == name)
                .expect("case exists");
            c.parse(&image).expect_err("refused")
        };
        use ImageError::*;
        assert_eq!(named("wrong magic"), BadMagic);
        assert_eq!(named("version 2"), UnsupportedVersion(2));
        assert_eq!(named("count u32::MAX"), BadCount);
        assert_eq!(named("offset past EOF"), OutOfBounds(Kind::KernelInfo));
        assert_eq!(named("length u64::MAX"), Overflow(Kind::Kernel));
        assert_eq!(named("overlapping sections"), Overlap(Kind::Initramfs));
        assert_eq!(named("sections out of order"), Overlap(Kind::Initramfs));
        assert_eq!(named("misaligned offset"), Misaligned(Kind::Initramfs));
        assert_eq!(
            named("length into the trailer"),
            OutOfBounds(Kind::KernelInfo)
        );
        assert_eq!(named("unknown kind"), UnknownKind(99));
        assert_eq!(named("count lowered"), BadReserved);
        assert_eq!(named("length past EOF"), OutOfBounds(Kind::Kernel));
        assert_eq!(named("recorded file length + 1"), LengthMismatch);
    }
}
