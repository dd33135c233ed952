//! The stub's no_std cpio writer with hostile names/sizes/buffer lengths:
//! never writes out of bounds or panics; what it writes reads back.
#![no_main]
use libfuzzer_sys::fuzz_target;
use linker::cpio::{read_entries, CpioWriter};

fuzz_target!(|data: &[u8]| {
    let Some((&cap, rest)) = data.split_first() else {
        return;
    };
    let mut buf = vec![0u8; usize::from(cap) * 8];
    let mut w = CpioWriter::new(&mut buf, 1);
    let mut written = Vec::new();
    for chunk in rest.split(|&b| b == b'|').collect::<Vec<_>>().chunks(2) {
        let (name, body) = (chunk[0], chunk.get(1).copied().unwrap_or(&[]));
        if w.file(name, 0o644, body).is_ok() {
            written.push((name.to_vec(), body.to_vec()));
        }
    }
    let Ok(len) = w.finish() else { return };
    let back = read_entries(&buf[..len]).expect("own output parses");
    assert_eq!(back.len(), written.len());
    for (e, (n, d)) in back.iter().zip(&written) {
        assert_eq!((&e.name, &e.data), (n, d));
    }
});
