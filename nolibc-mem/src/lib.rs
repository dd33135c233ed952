//! The C memory functions the compiler emits calls to (`memcpy`, `memmove`,
//! `memset`, `memcmp`, `bcmp`) and the `strlen` that `core::ffi::CStr`
//! calls, for the two binaries that have no libc: the stub (`vmm-stub`) and
//! the guest's init (`smol-init`). Each binary links them with
//! `extern crate nolibc_mem;`; nothing else in the workspace depends on it.
//!
//! They must not be compiled into calls to themselves: the copies use
//! `rep movsb`/`rep stosb` (small, and fast on every x86_64 CPU with ERMSB,
//! which is every one since Ivy Bridge), and the loops read through
//! `read_volatile`, which LLVM never turns back into a libcall.
#![no_std]

#[cfg(not(target_arch = "x86_64"))]
compile_error!("nolibc-mem is x86_64 only (rep movsb/stosb)");

use core::arch::asm;
use core::ptr::read_volatile;

/// # Safety
/// C's contract: `dest` and `src` valid for `n` bytes and not overlapping.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges; rep movsb copies exactly n bytes forwards (the direction flag is clear per the ABI).
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dest => _, inout("rsi") src => _,
             options(nostack, preserves_flags));
    }
    dest
}

/// # Safety
/// C's contract: `dest` and `src` valid for `n` bytes; they may overlap.
#[no_mangle]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize).wrapping_sub(src as usize) >= n {
        // dest is below src or past its end: a forward copy never reads a
        // byte it already overwrote.
        // SAFETY: same contract as memcpy, and the order is safe (above).
        return unsafe { memcpy(dest, src, n) };
    }
    // dest overlaps the tail of src: copy backwards, last byte first.
    // SAFETY: the caller guarantees both ranges; with the direction flag set rep movsb walks down from the last byte; the flag is cleared again before returning, as the ABI requires.
    unsafe {
        asm!("std", "rep movsb", "cld",
             inout("rcx") n => _, inout("rdi") dest.add(n).wrapping_sub(1) => _,
             inout("rsi") src.add(n).wrapping_sub(1) => _, options(nostack));
    }
    dest
}

/// # Safety
/// C's contract: `dest` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(dest: *mut u8, byte: i32, n: usize) -> *mut u8 {
    // C passes the byte as an int; only its low 8 bits are used.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let byte = byte as u8;
    // SAFETY: the caller guarantees the range; rep stosb stores n bytes.
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dest => _, in("al") byte,
             options(nostack, preserves_flags));
    }
    dest
}

/// # Safety
/// C's contract: `a` and `b` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: i < n and the caller guarantees n readable bytes at both.
        let (x, y) = unsafe { (read_volatile(a.add(i)), read_volatile(b.add(i))) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// # Safety
/// C's contract: `a` and `b` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}

/// # Safety
/// C's contract: `s` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut n = 0;
    // SAFETY: the caller guarantees a NUL byte terminates `s`, so every byte up to it is readable.
    while unsafe { read_volatile(s.add(n)) } != 0 {
        n = n.wrapping_add(1); // a string never spans the address space
    }
    n
}
