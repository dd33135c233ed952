//! vmm-stub: the runtime half of smolvm. A `no_std`, libc-free KVM monitor
//! that boots the kernel embedded in its own image file. The library holds
//! every module (unit-tested on the host); `main.rs` is only the process
//! entry point, panic handler and the `mem*` functions.
#![cfg_attr(not(test), no_std)]

// Test helpers for the crates outside (fuzz targets, examples) use std.
#[cfg(all(not(test), feature = "test-utils"))]
extern crate std;

pub mod boot;
pub mod bus;
pub mod cmdline;
pub mod devices;
pub mod harden;
pub mod host;
pub mod hostio;
pub mod info;
pub mod mem;
pub mod network;
pub mod options;
pub mod out;
pub mod payload;
pub mod reaper;
pub mod seccomp;
pub mod serial;
pub mod start;
pub mod sys;
pub mod trust;
pub mod virtio;
pub mod vmm;
#[cfg(feature = "warm")]
pub mod warm;

/// The stub's layers, bottom up (ARCHITECTURE.md): a module uses only
/// modules of lower layers, so no two modules import each other.
#[cfg(test)]
const LAYERS: [&[&str]; 6] = [
    &["sys"],
    &["mem", "out", "options", "payload"],
    &["boot", "bus", "hostio", "harden", "host", "info", "reaper", "seccomp", "trust"],
    &["serial", "cmdline", "virtio", "warm"],
    &["devices", "network", "vmm"],
    &["start"],
];

#[cfg(test)]
mod layering {
    use super::LAYERS;
    use std::path::Path;

    fn layer(module: &str) -> Option<usize> {
        LAYERS.iter().position(|l| l.contains(&module))
    }

    /// The top-level modules `src` names as `crate::m` (tests and comments excluded).
    fn uses(src: &str) -> Vec<String> {
        let code = src.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
        let code: String = code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
        let mut out = Vec::new();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + 7..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group.split('}').next().unwrap_or("").split(',').map(|s| s.trim().split("::").next().unwrap_or("")).collect(),
                None => vec![rest.split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or("")],
            };
            out.extend(names.into_iter().filter(|n| !n.is_empty()).map(String::from));
        }
        out
    }

    fn visit(dir: &Path, top: Option<&str>, found: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("src dir") {
            let path = entry.expect("entry").path();
            let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("").to_string();
            let module = top.map_or(name.clone(), String::from);
            if path.is_dir() {
                visit(&path, Some(&module), found);
            } else if path.extension().is_some_and(|e| e == "rs") && !(top.is_none() && ["lib", "main", "rt"].contains(&name.as_str())) {
                let src = std::fs::read_to_string(&path).expect("read");
                found.extend(uses(&src).into_iter().map(|u| (module.clone(), u)));
            }
        }
    }

    #[test]
    fn modules_use_only_lower_layers() {
        let lib = include_str!("lib.rs");
        for m in lib.lines().filter_map(|l| l.strip_prefix("pub mod ")?.strip_suffix(';')) {
            assert!(layer(m).is_some(), "module {m} is in no layer of LAYERS");
        }
        let mut found = Vec::new();
        visit(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), None, &mut found);
        assert!(found.len() > 100, "scanned too little: {}", found.len());
        for (module, used) in found {
            // `#[macro_export]` macros live at the crate root.
            let used = if used == "guest_struct" { "mem".to_string() } else { used };
            if module == used {
                continue;
            }
            let (Some(lm), Some(lu)) = (layer(&module), layer(&used)) else { panic!("{module} uses {used}: not in LAYERS") };
            assert!(lu < lm, "{module} (layer {lm}) uses {used} (layer {lu}): only lower layers");
        }
    }
}
