//! Hostile images and ELF files: an item whose parts add up to the input
//! length, or an error; never a panic. Half the inputs are used raw; the
//! other half become the sections of a well-formed image (valid trailer and
//! digests) so the fuzzer reaches the stub/init ELF and cpio readers.
#![no_main]
use libfuzzer_sys::fuzz_target;
use linker::image::Kind;
use size_report::analyze::{analyze_bytes, Options};

/// Splits `data` at 0xfe bytes into stub, kernel, initramfs and manifest.
fn image_from(data: &[u8]) -> Option<Vec<u8>> {
    let mut parts = data.split(|&b| b == 0xfe);
    // Sized once: growing the Vec section by section (realloc + copy under
    // ASan) cost as much as the digests.
    let room = data.len() + 4 * linker::abi::SECTION_ALIGN as usize + linker::image::TRAILER_LEN;
    let mut w = linker::write::ImageWriter::new(Vec::with_capacity(room));
    for kind in [Kind::Stub, Kind::Kernel, Kind::Initramfs, Kind::Manifest] {
        w.add_bytes(kind, 0, parts.next()?).ok()?;
    }
    Some(w.finish().ok()?.0)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let input = if mode & 1 == 0 { rest.to_vec() } else { match image_from(rest) { Some(i) => i, None => return } };
    let opts = Options::new(5, false);
    if let Ok(item) = analyze_bytes(&input, "fuzz", "fuzz", &[], &opts) {
        assert_eq!(item.parts.iter().map(|p| p.size).sum::<u64>(), input.len() as u64);
        let ctx = size_report::render::Context { checks: None, baseline: None };
        let _ = size_report::render::text(&size_report::render::tables(&item, &ctx));
        let _ = size_report::svg::render(&[item], &[Some(4096)]);
    }
    let _ = size_report::cpio::summarize(rest, "rootfs", "init");
});
