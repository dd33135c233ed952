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
//! warning. Decompressed bytes are capped (`budget`, shared by an image's
//! layers), so an archive bomb fails instead of filling the disk.
//! Extended attributes are dropped with a warning (the guest kernel's
//! squashfs is built without xattr support).

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
    tool: &'static str,
}

/// Opens a layer: its decompressed bytes, read through the system tool its
/// magic calls for (gzip, xz, zstd; a plain tar as is).
fn open_layer(path: &Path, name: &str) -> Result<(Box<dyn Read>, Decompressor)> {
    let name = name.to_string();
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
            Decompressor {
                child: None,
                name,
                tool: "",
            },
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
            tool,
        },
    ))
}

impl Decompressor {
    /// Fails if the decompressor reported an error (corrupt compressed data).
    fn finish(mut self) -> Result<()> {
        if let Some(c) = self.child.take() {
            if let Some(msg) = exit_error(c, self.tool)? {
                bail!(
                    "{}: corrupt or truncated {} data: {msg}",
                    self.name,
                    self.tool
                );
            }
        }
        Ok(())
    }

    /// After the tar reader failed: the decompressor's own error, if it had
    /// already failed (then the tar error is only a consequence of it). It
    /// is killed first, while its output pipe is still open, so that our
    /// stopping to read cannot make it fail.
    fn failure(&mut self) -> Option<String> {
        let mut c = self.child.take()?;
        let _ = c.kill();
        exit_error(c, self.tool).ok().flatten()
    }
}

/// Waits for a decompressor; its first stderr line, without the tool's
/// `stdin:` prefixes, if it exited with an error of its own (not a signal).
fn exit_error(mut c: Child, tool: &str) -> Result<Option<String>> {
    let mut err = String::new();
    if let Some(mut e) = c.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let status = c.wait().context(|| tool.to_string())?;
    if status.success() || status.code().is_none() {
        return Ok(None);
    }
    let line = err.lines().next().unwrap_or("corrupt data").trim();
    let line = line
        .strip_prefix(tool)
        .and_then(|l| l.strip_prefix(": "))
        .unwrap_or(line);
    let line = ["stdin: ", "(stdin): ", "/*stdin*\\ : "]
        .iter()
        .find_map(|p| line.strip_prefix(p))
        .unwrap_or(line);
    Ok(Some(line.to_string()))
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
            std::io::Error::other("archive expands beyond the unpack size limit (an archive bomb?)")
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

/// Applies one layer (a tar file, maybe compressed) to `root`; `name` shows
/// it in messages. `budget` is the number of decompressed bytes still
/// allowed (shared by all layers of an image) and is decreased.
/// With `keep_owners` (the builder runs as root) entries get their uid/gid.
pub fn apply(
    root: &Path,
    layer_path: &Path,
    name: &str,
    budget: &mut u64,
    keep_owners: bool,
) -> Result<()> {
    let (reader, mut decompressor) = open_layer(layer_path, name)?;
    let mut tar = TarReader::new(Limited {
        inner: reader,
        left: *budget,
    });
    match unpack(root, &mut tar, name, keep_owners) {
        Ok(dir_modes) => {
            *budget = tar.get_mut().left;
            drop(tar);
            decompressor.finish()?;
            // Directory modes last, so a read-only directory does not stop its own children.
            for (d, mode) in dir_modes.iter().rev() {
                fs::set_permissions(d, fs::Permissions::from_mode(*mode))
                    .context(|| d.display().to_string())?;
            }
            Ok(())
        }
        // A truncated or corrupt compressed stream shows as a truncated tar:
        // say what the decompressor found too.
        Err(e) => match decompressor.failure() {
            Some(why) => Err(Error(format!(
                "{} (corrupt or truncated {} data: {why})",
                e.0, decompressor.tool
            ))),
            None => Err(e),
        },
    }
}

/// The entries of one layer; the directories made and their modes.
fn unpack<R: Read>(
    root: &Path,
    tar: &mut TarReader<Limited<R>>,
    layer_name: &str,
    keep_owners: bool,
) -> Result<Vec<(PathBuf, u32)>> {
    let mut created: BTreeSet<PathBuf> = BTreeSet::new();
    let mut dir_modes: Vec<(PathBuf, u32)> = Vec::new();
    let mut xattrs = 0u64;
    let ctx = |e: Error| Error(format!("{layer_name}: {}", e.0));
    while let Some(e) = tar.next_entry().map_err(&ctx)? {
        xattrs += u64::from(e.xattrs);
        let shown = e.name();
        let Some(rel) = clean(&e.path, &shown).map_err(&ctx)? else {
            continue;
        };
        let base = rel
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_default();
        parents(root, &rel, &shown).map_err(&ctx)?;
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
                tar.copy_data(&e, &mut f).map_err(&ctx)?;
                fs::set_permissions(&dest, fs::Permissions::from_mode(e.mode))
                    .context(|| dest.display().to_string())?;
            }
            Kind::Symlink => {
                remove(&dest)?;
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&e.link), &dest)
                    .context(|| dest.display().to_string())?;
            }
            Kind::HardLink => {
                let Some(target_rel) = clean(&e.link, &shown).map_err(&ctx)? else {
                    bail!("{layer_name}: hard link {shown} to the root directory: refused");
                };
                parents(root, &target_rel, &shown).map_err(&ctx)?;
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
    std::io::copy(tar.get_mut(), &mut std::io::sink())
        .map_err(|e| Error(format!("{layer_name}: {e}")))?;
    if xattrs > 0 {
        eprintln!("smolvm: warning: {layer_name}: {xattrs} extended attributes (e.g. file capabilities) dropped: the guest's squashfs does not keep them");
    }
    Ok(dir_modes)
}

