//! Writing a file whole or not at all: a temporary file in the target's
//! directory, renamed over the target once complete and synced. Dropped
//! without [`TempFile::commit`], the temporary file is removed.

use crate::error::{Context, Error, Result};
use std::fs::{File, Permissions};
use std::path::{Path, PathBuf};

/// `path` with its symlinks resolved when it is one (and resolves),
/// for writing a file in place without replacing the link.
pub fn through_symlinks(path: &Path) -> PathBuf {
    match std::fs::canonicalize(path) {
        Ok(target) if path.is_symlink() => target,
        _ => path.to_path_buf(),
    }
}

pub struct TempFile {
    path: PathBuf,
    file: File,
    committed: bool,
}

impl TempFile {
    /// Creates `.<name>.tmp-<pid>-<n>` next to `target` (mode 0600 until commit).
    pub fn beside(target: &Path) -> Result<TempFile> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = target
            .file_name()
            .ok_or_else(|| Error(format!("{}: not a file name", target.display())))?
            .to_string_lossy()
            .into_owned();
        for n in 0..100u32 {
            let path = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
            match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
                Ok(file) => return Ok(TempFile { path, file, committed: false }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error(format!("{}: cannot write there: {e}", dir.display()))),
            }
        }
        Err(Error(format!("{}: cannot create a temporary file", dir.display())))
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn display(&self) -> String {
        self.path.display().to_string()
    }

    /// Syncs, sets `mode`, and renames over `target`.
    pub fn commit(mut self, target: &Path, mode: Option<Permissions>) -> Result<()> {
        if let Some(m) = mode {
            self.file.set_permissions(m).context(|| self.display())?;
        }
        self.file.sync_all().context(|| self.display())?;
        std::fs::rename(&self.path, target).context(|| format!("{}: cannot replace it", target.display()))?;
        self.committed = true;
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Durability of the rename; failure here loses nothing already written.
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
