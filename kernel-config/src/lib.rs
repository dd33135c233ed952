//! The smolvm guest kernel: `make tinyconfig` + the fragments in `fragments/`, then
//! `make olddefconfig`, then a check that every option a fragment set survived;
//! then `vmlinux` and one `bzImage` per compression, cached under
//! `$SMOLVM_CACHE/kernel/<key>/` (see `cache.rs` for the entry layout).
pub mod build;
pub mod cache;
pub mod dotconfig;
pub mod fragment;
pub mod meta;
mod progress;
mod run;
pub mod source;

pub use build::{configure, ensure, lookup, Request};
pub use cache::Entry;
pub use fragment::Fragment;
pub use meta::Meta;
pub use progress::Progress;
pub use source::Source;

use std::path::PathBuf;

/// A one-line, user-facing failure. `log` points at the full make log when there is one.
#[derive(Debug)]
pub struct Error {
    pub message: String,
    pub log: Option<PathBuf>,
    /// The last lines of that log, printed under the message.
    pub log_tail: String,
}

impl Error {
    pub fn new(message: impl Into<String>) -> Error {
        Error { message: message.into(), log: None, log_tail: String::new() }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl std::fmt::Display, e: std::io::Error) -> Error {
        Error::new(format!("{what}: {e}"))
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// The kernel image compression of a `bzImage` (Kconfig's `KERNEL_*` choice).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Lz4,
    Zstd,
    Xz,
}

impl Compression {
    /// Every compression; each cache entry holds one `bzImage` per compression.
    pub const ALL: [Compression; 3] = [Compression::Lz4, Compression::Zstd, Compression::Xz];

    pub fn name(self) -> &'static str {
        match self {
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
        }
    }

    pub fn parse(s: &str) -> Option<Compression> {
        Compression::ALL.into_iter().find(|c| c.name() == s)
    }

    /// A synthetic fragment selecting this compression in the Kconfig choice.
    pub fn fragment(self) -> Fragment {
        let mut text = String::new();
        for sym in ["GZIP", "BZIP2", "LZMA", "XZ", "LZO", "LZ4", "ZSTD"] {
            if sym.eq_ignore_ascii_case(self.name()) {
                text.push_str(&format!("CONFIG_KERNEL_{sym}=y\n"));
            } else {
                text.push_str(&format!("# CONFIG_KERNEL_{sym} is not set\n"));
            }
        }
        Fragment::new(format!("--compression {}", self.name()), text)
    }
}

/// `$SMOLVM_CACHE`, else `~/.cache/smolvm`.
pub fn cache_root() -> Result<PathBuf, Error> {
    let var = |k| std::env::var_os(k).filter(|v: &std::ffi::OsString| !v.is_empty());
    if let Some(p) = var("SMOLVM_CACHE") {
        return Ok(PathBuf::from(p));
    }
    var("HOME")
        .map(|h| PathBuf::from(h).join(".cache/smolvm"))
        .ok_or_else(|| Error::new("cannot find a cache directory: set SMOLVM_CACHE or HOME"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_fragment_selects_exactly_one() {
        let s = Compression::Zstd.fragment().settings().expect("valid");
        let set: Vec<_> = s.iter().filter(|s| s.value.is_some()).map(|s| s.option.as_str()).collect();
        assert_eq!(set, ["CONFIG_KERNEL_ZSTD"]);
        assert_eq!(s.len(), 7);
        assert_eq!(Compression::parse("xz"), Some(Compression::Xz));
        assert_eq!(Compression::parse("gzip"), None);
    }
}
