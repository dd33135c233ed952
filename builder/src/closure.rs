//! `--exec`: a host program with everything the dynamic loader would load
//! for it: its ELF interpreter (`PT_INTERP`) and the closure of its
//! `DT_NEEDED` libraries, searched like ld.so does: `DT_RPATH` (when there
//! is no `DT_RUNPATH`), `DT_RUNPATH`, the directories of `/etc/ld.so.conf`,
//! then the default directories. `#!` scripts bring their interpreter.
//! glibc's own `dlopen` of `libgcc_s.so.1` (the unwinder behind
//! `pthread_exit` and `pthread_cancel`, which abort without it) is followed
//! too: a closure with `libc.so.6` gets `libgcc_s.so.1` from beside it.
//! Files the program opens at run time (Python's stdlib, data files) are
//! not found this way: add them with `--add HOST:GUEST`; the ELF objects
//! among them (extension modules, plugins) get their libraries packed the
//! same way (`Closure::add_loaded_by`).

use crate::bail;
use crate::error::{Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PT_LOAD: u32 = 1;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;
const EM_X86_64: u16 = 62;
/// Debian's ld.so searches these after ld.so.conf (multiarch first).
const DEFAULT_DIRS: [&str; 6] = [
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];
const MAX_FILES: usize = 4096;
/// A library that `dlopen`s another one unconditionally on a common path,
/// and the library it opens (looked up beside it, then in the default dirs).
const DLOPENED: [(&str, &str); 1] = [("libc.so.6", "libgcc_s.so.1")];

/// What the loader needs from one ELF file.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Elf {
    pub interp: Option<String>,
    pub needed: Vec<String>,
    pub rpath: Vec<String>,
    pub runpath: Vec<String>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}
fn idx(v: u64) -> Option<usize> {
    usize::try_from(v).ok()
}
fn cstr(b: &[u8], at: usize) -> Option<String> {
    let s = b.get(at..)?;
    let end = s.iter().position(|&c| c == 0)?;
    Some(String::from_utf8_lossy(&s[..end]).into_owned())
}

/// Whether `b` is a 64-bit little-endian x86-64 ELF file.
pub fn is_x86_64_elf(b: &[u8]) -> bool {
    b.starts_with(b"\x7fELF")
        && b.get(4) == Some(&2)
        && b.get(5) == Some(&1)
        && u16_at(b, 18) == Some(EM_X86_64)
}

/// Parses the program headers and the dynamic section; `None` if malformed.
pub fn parse_elf(b: &[u8]) -> Option<Elf> {
    if !is_x86_64_elf(b) {
        return None;
    }
    let (phoff, phentsize, phnum) = (
        idx(u64_at(b, 0x20)?)?,
        usize::from(u16_at(b, 0x36)?),
        usize::from(u16_at(b, 0x38)?),
    );
    let mut elf = Elf::default();
    let mut loads = Vec::new();
    let mut dynamic = None;
    for i in 0..phnum {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        let (ty, off, vaddr, filesz) = (
            u32_at(b, ph)?,
            u64_at(b, ph + 8)?,
            u64_at(b, ph + 16)?,
            u64_at(b, ph + 32)?,
        );
        match ty {
            PT_INTERP => elf.interp = Some(cstr(b, idx(off)?)?),
            PT_DYNAMIC => dynamic = Some((idx(off)?, idx(filesz)?)),
            PT_LOAD => loads.push((vaddr, off, filesz)),
            _ => {}
        }
    }
    let Some((dyn_off, dyn_len)) = dynamic else {
        return Some(elf);
    };
    let to_file = |addr: u64| {
        loads
            .iter()
            .find(|(v, _, sz)| addr >= *v && addr - v < *sz)
            .and_then(|(v, o, _)| idx((addr - v).checked_add(*o)?))
    };
    let mut strtab = None;
    let mut entries = Vec::new();
    for e in b
        .get(dyn_off..dyn_off.checked_add(dyn_len)?)?
        .chunks_exact(16)
    {
        let (tag, val) = (u64_at(e, 0)?, u64_at(e, 8)?);
        match tag {
            0 => break,
            DT_STRTAB => strtab = to_file(val),
            DT_NEEDED | DT_RPATH | DT_RUNPATH => entries.push((tag, val)),
            _ => {}
        }
    }
    let strtab = strtab?;
    for (tag, val) in entries {
        let s = cstr(b, strtab.checked_add(idx(val)?)?)?;
        match tag {
            DT_NEEDED => elf.needed.push(s),
            DT_RPATH => elf.rpath.extend(s.split(':').map(str::to_string)),
            _ => elf.runpath.extend(s.split(':').map(str::to_string)),
        }
    }
    Some(elf)
}

