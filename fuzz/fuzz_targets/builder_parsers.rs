//! The builder's parsers of untrusted input: the tar reader (rootfs
//! tarballs, image layers), the JSON reader (image manifests and configs)
//! and the ELF reader of `--exec`. The first byte picks the parser. The
//! builder is a binary crate, so its modules are included by path.
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
    match which % 3 {
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
        _ => {
            if let Some(elf) = closure::parse_elf(input) {
                assert!(closure::is_x86_64_elf(input));
                let _ = elf;
            }
        }
    }
});
