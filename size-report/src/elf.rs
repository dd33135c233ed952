//! A small ELF64 little-endian reader: section table, symbol table and the
//! file ranges the headers cover. Input is untrusted: every offset and count
//! is checked against the file before it is read.

use std::fmt;

/// Why a file is not a readable ELF64 little-endian file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfError(pub String);

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, ElfError> {
    Err(ElfError(msg.into()))
}

const EHDR_LEN: usize = 64;
const SHDR_LEN: usize = 64;
const PHDR_LEN: usize = 56;
const SYM_LEN: usize = 24;
const PT_LOAD: u32 = 1;
const SHT_SYMTAB: u32 = 2;
const SHT_NOBITS: u32 = 8;
const SHF_ALLOC: u64 = 2;
const STT_OBJECT: u8 = 1;
const STT_FUNC: u8 = 2;
const SHN_XINDEX: u16 = 0xffff;
/// Ceilings that keep a hostile header from making us allocate gigabytes.
const MAX_SECTIONS: usize = 65_536;
const MAX_SYMBOLS: usize = 4_000_000;

/// One entry of the section header table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub kind: u32,
    pub flags: u64,
    pub addr: u64,
    pub offset: u64,
    pub size: u64,
}

impl Section {
    /// Bytes the section occupies in the file (`.bss` occupies none).
    pub fn file_size(&self) -> u64 {
        if self.kind == SHT_NOBITS {
            0
        } else {
            self.size
        }
    }

    /// Whether the section is loaded into memory at run time.
    pub fn is_alloc(&self) -> bool {
        self.flags & SHF_ALLOC != 0
    }
}

/// A function or data object from `.symtab`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    /// The raw (mangled) name.
    pub name: String,
    pub addr: u64,
    pub size: u64,
    pub is_func: bool,
    /// Index of the section the symbol lives in (`st_shndx`).
    pub section: u16,
}

/// What `parse` learns about an ELF file.
#[derive(Debug, Clone)]
pub struct Elf {
    pub file_len: u64,
    pub phoff: u64,
    pub phnum: u64,
    pub shoff: u64,
    pub shnum: u64,
    /// File bytes of the `PT_LOAD` segments: what a loader copies or maps.
    /// The rest of the file (symbols, alignment gaps) is never loaded.
    pub loaded: u64,
    pub sections: Vec<Section>,
    /// Empty when the file is stripped (no `.symtab`).
    pub symbols: Vec<Symbol>,
}

/// True when `data` starts with the ELF magic (whatever its class).
pub fn is_elf(data: &[u8]) -> bool {
    data.starts_with(b"\x7fELF")
}

fn u16_at(d: &[u8], off: usize) -> Result<u16, ElfError> {
    match d.get(off..off.wrapping_add(2)) {
        Some(b) => Ok(u16::from_le_bytes([b[0], b[1]])),
        None => err(format!("truncated at byte {off}")),
    }
}

fn u32_at(d: &[u8], off: usize) -> Result<u32, ElfError> {
    match d.get(off..off.wrapping_add(4)).and_then(|b| b.try_into().ok()) {
        Some(b) => Ok(u32::from_le_bytes(b)),
        None => err(format!("truncated at byte {off}")),
    }
}

fn u64_at(d: &[u8], off: usize) -> Result<u64, ElfError> {
    match d.get(off..off.wrapping_add(8)).and_then(|b| b.try_into().ok()) {
        Some(b) => Ok(u64::from_le_bytes(b)),
        None => err(format!("truncated at byte {off}")),
    }
}

/// `offset + count * entry` bytes must lie inside the file.
fn table(d: &[u8], what: &str, offset: u64, count: u64, entry: usize) -> Result<usize, ElfError> {
    let end = count
        .checked_mul(entry as u64)
        .and_then(|n| n.checked_add(offset))
        .filter(|&end| end <= d.len() as u64);
    match (end, usize::try_from(offset)) {
        (Some(_), Ok(off)) => Ok(off),
        _ => err(format!("{what} ({count} entries at offset {offset}) extends past the end of the file")),
    }
}

