//! Where the kernel source comes from (Debian's tarball by default, or `--source`),
//! its identity for the cache key, the build tools it needs, and the cached
//! extraction of a tarball (extracting takes longer than configuring).
use crate::Error;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's kernel source, from the `linux-source-6.1` package.
pub const DEFAULT_TARBALL: &str = "/usr/src/linux-source-6.1.tar.xz";

/// The Debian packages a kernel build needs (named in every "missing" error).
pub const PACKAGES: &str = "linux-source-6.1 bc flex bison libelf-dev build-essential xz-utils lz4 zstd";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A `.tar[.xz|.gz|...]` holding one top directory with the kernel tree.
    Tarball(PathBuf),
    /// An unpacked, clean kernel tree (built out of tree, it is never written to).
    Tree(PathBuf),
}

impl Source {
    /// `--source PATH` (a tarball or a tree), or Debian's tarball.
    pub fn resolve(arg: Option<&Path>) -> Result<Source, Error> {
        let Some(path) = arg else {
            let p = Path::new(DEFAULT_TARBALL);
            if !p.is_file() {
                return Err(Error::new(format!(
                    "kernel source {DEFAULT_TARBALL} not found: install the Debian packages \
                     (apt-get install {PACKAGES}) or pass --source <tree or tarball>"
                )));
            }
            return Ok(Source::Tarball(p.to_path_buf()));
        };
        let abs = std::fs::canonicalize(path)
            .map_err(|e| Error::new(format!("kernel source {}: {e}", path.display())))?;
        if abs.is_file() {
            return Ok(Source::Tarball(abs));
        }
        if !abs.join("Makefile").is_file() || !abs.join("Kconfig").is_file() {
            return Err(Error::new(format!("{} is not a kernel source tree (no Makefile/Kconfig)", abs.display())));
        }
        // Kbuild refuses an out-of-tree build from a tree configured in place.
        if abs.join(".config").exists() || abs.join("include/config").exists() {
            return Err(Error::new(format!(
                "kernel tree {} was configured in place; run `make -C {} mrproper` or pass the tarball",
                abs.display(),
                abs.display()
            )));
        }
        Ok(Source::Tree(abs))
    }

    pub fn path(&self) -> &Path {
        match self {
            Source::Tarball(p) | Source::Tree(p) => p,
        }
    }

    /// What identifies this source's content for the cache key: path, size and
    /// modification time (of the tarball, or of the tree's top Makefile), plus the
    /// Debian package version for Debian's tarball. Read from files only (no PATH
    /// lookups), so a cached kernel is found on a machine without build tools.
    pub fn identity(&self) -> Result<String, Error> {
        let stamp = |p: &Path| -> Result<String, Error> {
            let m = std::fs::metadata(p).map_err(|e| Error::io(format!("kernel source {}", p.display()), e))?;
            let mtime = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            Ok(format!("size={} mtime={}", m.len(), mtime.map_or(0, |d| d.as_nanos())))
        };
        Ok(match self {
            Source::Tarball(p) => {
                let mut id = format!("tarball {} {}", p.display(), stamp(p)?);
                if p == Path::new(DEFAULT_TARBALL) {
                    let status = std::fs::read_to_string(DPKG_STATUS).unwrap_or_default();
                    if let Some(v) = debian_version(&status, "linux-source-6.1") {
                        id.push_str(&format!(" deb=linux-source-6.1={v}"));
                    }
                }
                id
            }
            Source::Tree(p) => format!("tree {} {}", p.display(), stamp(&p.join("Makefile"))?),
        })
    }
}

const DPKG_STATUS: &str = "/var/lib/dpkg/status";

/// The `Version:` of `package` in dpkg's status database text.
fn debian_version(status: &str, package: &str) -> Option<String> {
    let para = status.split("\n\n").find(|p| p.lines().any(|l| l.strip_prefix("Package: ") == Some(package)))?;
    para.lines().find_map(|l| l.strip_prefix("Version: ")).map(|v| v.trim().to_string())
}

