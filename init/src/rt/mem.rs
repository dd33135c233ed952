//! `memcpy`, `memmove`, `memset`, `memcmp` and `bcmp`: the compiler emits
//! calls to them and there is no libc. `rep movsb`/`rep stosb` are small and
//! fast on every x86_64 CPU the guest can have (ERMSB), and unlike plain loops
//! they cannot be turned back into calls to themselves by the optimiser.

use core::arch::asm;

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
    for i in 0..n {
        // SAFETY: i < n and the caller guarantees n readable bytes at both.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// # Safety
/// C's contract: `a` and `b` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract.
    unsafe { memcmp(a, b, n) }
}
