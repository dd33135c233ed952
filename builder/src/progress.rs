//! Progress lines for the long build steps.

/// A progress line on stderr for long steps, only for a person watching
/// (stderr is a terminal and `CI` is not set).
pub fn progress(what: &str) {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() {
        eprintln!("smolvm: {what}");
    }
}
