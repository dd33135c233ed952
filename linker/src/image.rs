//! The image file format and its validating trailer reader (`no_std`, no
//! allocation: the stub calls it before creating any VM).
//!
//! # FORMAT (version 1)
//!
//! ```text
//! [stub ELF][pad][kernel][pad][initramfs][pad][rootfs][pad][manifest][pad][kernel info][trailer]
//! ```
//! * Every section starts at a multiple of [`SECTION_ALIGN`] (4 KiB) so the stub
//!   can `mmap` it or serve it by `pread` straight from the file. Padding is zero.
//! * Sections appear in the file in the order of their table entries, with
//!   strictly increasing, non-overlapping ranges; the stub is the first, at 0.
//! * The trailer is the last [`TRAILER_LEN`] bytes of the file. All integers
//!   are little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0   | 8   | magic `b"SMOLIMG\0"` |
//! | 8   | 4   | format version, `1` |
//! | 12  | 4   | number of used entries, `1..=MAX_SECTIONS` |
//! | 16  | 8   | length of the whole file, trailer included |
//! | 24  | 8   | reserved, zero |
//! | 32  | 64×8 | section table; entries past the count are all zero |
//! | 544 | 8   | XXH64 of bytes `0..544` (the trailer's own checksum) |
//!
//! A table entry (64 bytes): kind `u32`, flags `u32`, offset `u64`, length
//! `u64`, XXH64 of the section's bytes `u64`, SHA-256 of the section's bytes
//! `[u8; 32]`.
//!
//! Section kinds ([`Kind`]): `Stub` (required, at offset 0), `Kernel`
//! (required; ELF vmlinux, or bzImage with [`FLAG_BZIMAGE`]), `Initramfs`
//! (required; uncompressed cpio newc holding `init`, `smolvm/manifest` and,
//! for the `initramfs` rootfs format, the tree under `rootfs/`), `Rootfs`
//! (optional squashfs, served as `/dev/vda`), `Manifest` (required; the
//! [`crate::config`] records written by `smolvm build`, at most
//! [`crate::config::MAX_CONFIG_LEN`] bytes), `KernelInfo` (optional;
//! `key=value` lines: `version`, `config_sha256`, at most 4 KiB), `Signature`
//! (optional, always the last section; [`crate::signature`]: an Ed25519
//! signature over the table entries of every other section, so over every
//! byte before it).
//!
//! Kind 7 (`Signature`) was added after version 1 shipped without bumping the
//! version: a reader from before it refuses a signed image as "unknown section
//! kind (corrupted or newer format)", which is the sane answer, and `smolvm
//! sign` refuses to sign an image whose own stub predates it
//! ([`crate::signature::STUB_MARK`]), since that stub could not run it.
//!
//! The fast digest (XXH64) is what the stub can afford to check on every
//! start for the sections it reads; SHA-256 is checked by `smolvm verify`.
//! A reader refuses anything it does not fully understand: unknown versions,
//! kinds, flags and non-zero reserved bytes are errors, not ignored.

use crate::abi::SECTION_ALIGN;
use crate::xxh64::xxh64;
use static_assertions::const_assert_eq;

pub const MAGIC: [u8; 8] = *b"SMOLIMG\0";
pub const VERSION: u32 = 1;
/// Section table size: the entry-count ceiling.
pub const MAX_SECTIONS: usize = 8;
pub const HEADER_LEN: usize = 32;
pub const ENTRY_LEN: usize = 64;
const CHECKSUM_AT: usize = HEADER_LEN + MAX_SECTIONS * ENTRY_LEN;
/// Size of the trailer at the end of every image file.
pub const TRAILER_LEN: usize = CHECKSUM_AT + 8;
const_assert_eq!(TRAILER_LEN, 552);
const_assert_eq!(SECTION_ALIGN.count_ones(), 1);
const_assert_eq!(ENTRY_LEN, 4 + 4 + 8 + 8 + 8 + 32);
/// The `Kernel` section holds a bzImage rather than an ELF vmlinux.
pub const FLAG_BZIMAGE: u32 = 1;
/// Upper bound of the `KernelInfo` section.
pub const MAX_KERNEL_INFO_LEN: u64 = 4096;
/// Length of the `Signature` section (its layout: [`crate::signature`]).
pub const SIGNATURE_LEN: usize = 112;

