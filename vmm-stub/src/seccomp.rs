//! seccomp allow-list installed just before the guest runs: the run loop,
//! its devices (console, block, control), the signal handlers, the stdin
//! thread, the reaper and the panic path need only the calls below. Any
//! other call kills the whole process (SIGSYS). `ioctl` is allowed only for
//! the requests the run loop issues; `clone` only with the reaper's flags;
//! `madvise` only with the balloon and only `MADV_DONTNEED`.

use crate::sys::kvm::{KVM_IRQ_LINE, KVM_RUN};
use crate::sys::seccomp::SockFilter;
use crate::sys::syscall::*;
use crate::sys::tty::{TCSETS, TCSETS2, TIOCGWINSZ};

/// Calls allowed whatever their arguments (ioctl and clone are checked).
/// (rustix's `poll` is the `ppoll` call; `fstat` and `fsync` run after
/// set-up only in the 9p server.)
pub const ALLOWED: [u32; 21] = [
    SYS_READ,
    SYS_WRITE,
    SYS_CLOSE,
    SYS_RT_SIGPROCMASK,
    SYS_RT_SIGRETURN,
    SYS_PREAD64,
    SYS_PWRITE64,
    SYS_PAUSE,
    SYS_ALARM,
    SYS_GETPID,
    SYS_EXIT,
    SYS_FDATASYNC,
    SYS_GETPPID,
    SYS_PRCTL,
    SYS_GETTID,
    SYS_FUTEX,
    SYS_RESTART_SYSCALL,
    SYS_EXIT_GROUP,
    SYS_TGKILL,
    SYS_PPOLL,
    SYS_CLOSE_RANGE,
];

/// The 9p server's calls (`virtio/p9`), added only when a share is attached;
/// every path lookup in them is relative to a share fd (see `p9/host.rs`).
/// Every open is `openat2`, every rename `renameat2`, an `lstat` is an
/// `O_PATH` open + `fstat`: no `openat`, `renameat`, `newfstatat`.
pub const SHARE_CALLS: [u32; 19] = [
    SYS_FSTAT,
    SYS_FSYNC,   // Tfsync without datasync
    SYS_PWRITEV, // Twrite data straight from guest RAM
    SYS_LSEEK,   // readdir cookie
    SYS_FCNTL,   // F_DUPFD_CLOEXEC
    SYS_FTRUNCATE,
    SYS_FSTATFS,
    SYS_GETDENTS64,
    SYS_MKDIRAT,
    SYS_MKNODAT, // regular files and fifos only
    SYS_FCHOWNAT,
    SYS_UNLINKAT,
    SYS_LINKAT,
    SYS_SYMLINKAT,
    SYS_READLINKAT,
    SYS_FCHMODAT,
    SYS_UTIMENSAT,
    SYS_RENAMEAT2,
    SYS_OPENAT2,
];
/// `openat`, allowed with shares only on kernels without `openat2` (< 5.6),
/// where `p9/host.rs` falls back to it.
const OPENAT: u32 = SYS_OPENAT;

/// `madvise(MADV_DONTNEED)`: the balloon gives reported free pages back
/// (`virtio/balloon`); no other advice is allowed.
const MADV_DONTNEED: u32 = 4;

/// ioctl requests: the vCPU loop, the interrupt line, and the terminal
/// (restore on exit: TCSETS2 / its TCSETS fallback; size on SIGWINCH).
#[cfg(not(feature = "warm-save"))]
pub const IOCTLS: [u32; 5] = [KVM_RUN, KVM_IRQ_LINE, TCSETS2, TCSETS, TIOCGWINSZ];
/// A saving stub (feature `warm-save`, run by `smolvm warm`, never in
/// images) also reads the VM and vCPU state when the guest asks for its
/// snapshot (`warm::save`): reads only, no `KVM_SET_*`.
#[cfg(feature = "warm-save")]
pub const IOCTLS: [u32; 18] = {
    use crate::sys::kvm as k;
    [
        KVM_RUN, KVM_IRQ_LINE, TCSETS2, TCSETS, TIOCGWINSZ,
        k::KVM_GET_MSRS, k::KVM_GET_IRQCHIP, k::KVM_GET_PIT2, k::KVM_GET_CLOCK,
        k::KVM_GET_REGS, k::KVM_GET_SREGS, k::KVM_GET_XCRS, k::KVM_GET_LAPIC, k::KVM_GET_VCPU_EVENTS,
        k::KVM_GET_MP_STATE, k::KVM_GET_DEBUGREGS, k::KVM_GET_XSAVE, k::KVM_GET_TSC_KHZ,
    ]
};
/// The reaper's clone flags (`reaper.rs`): the only clone allowed.
#[allow(clippy::cast_possible_truncation)] // 0x100
const CLONE_VM: u32 = crate::sys::thread::Task::SharedMemoryProcess.flags() as u32;

