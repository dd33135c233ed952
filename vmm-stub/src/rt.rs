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
    // SAFETY: `_start` passes the stack pointer the kernel started the process with (argc, argv, envp per the System V process ABI).
    let (args, env) = unsafe { vmm_stub::sys::process::args_from_initial_stack(sp) };
    vmm_stub::sys::exit(vmm_stub::start::main(args, env))
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    vmm_stub::out::panic_line(info.location().map(|l| (l.file(), l.line())))
}

/// The precompiled `core` refers to this in unoptimised builds even with
/// `panic = "abort"`; it is never called because nothing unwinds.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