/// What a section holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum Kind {
    Stub = 1,
    Kernel = 2,
    Initramfs = 3,
    Rootfs = 4,
    Manifest = 5,
    KernelInfo = 6,
    Signature = 7,
    /// A warm image's saved vCPU, VM and device state ([`crate::warm`]).
    #[cfg(any(feature = "std", feature = "warm"))]
    MachineState = 8,
    /// A warm image's saved guest pages ([`crate::warm`]).
    #[cfg(any(feature = "std", feature = "warm"))]
    GuestMemory = 9,
}

impl Kind {
    /// The kinds this reader knows. A stub built without the `warm`
    /// feature refuses a warm image as "unknown section kind" (as a stub
    /// from before kinds 8 and 9 does), which costs it no bytes: the
    /// default stub has no room for restoring yet.
    #[cfg(any(feature = "std", feature = "warm"))]
    pub const ALL: [Kind; 9] = [
        Kind::Stub,
        Kind::Kernel,
        Kind::Initramfs,
        Kind::Rootfs,
        Kind::Manifest,
        Kind::KernelInfo,
        Kind::Signature,
        Kind::MachineState,
        Kind::GuestMemory,
    ];
    #[cfg(not(any(feature = "std", feature = "warm")))]
    pub const ALL: [Kind; 7] = [
        Kind::Stub,
        Kind::Kernel,
        Kind::Initramfs,
        Kind::Rootfs,
        Kind::Manifest,
        Kind::KernelInfo,
        Kind::Signature,
    ];
    /// Sections every image has.
    pub const REQUIRED: [Kind; 4] = [Kind::Stub, Kind::Kernel, Kind::Initramfs, Kind::Manifest];

    pub fn from_u32(v: u32) -> Option<Kind> {
        Self::ALL.into_iter().find(|k| *k as u32 == v)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Stub => "stub",
            Kind::Kernel => "kernel",
            Kind::Initramfs => "initramfs",
            Kind::Rootfs => "rootfs",
            Kind::Manifest => "manifest",
            Kind::KernelInfo => "kernel-info",
            Kind::Signature => "signature",
            #[cfg(any(feature = "std", feature = "warm"))]
            Kind::MachineState => "machine-state",
            #[cfg(any(feature = "std", feature = "warm"))]
            Kind::GuestMemory => "guest-memory",
        }
    }

    fn allowed_flags(self) -> u32 {
        match self {
            Kind::Kernel => FLAG_BZIMAGE,
            _ => 0,
        }
    }

    fn max_len(self) -> u64 {
        match self {
            // usize -> u64 is lossless on every supported target.
            Kind::Manifest => crate::config::MAX_CONFIG_LEN as u64,
            Kind::KernelInfo => MAX_KERNEL_INFO_LEN,
            Kind::Signature => SIGNATURE_LEN as u64,
            #[cfg(any(feature = "std", feature = "warm"))]
            Kind::MachineState => crate::warm::MAX_STATE_LEN,
            _ => u64::MAX,
        }
    }
}

/// Why an image was refused. Each has a one-line [`message`](Self::message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// The file is shorter than a trailer.
    TooSmall,
    BadMagic,
    UnsupportedVersion(u32),
    BadChecksum,
    /// The file's length differs from the one recorded in the trailer.
    LengthMismatch,
    /// Reserved header bytes or unused table entries are not zero.
    BadReserved,
    BadCount,
    UnknownKind(u32),
    DuplicateSection(Kind),
    BadFlags(Kind),
    EmptySection(Kind),
    Misaligned(Kind),
    /// offset + length does not fit in a u64.
    Overflow(Kind),
    /// The section reaches into the trailer or past the end of the file.
    OutOfBounds(Kind),
    /// The section starts before the previous one ends.
    Overlap(Kind),
    TooLarge(Kind),
    MissingSection(Kind),
    /// The stub section is not the first one at offset 0.
    StubNotFirst,
    /// A section's bytes do not match the digest in the trailer.
    DigestMismatch(Kind),
    /// A section follows the signature section.
    SignatureNotLast,
}

