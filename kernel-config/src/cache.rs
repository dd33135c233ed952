//! The kernel cache under `$SMOLVM_CACHE/kernel/`:
//!
//! ```text
//! kernel/
//!   lock                 flock'ed by whoever builds (builds are serialised)
//!   src/<source-key>/    extracted tarball, reused by every build from it
//!   work/<source-key>/   the out-of-tree object dir (O=), reused for incremental builds
//!   logs/<key>.log       make output of the latest build attempt of <key>
//!   configs/<key>.config the verified .config of `smolvm kernel config` (no build)
//!   <key>/               a complete entry, renamed into place only after success:
//!     vmlinux  bzImage-lz4  bzImage-zstd  bzImage-xz  config  build.log  kernel.meta
//! ```
use crate::fragment::effective;
use crate::{Compression, Error, Fragment, Meta};
use linker::sha256::{hex, Sha256};
use std::path::{Path, PathBuf};

/// Bump when the build recipe changes in a way fragments do not show.
const RECIPE: &str = "smolvm-kernel-recipe-2";

/// A complete cache entry.
#[derive(Clone, Debug)]
pub struct Entry {
    pub dir: PathBuf,
}

impl Entry {
    pub fn vmlinux(&self) -> PathBuf {
        self.dir.join("vmlinux")
    }
    pub fn bzimage(&self, c: Compression) -> PathBuf {
        self.dir.join(format!("bzImage-{}", c.name()))
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("config")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("build.log")
    }
    pub fn meta(&self) -> Result<Meta, Error> {
        Meta::load(&self.dir)
    }

    /// `dir` as an entry if it is complete (the meta file is written last).
    pub fn open(dir: PathBuf) -> Option<Entry> {
        let e = Entry { dir };
        let complete = e.dir.join(crate::meta::FILE_NAME).is_file()
            && e.vmlinux().is_file()
            && Compression::ALL.iter().all(|c| e.bzimage(*c).is_file());
        complete.then_some(e)
    }
}

/// Hex SHA-256 of some text.
pub fn sha256_hex(data: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(data);
    hex(&h.finish())
}

/// The cache key: a hash of the recipe, the source identity and the effective
/// settings of the fragments (so editing a comment in a fragment rebuilds nothing).
/// 16 hex digits keep paths short.
pub fn key(source_identity: &str, fragments: &[Fragment]) -> Result<String, Error> {
    let mut material = format!("{RECIPE}\n{source_identity}\n");
    for (s, _) in effective(fragments)? {
        material.push_str(&s.line());
        material.push('\n');
    }
    Ok(sha256_hex(material.as_bytes())[..16].to_string())
}

/// A short key for the source alone (names the extracted tree and the object dir).
pub fn source_key(source_identity: &str) -> String {
    sha256_hex(source_identity.as_bytes())[..16].to_string()
}

pub fn kernel_dir(root: &Path) -> PathBuf {
    root.join("kernel")
}

/// Holds `kernel/lock` exclusively until dropped.
pub struct Lock(#[allow(dead_code)] std::fs::File);

impl Lock {
    pub fn acquire(kernel_dir: &Path) -> Result<Lock, Error> {
        std::fs::create_dir_all(kernel_dir)
            .map_err(|e| Error::io(format!("cannot create {}", kernel_dir.display()), e))?;
        let p = kernel_dir.join("lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| Error::io(format!("cannot open {}", p.display()), e))?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| Error::new(format!("cannot lock {}: {e}", p.display())))?;
        Ok(Lock(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_depends_on_source_and_settings_not_comments() {
        let f = |t: &str| vec![Fragment::new("a.config", "CONFIG_A=y\n"), Fragment::new("b.config", t)];
        let key = |id: &str, frags: &[Fragment]| key(id, frags).expect("valid fragments");
        let k = key("src1", &f("CONFIG_B=y\n"));
        assert_eq!(k.len(), 16);
        assert_eq!(k, key("src1", &f("# saves 12 KiB\nCONFIG_B=y\n")));
        assert_ne!(k, key("src2", &f("CONFIG_B=y\n")));
        assert_ne!(k, key("src1", &f("CONFIG_B=n\n")));
        assert_ne!(k, key("src1", &f("CONFIG_B=\"y\"\n")));
        assert_ne!(k, key("src1", &f("CONFIG_B=y\n")[..1]));
    }

    #[test]
    fn an_incomplete_entry_is_not_an_entry() {
        let d = std::env::temp_dir().join(format!("kc-entry-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("tmp");
        std::fs::write(d.join("vmlinux"), "x").expect("write");
        assert!(Entry::open(d.clone()).is_none());
        for c in Compression::ALL {
            std::fs::write(d.join(format!("bzImage-{}", c.name())), "x").expect("write");
        }
        assert!(Entry::open(d.clone()).is_none(), "no kernel.meta yet");
        std::fs::write(d.join("kernel.meta"), "format=1\n").expect("write");
        assert!(Entry::open(d.clone()).is_some());
        std::fs::remove_dir_all(&d).expect("cleanup");
    }
}