/// NUL-terminated string at `off` of the string table `strtab`.
fn c_str(strtab: &[u8], off: u32) -> String {
    let tail = strtab.get(off as usize..).unwrap_or(&[]);
    let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
    String::from_utf8_lossy(&tail[..end]).into_owned()
}

fn section_bytes<'a>(d: &'a [u8], s: &Section) -> Result<&'a [u8], ElfError> {
    let range = usize::try_from(s.offset)
        .ok()
        .zip(usize::try_from(s.size).ok())
        .and_then(|(o, n)| Some(o..o.checked_add(n)?));
    match range.and_then(|r| d.get(r)) {
        Some(b) => Ok(b),
        None => err(format!("section {:?} extends past the end of the file", s.name)),
    }
}

/// Parses an ELF64 little-endian file.
pub fn parse(d: &[u8]) -> Result<Elf, ElfError> {
    if !is_elf(d) {
        return err("not an ELF file (bad magic)");
    }
    if d.len() < EHDR_LEN {
        return err("truncated ELF header");
    }
    if d[4] != 2 || d[5] != 1 {
        return err("only 64-bit little-endian ELF files are supported");
    }
    let phoff = u64_at(d, 32)?;
    let shoff = u64_at(d, 40)?;
    let phentsize = u16_at(d, 54)?;
    let phnum = u64::from(u16_at(d, 56)?);
    let shentsize = u16_at(d, 58)?;
    let mut shnum = u64::from(u16_at(d, 60)?);
    let mut shstrndx = u32::from(u16_at(d, 62)?);
    if phnum > 0 && usize::from(phentsize) != PHDR_LEN {
        return err(format!("unexpected program header size {phentsize}"));
    }
    let ph = table(d, "program header table", phoff, phnum, PHDR_LEN)?;
    let mut loaded = 0u64;
    for i in 0..usize::from(u16_at(d, 56)?) {
        let h = ph + i * PHDR_LEN;
        if u32_at(d, h)? == PT_LOAD {
            loaded = loaded.saturating_add(u64_at(d, h + 32)?);
        }
    }

    let mut sections = Vec::new();
    if shoff != 0 {
        if usize::from(shentsize) != SHDR_LEN {
            return err(format!("unexpected section header size {shentsize}"));
        }
        let first = table(d, "section header table", shoff, 1, SHDR_LEN)?;
        // Extended numbering: the real counts live in section 0.
        if shnum == 0 {
            shnum = u64_at(d, first + 32)?;
        }
        if shstrndx == u32::from(SHN_XINDEX) {
            shstrndx = u32_at(d, first + 40)?;
        }
        if shnum > MAX_SECTIONS as u64 {
            return err(format!("{shnum} sections is more than the {MAX_SECTIONS} supported"));
        }
        let base = table(d, "section header table", shoff, shnum, SHDR_LEN)?;
        // shnum <= MAX_SECTIONS, checked above.
        for i in 0..usize::try_from(shnum).unwrap_or(0) {
            let h = base + i * SHDR_LEN;
            sections.push(Section {
                name: String::new(),
                kind: u32_at(d, h + 4)?,
                flags: u64_at(d, h + 8)?,
                addr: u64_at(d, h + 16)?,
                offset: u64_at(d, h + 24)?,
                size: u64_at(d, h + 32)?,
            });
        }
        for s in &sections {
            if s.file_size() > 0 {
                section_bytes(d, s)?;
            }
        }
        let names = match sections.get(shstrndx as usize) {
            Some(s) if shstrndx != 0 => section_bytes(d, s)?.to_vec(),
            _ => Vec::new(),
        };
        for (i, s) in sections.iter_mut().enumerate() {
            s.name = c_str(&names, u32_at(d, base + i * SHDR_LEN)?);
        }
    }
    let symbols = read_symbols(d, &sections, base_links(d, shoff, &sections)?)?;
    Ok(Elf { file_len: d.len() as u64, phoff, phnum, shoff, shnum, loaded, sections, symbols })
}

