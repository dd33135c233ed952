//! The stub is a static, libc-free executable: no C runtime start files, no
//! libc, a fixed load address (no dynamic loader to relocate a PIE).
//! Unwind tables are discarded at link time: nothing unwinds (panic=abort)
//! and they were ~12 KiB of a 64 KiB budget; so are the compilers' version
//! strings (.comment, 216 bytes).
use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let script = out.join("discard-eh.ld");
    std::fs::write(&script, "SECTIONS { /DISCARD/ : { *(.eh_frame) *(.eh_frame_hdr) *(.comment) } } INSERT AFTER .text;\n")
        .expect("write linker script");
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-no-pie",
        "-Wl,--gc-sections",
        "-Wl,--build-id=none",
        "-Wl,-z,norelro",
        "-Wl,-z,noexecstack",
        "-Wl,--no-eh-frame-hdr",
        "-Wl,--icf=all",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
    println!("cargo:rerun-if-changed=build.rs");

    // `--smolvm-help`, compressed (options::help expands it): 2.9 KB of
    // text in 1.7.
    let help = std::fs::read("src/options/help.txt").expect("src/options/help.txt");
    std::fs::write(out.join("help.lz"), compress(&help)).expect("write help.lz");
    println!("cargo:rerun-if-changed=src/options/help.txt");
}

/// Greedy LZ77 over ASCII text: a byte below 0x80 stands for itself;
/// `0x80 + n` then a distance byte `d`, or `0xc0 + n` then a 16-bit
/// little-endian `d`, copies `n + 3` bytes from `d` back (overlapping
/// copies repeat). Of the matches, the one saving the most bytes wins.
/// `options::help` is the decoder.
#[allow(clippy::cast_possible_truncation)] // len - MIN <= 0x3f, d <= 0xffff (the loops' bounds)
fn compress(text: &[u8]) -> Vec<u8> {
    const MIN: usize = 3;
    const MAX: usize = 0x3f + MIN;
    assert!(text.is_ascii(), "help.txt must be ASCII");
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        // (bytes saved, length, distance)
        let mut best = (0, 0, 0);
        for j in i.saturating_sub(0xffff)..i {
            let len = (0..MAX.min(text.len() - i)).take_while(|&k| text[j + k] == text[i + k]).count();
            let cost = if i - j < 0x100 { 2 } else { 3 };
            if len >= MIN && len > cost && len - cost > best.0 {
                best = (len - cost, len, i - j);
            }
        }
        match best {
            (0, ..) => {
                out.push(text[i]);
                i += 1;
            }
            (_, len, d) if d < 0x100 => {
                out.extend_from_slice(&[0x80 | (len - MIN) as u8, d as u8]);
                i += len;
            }
            (_, len, d) => {
                out.push(0xc0 | (len - MIN) as u8);
                out.extend_from_slice(&(d as u16).to_le_bytes());
                i += len;
            }
        }
    }
    out
}