/// Total distinct system calls allowed.
pub const SYSCALL_COUNT: usize = ALLOWED.len() + 2;

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ALLOW: u32 = 0x7fff_0000;
// BPF opcodes: ld|w|abs, jmp|jeq|k, ret|k.
const LD_ABS: u16 = 0x20;
const JEQ: u16 = 0x15;
const RET: u16 = 0x06;
// seccomp_data offsets.
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG0_LO: u32 = 16;
const ARG0_HI: u32 = 20;
const ARG1_LO: u32 = 24;
const ARG2_LO: u32 = 32;

const LEN: usize = 4 + 1 + 1 + IOCTLS.len() + 1 + 1 + 4 + ALLOWED.len() + SHARE_CALLS.len() + 1 + 3 + 2;

/// Jump targets resolved once the program length is known.
#[derive(Clone, Copy)]
enum To {
    Next,
    Allow,
    Kill,
    Skip(u8),
}

struct Prog {
    ins: [SockFilter; LEN],
    n: usize,
}

// Offsets fit: `FULL` asserts LEN < 250.
#[allow(clippy::cast_possible_truncation)]
const fn offset(to: To, at: usize) -> u8 {
    // KILL and ALLOW are the last two instructions.
    match to {
        To::Next => 0,
        To::Skip(n) => n,
        To::Kill => (LEN - 2 - at - 1) as u8,
        To::Allow => (LEN - 1 - at - 1) as u8,
    }
}

impl Prog {
    const fn op(&mut self, code: u16, k: u32) {
        self.ins[self.n] = SockFilter { code, jt: 0, jf: 0, k };
        self.n += 1;
    }
    const fn jeq(&mut self, k: u32, t: To, f: To) {
        self.ins[self.n] = SockFilter { code: JEQ, jt: offset(t, self.n), jf: offset(f, self.n), k };
        self.n += 1;
    }
    const fn allow_each(&mut self, nrs: &[u32]) {
        let mut i = 0;
        while i < nrs.len() {
            self.jeq(nrs[i], To::Allow, To::Next);
            i += 1;
        }
    }
}

/// Where the [`SHARE_CALLS`] tests start in the program, the `openat` test
/// and the `madvise` test.
const SHARES_AT: usize = LEN - 6 - SHARE_CALLS.len();
const OPENAT_AT: usize = LEN - 6;
const MADVISE_AT: usize = LEN - 5;

/// The program with shares and `openat` allowed, built at compile time (a
/// table costs the stub less than the code that would build it).
#[allow(clippy::cast_possible_truncation)] // LEN < 250
const FULL: [SockFilter; LEN] = {
    assert!(LEN < 250, "BPF jump offsets are 8-bit");
    let mut p = Prog { ins: [SockFilter { code: 0, jt: 0, jf: 0, k: 0 }; LEN], n: 0 };
    p.op(LD_ABS, ARCH);
    p.jeq(AUDIT_ARCH_X86_64, To::Skip(1), To::Next);
    p.op(RET, RET_KILL_PROCESS);
    p.op(LD_ABS, NR);
    p.jeq(SYS_IOCTL, To::Next, To::Skip(IOCTLS.len() as u8 + 2));
    p.op(LD_ABS, ARG1_LO); // the kernel takes `unsigned int cmd`
    p.allow_each(&IOCTLS);
    p.op(RET, RET_KILL_PROCESS);
    p.jeq(SYS_CLONE, To::Next, To::Skip(4));
    p.op(LD_ABS, ARG0_LO);
    p.jeq(CLONE_VM, To::Next, To::Kill);
    p.op(LD_ABS, ARG0_HI);
    p.jeq(0, To::Allow, To::Kill);
    p.allow_each(&ALLOWED);
    assert!(p.n == SHARES_AT);
    p.allow_each(&SHARE_CALLS);
    assert!(p.n == OPENAT_AT);
    p.jeq(OPENAT, To::Allow, To::Next);
    assert!(p.n == MADVISE_AT);
    p.jeq(SYS_MADVISE, To::Next, To::Kill);
    p.op(LD_ABS, ARG2_LO); // `int advice`
    p.jeq(MADV_DONTNEED, To::Allow, To::Kill);
    p.op(RET, RET_KILL_PROCESS);
    p.op(RET, RET_ALLOW);
    assert!(p.n == LEN);
    p.ins
};

/// The filter program (pure; unit-tested by running it through an
/// interpreter below).
/// `shares`: also allow [`SHARE_CALLS`] (else their tests repeat `read`,
/// which keeps every jump offset the same); `openat`: also allow `openat`;
/// `balloon`: also allow `madvise(MADV_DONTNEED)`.
pub fn program(shares: bool, openat: bool, balloon: bool) -> [SockFilter; LEN] {
    let mut p = FULL;
    if !shares {
        for i in &mut p[SHARES_AT..OPENAT_AT] {
            i.k = SYS_READ;
        }
    }
    if !openat {
        p[OPENAT_AT].k = SYS_READ;
    }
    if !balloon {
        p[MADVISE_AT].k = SYS_READ; // `read` was allowed above: never matches here
    }
    p
}

