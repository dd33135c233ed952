//! The image manifest and runtime config as init reads them: any bytes give
//! a plan that keeps init's invariants, or an error; never a panic.
//! Input: a little-endian u16 split point, then manifest ++ runtime.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smol_init::plan::{Plan, DEFAULT_PATH};

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<2>() else { return };
    let split = usize::from(u16::from_le_bytes(*head)).min(rest.len());
    let (manifest, runtime) = rest.split_at(split);
    for runtime in [None, Some(runtime)] {
        let Ok(plan) = Plan::new(manifest, runtime) else { continue };
        assert!(!plan.entry.is_empty());
        let names: Vec<&[u8]> = plan
            .env
            .iter()
            .map(|e| {
                let eq = e.iter().position(|&c| c == b'=').expect("env entry has =");
                assert!(eq > 0, "empty env name");
                &e[..eq]
            })
            .collect();
        for (i, n) in names.iter().enumerate() {
            assert!(!names[..i].contains(n), "env name twice");
        }
        assert!(plan.env.iter().any(|e| e.starts_with(b"PATH=")) || plan.env.contains(&DEFAULT_PATH));
        assert!(plan.workdir.map_or(true, |w| w.starts_with(b"/")));
        assert!(plan.tmpfs.iter().all(|t| t.starts_with(b"/")));
        assert!(plan.shares.iter().all(|s| s.path.starts_with(b"/") && !s.tag.is_empty()));
        let candidates = smol_init::app::search_path(plan.entry, b"/bin::/usr/bin");
        assert!(!candidates.is_empty());
    }
});