/// Directories of /etc/ld.so.conf (with its `include` globs of the form
/// `dir/*.suffix`), in file order.
fn ld_so_conf(path: &Path, out: &mut Vec<String>, depth: u32) {
    let Ok(text) = fs::read_to_string(path) else {
        return;
    };
    for line in text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
    {
        if let Some(pattern) = line.strip_prefix("include").map(str::trim) {
            let (dir, file) = pattern.rsplit_once('/').unwrap_or((".", pattern));
            let suffix = file.strip_prefix('*').unwrap_or(file);
            let Ok(list) = fs::read_dir(dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = list
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().ends_with(suffix))
                })
                .collect();
            files.sort();
            for f in files.iter().filter(|_| depth < 4) {
                ld_so_conf(f, out, depth + 1);
            }
        } else if line.starts_with('/') {
            out.push(line.to_string());
        }
    }
}

/// The libraries `DLOPENED` says `lib` opens at run time, where found; a
/// host without one (a static or musl system) builds the image anyway.
fn dlopened_by(lib: &Path) -> Vec<PathBuf> {
    let name = lib.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let beside = lib.parent().map(Path::to_path_buf).unwrap_or_default();
    DLOPENED
        .iter()
        .filter(|(opener, _)| *opener == name)
        .filter_map(|(_, opened)| {
            std::iter::once(beside.clone())
                .chain(DEFAULT_DIRS.iter().map(PathBuf::from))
                .map(|d| d.join(opened))
                .find(|p| fs::read(p).is_ok_and(|b| is_x86_64_elf(&b)))
        })
        .collect()
}

/// Host file → guest path for a program and everything it loads.
pub struct Closure {
    pub files: BTreeMap<PathBuf, PathBuf>,
    /// Directories of /etc/ld.so.conf.
    conf: Vec<String>,
    /// Files already walked.
    seen: BTreeSet<PathBuf>,
}

/// How a walk treats what it cannot follow.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Roots {
    /// `--exec` programs: packed themselves; anything missing is an error.
    Programs,
    /// ELF objects `--add` already placed: only what they load is packed; a
    /// library the host lacks is a warning (the object cannot load there either).
    Added,
}

impl Closure {
    pub fn of(programs: &[PathBuf]) -> Result<Closure> {
        let mut conf = Vec::new();
        ld_so_conf(Path::new("/etc/ld.so.conf"), &mut conf, 0);
        let mut c = Closure {
            files: BTreeMap::new(),
            conf,
            seen: BTreeSet::new(),
        };
        c.walk(programs, Roots::Programs, &mut Vec::new())?;
        Ok(c)
    }

    /// Adds what the ELF objects `objects` load (interpreter, libraries),
    /// as `of` does for programs, without the objects themselves. Returns
    /// the host files it added and one warning per library not found.
    pub fn add_loaded_by(&mut self, objects: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<String>)> {
        let before: BTreeSet<PathBuf> = self.files.keys().cloned().collect();
        let mut warnings = Vec::new();
        self.walk(objects, Roots::Added, &mut warnings)?;
        let added = self.files.keys().filter(|p| !before.contains(*p)).cloned().collect();
        Ok((added, warnings))
    }

