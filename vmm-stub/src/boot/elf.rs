//! ELF64 `vmlinux` (and the bare-metal test guests): the `PT_LOAD` segments
//! and the entry point, validated as untrusted input. The ELF entry of
//! vmlinux is `phys_startup_64`, the 64-bit boot protocol's entry.

/// Bytes of the file the parser looks at: the ELF header and the program
/// headers must lie inside this prefix (vmlinux: 64 + 4 × 56 bytes).
pub const HEAD_LEN: usize = 4096;
/// Most `PT_LOAD` segments accepted.
pub const MAX_SEGMENTS: usize = 8;

const PT_LOAD: u32 = 1;
const PHDR_LEN: usize = 56;

/// One `PT_LOAD` segment: `file_len` bytes from `offset` in the kernel file
/// go to guest physical `addr`, followed by `mem_len - file_len` zero bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub offset: u64,
    pub addr: u64,
    pub file_len: u64,
    pub mem_len: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Elf {
    pub entry: u64,
    pub segments: heapless::Vec<Segment, MAX_SEGMENTS>,
}

impl Elf {
    /// One past the highest guest address any segment occupies.
    pub fn end(&self) -> u64 {
        // `parse` checked that no segment's range wraps.
        self.segments.iter().map(|s| s.addr.wrapping_add(s.mem_len)).max().unwrap_or(0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    NotElf,
    /// Not a little-endian x86_64 executable.
    WrongKind,
    /// Program headers missing or outside the first 4 KiB.
    BadHeaders,
    TooManySegments,
    /// A segment's file range leaves the file, its memory range wraps,
    /// lies below `min_addr`, or overlaps another segment.
    BadSegment,
    /// The entry point is not inside a loaded segment.
    BadEntry,
}

impl ElfError {
    pub fn message(self) -> &'static str {
        match self {
            ElfError::NotElf => "kernel: not an ELF file",
            ElfError::WrongKind => "kernel: not an x86_64 little-endian ELF executable",
            ElfError::BadHeaders => "kernel: ELF program headers missing or out of range",
            ElfError::TooManySegments => "kernel: too many ELF load segments",
            ElfError::BadSegment => "kernel: ELF load segment out of range or overlapping",
            ElfError::BadEntry => "kernel: ELF entry point outside the loaded segments",
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Whether `head` starts like an ELF file.
pub fn is_elf(head: &[u8]) -> bool {
    head.starts_with(b"\x7fELF")
}

/// Parses the first bytes `head` of a `file_len`-byte kernel file. Segments
/// must lie in `[min_addr, max_addr)` of guest memory.
pub fn parse(head: &[u8], file_len: u64, min_addr: u64, max_addr: u64) -> Result<Elf, ElfError> {
    if !is_elf(head) {
        return Err(ElfError::NotElf);
    }
    // ELFCLASS64, ELFDATA2LSB, EV_CURRENT; ET_EXEC; EM_X86_64.
    let ident_ok = head.get(4..7) == Some(&[2, 1, 1][..]);
    if !ident_ok || u16_at(head, 16) != Some(2) || u16_at(head, 18) != Some(62) {
        return Err(ElfError::WrongKind);
    }
    let bad = ElfError::BadHeaders;
    let entry = u64_at(head, 24).ok_or(bad)?;
    let phoff = usize::try_from(u64_at(head, 32).ok_or(bad)?).map_err(|_| bad)?;
    let phentsize = usize::from(u16_at(head, 54).ok_or(bad)?);
    let phnum = usize::from(u16_at(head, 56).ok_or(bad)?);
    if phentsize != PHDR_LEN || phnum == 0 {
        return Err(bad);
    }
    let table_end = phnum.checked_mul(PHDR_LEN).and_then(|n| n.checked_add(phoff)).ok_or(bad)?;
    let table = head.get(phoff..table_end).ok_or(bad)?;

    let mut segments = heapless::Vec::new();
    for ph in table.chunks_exact(PHDR_LEN) {
        if u32_at(ph, 0) != Some(PT_LOAD) {
            continue;
        }
        let seg = Segment {
            offset: u64_at(ph, 8).ok_or(bad)?,
            addr: u64_at(ph, 24).ok_or(bad)?, // p_paddr: physical load address
            file_len: u64_at(ph, 32).ok_or(bad)?,
            mem_len: u64_at(ph, 40).ok_or(bad)?,
        };
        check_segment(&seg, file_len, min_addr, max_addr)?;
        if segments.iter().any(|s: &Segment| overlaps(s, &seg)) {
            return Err(ElfError::BadSegment);
        }
        segments.push(seg).map_err(|_| ElfError::TooManySegments)?;
    }
    if segments.is_empty() {
        return Err(bad);
    }
    if !segments.iter().any(|s| entry >= s.addr && entry - s.addr < s.file_len) {
        return Err(ElfError::BadEntry);
    }
    Ok(Elf { entry, segments })
}

fn check_segment(s: &Segment, file_len: u64, min_addr: u64, max_addr: u64) -> Result<(), ElfError> {
    let file_end = s.offset.checked_add(s.file_len);
    let mem_end = s.addr.checked_add(s.mem_len);
    match (file_end, mem_end) {
        (Some(fe), Some(me))
            if fe <= file_len && s.file_len <= s.mem_len && s.addr >= min_addr && me <= max_addr =>
        {
            Ok(())
        }
        _ => Err(ElfError::BadSegment),
    }
}

fn overlaps(a: &Segment, b: &Segment) -> bool {
    // Both ranges were checked not to wrap.
    a.addr < b.addr.wrapping_add(b.mem_len) && b.addr < a.addr.wrapping_add(a.mem_len)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ELF header + program headers for tests.
    pub fn build(entry: u64, segs: &[(u32, Segment)]) -> std::vec::Vec<u8> {
        let mut h = std::vec![0u8; 64 + segs.len() * PHDR_LEN];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4..7].copy_from_slice(&[2, 1, 1]);
        h[16..18].copy_from_slice(&2u16.to_le_bytes());
        h[18..20].copy_from_slice(&62u16.to_le_bytes());
        h[24..32].copy_from_slice(&entry.to_le_bytes());
        h[32..40].copy_from_slice(&64u64.to_le_bytes());
        h[54..56].copy_from_slice(&(PHDR_LEN as u16).to_le_bytes());
        h[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        for (i, (ty, s)) in segs.iter().enumerate() {
            let p = &mut h[64 + i * PHDR_LEN..];
            p[0..4].copy_from_slice(&ty.to_le_bytes());
            p[8..16].copy_from_slice(&s.offset.to_le_bytes());
            p[16..24].copy_from_slice(&(s.addr | 0xffff_ffff_8000_0000).to_le_bytes());
            p[24..32].copy_from_slice(&s.addr.to_le_bytes());
            p[32..40].copy_from_slice(&s.file_len.to_le_bytes());
            p[40..48].copy_from_slice(&s.mem_len.to_le_bytes());
        }
        h
    }

    const TEXT: Segment = Segment { offset: 0x1000, addr: 0x100_0000, file_len: 0x3000, mem_len: 0x3000 };
    const BSS: Segment = Segment { offset: 0x4000, addr: 0x100_4000, file_len: 0x10, mem_len: 0x9000 };

    #[test]
    fn parses_load_segments_like_vmlinux() {
        let h = build(0x100_0000, &[(PT_LOAD, TEXT), (4, BSS), (PT_LOAD, BSS)]);
        let elf = parse(&h, 0x5000, 0x10_0000, 1 << 30).expect("valid");
        assert_eq!(elf.entry, 0x100_0000);
        assert_eq!(elf.segments.as_slice(), &[TEXT, BSS]);
        assert_eq!(elf.end(), 0x100_d000);
    }

    #[test]
    fn hostile_headers_are_refused() {
        let ok = |h: &[u8]| parse(h, 0x5000, 0x10_0000, 1 << 30);
        assert_eq!(ok(b"MZ\0\0"), Err(ElfError::NotElf));
        let mut h = build(0x100_0000, &[(PT_LOAD, TEXT)]);
        h[18] = 3;
        assert_eq!(ok(&h), Err(ElfError::WrongKind));
        let mut h = build(0x100_0000, &[(PT_LOAD, TEXT)]);
        h[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(ok(&h), Err(ElfError::BadHeaders));
        let mut h = build(0x100_0000, &[(PT_LOAD, TEXT)]);
        h[56..58].copy_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(ok(&h), Err(ElfError::BadHeaders));
        // File range past EOF, memory wrapping, below the floor, above RAM.
        for s in [
            Segment { offset: 0x4fff, ..TEXT },
            Segment { offset: u64::MAX, ..TEXT },
            Segment { addr: u64::MAX - 0x10, ..TEXT },
            Segment { addr: 0x7000, ..TEXT },
            Segment { addr: (1 << 30) - 0x1000, ..TEXT },
            Segment { mem_len: 0x10, ..TEXT },
        ] {
            assert_eq!(ok(&build(s.addr, &[(PT_LOAD, s)])), Err(ElfError::BadSegment), "{s:?}");
        }
        let overlapping = Segment { addr: 0x100_2000, ..BSS };
        assert_eq!(ok(&build(0x100_0000, &[(PT_LOAD, TEXT), (PT_LOAD, overlapping)])),
                   Err(ElfError::BadSegment));
        assert_eq!(ok(&build(0x100_3000, &[(PT_LOAD, TEXT)])), Err(ElfError::BadEntry));
        let many = [(PT_LOAD, TEXT); 1];
        let mut segs = many.to_vec();
        for i in 1..=MAX_SEGMENTS as u64 {
            segs.push((PT_LOAD, Segment { addr: 0x100_0000 + i * 0x4000, ..TEXT }));
        }
        assert_eq!(ok(&build(0x100_0000, &segs)), Err(ElfError::TooManySegments));
    }
}
