//! smol-init is a static program with its own `_start` and no libc: link it
//! without startup files or default libraries, as a non-PIE static ELF (no
//! dynamic loader would be there to relocate a PIE).
fn main() {
    for arg in ["-nostartfiles", "-nostdlib", "-static", "-no-pie", "-Wl,--build-id=none"] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
