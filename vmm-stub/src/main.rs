//! Process entry for the stub: `_start`, the panic handler and the memory
//! functions the compiler may call. Everything else lives in the library.
#![no_std]
#![no_main]

mod rt;

// memcpy, memset, ...: linked for the compiler's calls, never named.
extern crate nolibc_mem;

/// Called by `_start` with the kernel-provided argument and environment arrays.
fn main_entry(argv: &'static [*const u8], envp: *const *const u8) -> u8 {
    // SAFETY: the kernel provides argc valid NUL-terminated argv strings and a NULL-terminated envp array, alive for the whole process.
    let (args, env) = unsafe {
        (
            vmm_stub::start::CStrings::new(argv.as_ptr(), argv.len()),
            vmm_stub::start::CStrings::new(envp, usize::MAX),
        )
    };
    vmm_stub::start::main(args, env)
}
