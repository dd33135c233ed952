//! How an ending becomes the VM's exit status (Docker / `env` convention).

use linker::abi::status::{NOT_EXECUTABLE, NOT_FOUND, SIGNAL_BASE, SMOLVM_FAILED};
use rustix::io::Errno;

/// The status for an app that exited with `code` or was killed by `signal`.
pub fn from_wait(code: Option<i32>, signal: Option<i32>) -> u8 {
    match (code, signal) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(SMOLVM_FAILED),
        (None, Some(sig)) => u8::try_from(sig)
            .ok()
            .and_then(|sig| SIGNAL_BASE.checked_add(sig))
            .unwrap_or(SMOLVM_FAILED),
        (None, None) => SMOLVM_FAILED,
    }
}

/// The status and the reason when `execve` of the entry fails with `err`;
/// `exists` says whether the entry itself is there (ENOENT then means its ELF
/// interpreter or `#!` program is missing).
pub fn from_exec_error(err: Errno, exists: bool) -> (u8, &'static str) {
    match err {
        Errno::NOENT if exists => (NOT_FOUND, "cannot run: its ELF interpreter or #! program is missing"),
        Errno::NOENT | Errno::NOTDIR => (NOT_FOUND, "not found"),
        Errno::ACCESS | Errno::PERM => (NOT_EXECUTABLE, "not executable: permission denied"),
        Errno::NOEXEC => (NOT_EXECUTABLE, "not executable: unknown binary format"),
        Errno::ISDIR => (NOT_EXECUTABLE, "not executable: is a directory"),
        _ => (NOT_EXECUTABLE, "cannot execute"),
    }
}

/// Conventional name of the signals a user is likely to see.
pub fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_statuses() {
        assert_eq!(from_wait(Some(0), None), 0);
        assert_eq!(from_wait(Some(42), None), 42);
        assert_eq!(from_wait(Some(255), None), 255);
        assert_eq!(from_wait(None, Some(9)), 137);
        assert_eq!(from_wait(None, Some(64)), 192);
        assert_eq!(from_wait(None, Some(200)), 125);
        assert_eq!(from_wait(None, None), 125);
    }

    #[test]
    fn exec_errors() {
        assert_eq!(from_exec_error(Errno::NOENT, false), (127, "not found"));
        assert_eq!(from_exec_error(Errno::NOENT, true).0, 127);
        assert_eq!(from_exec_error(Errno::ACCESS, true).0, 126);
        assert_eq!(from_exec_error(Errno::NOEXEC, true).0, 126);
        assert_eq!(from_exec_error(Errno::TOOBIG, true).0, 126);
    }
}
