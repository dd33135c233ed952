//! The builder's parsers of untrusted input: the tar reader (rootfs
//! tarballs, image layers), the JSON reader (image manifests and configs)
//! and the ELF reader of `--exec`. The first byte picks the parser; the
//! last choice builds a well-formed dynamic ELF from the input's strings
//! and checks that the reader gives them all back. The builder is a binary
//! crate, so its modules are included by path.
#![no_main]
#![allow(dead_code)]
use libfuzzer_sys::fuzz_target;

#[path = "../../builder/src/closure.rs"]
mod closure;
#[path = "../../builder/src/error.rs"]
mod error;
#[path = "../../builder/src/json.rs"]
mod json;
#[path = "../../builder/src/tar.rs"]
mod tar;

fuzz_target!(|data: &[u8]| {
    let Some((&which, input)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            let mut r = tar::TarReader::new(input);
            let mut out = Vec::new();
            while let Ok(Some(e)) = r.next_entry() {
                out.clear();
                if r.copy_data(&e, &mut out).is_err() {
                    break;
                }
                assert_eq!(out.len() as u64, e.size);
            }
        }
        1 => {
            let _ = json::Json::parse(input);
        }
        2 => {
            if let Some(elf) = closure::parse_elf(input) {
                assert!(closure::is_x86_64_elf(input));
                // Every name is a NUL-terminated string of the file; a path
                // list is split at every `:`.
                let names = elf.interp.iter().chain(&elf.needed).chain(&elf.rpath).chain(&elf.runpath);
                assert!(names.clone().all(|n| !n.contains('\0')), "{elf:?}");
                assert!(elf.rpath.iter().chain(&elf.runpath).all(|d| !d.contains(':')), "{elf:?}");
                assert_eq!(closure::parse_elf(input), Some(elf), "the reader is a pure function");
            }
        }
        _ => {
            let want = wanted_elf(input);
            let file = elf_file(&want);
            assert_eq!(closure::parse_elf(&file), Some(want));
        }
    }
});

/// What [`elf_file`] writes, from the input's strings (split at NUL and
/// `:`): the first is the interpreter, the rest are DT_NEEDED names and,
/// joined, one DT_RPATH and one DT_RUNPATH list.
fn wanted_elf(input: &[u8]) -> closure::Elf {
    let mut strings = input
        .split(|&b| b == 0 || b == b':')
        .take(12)
        .map(|s| String::from_utf8_lossy(s).into_owned());
    let interp = strings.next().filter(|s| !s.is_empty());
    let rest: Vec<String> = strings.collect();
    let half = rest.len() / 2;
    closure::Elf {
        interp,
        needed: rest.clone(),
        rpath: if rest.is_empty() { Vec::new() } else { rest[..half.max(1)].to_vec() },
        runpath: if rest.is_empty() { Vec::new() } else { rest[half..].to_vec() },
    }
}

/// A minimal x86-64 ELF: header, program headers (PT_INTERP, one PT_LOAD
/// mapping the whole file at 0x400000, PT_DYNAMIC), the interpreter path,
/// the string table and the dynamic section.
fn elf_file(e: &closure::Elf) -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    const PHDR: usize = 56;
    let phnum = 2 + usize::from(e.interp.is_some());
    let mut strtab = vec![0u8];
    let mut add = |s: &str| {
        let at = strtab.len() as u64;
        strtab.extend_from_slice(s.as_bytes());
        strtab.push(0);
        at
    };
    let mut dynamic: Vec<(u64, u64)> = e.needed.iter().map(|n| (1, add(n))).collect(); // DT_NEEDED
    if !e.rpath.is_empty() {
        dynamic.push((15, add(&e.rpath.join(":")))); // DT_RPATH
    }
    if !e.runpath.is_empty() {
        dynamic.push((29, add(&e.runpath.join(":")))); // DT_RUNPATH
    }
    let interp_at = 64 + phnum * PHDR;
    let interp_len = e.interp.as_ref().map_or(0, |i| i.len() + 1);
    let strtab_at = interp_at + interp_len;
    let dyn_at = (strtab_at + strtab.len()).next_multiple_of(8);
    dynamic.push((5, BASE + strtab_at as u64)); // DT_STRTAB
    dynamic.push((0, 0)); // DT_NULL
    let len = dyn_at + dynamic.len() * 16;

    let mut f = vec![0u8; 64];
    f[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
    f[16..18].copy_from_slice(&3u16.to_le_bytes()); // ET_DYN
    f[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[0x20..0x28].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    f[0x34..0x36].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    f[0x36..0x38].copy_from_slice(&(PHDR as u16).to_le_bytes());
    f[0x38..0x3a].copy_from_slice(&(phnum as u16).to_le_bytes());
    let mut phdr = |ty: u32, off: usize, size: usize| {
        let mut p = [0u8; PHDR];
        p[..4].copy_from_slice(&ty.to_le_bytes());
        p[8..16].copy_from_slice(&(off as u64).to_le_bytes());
        p[16..24].copy_from_slice(&(BASE + off as u64).to_le_bytes());
        p[24..32].copy_from_slice(&(BASE + off as u64).to_le_bytes());
        p[32..40].copy_from_slice(&(size as u64).to_le_bytes());
        p[40..48].copy_from_slice(&(size as u64).to_le_bytes());
        f.extend_from_slice(&p);
    };
    if e.interp.is_some() {
        phdr(3, interp_at, interp_len); // PT_INTERP
    }
    phdr(1, 0, len); // PT_LOAD
    phdr(2, dyn_at, dynamic.len() * 16); // PT_DYNAMIC
    if let Some(i) = &e.interp {
        f.extend_from_slice(i.as_bytes());
        f.push(0);
    }
    f.extend_from_slice(&strtab);
    f.resize(dyn_at, 0);
    for (tag, val) in dynamic {
        f.extend_from_slice(&tag.to_le_bytes());
        f.extend_from_slice(&val.to_le_bytes());
    }
    f
}