impl ImageError {
    /// What went wrong, in one line (the section, if any, is [`Self::section`]).
    pub fn message(self) -> &'static str {
        use ImageError::*;
        match self {
            TooSmall => {
                "image: file too small to hold a trailer (not a smolvm image, or truncated)"
            }
            BadMagic => {
                "image: no smolvm trailer at end of file (not an image, truncated, or stripped)"
            }
            UnsupportedVersion(_) => "image: unsupported format version (rebuild with this smolvm)",
            BadChecksum => "image: trailer checksum mismatch (corrupted)",
            LengthMismatch => {
                "image: file length differs from the trailer's (truncated or appended to)"
            }
            BadReserved => "image: reserved trailer bytes not zero (corrupted or newer format)",
            BadCount => "image: bad section count",
            UnknownKind(_) => "image: unknown section kind (corrupted or newer format)",
            DuplicateSection(_) => "image: section appears twice",
            BadFlags(_) => "image: unknown section flags",
            EmptySection(_) => "image: empty section",
            Misaligned(_) => "image: section not 4 KiB aligned",
            Overflow(_) => "image: section offset + length overflows",
            OutOfBounds(_) => "image: section extends past the end of the file",
            Overlap(_) => "image: sections overlap or are out of order",
            TooLarge(_) => "image: section larger than its limit",
            MissingSection(_) => "image: required section missing",
            StubNotFirst => "image: stub section is not at offset 0",
            DigestMismatch(_) => "image: section digest mismatch (corrupted)",
            SignatureNotLast => "image: signature section is not the last one",
        }
    }

    /// The section the error is about, when there is one.
    pub fn section(self) -> Option<Kind> {
        use ImageError::*;
        match self {
            DuplicateSection(k) | BadFlags(k) | EmptySection(k) | Misaligned(k) | Overflow(k)
            | OutOfBounds(k) | Overlap(k) | TooLarge(k) | MissingSection(k) | DigestMismatch(k) => {
                Some(k)
            }
            _ => None,
        }
    }
}

impl core::fmt::Display for ImageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.message())?;
        match *self {
            ImageError::UnsupportedVersion(v) => write!(f, ": {v}"),
            ImageError::UnknownKind(v) => write!(f, ": {v}"),
            e => match e.section() {
                Some(k) => write!(f, ": {}", k.name()),
                None => Ok(()),
            },
        }
    }
}

/// One section-table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section {
    pub kind: Kind,
    pub flags: u32,
    pub offset: u64,
    pub len: u64,
    /// XXH64 of the section's bytes.
    pub fast_digest: u64,
    /// SHA-256 of the section's bytes.
    pub sha256: [u8; 32],
}

impl Section {
    const UNUSED: Section = Section {
        kind: Kind::Stub,
        flags: 0,
        offset: 0,
        len: 0,
        fast_digest: 0,
        sha256: [0; 32],
    };

    /// One past the last byte (validated not to overflow by [`Image::parse`]).
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.len)
    }

    pub fn is_bzimage(&self) -> bool {
        self.kind == Kind::Kernel && self.flags & FLAG_BZIMAGE != 0
    }

    /// Checks the section's bytes against its fast digest.
    pub fn check_fast(&self, bytes: &[u8]) -> Result<(), ImageError> {
        // usize -> u64 is lossless on every supported target.
        if bytes.len() as u64 == self.len && xxh64(bytes) == self.fast_digest {
            Ok(())
        } else {
            Err(ImageError::DigestMismatch(self.kind))
        }
    }
}

/// A validated section table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Image {
    file_len: u64,
    count: usize,
    sections: [Section; MAX_SECTIONS],
}

/// The little-endian integer at `b[at..]`; callers checked the length.
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Where the trailer starts in a file of `file_len` bytes.
pub fn trailer_offset(file_len: u64) -> Result<u64, ImageError> {
    // usize -> u64 is lossless on every supported target.
    file_len
        .checked_sub(TRAILER_LEN as u64)
        .ok_or(ImageError::TooSmall)
}

/// Recomputes the trailer's own checksum after its other bytes are set.
pub fn seal(trailer: &mut [u8; TRAILER_LEN]) {
    let sum = xxh64(&trailer[..CHECKSUM_AT]);
    trailer[CHECKSUM_AT..].copy_from_slice(&sum.to_le_bytes());
}

