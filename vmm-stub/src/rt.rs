//! Process runtime without libc: `_start` and the panic handler. The
//! `memcpy` family that LLVM emits calls to comes from `nolibc-mem`.

use core::arch::global_asm;

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

/// The precompiled `core` refers to this in unoptimised builds even with
/// `panic = "abort"`; it is never called because nothing unwinds.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
