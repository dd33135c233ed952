//! The stub's one `clone`: a child task (the stdin thread, the reaper
//! process) on a static stack, or the vCPU threads ([`run_each`]) on
//! mapped ones.

use super::signal;
use super::syscall::{result, SYS_CLONE};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};
use rustix::io::Errno;

pub const CLONE_VM: usize = 0x100;
const CLONE_FS: usize = 0x200;
const CLONE_FILES: usize = 0x400;
const CLONE_SIGHAND: usize = 0x800;
const CLONE_THREAD: usize = 0x1_0000;
const CLONE_SYSVSEM: usize = 0x4_0000;

/// What [`spawn`] makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// A thread of this process (shares memory, files, signal handlers).
    Thread,
    /// A process sharing only the address space (`CLONE_VM`): its own fd
    /// table and signal state; no exit signal to the parent.
    SharedMemoryProcess,
}

impl Task {
    /// The `clone` flags (the seccomp filter allows `clone` only with
    /// `SharedMemoryProcess`'s).
    pub const fn flags(self) -> usize {
        match self {
            Task::Thread => CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM,
            Task::SharedMemoryProcess => CLONE_VM,
        }
    }
}

/// A static stack for one child task. [`spawn`] hands it out once.
#[repr(C, align(16))]
pub struct Stack<const N: usize> {
    bytes: UnsafeCell<[u8; N]>,
    taken: AtomicBool,
}

// SAFETY: the bytes are only ever used by the one task `spawn` gives them to (`taken` lets exactly one caller past); this thread never reads or writes them.
unsafe impl<const N: usize> Sync for Stack<N> {}

impl<const N: usize> Stack<N> {
    pub const fn new() -> Self {
        assert!(N.is_multiple_of(16) && N >= 4096, "the ABI wants a 16-byte aligned stack top");
        Stack { bytes: UnsafeCell::new([0; N]), taken: AtomicBool::new(false) }
    }
}

impl<const N: usize> Default for Stack<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Starts `entry` as a new task of kind `task` on `stack`; returns its id.
/// The child starts with every signal blocked (the calling thread's mask
/// is restored after the `clone`), and `entry` must never return.
/// `Err(BUSY)` if `stack` was handed out before.
pub fn spawn<const N: usize>(task: Task, stack: &'static Stack<N>, entry: extern "C" fn() -> !) -> Result<u32, Errno> {
    if stack.taken.swap(true, Ordering::AcqRel) {
        return Err(Errno::BUSY);
    }
    let top = stack.bytes.get().cast::<u8>().wrapping_add(N);
    // The child inherits the signal mask: it starts with everything blocked.
    let old = signal::block_all();
    // SAFETY: `top` ends a static stack no other task uses (`taken` above); `entry` ignores its argument.
    let id = unsafe { clone(task, top as usize, entry as *const () as usize, 0) };
    signal::set_mask(old);
    id
}

/// `clone` with `task`'s flags; the child runs `entry(arg)` on `top`,
/// with the calling thread's signal mask.
///
/// # Safety
/// `top` is the 16-byte aligned end of stack memory only the child uses,
/// and `entry` is an `extern "C" fn(usize) -> !` (or takes no argument).
unsafe fn clone(task: Task, top: usize, entry: usize, arg: usize) -> Result<u32, Errno> {
    let ret: usize;
    // SAFETY: clone(flags, top, 0, 0, 0). The child runs on `top` (this function's contract) and calls `entry` with `arg`; `entry` never returns (`ud2` otherwise). The parent continues here; only rax, rcx and r11 change. No pointer the kernel writes through is passed.
    unsafe {
        core::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r13",
            "call r12",
            "ud2",
            "2:",
            inlateout("rax") SYS_CLONE as usize => ret,
            in("rdi") task.flags(), in("rsi") top, in("rdx") 0usize, in("r10") 0usize, in("r8") 0usize,
            in("r12") entry, in("r13") arg,
            lateout("rcx") _, lateout("r11") _,
        );
    }
    let id = result(ret.cast_signed())?;
    u32::try_from(id).map_err(|_| Errno::INVAL)
}

