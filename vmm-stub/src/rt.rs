//! Process runtime without libc: `_start`, the panic handler, and the
//! `memcpy` family that LLVM emits calls to.

use core::arch::{asm, global_asm};

// The kernel starts us with `rsp` pointing at argc, then argv[], NULL,
// envp[], NULL. Pass that pointer to Rust with a 16-byte aligned stack.
global_asm!(
    ".globl _start",
    "_start:",
    "xor ebp, ebp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {entry}",
    "ud2",
    entry = sym start_rust,
);

/// # Safety
/// Called once by `_start` with the initial stack pointer.
unsafe extern "C" fn start_rust(sp: *const usize) -> ! {
    // SAFETY: the System V process ABI puts argc at `sp`, followed by argc argv pointers, a NULL, then the NULL-terminated envp array.
    let (argv, envp) = unsafe {
        let argc = *sp;
        let argv = core::slice::from_raw_parts(sp.add(1).cast::<*const u8>(), argc);
        (argv, sp.add(argc.wrapping_add(2)).cast::<*const u8>())
    };
    vmm_stub::sys::exit(crate::main_entry(argv, envp))
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    vmm_stub::out::panic_line(info.location().map(|l| (l.file(), l.line())))
}

// The `mem*` functions below must not be compiled into calls to themselves,
// so they use `rep movsb`/`rep stosb` (fast on every x86_64 since Ivy Bridge)
// and plain loops LLVM does not turn into libcalls.

/// # Safety
/// Standard C semantics: `n` bytes valid at both, non-overlapping.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges are valid for `n` bytes.
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
             options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// Standard C semantics: `n` bytes valid at both; they may overlap.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize).wrapping_sub(src as usize) >= n {
        // SAFETY: dst is below src or beyond src+n: a forward copy never reads a byte it already overwrote.
        return unsafe { memcpy(dst, src, n) };
    }
    // SAFETY: overlapping with dst above src: copy backwards (direction flag set for the copy and cleared again, as the ABI requires).
    unsafe {
        asm!("std", "rep movsb", "cld",
             inout("rcx") n => _, inout("rdi") dst.add(n).wrapping_sub(1) => _,
             inout("rsi") src.add(n).wrapping_sub(1) => _, options(nostack));
    }
    dst
}

/// # Safety
/// Standard C semantics: `n` bytes writable at `dst`.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees `dst` is writable for `n` bytes.
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _, in("al") c as u8,
             options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// Standard C semantics: `n` bytes readable at both.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: i < n and both ranges are readable for n bytes.
        let (x, y) = unsafe { (core::ptr::read_volatile(a.add(i)), core::ptr::read_volatile(b.add(i))) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// # Safety
/// As `memcmp`.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}

/// The precompiled `core` refers to this in unoptimised builds even with
/// `panic = "abort"`; it is never called because nothing unwinds.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

/// # Safety
/// `s` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut n = 0;
    // SAFETY: the caller guarantees a NUL byte terminates `s`.
    while unsafe { core::ptr::read_volatile(s.add(n)) } != 0 {
        n = n.wrapping_add(1); // a string never spans the address space
    }
    n
}
