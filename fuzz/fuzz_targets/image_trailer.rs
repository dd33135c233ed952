//! Trailer reader on hostile input. Input: mode byte, file length (u64 LE),
//! then the trailer bytes. Mode bit 0 re-seals the trailer's checksum so the
//! fuzzer reaches the table checks instead of stopping at the checksum.
//! The same bytes also feed the signature section and key line parsers
//! (`linker::signature`), which the stub runs on image and policy bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use linker::abi::SECTION_ALIGN;
use linker::image::{seal, Image, Kind, TRAILER_LEN};
use linker::signature::{self, Signature};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Some((len, trailer)) = rest.split_first_chunk::<8>() else {
        return;
    };
    let file_len = u64::from_le_bytes(*len);
    if let Some(sig) = Signature::parse(trailer) {
        assert_eq!(Signature::parse(&sig.encode()), Some(sig));
    }
    for line in trailer.split(|&b| b == b'\n') {
        let _ = signature::parse_public_line(line);
        let _ = signature::parse_secret_line(line);
    }
    let result = if let (true, Ok(t)) = (mode & 1 == 1, <[u8; TRAILER_LEN]>::try_from(trailer)) {
        let mut t = t;
        seal(&mut t);
        Image::parse(&t, file_len)
    } else {
        Image::parse_slice(trailer, file_len)
    };
    match result {
        Err(e) => assert!(!e.message().is_empty() && !e.message().contains('\n')),
        Ok(img) => {
            // Whatever is accepted respects every invariant the stub relies on.
            let trailer_at = file_len - TRAILER_LEN as u64;
            let mut prev_end = 0;
            for s in img.sections() {
                assert!(s.len > 0 && s.offset % SECTION_ALIGN == 0);
                assert!(s.offset >= prev_end && s.offset.checked_add(s.len).is_some());
                assert!(s.end() <= trailer_at);
                prev_end = s.end();
            }
            assert_eq!(img.sections()[0].offset, 0);
            // A signature section is last; the signed message fits its bound.
            if let Some(i) = img.sections().iter().position(|s| s.kind == Kind::Signature) {
                assert_eq!(i + 1, img.sections().len());
            }
            let mut buf = [0u8; signature::MAX_MESSAGE_LEN];
            if let Ok(len) = signature::signed_len(&img) {
                if let Some(m) = signature::message(&img, len, &mut buf) {
                    assert!(m.len() >= 40 && (m.len() - 40) % linker::image::ENTRY_LEN == 0);
                }
            }
            assert_eq!(
                Image::encode(img.sections(), file_len).map(|t| Image::parse(&t, file_len)),
                Ok(Ok(img))
            );
        }
    }
});