/// `PR_SET_NO_NEW_PRIVS`, then the filter on every thread (TSYNC: the
/// stdin thread too); processes cloned later (the reaper) inherit it.
pub fn install(shares: bool, balloon: bool) -> Result<(), rustix::io::Errno> {
    crate::sys::seccomp::install_filter(&program(shares, shares && !has_openat2(), balloon))
}

/// Whether the kernel has `openat2` (Linux 5.6+), which the 9p server uses
/// for every open.
fn has_openat2() -> bool {
    use rustix::fs::{openat2, Mode, OFlags, ResolveFlags, CWD};
    let flags = OFlags::PATH | OFlags::CLOEXEC;
    !matches!(openat2(CWD, c"/", flags, Mode::empty(), ResolveFlags::empty()), Err(rustix::io::Errno::NOSYS))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic-BPF interpreter for the instructions the program uses.
    fn run(p: &[SockFilter], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = p[pc];
            match i.code {
                LD_ABS => acc = u32::from_ne_bytes(data[i.k as usize..i.k as usize + 4].try_into().unwrap()),
                JEQ => pc += usize::from(if acc == i.k { i.jt } else { i.jf }),
                RET => return i.k,
                c => panic!("opcode {c:#x}"),
            }
            pc += 1;
        }
    }

    #[test]
    fn allows_exactly_the_list() {
        let p = program(false, false, false);
        let x = AUDIT_ARCH_X86_64;
        let with_shares = program(true, false, false);
        for nr in [OPENAT, 4, 6, 7, 262, 264, 332] {
            assert_eq!(run(&with_shares, nr, x, [0; 6]), RET_KILL_PROCESS, "{nr} with a share");
        }
        assert_eq!(run(&program(true, true, false), OPENAT, x, [0; 6]), RET_ALLOW, "openat before Linux 5.6");
        assert_eq!(run(&program(false, false, false), OPENAT, x, [0; 6]), RET_KILL_PROCESS);
        for nr in SHARE_CALLS {
            assert_eq!(run(&p, nr, x, [0; 6]), RET_KILL_PROCESS, "{nr} without a share");
            assert_eq!(run(&with_shares, nr, x, [0; 6]), RET_ALLOW, "{nr} with a share");
        }
        assert_eq!(run(&with_shares, 59, x, [0; 6]), RET_KILL_PROCESS, "execve");
        for nr in ALLOWED {
            assert_eq!(run(&p, nr, x, [0; 6]), RET_ALLOW, "{nr}");
        }
        for nr in [2, 9, 10, 57, 59, 62, 101, 102, 257, 322, 435, 0x4000_0000] {
            assert_eq!(run(&p, nr, x, [0; 6]), RET_KILL_PROCESS, "{nr}");
        }
        assert_eq!(run(&p, SYS_READ, 0x4000_0003, [0; 6]), RET_KILL_PROCESS, "i386 arch");
        for r in IOCTLS {
            assert_eq!(run(&p, SYS_IOCTL, x, [5, u64::from(r), 0, 0, 0, 0]), RET_ALLOW);
        }
        assert_eq!(run(&p, SYS_IOCTL, x, [5, 0xae01, 0, 0, 0, 0]), RET_KILL_PROCESS, "KVM_CREATE_VM");
        assert_eq!(run(&p, SYS_IOCTL, x, [5, 0x4020_ae46, 0, 0, 0, 0]), RET_KILL_PROCESS);
        assert_eq!(run(&p, SYS_CLONE, x, [0x100, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&p, SYS_CLONE, x, [0x5_0f00, 0, 0, 0, 0, 0]), RET_KILL_PROCESS);
        assert_eq!(run(&p, SYS_CLONE, x, [0x1_0000_0100, 0, 0, 0, 0, 0]), RET_KILL_PROCESS);
        let balloon = program(false, false, true);
        assert_eq!(run(&p, SYS_MADVISE, x, [0, 4096, 4, 0, 0, 0]), RET_KILL_PROCESS, "madvise without the balloon");
        assert_eq!(run(&balloon, SYS_MADVISE, x, [0, 4096, 4, 0, 0, 0]), RET_ALLOW, "MADV_DONTNEED");
        for advice in [0, 1, 8, 9, 14, 100, 0x1_0000_0004] {
            assert_eq!(run(&balloon, SYS_MADVISE, x, [0, 4096, advice, 0, 0, 0]), if advice == 0x1_0000_0004 { RET_ALLOW } else { RET_KILL_PROCESS }, "advice {advice}");
        }
        for nr in ALLOWED {
            assert_eq!(run(&balloon, nr, x, [0; 6]), RET_ALLOW, "{nr} with the balloon");
        }
        assert_eq!(run(&balloon, SYS_OPENAT, x, [0; 6]), RET_KILL_PROCESS);
        assert_eq!(SYSCALL_COUNT, 23);
        assert_eq!(SYSCALL_COUNT + SHARE_CALLS.len(), 42);
    }
}
