//! Host signals: forwarded to the app through init, or ending the VM.
//!
//! - SIGINT, SIGTERM, SIGHUP: recorded in [`PENDING`] and delivered as one
//!   byte (the signal number) on the control port (`abi::slot::CONSOLE_CONTROL`),
//!   where init sends it to the app. The first SIGINT or SIGTERM (a request
//!   to stop, as `docker stop` or a first ^C under `docker compose up`) also
//!   starts a grace period of [`GRACE_SECS`]: if the VM still runs then, the
//!   stub ends with 128 + that signal, whether or not the app handled it. A
//!   second SIGINT ends it at once with 130. SIGHUP is only passed on (an
//!   app may take it as "reload", as under `docker run`).
//!   While nobody in the guest has the control port open (early boot, or a
//!   guest without our init), the signal cannot be delivered: the stub ends
//!   at once with 128 + the signal, as the app would have.
//! - SIGWINCH: the console re-reads the window size (terminal mode).
//! - SIGPIPE: ignored; a write to a closed stdout returns EPIPE, and the
//!   console forwards SIGPIPE to the app instead ([`forward`]).
//! - SIGSEGV/SIGBUS/SIGILL/SIGFPE/SIGABRT in the stub itself: restore the
//!   terminal, print one line, exit 125.
//! - [`SIG_KICK`]: sent by the stdin watcher; only interrupts `KVM_RUN`.
//!
//! Every handler ends with `sys::kvm::kick` (every vCPU's
//! `kvm_run.immediate_exit`), so a signal that arrives just before
//! `KVM_RUN` still makes it return `EINTR`, whichever vCPU thread the
//! kernel gave it to; that run loop then clears the byte and calls
//! `Bus::poll`. Handlers use `SA_RESTART`, so blocking host
//! I/O elsewhere resumes (`KVM_RUN` is never restarted: it returns `EINTR`
//! regardless).

use crate::sys::signal::{self as sys_signal, bit, SigSet};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use linker::abi::status::{SIGNAL_BASE, SMOLVM_FAILED};

pub const SIGHUP: u32 = 1;
pub const SIGINT: u32 = 2;
pub const SIGILL: u32 = 4;
pub const SIGABRT: u32 = 6;
pub const SIGBUS: u32 = 7;
pub const SIGFPE: u32 = 8;
pub const SIGSEGV: u32 = 11;
pub const SIGPIPE: u32 = 13;
pub const SIGALRM: u32 = 14;
pub const SIGTERM: u32 = 15;
/// File size limit (RLIMIT_FSIZE) exceeded: ignored, so a disk write past
/// it fails with EFBIG (IOERR to the guest) instead of killing the VM.
pub const SIGXFSZ: u32 = 25;
pub const SIGWINCH: u32 = 28;
/// Real-time signal the stdin watcher uses to interrupt `KVM_RUN`.
pub const SIG_KICK: u32 = 34;

/// Seconds between the first forwarded signal and the forced end of the VM.
pub const GRACE_SECS: u32 = 10;

/// Signals waiting for delivery to the app: bit `n - 1` is signal `n`.
static PENDING: AtomicU64 = AtomicU64::new(0);
/// The first SIGINT or SIGTERM (0: none yet); decides the exit status when
/// the grace period runs out.
static FIRST: AtomicU32 = AtomicU32::new(0);
static SIGINTS: AtomicU32 = AtomicU32::new(0);
static WINCH: AtomicBool = AtomicBool::new(false);
/// Whether the guest has the control port open (signals can be delivered).
static LISTENING: AtomicBool = AtomicBool::new(false);
/// Blocked while any handler runs, so the counters are updated by one
/// handler at a time.
const HANDLER_MASK: SigSet = bit(SIGINT) | bit(SIGTERM) | bit(SIGHUP) | bit(SIGALRM);

/// The signals that end the stub by default.
const TERMINATING: SigSet = bit(SIGINT) | bit(SIGTERM) | bit(SIGHUP);

/// Holds SIGINT, SIGTERM and SIGHUP pending until [`install`]: called before
/// the terminal goes raw, so that a signal in between cannot end the stub
/// without restoring it.
pub fn hold_terminating() {
    sys_signal::block(TERMINATING);
}

/// Installs the handlers. Call after `Vcpu::route_kicks`, so that they
/// interrupt `KVM_RUN`.
pub fn install() {
    for sig in [SIGINT, SIGTERM, SIGHUP, SIGALRM, SIGWINCH, SIG_KICK, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT] {
        let _ = sys_signal::set_handler(sig, on_signal, HANDLER_MASK);
    }
    let _ = sys_signal::ignore(SIGPIPE);
    let _ = sys_signal::ignore(SIGXFSZ);
    sys_signal::unblock(TERMINATING); // what arrived since hold_terminating runs now
}

/// Asks for signal `sig` to be delivered to the app (e.g. SIGPIPE after the
/// host's stdout closed), and interrupts `KVM_RUN` so it happens soon.
pub fn forward(sig: u32) {
    if (1..=64).contains(&sig) {
        PENDING.fetch_or(bit(sig), Ordering::AcqRel);
        kick();
    }
}

