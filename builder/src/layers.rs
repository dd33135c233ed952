//! Applies untrusted tar layers (a rootfs tarball, container image layers)
//! to a staging directory, in order, with OCI whiteouts: `.wh.NAME` deletes
//! NAME from the layers below, `.wh..wh..opq` empties a directory of what the
//! layers below put there.
//!
//! Safety: entry paths with `..` are refused; a leading `/` or `./` is
//! dropped; nothing is ever created through a symlink (each parent is
//! checked with `symlink_metadata`, files are opened with `O_NOFOLLOW` after
//! any old entry is removed), so a symlink in the archive cannot place files
//! outside the staging root. Device nodes and FIFOs are skipped with a
//! warning. Decompressed bytes are capped (`limit`), so an archive bomb
//! fails instead of filling the disk.

use crate::bail;
use crate::error::{Context, Error, Result};
use crate::tar::{Kind, TarReader};
use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Default cap on the bytes one archive may expand to.
pub const DEFAULT_LIMIT: u64 = 16 << 30;

/// The decompressor of a layer (none for a plain tar).
struct Decompressor {
    child: Option<Child>,
    name: String,
}

/// Opens a layer: its decompressed bytes, read through the system tool its
/// magic calls for (gzip, xz, zstd; a plain tar as is).
fn open_layer(path: &Path) -> Result<(Box<dyn Read>, Decompressor)> {
    let name = path.display().to_string();
    let mut f = fs::File::open(path).context(|| name.clone())?;
    let mut magic = [0u8; 6];
    let n = f.read(&mut magic).context(|| name.clone())?;
    let tool = match &magic[..n] {
        [0x1f, 0x8b, ..] => Some("gzip"),
        [0xfd, b'7', b'z', b'X', b'Z', 0] => Some("xz"),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Some("zstd"),
        _ => None,
    };
    let f = fs::File::open(path).context(|| name.clone())?;
    let Some(tool) = tool else {
        return Ok((
            Box::new(BufReader::new(f)),
            Decompressor { child: None, name },
        ));
    };
    let mut child = Command::new(tool)
        .args(["-d", "-c"])
        .stdin(f)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error(format!(
                "{name}: cannot run {tool} to decompress it ({e}): install it"
            ))
        })?;
    let out = child
        .stdout
        .take()
        .ok_or_else(|| Error(format!("{name}: {tool} has no output")))?;
    Ok((
        Box::new(BufReader::new(out)),
        Decompressor {
            child: Some(child),
            name,
        },
    ))
}

impl Decompressor {
    /// Fails if the decompressor reported an error (corrupt compressed data).
    fn finish(mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            let mut err = String::new();
            if let Some(mut e) = c.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let status = c.wait().context(|| self.name.clone())?;
            if !status.success() {
                let line = err.lines().next().unwrap_or("corrupt data");
                bail!("{}: decompression failed: {line}", self.name);
            }
        }
        Ok(())
    }
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Counts bytes and fails past a limit.
struct Limited<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.checked_sub(n as u64).ok_or_else(|| {
            std::io::Error::other("archive expands beyond the size limit (an archive bomb?)")
        })?;
        Ok(n)
    }
}

/// `./a//b/` → `a/b`; `None` for the root itself; error on `..`.
fn clean(path: &[u8], shown: &str) -> Result<Option<PathBuf>> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for p in path.split(|&b| b == b'/') {
        match p {
            b"" | b"." => {}
            b".." => bail!("archive entry {shown} has `..` in its path: refused"),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        parts
            .iter()
            .map(|p| std::ffi::OsStr::from_bytes(p))
            .collect(),
    ))
}

/// Makes sure every parent of `rel` under `root` is a real directory
/// (creating missing ones); refuses to go through a symlink or a file.
fn parents(root: &Path, rel: &Path, shown: &str) -> Result<()> {
    let mut cur = root.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for c in &comps[..comps.len().saturating_sub(1)] {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                bail!(
                    "archive entry {shown} goes through the symlink {}: refused",
                    c.as_os_str().to_string_lossy()
                )
            }
            Ok(_) => bail!("archive entry {shown}: a parent is not a directory"),
            Err(_) => fs::create_dir(&cur).context(|| format!("creating {}", cur.display()))?,
        }
    }
    Ok(())
}