/// Stack of each thread [`run_each`] starts (touched pages only: the
/// mapping is `MAP_NORESERVE`), below a guard page.
const EACH_STACK: usize = 256 * 1024;
const GUARD: usize = 4096;

/// What a thread of [`run_each`] runs, stored at the top of its stack.
struct Start<S, P> {
    shared: *const S,
    item: *mut P,
    entry: fn(&S, &mut P) -> !,
}

extern "C" fn start_each<S, P>(start: usize) -> ! {
    // SAFETY: `run_each` passes the address of a `Start<S, P>` it wrote at the top of this thread's stack, above the stack pointer, and never writes it again; its `shared` and `item` stay valid for the process's life (see `run_each`).
    let s = unsafe { core::ptr::read(start as *const Start<S, P>) };
    // SAFETY: as above: `run_each` never returns, so `*shared` and `*item` outlive every thread; `item` is this thread's element alone.
    (s.entry)(unsafe { &*s.shared }, unsafe { &mut *s.item })
}

/// Runs `entry(shared, item)` for every element of `items`, each on its
/// own thread of this process (with the calling thread's signal mask),
/// the first on the calling thread after `then` (which runs once the other
/// threads are started). Never returns: `entry` must end the *process*
/// (`exit_group`), so that the borrows the threads hold stay valid for as
/// long as any of them runs. If a thread cannot be made, `failed` is
/// called on the calling thread (it must end the process too).
pub fn run_each<S: Sync, P: Send>(shared: &S, items: &mut [P], entry: fn(&S, &mut P) -> !, then: impl FnOnce(), failed: fn(Errno) -> !) -> ! {
    let Some((first, rest)) = items.split_first_mut() else { failed(Errno::INVAL) };
    for item in rest {
        let start = Start { shared: shared as *const S, item: item as *mut P, entry };
        let made = map_stack().and_then(|base| {
            // The Start record sits at the top, 16-byte aligned below it the
            // stack (the mapping's end does not wrap: mmap placed it).
            let at = base.wrapping_add(GUARD + EACH_STACK - core::mem::size_of::<Start<S, P>>()) & !15;
            // SAFETY: `at` lies inside the fresh writable mapping (EACH_STACK is far larger than a Start) and is aligned for it.
            unsafe { core::ptr::write(at as *mut Start<S, P>, start) };
            // SAFETY: [base + GUARD, at) is the new thread's alone; `start_each::<S, P>` reads the Start at `at`.
            unsafe { clone(Task::Thread, at, start_each::<S, P> as *const () as usize, at) }
        });
        if let Err(e) = made {
            failed(e)
        }
    }
    then();
    entry(shared, first)
}

/// A new stack of [`EACH_STACK`] bytes above a `PROT_NONE` guard page
/// (an overflow faults instead of writing another thread's stack); its
/// base address. Never unmapped.
fn map_stack() -> Result<usize, Errno> {
    use rustix::mm::{mmap_anonymous, mprotect, MapFlags, MprotectFlags, ProtFlags};
    // SAFETY: a new private anonymous mapping at a kernel-chosen address aliases nothing.
    let p = unsafe { mmap_anonymous(core::ptr::null_mut(), GUARD + EACH_STACK, ProtFlags::READ | ProtFlags::WRITE, MapFlags::PRIVATE | MapFlags::NORESERVE | MapFlags::STACK)? };
    // SAFETY: the first page of the mapping just made, which nothing uses.
    unsafe { mprotect(p, GUARD, MprotectFlags::empty())? };
    Ok(p as usize)
}

/// Ends the calling task only (`exit`; the process lives on in its other
/// tasks).
pub fn exit_task(code: u8) -> ! {
    loop {
        // SAFETY: exit takes an integer, touches no memory and does not return (the loop only satisfies the type).
        let _ = unsafe { super::syscall::syscall(super::syscall::SYS_EXIT, [usize::from(code), 0, 0, 0]) };
    }
}