/// Records whether the guest listens on the control port.
pub fn set_listening(on: bool) {
    LISTENING.store(on, Ordering::Release);
}

/// Takes the lowest pending signal, if any.
pub fn take_pending() -> Option<u8> {
    let mut cur = PENDING.load(Ordering::Acquire);
    while cur != 0 {
        let sig = cur.trailing_zeros();
        match PENDING.compare_exchange(cur, cur & !(1 << sig), Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return u8::try_from(sig + 1).ok(),
            Err(now) => cur = now,
        }
    }
    None
}

/// Whether a signal is waiting for delivery.
pub fn has_pending() -> bool {
    PENDING.load(Ordering::Acquire) != 0
}

/// Takes the "window size changed" flag.
pub fn take_winch() -> bool {
    WINCH.swap(false, Ordering::AcqRel)
}

fn kick() {
    crate::sys::kvm::kick();
}

/// Ends the process (async-signal-safe; `sys::exit` restores the terminal).
fn hard_exit(code: u8) -> ! {
    crate::sys::exit(code)
}

extern "C" fn on_signal(sig: i32) {
    let sig = u32::try_from(sig).unwrap_or(0);
    match sig {
        SIGINT | SIGTERM | SIGHUP => {
            let earlier_sigints = if sig == SIGINT { SIGINTS.fetch_add(1, Ordering::AcqRel) } else { 0 };
            match on_forwarded(sig, LISTENING.load(Ordering::Acquire), earlier_sigints) {
                Forwarded::Exit(code) => hard_exit(code),
                Forwarded::Deliver { stop } => {
                    if stop && FIRST.compare_exchange(0, sig, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                        sys_signal::alarm(GRACE_SECS);
                    }
                    PENDING.fetch_or(bit(sig), Ordering::AcqRel);
                }
            }
        }
        SIGALRM => hard_exit(exit_status(FIRST.load(Ordering::Acquire))),
        SIGWINCH => WINCH.store(true, Ordering::Release),
        SIGSEGV | SIGBUS | SIGILL | SIGFPE | SIGABRT => {
            let _ = crate::out::write_all(crate::out::stderr(), b"smolvm: internal error (fatal signal in the stub)\n");
            hard_exit(SMOLVM_FAILED);
        }
        _ => {}
    }
    kick();
}

/// What a SIGINT, SIGTERM or SIGHUP to the stub does.
#[derive(Debug, PartialEq, Eq)]
enum Forwarded {
    /// End the stub now with this status.
    Exit(u8),
    /// Deliver it to the app; `stop`: it asks the VM to stop (the grace
    /// period starts if it has not yet).
    Deliver { stop: bool },
}

/// The rules of the module comment, as a pure function: `listening` (the
/// guest can receive signals), `earlier_sigints` (SIGINTs before this one).
fn on_forwarded(sig: u32, listening: bool, earlier_sigints: u32) -> Forwarded {
    if !listening {
        Forwarded::Exit(exit_status(sig))
    } else if sig == SIGINT && earlier_sigints >= 1 {
        Forwarded::Exit(exit_status(SIGINT))
    } else {
        Forwarded::Deliver { stop: sig != SIGHUP }
    }
}

fn exit_status(sig: u32) -> u8 {
    u8::try_from(sig).map_or(SMOLVM_FAILED, |s| SIGNAL_BASE.saturating_add(s))
}

/// Serialises unit tests that use the process-wide pending set.
#[cfg(test)]
pub static TEST_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_signals_come_out_lowest_first_once() {
        let _g = TEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        while take_pending().is_some() {}
        forward(SIGTERM);
        forward(SIGPIPE);
        forward(SIGTERM);
        forward(0);
        forward(65);
        assert!(has_pending());
        assert_eq!(take_pending(), Some(13));
        assert_eq!(take_pending(), Some(15));
        assert_eq!(take_pending(), None);
        assert_eq!(exit_status(SIGTERM), 143);
        assert_eq!(exit_status(SIGINT), 130);
    }

    #[test]
    fn int_twice_ends_at_once_term_and_int_start_the_grace_hup_does_not() {
        use Forwarded::*;
        // Nobody listens yet: end as the app would have.
        assert_eq!(on_forwarded(SIGHUP, false, 0), Exit(129));
        assert_eq!(on_forwarded(SIGINT, false, 0), Exit(130));
        assert_eq!(on_forwarded(SIGTERM, false, 0), Exit(143));
        assert_eq!(on_forwarded(SIGINT, true, 0), Deliver { stop: true });
        assert_eq!(on_forwarded(SIGINT, true, 1), Exit(130));
        assert_eq!(on_forwarded(SIGTERM, true, 0), Deliver { stop: true });
        // A SIGTERM after a SIGINT is delivered too; only SIGINTs count.
        assert_eq!(on_forwarded(SIGTERM, true, 1), Deliver { stop: true });
        assert_eq!(on_forwarded(SIGHUP, true, 0), Deliver { stop: false });
        assert_eq!(on_forwarded(SIGHUP, true, 1), Deliver { stop: false });
    }
}
