//! Memory failures that explain themselves: when the app ends badly after
//! the kernel's OOM killer fired, one line pointing to `--smolvm-mem`.
//!
//! The kernel log is the witness: the killer logs `Out of memory: Killed
//! process PID (NAME) ...` (`Memory cgroup out of memory: ...` in a cgroup)
//! whenever it kills, before the victim can exit. /proc/vmstat's `oom_kill`
//! would be simpler but needs VM_EVENT_COUNTERS, which the kernel leaves
//! out. An allocation the kernel refuses outright (mmap or brk ENOMEM under
//! the overcommit heuristic, e.g. the loader's `cannot map zero-fill
//! pages`) leaves no trace anywhere: the app's own message is all there is
//! (docs/COMPAT.md).

use crate::out::Line;

const KILLED: &[u8] = b"of memory: Killed process ";
/// `PID (NAME) `: a pid has at most 7 digits, a name 15 bytes.
const MAX_VICTIM: usize = 7 + 2 + 15 + 2;

/// The last OOM kill in the kernel log `log`: its victim as `PID (NAME)`.
pub fn last_kill(log: &[u8]) -> Option<&[u8]> {
    let rest = log.get(rfind(log, KILLED)?.wrapping_add(KILLED.len())..)?;
    // The name may itself hold ") ": the last one within reach ends it.
    let end = rfind(rest.get(..MAX_VICTIM.min(rest.len()))?, b") ")?;
    rest.get(..=end)
}

/// Where the last `needle` in `hay` starts (one plain loop: small code).
fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    (0..=hay.len().checked_sub(needle.len())?).rev().find(|&i| hay.get(i..).is_some_and(|h| h.starts_with(needle)))
}

/// A guest memory size worth trying after an OOM kill with `usable_mib`
/// (what the kernel manages): twice that, rounded up to a power of two.
pub fn suggested_mib(usable_mib: u64) -> u64 {
    usable_mib.saturating_mul(2).max(64).checked_next_power_of_two().unwrap_or(u64::MAX)
}

/// After the app ended with a failure: if the OOM killer fired, says so in
/// one line and returns true.
pub fn explain() -> bool {
    // The kill line follows the killer's report of at most a few KiB.
    let mut buf = [0u8; 16 * 1024];
    let Some(victim) = last_kill(crate::sys::kernel_log_tail(&mut buf)) else { return false };
    let info = rustix::system::sysinfo();
    let usable = info.totalram.saturating_mul(u64::from(info.mem_unit)) >> 20;
    Line::new()
        .s("the guest ran out of memory (")
        .n(usable)
        .s(" MiB usable) and the kernel killed process ")
        .b(victim)
        .s(": give the VM more with --smolvm-mem=")
        .n(suggested_mib(usable))
        .s("M")
        .print();
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_last_kill() {
        let log = b"<6>hello\n<3>Out of memory: Killed process 42 (sh) total-vm:1kB\n\
            <3>Out of memory: Killed process 77 (big app) total-vm:123456kB, anon-rss:1kB\n<6>oom_reaper: reaped process 77\n";
        assert_eq!(last_kill(log), Some(&b"77 (big app)"[..]));
        let cg = b"<3>Memory cgroup out of memory: Killed process 9 (a) b) total-vm:1kB\n";
        assert_eq!(last_kill(cg), Some(&b"9 (a) b)"[..]));
        let longest = b"of memory: Killed process 4194304 (0123456789abcde) t";
        assert_eq!(last_kill(longest), Some(&b"4194304 (0123456789abcde)"[..]));
        for bad in [&b""[..], b"<6>Killed process 1 (x) total-vm", b"of memory: Killed process 1 (a",
            b"of memory: Killed process 1 (0123456789abcdefghijklmnop) t"] {
            assert_eq!(last_kill(bad), None, "{:?}", core::str::from_utf8(bad));
        }
    }

    #[test]
    fn suggests_twice_the_memory() {
        assert_eq!(suggested_mib(220), 512);
        assert_eq!(suggested_mib(990), 2048);
        assert_eq!(suggested_mib(10), 64);
    }
}