/// `sh_link` of every section (the symbol table names its string table there).
fn base_links(d: &[u8], shoff: u64, sections: &[Section]) -> Result<Vec<u32>, ElfError> {
    let Ok(base) = usize::try_from(shoff) else { return Ok(Vec::new()) };
    (0..sections.len()).map(|i| u32_at(d, base + i * SHDR_LEN + 40)).collect()
}

fn read_symbols(d: &[u8], sections: &[Section], links: Vec<u32>) -> Result<Vec<Symbol>, ElfError> {
    let Some(i) = sections.iter().position(|s| s.kind == SHT_SYMTAB) else {
        return Ok(Vec::new());
    };
    let symtab = section_bytes(d, &sections[i])?;
    let strtab = match links.get(i).and_then(|&l| sections.get(l as usize)) {
        Some(s) => section_bytes(d, s)?,
        None => return err("symbol table links to a missing string table"),
    };
    let count = symtab.len() / SYM_LEN;
    if count > MAX_SYMBOLS {
        return err(format!("{count} symbols is more than the {MAX_SYMBOLS} supported"));
    }
    let mut out = Vec::new();
    for i in 0..count {
        let s = i * SYM_LEN;
        let kind = symtab[s + 4] & 0xf;
        let size = u64_at(symtab, s + 16)?;
        if (kind == STT_FUNC || kind == STT_OBJECT) && size > 0 {
            out.push(Symbol {
                name: c_str(strtab, u32_at(symtab, s)?),
                addr: u64_at(symtab, s + 8)?,
                size,
                is_func: kind == STT_FUNC,
                section: u16_at(symtab, s + 6)?,
            });
        }
    }
    Ok(out)
}

impl Elf {
    /// Symbols whose bytes are in the file (not in `.bss`-like sections).
    pub fn file_symbols(&self) -> impl Iterator<Item = &Symbol> {
        self.symbols.iter().filter(|s| self.sections.get(usize::from(s.section)).is_some_and(|sec| sec.file_size() > 0))
    }

    /// True when the file has no symbol table (cargo's `strip = true`).
    pub fn is_stripped(&self) -> bool {
        !self.sections.iter().any(|s| s.kind == SHT_SYMTAB)
    }

    /// Length of the ELF as the headers describe it: the end of the last
    /// header table or section. An image holds the stub's bytes up to here.
    pub fn extent(&self) -> u64 {
        let mut end = EHDR_LEN as u64;
        end = end.max(self.phoff + self.phnum * PHDR_LEN as u64);
        if self.shoff != 0 {
            end = end.max(self.shoff + self.shnum * SHDR_LEN as u64);
        }
        for s in &self.sections {
            end = end.max(s.offset + s.file_size());
        }
        end
    }