/// `O_NOFOLLOW` on Linux x86-64 (std has no constant for it).
const O_NOFOLLOW: i32 = 0o400_000;

/// Whether files created in `dir` are owned by root, i.e. we can chown.
pub fn running_as_root(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(dir).is_ok_and(|m| m.uid() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-file ustar archive.
    fn one_file_tar(name: &str, data: &[u8]) -> Vec<u8> {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        h[156] = b'0';
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        let mut t = h.to_vec();
        t.extend_from_slice(data);
        t.resize(t.len().next_multiple_of(512) + 1024, 0);
        t
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("smolvm-layers-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("root")).expect("mkdir");
        d
    }

    #[test]
    fn the_budget_is_shared_and_caps_an_archive_bomb() {
        let d = tmp("budget");
        let layer = d.join("l.tar.gz");
        let tar = one_file_tar("big", &vec![0u8; 1_000_000]);
        let mut child = Command::new("gzip")
            .arg("-c")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("gzip");
        let mut stdin = child.stdin.take().expect("stdin");
        let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &tar));
        let out = child.wait_with_output().expect("gzip");
        writer.join().expect("thread").expect("write");
        fs::write(&layer, out.stdout).expect("write");
        let root = d.join("root");
        let mut budget = 2_000_000;
        apply(&root, &layer, "first", &mut budget, false).expect("fits the budget");
        assert!(
            budget < 1_000_000,
            "the layer's bytes were counted: {budget}"
        );
        let err = apply(&root, &layer, "second", &mut budget, false).expect_err("over budget");
        assert!(
            err.0.starts_with("second: ") && err.0.contains("unpack size limit"),
            "{err}"
        );
        fs::remove_dir_all(&d).expect("cleanup");
    }

    #[test]
    fn a_corrupt_stream_names_the_entry_and_the_decompressor_error() {
        let d = tmp("corrupt");
        let plain = d.join("l.tar");
        fs::write(&plain, one_file_tar("etc/data", &vec![7u8; 100_000])).expect("write");
        let status = Command::new("xz")
            .arg("-k")
            .arg(&plain)
            .status()
            .expect("xz");
        assert!(status.success());
        let xz = fs::read(d.join("l.tar.xz")).expect("read");
        fs::write(d.join("cut.tar.xz"), &xz[..xz.len() - 30]).expect("write");
        let mut budget = DEFAULT_LIMIT;
        let err = apply(
            &d.join("root"),
            &d.join("cut.tar.xz"),
            "cut.tar.xz",
            &mut budget,
            false,
        )
        .expect_err("truncated");
        assert!(err.0.starts_with("cut.tar.xz: "), "{err}");
        assert!(err.0.contains("corrupt or truncated xz data"), "{err}");
        assert_eq!(err.0.lines().count(), 1, "{err}");
        fs::remove_dir_all(&d).expect("cleanup");
    }

    #[test]
    fn whiteouts_and_opaque_directories() {
        let d = tmp("whiteout");
        let root = d.join("root");
        let mut budget = DEFAULT_LIMIT;
        let mut layer = |name: &str, entry: &str| {
            let p = d.join(name);
            fs::write(&p, one_file_tar(entry, b"x")).expect("write");
            apply(&root, &p, name, &mut budget, false).expect("applies");
        };
        layer("1", "etc/a");
        layer("2", "etc/b");
        layer("3", "opt/x/old");
        layer("4", "etc/.wh.a");
        layer("5", "opt/x/.wh..wh..opq");
        assert!(!root.join("etc/a").exists() && root.join("etc/b").exists());
        assert!(root.join("opt/x").is_dir() && !root.join("opt/x/old").exists());
        assert!(!root.join("etc/.wh.a").exists() && !root.join("opt/x/.wh..wh..opq").exists());
        fs::remove_dir_all(&d).expect("cleanup");
    }
}
