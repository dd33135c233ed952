//! Files written next to the output and removed unless persisted: an error
//! (or a panic) never leaves a partial image behind.

use crate::bail;
use crate::error::{Context, Result};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub struct TempFile {
    path: PathBuf,
    mode: u32,
    keep: bool,
}

fn beside(target: &Path, suffix: &str) -> Result<PathBuf> {
    let Some(name) = target.file_name() else {
        bail!("output {} is not a file name", target.display());
    };
    if target.is_dir() {
        bail!(
            "output {} is a directory: give a file name, e.g. -o app.vm",
            target.display()
        );
    }
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Ok(dir.join(format!(
        ".{}.{suffix}-{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

impl TempFile {
    /// Creates an empty temporary file in `target`'s directory.
    pub fn create_beside(target: &Path, mode: u32) -> Result<TempFile> {
        let path = beside(target, "tmp")?;
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .context(|| format!("cannot write output {}", target.display()))?;
        Ok(TempFile {
            path,
            mode,
            keep: false,
        })
    }

    /// A path in `target`'s directory for another program to create.
    pub fn reserve_beside(target: &Path, suffix: &str) -> Result<TempFile> {
        Ok(TempFile {
            path: beside(target, suffix)?,
            mode: 0o644,
            keep: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self) -> Result<File> {
        OpenOptions::new()
            .write(true)
            .open(&self.path)
            .context(|| self.path.display().to_string())
    }

    /// Sets the final mode (not subject to the umask) and renames into place.
    pub fn persist(mut self, target: &Path) -> Result<()> {
        fs::set_permissions(&self.path, fs::Permissions::from_mode(self.mode))
            .context(|| format!("chmod {}", self.path.display()))?;
        fs::rename(&self.path, target)
            .context(|| format!("cannot write output {}", target.display()))?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A directory next to the output, removed with its contents on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn create_beside(target: &Path, suffix: &str) -> Result<TempDir> {
        let path = beside(target, suffix)?;
        fs::create_dir(&path).context(|| format!("cannot write output {}", target.display()))?;
        Ok(TempDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}
