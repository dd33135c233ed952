//! Prerequisites a test's real work needs (`/dev/kvm`, root, ...), made
//! visible: a test that cannot do its work must not report a silent "ok".
//!
//! - Under CI (`CI` set to anything but empty, `0` or `false`) a missing
//!   prerequisite FAILS the test with `MISSING PREREQUISITE: <test>: <what>`:
//!   CI machines are set up to run everything.
//! - Elsewhere the test returns early and prints `SKIPPED: <test>: <what>`
//!   straight to the terminal's stderr, past cargo's output capture, so it
//!   stands in `cargo test`'s output beside the test's `ok`.
//!
//! ```ignore
//! if !prereq::kvm() { return; }
//! if !prereq::require(is_root, "root, to mount a tmpfs") { return; }
//! ```

use std::io::Write;

/// Whether this run is CI's, where every prerequisite must be present.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// `true` when `available`; otherwise fails the test under CI, or reports
/// it skipped (naming `what` is missing) and returns `false`.
#[track_caller]
pub fn require(available: bool, what: &str) -> bool {
    if available {
        return true;
    }
    let test = test_name();
    if in_ci() {
        panic!("MISSING PREREQUISITE: {test}: {what} (CI must run every test)");
    }
    // Not eprintln!: the harness captures that for passing tests.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {what}");
    false
}

/// A `/dev/kvm` this process may open read-write (the bare-metal guests and
/// the stub's real run loop need it).
pub fn kvm() -> bool {
    let usable = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm");
    let what = match &usable {
        Ok(_) => String::new(),
        Err(e) => format!("a usable /dev/kvm (opening it read-write: {e})"),
    };
    require(usable.is_ok(), &what)
}

/// Root (effective UID 0), for cases that mount file systems or change UID.
pub fn root(what_for: &str) -> bool {
    require(rustix::process::geteuid().is_root(), &format!("root, {what_for}"))
}

/// The running test's name (the harness names each test's thread after it).
fn test_name() -> String {
    std::thread::current().name().unwrap_or("this test").to_string()
}