fn remove(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).context(|| path.display().to_string()),
        Ok(_) => fs::remove_file(path).context(|| path.display().to_string()),
        Err(_) => Ok(()),
    }
}

/// Applies one layer to `root`. `limit` caps the decompressed size.
/// With `keep_owners` (the builder runs as root) entries get their uid/gid.
pub fn apply(root: &Path, layer_path: &Path, limit: u64, keep_owners: bool) -> Result<()> {
    let (reader, decompressor) = open_layer(layer_path)?;
    let mut created: BTreeSet<PathBuf> = BTreeSet::new();
    let mut dir_modes: Vec<(PathBuf, u32)> = Vec::new();
    let mut tar = TarReader::new(Limited {
        inner: reader,
        left: limit,
    });
    let layer_name = decompressor.name.clone();
    let ctx = |e: Error| Error(format!("{layer_name}: {}", e.0));
    while let Some(e) = tar.next_entry().map_err(ctx)? {
        let shown = e.name();
        let Some(rel) = clean(&e.path, &shown).map_err(ctx)? else {
            continue;
        };
        let base = rel
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_default();
        parents(root, &rel, &shown).map_err(ctx)?;
        let dest = root.join(&rel);
        if base == b".wh..wh..opq" {
            let dir = dest.parent().unwrap_or(root);
            for child in fs::read_dir(dir).context(|| dir.display().to_string())? {
                let child = child.context(|| dir.display().to_string())?.path();
                if !created.contains(child.strip_prefix(root).unwrap_or(&child)) {
                    remove(&child)?;
                }
            }
            continue;
        }
        if let Some(name) = base.strip_prefix(b".wh.") {
            remove(&dest.with_file_name(std::ffi::OsStr::from_bytes(name)))?;
            continue;
        }
        match e.kind {
            Kind::Dir => {
                if !fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) {
                    remove(&dest)?;
                    fs::create_dir(&dest).context(|| dest.display().to_string())?;
                }
                dir_modes.push((dest.clone(), e.mode));
            }
            Kind::File => {
                remove(&dest)?;
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(O_NOFOLLOW)
                    .mode(0o600)
                    .open(&dest)
                    .context(|| dest.display().to_string())?;
                tar.copy_data(&e, &mut f).map_err(ctx)?;
                fs::set_permissions(&dest, fs::Permissions::from_mode(e.mode))
                    .context(|| dest.display().to_string())?;
            }
            Kind::Symlink => {
                remove(&dest)?;
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&e.link), &dest)
                    .context(|| dest.display().to_string())?;
            }
            Kind::HardLink => {
                let Some(target_rel) = clean(&e.link, &shown).map_err(ctx)? else {
                    bail!("{layer_name}: hard link {shown} to the root directory: refused");
                };
                parents(root, &target_rel, &shown).map_err(ctx)?;
                let target = root.join(&target_rel);
                if !fs::symlink_metadata(&target).is_ok_and(|m| m.is_file()) {
                    bail!(
                        "{layer_name}: hard link {shown} points to a missing or non-regular file"
                    );
                }
                remove(&dest)?;
                fs::hard_link(&target, &dest).context(|| dest.display().to_string())?;
            }
            Kind::Char | Kind::Block | Kind::Fifo => {
                eprintln!("smolvm: warning: {layer_name}: skipping device/FIFO {shown}");
                continue;
            }
        }
        if keep_owners {
            std::os::unix::fs::lchown(&dest, Some(e.uid), Some(e.gid))
                .context(|| dest.display().to_string())?;
        }
        created.insert(rel);
    }
    // Drain the rest (end-of-archive padding) so the decompressor exits
    // cleanly instead of dying on a closed pipe; still bounded by the limit.
    std::io::copy(&mut tar.into_inner(), &mut std::io::sink())
        .map_err(|e| Error(format!("{layer_name}: {e}")))?;
    // Directory modes last, so a read-only directory does not stop its own children.
    for (d, mode) in dir_modes.iter().rev() {
        fs::set_permissions(d, fs::Permissions::from_mode(*mode))
            .context(|| d.display().to_string())?;
    }
    decompressor.finish()
}

/// `O_NOFOLLOW` on Linux x86-64 (std has no constant for it).
const O_NOFOLLOW: i32 = 0o400_000;

/// Whether files created in `dir` are owned by root, i.e. we can chown.
pub fn running_as_root(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(dir).is_ok_and(|m| m.uid() == 0)
}