impl Image {
    /// Validates the last [`TRAILER_LEN`] bytes of a file of `file_len`
    /// bytes. Section contents are not read; check them with
    /// [`Section::check_fast`] before use.
    pub fn parse(trailer: &[u8; TRAILER_LEN], file_len: u64) -> Result<Image, ImageError> {
        let trailer_at = trailer_offset(file_len)?;
        if trailer[..8] != MAGIC {
            return Err(ImageError::BadMagic);
        }
        let version = u32_at(trailer, 8);
        if version != VERSION {
            return Err(ImageError::UnsupportedVersion(version));
        }
        if u64_at(trailer, CHECKSUM_AT) != xxh64(&trailer[..CHECKSUM_AT]) {
            return Err(ImageError::BadChecksum);
        }
        if u64_at(trailer, 16) != file_len {
            return Err(ImageError::LengthMismatch);
        }
        if u64_at(trailer, 24) != 0 {
            return Err(ImageError::BadReserved);
        }
        let count = usize::try_from(u32_at(trailer, 12)).map_err(|_| ImageError::BadCount)?;
        if count == 0 || count > MAX_SECTIONS {
            return Err(ImageError::BadCount);
        }
        let table = &trailer[HEADER_LEN..CHECKSUM_AT];
        if table[count * ENTRY_LEN..].iter().any(|&b| b != 0) {
            return Err(ImageError::BadReserved);
        }
        let mut image = Image {
            file_len,
            count,
            sections: [Section::UNUSED; MAX_SECTIONS],
        };
        let mut prev_end = 0u64;
        for (i, e) in table.chunks_exact(ENTRY_LEN).take(count).enumerate() {
            let raw_kind = u32_at(e, 0);
            let kind = Kind::from_u32(raw_kind).ok_or(ImageError::UnknownKind(raw_kind))?;
            if image.sections[..i].iter().any(|s| s.kind == kind) {
                return Err(ImageError::DuplicateSection(kind));
            }
            let mut sha256 = [0u8; 32];
            sha256.copy_from_slice(&e[32..64]);
            let s = Section {
                kind,
                flags: u32_at(e, 4),
                offset: u64_at(e, 8),
                len: u64_at(e, 16),
                fast_digest: u64_at(e, 24),
                sha256,
            };
            if s.flags & !kind.allowed_flags() != 0 {
                return Err(ImageError::BadFlags(kind));
            }
            if s.len == 0 {
                return Err(ImageError::EmptySection(kind));
            }
            if s.len > kind.max_len() {
                return Err(ImageError::TooLarge(kind));
            }
            if s.offset & (SECTION_ALIGN - 1) != 0 {
                return Err(ImageError::Misaligned(kind));
            }
            let end = s
                .offset
                .checked_add(s.len)
                .ok_or(ImageError::Overflow(kind))?;
            if end > trailer_at {
                return Err(ImageError::OutOfBounds(kind));
            }
            if s.offset < prev_end {
                return Err(ImageError::Overlap(kind));
            }
            if (kind == Kind::Stub) != (i == 0) || (i == 0 && s.offset != 0) {
                return Err(ImageError::StubNotFirst);
            }
            if kind == Kind::Signature && i + 1 != count {
                return Err(ImageError::SignatureNotLast);
            }
            prev_end = end;
            image.sections[i] = s;
        }
        for kind in Kind::REQUIRED {
            if image.section(kind).is_none() {
                return Err(ImageError::MissingSection(kind));
            }
        }
        Ok(image)
    }

    /// Like [`Image::parse`] for a tail slice that must be exactly
    /// [`TRAILER_LEN`] bytes long.
    pub fn parse_slice(trailer: &[u8], file_len: u64) -> Result<Image, ImageError> {
        let trailer: &[u8; TRAILER_LEN] = trailer.try_into().map_err(|_| ImageError::TooSmall)?;
        Image::parse(trailer, file_len)
    }

    /// Encodes a section table for a file of `file_len` bytes and validates
    /// the result, so a writer can never produce an image the reader refuses.
    pub fn encode(sections: &[Section], file_len: u64) -> Result<[u8; TRAILER_LEN], ImageError> {
        let trailer = encode_unchecked(sections, file_len).ok_or(ImageError::BadCount)?;
        Image::parse(&trailer, file_len)?;
        Ok(trailer)
    }

    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Sections in file order.
    pub fn sections(&self) -> &[Section] {
        self.sections.get(..self.count).unwrap_or(&[])
    }

    pub fn section(&self, kind: Kind) -> Option<Section> {
        self.sections().iter().find(|s| s.kind == kind).copied()
    }
}

/// Encodes a table without validating it (writers use [`Image::encode`];
/// tests use this to build hostile trailers). `None` if there are more than
/// [`MAX_SECTIONS`] sections.
pub fn encode_unchecked(sections: &[Section], file_len: u64) -> Option<[u8; TRAILER_LEN]> {
    if sections.len() > MAX_SECTIONS {
        return None;
    }
    let mut t = [0u8; TRAILER_LEN];
    t[..8].copy_from_slice(&MAGIC);
    t[8..12].copy_from_slice(&VERSION.to_le_bytes());
    t[12..16].copy_from_slice(&u32::try_from(sections.len()).ok()?.to_le_bytes());
    t[16..24].copy_from_slice(&file_len.to_le_bytes());
    let table = &mut t[HEADER_LEN..CHECKSUM_AT];
    for (e, s) in table.chunks_exact_mut(ENTRY_LEN).zip(sections) {
        e.copy_from_slice(&encode_entry(s));
    }
    seal(&mut t);
    Some(t)
}

