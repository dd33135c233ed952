//! smol-init is a static program with its own `_start` and no libc: link it
//! without startup files or default libraries, as a non-PIE static ELF (no
//! dynamic loader would be there to relocate a PIE).
fn main() {
    for arg in ["-nostartfiles", "-nostdlib", "-static", "-no-pie", "-Wl,--build-id=none", "-Wl,--no-eh-frame-hdr", "-Wl,--icf=all"] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    // The unwind tables go (discard-unwind.ld says why).
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    println!("cargo:rustc-link-arg-bins={dir}/discard-unwind.ld");
    println!("cargo:rerun-if-changed=discard-unwind.ld");
}