    /// Splits the whole file into labelled, non-overlapping byte ranges that
    /// add up to the file length exactly: headers, each section's contents,
    /// and "padding" for bytes nothing claims.
    pub fn file_parts(&self) -> Vec<(String, u64)> {
        let mut ranges: Vec<(u64, u64, String)> = vec![(0, EHDR_LEN as u64, "ELF header".into())];
        if self.phnum > 0 {
            ranges.push((self.phoff, self.phnum * PHDR_LEN as u64, "program headers".into()));
        }
        if self.shoff != 0 && self.shnum > 0 {
            ranges.push((self.shoff, self.shnum * SHDR_LEN as u64, "section headers".into()));
        }
        for s in &self.sections {
            if s.file_size() > 0 {
                let name = if s.name.is_empty() { "(unnamed section)".into() } else { s.name.clone() };
                ranges.push((s.offset, s.file_size(), name));
            }
        }
        ranges.sort_by_key(|r| r.0);
        let mut parts: Vec<(String, u64)> = Vec::new();
        let mut add = |name: &str, n: u64| {
            if n == 0 {
                return;
            }
            match parts.iter_mut().find(|p| p.0 == name) {
                Some(p) => p.1 += n,
                None => parts.push((name.to_string(), n)),
            }
        };
        let mut pos = 0u64;
        for (start, len, name) in ranges {
            let end = start.saturating_add(len).min(self.file_len);
            if start > pos {
                add("padding", start - pos);
                pos = start;
            }
            // Bytes already claimed by an earlier range count once.
            if end > pos {
                add(&name, end - pos);
                pos = end;
            }
        }
        add("padding", self.file_len.saturating_sub(pos));
        parts
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a minimal ELF64 with the given (name, type, flags, contents)
    /// sections plus `.shstrtab`, and optionally a `.symtab`/`.strtab` with
    /// the given (name, size, is_func) symbols.
    pub fn build(sections: &[(&str, u32, u64, &[u8])], symbols: Option<&[(&str, u64, bool)]>) -> Vec<u8> {
        let mut data = vec![0u8; EHDR_LEN];
        let mut shdrs: Vec<(u32, u32, u64, u64, u64, u32)> = vec![(0, 0, 0, 0, 0, 0)];
        let mut shstr = vec![0u8];
        let name = |shstr: &mut Vec<u8>, n: &str| {
            let off = shstr.len() as u32;
            shstr.extend_from_slice(n.as_bytes());
            shstr.push(0);
            off
        };
        let mut sizes = vec![0u64];
        let mut addr = 0x40_1000u64;
        let mut text_addr = 0;
        for (n, kind, flags, bytes) in sections {
            let off = data.len() as u64;
            if *kind != SHT_NOBITS {
                data.extend_from_slice(bytes);
            }
            if *n == ".text" {
                text_addr = addr;
            }
            let nm = name(&mut shstr, n);
            shdrs.push((nm, *kind, *flags, addr, off, 0));
            sizes.push(bytes.len() as u64);
            addr += bytes.len() as u64;
        }
        if let Some(syms) = symbols {
            let mut strtab = vec![0u8];
            let mut symtab = vec![0u8; SYM_LEN];
            let mut a = text_addr;
            for (n, size, func) in syms {
                let off = strtab.len() as u32;
                strtab.extend_from_slice(n.as_bytes());
                strtab.push(0);
                symtab.extend_from_slice(&off.to_le_bytes());
                symtab.push(if *func { STT_FUNC } else { STT_OBJECT });
                symtab.push(0);
                symtab.extend_from_slice(&1u16.to_le_bytes());
                symtab.extend_from_slice(&a.to_le_bytes());
                symtab.extend_from_slice(&size.to_le_bytes());
                a += size;
            }
            let strtab_index = shdrs.len() as u32 + 1;
            let nm = name(&mut shstr, ".symtab");
            shdrs.push((nm, SHT_SYMTAB, 0, 0, data.len() as u64, strtab_index));
            sizes.push(symtab.len() as u64);
            data.extend_from_slice(&symtab);
            let nm = name(&mut shstr, ".strtab");
            shdrs.push((nm, 3, 0, 0, data.len() as u64, 0));
            sizes.push(strtab.len() as u64);
            data.extend_from_slice(&strtab);
        }
        let nm = name(&mut shstr, ".shstrtab");
        shdrs.push((nm, 3, 0, 0, data.len() as u64, 0));
        sizes.push(shstr.len() as u64);
        data.extend_from_slice(&shstr);
        while !data.len().is_multiple_of(8) {
            data.push(0);
        }
        let shoff = data.len() as u64;
        for (i, (nm, kind, flags, addr, off, link)) in shdrs.iter().enumerate() {
            let mut h = [0u8; SHDR_LEN];
            h[0..4].copy_from_slice(&nm.to_le_bytes());
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[8..16].copy_from_slice(&flags.to_le_bytes());
            h[16..24].copy_from_slice(&addr.to_le_bytes());
            h[24..32].copy_from_slice(&off.to_le_bytes());
            h[32..40].copy_from_slice(&sizes[i].to_le_bytes());
            h[40..44].copy_from_slice(&link.to_le_bytes());
            data.extend_from_slice(&h);
        }
        data[0..4].copy_from_slice(b"\x7fELF");
        data[4] = 2;
        data[5] = 1;
        data[6] = 1;
        data[40..48].copy_from_slice(&shoff.to_le_bytes());
        data[52..54].copy_from_slice(&(EHDR_LEN as u16).to_le_bytes());
        data[54..56].copy_from_slice(&(PHDR_LEN as u16).to_le_bytes());
        data[58..60].copy_from_slice(&(SHDR_LEN as u16).to_le_bytes());
        data[60..62].copy_from_slice(&(shdrs.len() as u16).to_le_bytes());
        data[62..64].copy_from_slice(&((shdrs.len() - 1) as u16).to_le_bytes());
        data
    }

    #[test]
    fn sections_symbols_and_parts_add_up() {
        let text = [0x90u8; 100];
        let elf = build(
            &[(".text", 1, SHF_ALLOC | 4, &text), (".rodata", 1, SHF_ALLOC, b"hello"), (".bss", SHT_NOBITS, SHF_ALLOC | 1, &[0; 32])],
            Some(&[("_ZN4core3fmt5write17h0123456789abcdefE", 60, true), ("main", 40, true)]),
        );
        let e = parse(&elf).expect("valid elf");
        assert!(!e.is_stripped());
        let names: Vec<&str> = e.sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["", ".text", ".rodata", ".bss", ".symtab", ".strtab", ".shstrtab"]);
        assert_eq!(e.sections[3].file_size(), 0);
        assert_eq!(e.symbols.len(), 2);
        assert_eq!(e.symbols[0].size, 60);
        let parts = e.file_parts();
        assert_eq!(parts.iter().map(|p| p.1).sum::<u64>(), elf.len() as u64);
        assert!(parts.contains(&(".text".to_string(), 100)));
        assert_eq!(e.extent(), elf.len() as u64);
    }