/// A section's table entry, as the trailer holds it.
pub fn encode_entry(s: &Section) -> [u8; ENTRY_LEN] {
    let mut e = [0u8; ENTRY_LEN];
    e[0..4].copy_from_slice(&(s.kind as u32).to_le_bytes());
    e[4..8].copy_from_slice(&s.flags.to_le_bytes());
    e[8..16].copy_from_slice(&s.offset.to_le_bytes());
    e[16..24].copy_from_slice(&s.len.to_le_bytes());
    e[24..32].copy_from_slice(&s.fast_digest.to_le_bytes());
    e[32..64].copy_from_slice(&s.sha256);
    e
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    const A: u64 = SECTION_ALIGN;

    fn sec(kind: Kind, offset: u64, len: u64) -> Section {
        Section {
            kind,
            flags: 0,
            offset,
            len,
            fast_digest: 0,
            sha256: [0; 32],
        }
    }

    /// stub 0..100, kernel 1A.., initramfs 3A.., rootfs 4A.., manifest 6A.., trailer after 7A.
    fn layout() -> ([Section; 5], u64) {
        let s = [
            sec(Kind::Stub, 0, 100),
            sec(Kind::Kernel, A, 2 * A),
            sec(Kind::Initramfs, 3 * A, 10),
            sec(Kind::Rootfs, 4 * A, 2 * A),
            sec(Kind::Manifest, 6 * A, 64),
        ];
        (s, 6 * A + 64 + TRAILER_LEN as u64)
    }

    fn parse_with(edit: impl FnOnce(&mut [Section; 5])) -> Result<Image, ImageError> {
        let (mut s, len) = layout();
        edit(&mut s);
        let t = encode_unchecked(&s, len).expect("fits");
        Image::parse(&t, len)
    }

    #[test]
    fn valid_layout_round_trips() {
        let (s, len) = layout();
        let t = Image::encode(&s, len).expect("valid");
        let img = Image::parse(&t, len).expect("valid");
        assert_eq!(img.sections(), &s);
        assert_eq!(img.section(Kind::Rootfs), Some(s[3]));
        assert_eq!(img.section(Kind::KernelInfo), None);
        assert_eq!(img.file_len(), len);
    }

    #[test]
    fn each_rule_has_its_error() {
        use ImageError::*;
        let k = Kind::Kernel;
        assert_eq!(parse_with(|s| s[1].offset += 1), Err(Misaligned(k)));
        assert_eq!(parse_with(|s| s[1].len = 0), Err(EmptySection(k)));
        assert_eq!(parse_with(|s| s[1].flags = 2), Err(BadFlags(k)));
        assert!(parse_with(|s| s[1].flags = FLAG_BZIMAGE).is_ok());
        assert_eq!(
            parse_with(|s| s[0].flags = FLAG_BZIMAGE),
            Err(BadFlags(Kind::Stub))
        );
        assert_eq!(parse_with(|s| s[1].len = u64::MAX), Err(Overflow(k)));
        assert_eq!(
            parse_with(|s| s[1].offset = u64::MAX - A + 1),
            Err(Overflow(k))
        );
        assert_eq!(
            parse_with(|s| s[4].len = 65),
            Err(OutOfBounds(Kind::Manifest))
        );
        assert_eq!(
            parse_with(|s| s[4].offset = 1 << 40),
            Err(OutOfBounds(Kind::Manifest))
        );
        assert_eq!(
            parse_with(|s| s[1].len = 2 * A + 1),
            Err(Overlap(Kind::Initramfs))
        );
        assert_eq!(parse_with(|s| s.swap(1, 2)), Err(Overlap(Kind::Kernel)));
        assert_eq!(
            parse_with(|s| s[3].kind = Kind::Kernel),
            Err(DuplicateSection(k))
        );
        assert_eq!(
            parse_with(|s| s[3].kind = Kind::Stub),
            Err(DuplicateSection(Kind::Stub))
        );
        assert_eq!(
            parse_with(|s| s[0].kind = Kind::KernelInfo),
            Err(StubNotFirst)
        );
        assert_eq!(
            parse_with(|s| s[2].kind = Kind::KernelInfo),
            Err(MissingSection(Kind::Initramfs))
        );
        assert_eq!(
            parse_with(|s| s[3].kind = Kind::KernelInfo),
            Err(TooLarge(Kind::KernelInfo))
        );
        assert_eq!(
            parse_with(|s| s[2].kind = Kind::Rootfs),
            Err(DuplicateSection(Kind::Rootfs))
        );
        assert_eq!(
            parse_with(|s| s[4].len = crate::config::MAX_CONFIG_LEN as u64 + 1),
            Err(TooLarge(Kind::Manifest))
        );
    }

    #[test]
    fn header_checks() {
        use ImageError::*;
        let (s, len) = layout();
        let good = Image::encode(&s, len).expect("valid");
        let reseal = |edit: &dyn Fn(&mut [u8; TRAILER_LEN])| {
            let mut t = good;
            edit(&mut t);
            seal(&mut t);
            Image::parse(&t, len)
        };
        assert_eq!(Image::parse(&good, len + 1), Err(LengthMismatch));
        assert_eq!(Image::parse(&good, len - 1), Err(LengthMismatch));
        assert_eq!(Image::parse(&good, 10), Err(TooSmall));
        assert_eq!(reseal(&|t| t[0] = b'X'), Err(BadMagic));
        assert_eq!(reseal(&|t| t[8] = 2), Err(UnsupportedVersion(2)));
        assert_eq!(reseal(&|t| t[12] = 0), Err(BadCount));
        assert_eq!(reseal(&|t| t[12] = 9), Err(BadCount));
        assert_eq!(reseal(&|t| t[15] = 0x80), Err(BadCount));
        assert_eq!(reseal(&|t| t[12] = 4), Err(BadReserved));
        assert_eq!(reseal(&|t| t[25] = 1), Err(BadReserved));
        assert_eq!(
            reseal(&|t| t[HEADER_LEN + 4 * ENTRY_LEN] = 10),
            Err(UnknownKind(10))
        );
        assert_eq!(
            reseal(&|t| t[HEADER_LEN + 2 * ENTRY_LEN] = 7),
            Err(SignatureNotLast)
        );
        assert_eq!(
            reseal(&|t| t[HEADER_LEN + 7 * ENTRY_LEN + 63] = 1),
            Err(BadReserved)
        );
        assert_eq!(reseal(&|t| t[HEADER_LEN] = 0), Err(UnknownKind(0)));
        let mut t = good;
        t[100] ^= 1;
        assert_eq!(Image::parse(&t, len), Err(BadChecksum));
    }

    #[test]
    fn missing_required_sections_are_named() {
        let (s, len) = layout();
        let without = [s[0], s[1], s[2], s[3]];
        let t = encode_unchecked(&without, len).expect("fits");
        assert_eq!(
            Image::parse(&t, len),
            Err(ImageError::MissingSection(Kind::Manifest))
        );
        let only_stub = [s[0]];
        let t = encode_unchecked(&only_stub, len).expect("fits");
        assert_eq!(
            Image::parse(&t, len),
            Err(ImageError::MissingSection(Kind::Kernel))
        );
    }

    #[test]
    fn every_bit_flip_is_refused() {
        let (s, len) = layout();
        let good = Image::encode(&s, len).expect("valid");
        for bit in 0..TRAILER_LEN * 8 {
            let mut t = good;
            t[bit / 8] ^= 1 << (bit % 8);
            let err = Image::parse(&t, len).expect_err("flip must be caught");
            assert!(!err.message().is_empty());
        }
    }

    #[test]
    fn fast_digest_check_names_the_section() {
        let data = b"kernel bytes";
        let s = Section {
            fast_digest: xxh64(data),
            ..sec(Kind::Kernel, 0, data.len() as u64)
        };
        assert_eq!(s.check_fast(data), Ok(()));
        assert_eq!(
            s.check_fast(b"kernel bytez"),
            Err(ImageError::DigestMismatch(Kind::Kernel))
        );
        assert_eq!(
            s.check_fast(b"kernel"),
            Err(ImageError::DigestMismatch(Kind::Kernel))
        );
        let e = std::format!("{}", ImageError::DigestMismatch(Kind::Kernel));
        assert_eq!(e, "image: section digest mismatch (corrupted): kernel");
    }
}
