//! JSON parser and baseline reader: error or value, never a panic; what we
//! write we read back identically.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(v) = size_report::json::parse(text) {
        assert_eq!(size_report::json::parse(&v.to_pretty()).ok(), Some(v));
    }
    let _ = size_report::baseline::Baseline::parse(text);
});