    #[test]
    fn loaded_counts_pt_load_file_bytes() {
        let mut elf = build(&[(".text", 1, SHF_ALLOC | 4, &[0; 100])], None);
        let phoff = elf.len() as u64;
        for (kind, filesz) in [(PT_LOAD, 100u64), (4, 7), (PT_LOAD, 20)] {
            let mut h = [0u8; PHDR_LEN];
            h[0..4].copy_from_slice(&kind.to_le_bytes());
            h[32..40].copy_from_slice(&filesz.to_le_bytes());
            elf.extend_from_slice(&h);
        }
        elf[32..40].copy_from_slice(&phoff.to_le_bytes());
        elf[56..58].copy_from_slice(&3u16.to_le_bytes());
        let e = parse(&elf).expect("valid elf");
        assert_eq!(e.loaded, 120);
        assert_eq!(e.extent(), elf.len() as u64);
        let parts = e.file_parts();
        assert_eq!(parts.iter().map(|p| p.1).sum::<u64>(), elf.len() as u64);
        assert!(parts.contains(&("program headers".to_string(), 3 * PHDR_LEN as u64)));
        elf[56..58].copy_from_slice(&4u16.to_le_bytes());
        assert!(parse(&elf).is_err(), "4th program header is past the end");
    }

    #[test]
    fn stripped_file_has_no_symbols() {
        let elf = build(&[(".text", 1, SHF_ALLOC | 4, &[1, 2, 3])], None);
        let e = parse(&elf).expect("valid elf");
        assert!(e.is_stripped());
        assert!(e.symbols.is_empty());
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse(b"hello").is_err());
        assert!(parse(b"\x7fELF").is_err());
        let elf = build(&[(".text", 1, SHF_ALLOC | 4, &[1, 2, 3])], None);
        for cut in [10, 63, 64, elf.len() - 1] {
            assert!(parse(&elf[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = elf.clone();
        bad[4] = 1; // 32-bit
        assert!(parse(&bad).unwrap_err().0.contains("64-bit"));
        let mut huge = elf.clone();
        huge[40..48].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(parse(&huge).is_err());
    }

    #[test]
    fn overlapping_sections_count_once() {
        let elf = build(&[(".text", 1, SHF_ALLOC | 4, &[0; 64])], None);
        let mut e = parse(&elf).expect("valid elf");
        e.sections.push(Section { name: ".alias".into(), kind: 1, flags: 0, addr: 0, offset: 64, size: 32 });
        let parts = e.file_parts();
        assert_eq!(parts.iter().map(|p| p.1).sum::<u64>(), elf.len() as u64);
    }
}
