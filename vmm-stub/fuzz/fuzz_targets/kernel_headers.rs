//! Arbitrary bytes as the head of a kernel file (ELF vmlinux or bzImage):
//! the parsers never panic, and whatever they accept lies inside the file
//! and inside guest memory, with the entry in a loaded segment.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vmm_stub::boot::{bzimage, elf};

const MIN: u64 = 0x10_0000;
const MAX: u64 = 256 << 20;

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes choose the claimed file length; the rest is the head.
    let Some((len, head)) = data.split_first_chunk::<8>() else { return };
    let file_len = u64::from_le_bytes(*len) % (1 << 32);
    if let Ok(k) = elf::parse(head, file_len, MIN, MAX) {
        for s in &k.segments {
            assert!(s.offset + s.file_len <= file_len && s.file_len <= s.mem_len);
            assert!(s.addr >= MIN && s.addr + s.mem_len <= MAX);
        }
        assert!(k.segments.iter().any(|s| k.entry >= s.addr && k.entry < s.addr + s.file_len));
    }
    if let Ok(b) = bzimage::parse(head, file_len, MIN, MAX) {
        assert!(b.setup_len + b.payload_len == file_len && b.payload_len > 0);
        assert!(b.load_addr >= MIN && b.end <= MAX && b.hdr_end <= bzimage::MAX_HDR_END);
    }
});
