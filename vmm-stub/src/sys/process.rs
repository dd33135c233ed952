//! The process: its arguments and environment, the file-table and
//! sleeping calls rustix lacks, and its end.

use super::cell::WriteOnce;
use super::syscall::{syscall, SYS_CLOSE, SYS_CLOSE_RANGE, SYS_EXIT_GROUP, SYS_PAUSE};

/// `AT_EXECFN` of the auxiliary vector: the path the kernel ran us by.
static EXEC_PATH: WriteOnce<&'static core::ffi::CStr> = WriteOnce::new();
const AT_NULL: usize = 0;
const AT_EXECFN: usize = 31;
/// More auxiliary vector entries than any kernel passes (about 30).
const MAX_AUXV: usize = 64;

/// The path this program was executed by (`AT_EXECFN`), when the kernel
/// passed one: the fallback for finding our own file without /proc.
pub fn exec_path() -> Option<&'static core::ffi::CStr> {
    EXEC_PATH.get().copied()
}

/// Ends the process at once with `code` (no teardown: the kernel frees the
/// VM, guest RAM and every fd). Every exit path comes through here, so the
/// terminal is never left raw.
pub fn exit(code: u8) -> ! {
    super::tty::restore();
    loop {
        // SAFETY: exit_group takes one integer, touches no memory and does not return (the loop only satisfies the type).
        let _ = unsafe { syscall(SYS_EXIT_GROUP, [usize::from(code), 0, 0, 0]) };
    }
}

/// Closes every descriptor in `lo..=hi` (this process's own table: the
/// calling task must not share it with another).
pub fn close_range(lo: u32, hi: u32) {
    if lo > hi {
        return;
    }
    let (lo, hi) = (lo as usize, hi as usize);
    // SAFETY: close_range takes integers and only closes descriptors; no memory of ours is behind them (the stub's mappings stay valid after their fd closes).
    if unsafe { syscall(SYS_CLOSE_RANGE, [lo, hi, 0, 0]) }.is_err() {
        // Kernels before 5.9: close the usual range one by one.
        for fd in lo..=hi.min(4095) {
            // SAFETY: as above.
            let _ = unsafe { syscall(SYS_CLOSE, [fd, 0, 0, 0]) };
        }
    }
}

/// Sleeps until a signal handler runs (or forever, with every signal blocked).
pub fn pause() {
    // SAFETY: pause takes no arguments and touches no memory.
    let _ = unsafe { syscall(SYS_PAUSE, [0; 4]) };
}

/// NUL-terminated C strings (argv/envp) as byte slices.
#[derive(Clone, Copy)]
pub struct CStrings {
    ptrs: *const *const u8,
    len: usize,
}

impl CStrings {
    /// # Safety
    /// `ptrs` points to `len` pointers (or, with `len == usize::MAX`, to a
    /// NULL-terminated array), each to a NUL-terminated string, all valid
    /// for the rest of the process (argv/envp from the kernel are).
    unsafe fn new(ptrs: *const *const u8, len: usize) -> CStrings {
        CStrings { ptrs, len }
    }
}

impl Iterator for CStrings {
    type Item = &'static [u8];

    fn next(&mut self) -> Option<&'static [u8]> {
        if self.len == 0 || self.ptrs.is_null() {
            return None;
        }
        // SAFETY: per `new`, `ptrs` is inside the array while len > 0 and the NULL terminator has not been reached.
        let p = unsafe { *self.ptrs };
        if p.is_null() {
            return None;
        }
        // SAFETY: as above; advancing stays within the array or one past it.
        self.ptrs = unsafe { self.ptrs.add(1) };
        self.len = self.len.saturating_sub(1);
        // SAFETY: p is a NUL-terminated string valid for the process's life.
        Some(unsafe { core::ffi::CStr::from_ptr(p.cast()) }.to_bytes())
    }
}

/// The arguments and the environment from the process's initial stack.
///
/// # Safety
/// `sp` is the stack pointer the kernel started the process with: argc,
/// then argc argv pointers and a NULL, then the NULL-terminated envp array
/// (the System V process ABI), all alive for the whole process.
pub unsafe fn args_from_initial_stack(sp: *const usize) -> (CStrings, CStrings) {
    // SAFETY: per this function's contract: argc at `sp`, the argv array after it, envp after argv's NULL.
    unsafe {
        let argc = *sp;
        let argv = sp.add(1).cast::<*const u8>();
        let envp = sp.add(argc.wrapping_add(2)).cast::<*const u8>();
        // The auxiliary vector follows envp's NULL: (type, value) pairs up to AT_NULL.
        let mut p = envp.cast::<usize>();
        while *p != 0 {
            p = p.add(1);
        }
        p = p.add(1);
        for _ in 0..MAX_AUXV {
            let (key, value) = (*p, *p.add(1));
            if key == AT_NULL {
                break;
            }
            if key == AT_EXECFN && value != 0 {
                EXEC_PATH.set(core::ffi::CStr::from_ptr(value as *const core::ffi::c_char));
            }
            p = p.add(2);
        }
        (CStrings::new(argv, argc), CStrings::new(envp, usize::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_from_an_initial_stack() {
        let (a, b, e) = (c"prog", c"--x", c"K=v");
        let f = c"/run/app.vm";
        let stack: [usize; 11] = [2, a.as_ptr() as usize, b.as_ptr() as usize, 0, e.as_ptr() as usize, 0, 6, 4096, AT_EXECFN, f.as_ptr() as usize, AT_NULL];
        // SAFETY: `stack` has the kernel's layout and outlives the iterators (the strings are 'static).
        let (args, env) = unsafe { args_from_initial_stack(stack.as_ptr()) };
        assert!(args.eq([&b"prog"[..], b"--x"]));
        assert!(env.eq([&b"K=v"[..]]));
        assert_eq!(exec_path(), Some(f));
    }
}