/// Fails with one line naming the Debian packages to install when a build tool is missing.
pub fn check_tools() -> Result<(), Error> {
    const TOOLS: &[(&str, &str)] = &[
        ("make", "build-essential"),
        ("gcc", "build-essential"),
        ("ld", "binutils"),
        ("size", "binutils"),
        ("bc", "bc"),
        ("flex", "flex"),
        ("bison", "bison"),
        ("tar", "tar"),
        ("xz", "xz-utils"),
        ("lz4", "lz4"),
        ("zstd", "zstd"),
    ];
    let mut missing: Vec<(&str, &str)> = TOOLS.iter().copied().filter(|(t, _)| find_in_path(t).is_none()).collect();
    // objtool (x86_64) links against libelf.
    if !Path::new("/usr/include/libelf.h").exists() && !Path::new("/usr/include/gelf.h").exists() {
        missing.push(("libelf.h", "libelf-dev"));
    }
    if missing.is_empty() {
        return Ok(());
    }
    let tools: Vec<&str> = missing.iter().map(|(t, _)| *t).collect();
    let mut pkgs: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    pkgs.dedup();
    Err(Error::new(format!(
        "kernel build tools missing ({}): install the Debian packages: apt-get install {}",
        tools.join(", "),
        pkgs.join(" ")
    )))
}

fn find_in_path(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(tool)).find(|p| p.is_file())
}

/// The tree to build from: a `Tree` as is; a `Tarball` extracted once into
/// `<dir>` (through a temporary directory, renamed into place when complete).
pub fn tree(source: &Source, dir: &Path, log: &crate::run::Log) -> Result<PathBuf, Error> {
    let tarball = match source {
        Source::Tree(p) => return Ok(p.clone()),
        Source::Tarball(p) => p,
    };
    if dir.join("Makefile").is_file() {
        return Ok(dir.to_path_buf());
    }
    let parent = dir.parent().ok_or_else(|| Error::new("source cache dir has no parent"))?;
    let tmp = parent.join(format!(".tmp-extract-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(format!("cannot create {}", tmp.display()), e))?;
    let mut cmd = Command::new("tar");
    cmd.arg("-xf").arg(tarball).arg("-C").arg(&tmp);
    crate::run::run(&mut cmd, log, &mut crate::Progress::silent(), &format!("extracting {}", tarball.display()))?;
    // The tarball holds one top directory (linux-source-6.1/).
    let top: Vec<PathBuf> = std::fs::read_dir(&tmp)
        .map_err(|e| Error::io(format!("reading {}", tmp.display()), e))?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.join("Makefile").is_file())
        .collect();
    let [top] = top.as_slice() else {
        return Err(Error::new(format!("{} does not hold exactly one kernel tree", tarball.display())));
    };
    std::fs::rename(top, dir).map_err(|e| Error::io(format!("cannot move the source into {}", dir.display()), e))?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_tree_is_refused_with_the_fix() {
        let d = std::env::temp_dir().join(format!("kc-src-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("tmp");
        for f in ["Makefile", "Kconfig", ".config"] {
            std::fs::write(d.join(f), "").expect("write");
        }
        let e = Source::resolve(Some(&d)).expect_err("configured in place").to_string();
        assert!(e.contains("mrproper"), "{e}");
        std::fs::remove_file(d.join(".config")).expect("rm");
        let s = Source::resolve(Some(&d)).expect("clean tree");
        assert!(s.identity().expect("id").starts_with("tree "));
        std::fs::remove_dir_all(&d).expect("cleanup");
    }

    #[test]
    fn debian_version_comes_from_the_right_paragraph() {
        let st = "Package: linux-source-6.10\nVersion: 9\n\nPackage: linux-source-6.1\nStatus: install ok installed\nVersion: 6.1.192-3\n\n";
        assert_eq!(debian_version(st, "linux-source-6.1").as_deref(), Some("6.1.192-3"));
        assert_eq!(debian_version(st, "bc"), None);
    }

    #[test]
    fn missing_source_names_the_packages() {
        let e = Source::resolve(Some(Path::new("/nonexistent/linux.tar.xz"))).expect_err("missing").to_string();
        assert!(e.contains("/nonexistent/linux.tar.xz"), "{e}");
    }
}
