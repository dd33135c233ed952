//! Entry point and panic handler of the binary.

mod heap;

// memcpy, memset, ...: linked for the compiler's calls, never named.
extern crate nolibc_mem;

use smol_init::{out::Line, shutdown, sys};

// The kernel starts init with the stack pointer on `argc`, followed by
// argv[], NULL, envp[], NULL. The ABI wants a 16-byte aligned stack at calls.
core::arch::global_asm!(
    ".globl _start",
    "_start:",
    "xor ebp, ebp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {entry}",
    "ud2",
    entry = sym entry,
);

/// `SMOLVM_LOG=debug` on the kernel command line reaches init's environment.
const DEBUG_ENV: &[u8] = b"SMOLVM_LOG=debug";

/// # Safety
/// Called once, by `_start`, with the initial stack pointer of the process.
unsafe extern "C" fn entry(sp: *const usize) -> ! {
    let start_ns = sys::monotonic_ns();
    let mut debug = false;
    // SAFETY: the kernel's process start layout (see `_start`): `sp` points to argc, then argc argv pointers and a NULL, then the envp pointers up to a NULL, each a NUL-terminated string that lives for the whole run.
    unsafe {
        let argc = *sp;
        let mut envp = sp.add(argc + 2).cast::<*const u8>();
        while !(*envp).is_null() {
            debug |= is_debug_env(*envp);
            envp = envp.add(1);
        }
    }
    smol_init::main(start_ns, debug)
}

/// # Safety
/// `var` points to a NUL-terminated string.
unsafe fn is_debug_env(var: *const u8) -> bool {
    for (i, &want) in DEBUG_ENV.iter().chain(&[0]).enumerate() {
        // SAFETY: bytes are read up to the first mismatch, and a mismatch comes at the latest at the string's NUL (DEBUG_ENV has none).
        if unsafe { *var.add(i) } != want {
            return false;
        }
    }
    true
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    Line::new().s("init: internal error").print();
    // A forked child that panics must not end the VM; init itself does.
    if rustix::process::getpid().is_init() {
        shutdown::finish(linker::abi::status::SMOLVM_FAILED, None)
    }
    sys::exit_group(linker::abi::status::SMOLVM_FAILED)
}

/// `alloc`'s precompiled code (CString and Vec growth, merged in by LTO) keeps
/// landing pads that name these two even with `panic = "abort"`. Nothing
/// unwinds, so neither is ever called; if one were, init ends the VM.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

#[no_mangle]
pub extern "C" fn _Unwind_Resume() -> ! {
    panic!("unwinding in a panic = abort build")
}

