//! Section sizes and largest symbols of an ELF file, like cargo-bloat.
//! Release builds are stripped (`strip = true`), so symbols come from an
//! unstripped build of the same code given with `--symbols-from`; it is used
//! only when its loaded sections match the shipped file's exactly.

use crate::elf::{self, Elf};
use crate::report::{Binary, SectionSize, SymbolSize};

/// An unstripped ELF offered as a symbol source.
pub struct SymbolSource {
    pub path: String,
    pub elf: Elf,
}

/// Loaded sections as (name, address, size): equal for a stripped file and
/// the unstripped build it came from, different for any other build.
fn layout(e: &Elf) -> Vec<(&str, u64, u64)> {
    e.sections.iter().filter(|s| s.is_alloc()).map(|s| (s.name.as_str(), s.addr, s.size)).collect()
}

/// Whether `source`'s symbols describe `shipped`.
pub fn matches(shipped: &Elf, source: &Elf) -> bool {
    !source.is_stripped() && !layout(shipped).is_empty() && layout(shipped) == layout(source)
}

/// Describes the ELF `e` (`size` bytes, labelled `label`), taking symbols
/// from `e` itself or from the first matching entry of `sources`.
pub fn describe(label: &str, e: &Elf, own_path: &str, sources: &[SymbolSource], top: usize) -> Binary {
    let sections = e
        .sections
        .iter()
        .filter(|s| !s.name.is_empty() && (s.file_size() > 0 || s.is_alloc()))
        .map(|s| SectionSize {
            name: s.name.clone(),
            file_size: s.file_size(),
            mem_size: if s.is_alloc() { s.size } else { 0 },
        })
        .collect();
    let (symbols_from, with_symbols) = if !e.is_stripped() {
        (Some(own_path.to_string()), e)
    } else {
        match sources.iter().find(|s| matches(e, &s.elf)) {
            Some(s) => (Some(s.path.clone()), &s.elf),
            None => (None, e),
        }
    };
    // Zero-initialised data takes memory but no file bytes: leave it out.
    let syms: Vec<&elf::Symbol> = with_symbols.file_symbols().collect();
    let (symbols, crates) = largest(&syms, top);
    Binary {
        label: label.into(),
        size: e.file_len,
        loaded: e.loaded,
        stripped: e.is_stripped(),
        symbols_from,
        sections,
        symbols,
        crates,
    }
}

/// The `top` largest symbols (aliases at one address counted once) and the
/// `top` crates by total symbol size, both biggest first.
fn largest(syms: &[&elf::Symbol], top: usize) -> (Vec<SymbolSize>, Vec<SymbolSize>) {
    let mut unique: Vec<&elf::Symbol> = syms.to_vec();
    unique.sort_by(|a, b| a.addr.cmp(&b.addr).then(b.size.cmp(&a.size)).then(a.name.cmp(&b.name)));
    unique.dedup_by_key(|s| s.addr);
    let mut named: Vec<SymbolSize> =
        unique.iter().map(|s| SymbolSize { name: demangle(&s.name), size: s.size }).collect();
    let mut crates: Vec<SymbolSize> = Vec::new();
    for s in &named {
        let c = crate_of(&s.name);
        match crates.iter_mut().find(|e| e.name == c) {
            Some(e) => e.size += s.size,
            None => crates.push(SymbolSize { name: c, size: s.size }),
        }
    }
    let by_size = |a: &SymbolSize, b: &SymbolSize| b.size.cmp(&a.size).then(a.name.cmp(&b.name));
    named.sort_by(by_size);
    crates.sort_by(by_size);
    named.truncate(top);
    crates.truncate(top);
    (named, crates)
}

/// Rust names without their hash suffix; other names unchanged.
pub fn demangle(raw: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(raw))
}

/// The crate a demangled symbol belongs to, as cargo-bloat guesses it:
/// the first path segment, looking inside `<impl ...>` / `<T as Trait>`.
pub fn crate_of(name: &str) -> String {
    let inner = name.trim_start_matches('<').trim_start_matches('&').trim_start_matches("mut ");
    match inner.split_once("::") {
        Some((first, _)) if !first.is_empty() && first.chars().all(|c| c.is_alphanumeric() || c == '_') => {
            first.to_string()
        }
        _ => "[non-Rust]".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::tests::build;

    const TEXT: u32 = 1;
    const EXEC: u64 = 2 | 4;

    #[test]
    fn demangles_and_groups_by_crate() {
        assert_eq!(demangle("_ZN4core3fmt5write17h0123456789abcdefE"), "core::fmt::write");
        assert_eq!(demangle("memcpy"), "memcpy");
        assert_eq!(crate_of("core::fmt::write"), "core");
        assert_eq!(crate_of("<vmm_stub::Vm as core::ops::Drop>::drop"), "vmm_stub");
        assert_eq!(crate_of("memcpy"), "[non-Rust]");
    }

    #[test]
    fn symbols_from_matching_unstripped_build_only() {
        let text = [0u8; 100];
        let syms = [("_ZN8vmm_stub3run17h0123456789abcdefE", 70u64, true), ("_ZN4core3fmt5write17h0123456789abcdefE", 30, true)];
        let shipped = elf::parse(&build(&[(".text", TEXT, EXEC, &text)], None)).expect("elf");
        let full = elf::parse(&build(&[(".text", TEXT, EXEC, &text)], Some(&syms))).expect("elf");
        let other = elf::parse(&build(&[(".text", TEXT, EXEC, &text[..90])], Some(&syms))).expect("elf");
        let sources = [
            SymbolSource { path: "other".into(), elf: other },
            SymbolSource { path: "full".into(), elf: full },
        ];
        let b = describe("stub", &shipped, "shipped", &sources, 10);
        assert!(b.stripped);
        assert_eq!(b.symbols_from.as_deref(), Some("full"));
        assert_eq!(b.symbols[0], SymbolSize { name: "vmm_stub::run".into(), size: 70 });
        assert_eq!(b.crates[1], SymbolSize { name: "core".into(), size: 30 });
        let none = describe("stub", &shipped, "shipped", &sources[..1], 10);
        assert_eq!(none.symbols_from, None);
        assert!(none.symbols.is_empty());
        assert_eq!(none.sections[0], SectionSize { name: ".text".into(), file_size: 100, mem_size: 100 });
    }

    #[test]
    fn aliases_count_once_and_top_limits() {
        let text = [0u8; 100];
        let syms = [("a", 10u64, true), ("b", 20, true), ("c", 30, true)];
        let e = elf::parse(&build(&[(".text", TEXT, EXEC, &text)], Some(&syms))).expect("elf");
        let b = describe("x", &e, "x", &[], 2);
        assert_eq!(b.symbols.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["c", "b"]);
        let mut dup = e.clone();
        dup.symbols.push(elf::Symbol { name: "a_alias".into(), addr: e.symbols[0].addr, size: 10, is_func: true, section: 1 });
        assert_eq!(largest(&dup.symbols.iter().collect::<Vec<_>>(), 10).0.len(), 3);
    }
}