    fn walk(&mut self, roots: &[PathBuf], mode: Roots, warnings: &mut Vec<String>) -> Result<()> {
        let what = if mode == Roots::Programs { "--exec" } else { "--add" };
        let root_set: BTreeSet<&PathBuf> = roots.iter().collect();
        let mut todo: Vec<PathBuf> = roots.to_vec();
        while let Some(path) = todo.pop() {
            if !self.seen.insert(path.clone()) {
                continue;
            }
            if self.files.len() >= MAX_FILES {
                bail!(
                    "{what}: more than {MAX_FILES} files in the closure of {}",
                    roots[0].display()
                );
            }
            let is_root = root_set.contains(&path);
            let bytes = fs::read(&path).context(|| format!("{what} {}", path.display()))?;
            if mode == Roots::Programs || !is_root {
                self.files.insert(path.clone(), path.clone());
            }
            if let Some(rest) = bytes.strip_prefix(b"#!").filter(|_| mode == Roots::Programs) {
                let line = rest.split(|&b| b == b'\n').next().unwrap_or(&[]);
                let interp = String::from_utf8_lossy(line)
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string();
                if !interp.starts_with('/') {
                    bail!(
                        "--exec {}: script interpreter `{interp}` is not an absolute path",
                        path.display()
                    );
                }
                todo.push(PathBuf::from(interp));
                continue;
            }
            let Some(elf) = parse_elf(&bytes) else {
                if mode == Roots::Added {
                    warnings.push(format!("{}: not a valid x86-64 ELF object, its libraries are not packed", path.display()));
                    continue;
                }
                if is_root {
                    bail!(
                        "--exec {}: not an x86-64 ELF program or #! script",
                        path.display()
                    );
                }
                bail!("{}: not a valid x86-64 ELF library", path.display());
            };
            if let Some(i) = &elf.interp {
                todo.push(PathBuf::from(i));
            }
            todo.extend(dlopened_by(&path));
            let origin = path
                .parent()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let expand = |d: &String| d.replace("$ORIGIN", &origin).replace("${ORIGIN}", &origin);
            let mut dirs: Vec<String> = Vec::new();
            if elf.runpath.is_empty() {
                dirs.extend(elf.rpath.iter().map(expand));
            }
            dirs.extend(elf.runpath.iter().map(expand));
            dirs.extend(self.conf.iter().cloned());
            dirs.extend(DEFAULT_DIRS.iter().map(|d| d.to_string()));
            for name in &elf.needed {
                let found = if name.contains('/') {
                    Some(PathBuf::from(name))
                } else {
                    dirs.iter()
                        .map(|d| Path::new(d).join(name))
                        .find(|p| fs::read(p).is_ok_and(|b| is_x86_64_elf(&b)))
                };
                match found {
                    Some(p) => todo.push(p),
                    None if mode == Roots::Added => warnings.push(format!(
                        "{} needs {name}, not found on this host (searched {}): it will not load in the guest either",
                        path.display(),
                        dirs.join(":")
                    )),
                    None => bail!(
                        "--exec {}: library {name} not found (searched {})",
                        path.display(),
                        dirs.join(":")
                    ),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_dynamic_programs() {
        let busybox = parse_elf(&fs::read("/bin/busybox").expect("busybox-static")).expect("elf");
        assert_eq!(busybox, Elf::default());
        let sort = parse_elf(&fs::read("/usr/bin/sort").expect("coreutils")).expect("elf");
        assert_eq!(sort.interp.as_deref(), Some("/lib64/ld-linux-x86-64.so.2"));
        assert!(sort.needed.contains(&"libc.so.6".to_string()), "{sort:?}");
        let c = Closure::of(&[PathBuf::from("/usr/bin/sort")]).expect("closure");
        let guest: Vec<String> = c.files.values().map(|p| p.display().to_string()).collect();
        assert!(
            guest.contains(&"/lib64/ld-linux-x86-64.so.2".to_string()),
            "{guest:?}"
        );
        assert!(guest.iter().any(|p| p.ends_with("/libc.so.6")), "{guest:?}");
        assert!(guest.contains(&"/usr/bin/sort".to_string()));
        // sort does not link libgcc_s, but glibc dlopens it for pthread_exit.
        assert!(!sort.needed.iter().any(|n| n.starts_with("libgcc_s")), "{sort:?}");
        assert!(guest.iter().any(|p| p.ends_with("/libgcc_s.so.1")), "{guest:?}");
    }

    #[test]
    fn hostile_elf_headers_are_refused_not_panicking() {
        let good = fs::read("/usr/bin/sort").expect("coreutils");
        for cut in [0, 4, 20, 64, 100, 1000, good.len() / 2] {
            let _ = parse_elf(&good[..cut.min(good.len())]);
        }
        let mut bad = good.clone();
        bad[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(parse_elf(&bad), None);
        // A PT_LOAD whose file offset + distance overflows must not panic.
        let phoff = usize::try_from(u64_at(&good, 0x20).expect("phoff")).expect("fits");
        let mut wild = good.clone();
        for i in 0..usize::from(u16_at(&good, 0x38).expect("phnum")) {
            let ph = phoff + i * 56;
            if u32_at(&good, ph) == Some(PT_LOAD) {
                wild[ph + 8..ph + 16].copy_from_slice(&u64::MAX.to_le_bytes());
                wild[ph + 32..ph + 40].copy_from_slice(&u64::MAX.to_le_bytes());
            }
        }
        let _ = parse_elf(&wild);
        assert!(Closure::of(&[PathBuf::from("/etc/passwd")]).is_err());
        assert!(Closure::of(&[PathBuf::from("/nonexistent")]).is_err());
    }

    #[test]
    fn added_objects_bring_their_libraries_but_not_themselves() {
        let dynload = Path::new("/usr/lib/python3.11/lib-dynload");
        let sqlite = fs::read_dir(dynload)
            .expect("python3 lib-dynload")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("_sqlite3.")))
            .expect("python3's _sqlite3 module");
        let mut c = Closure::of(&[PathBuf::from("/usr/bin/sort")]).expect("closure");
        let (added, warnings) = c.add_loaded_by(std::slice::from_ref(&sqlite)).expect("walk");
        assert!(warnings.is_empty(), "{warnings:?}");
        let names: Vec<String> = added.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
        assert!(names.contains(&"libsqlite3.so.0".to_string()), "{names:?}");
        // libc came with sort already; the module itself is placed by --add.
        assert!(!names.iter().any(|n| n == "libc.so.6" || n.starts_with("_sqlite3")), "{names:?}");
        assert!(!c.files.contains_key(&sqlite));

        // An object needing a library the host lacks, and a damaged one: warnings, not errors.
        let dir = std::env::temp_dir().join(format!("closure-add-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("tmp");
        let mut lacking = fs::read(&sqlite).expect("read");
        let at = lacking.windows(16).position(|w| w == b"libsqlite3.so.0\0").expect("DT_NEEDED string");
        lacking[at..at + 15].copy_from_slice(b"libnothere.so.9");
        let (lacking_path, broken_path) = (dir.join("lacking.so"), dir.join("broken.so"));
        fs::write(&lacking_path, &lacking).expect("write");
        fs::write(&broken_path, &lacking[..64]).expect("write");
        let (_, warnings) = c.add_loaded_by(&[lacking_path, broken_path]).expect("warnings only");
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings.iter().any(|w| w.contains("needs libnothere.so.9, not found")), "{warnings:?}");
        assert!(warnings.iter().any(|w| w.contains("broken.so: not a valid x86-64 ELF")), "{warnings:?}");
        fs::remove_dir_all(&dir).ok();
    }
}
