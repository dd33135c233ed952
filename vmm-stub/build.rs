//! The stub is a static, libc-free executable: no C runtime start files, no
//! libc, a fixed load address (no dynamic loader to relocate a PIE).
fn main() {
    for arg in ["-nostartfiles", "-nostdlib", "-static", "-no-pie", "-Wl,--gc-sections", "-Wl,--build-id=none", "-Wl,-z,norelro", "-Wl,-z,noexecstack"] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
