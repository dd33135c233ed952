//! The smol-init binary: a static, libc-free PID 1. Everything it does is in
//! the library (`lib.rs`); `rt/` is the little runtime a program without libc
//! needs: the entry point, a heap and the panic handler (`mem*` come from
//! the `nolibc-mem` crate, shared with the stub).
#![cfg_attr(not(test), no_std)]
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
mod rt;

/// `cargo test`/`clippy --all-targets` build the binary with std; it has
/// nothing to test (the library does).
#[cfg(test)]
fn main() {}
