//! The staging root filesystem for sources that are not a directory:
//! `--from-tar`, `--from-docker-archive`, `--from-oci` (layers applied in
//! order) and `--exec`/`--add` (a host program's closure, plus
//! `/etc/passwd` and `/etc/group` naming root: `identity.rs`). It lives in a
//! temporary directory beside the output, removed when the build ends.

use crate::bail;
use crate::build::BuildArgs;
use crate::closure::Closure;
use crate::container::{self, ImageConfig};
use crate::error::{Context, Error, Result};
use crate::identity;
use crate::layers;
use crate::output::TempDir;
use std::fs;
use std::path::{Path, PathBuf};

/// A guest path as a relative path below the staging root; refuses `..`.
fn below(root: &Path, guest: &Path) -> Result<PathBuf> {
    use std::path::Component;
    if !guest.is_absolute()
        || guest
            .components()
            .any(|c| matches!(c, Component::ParentDir))
    {
        bail!(
            "guest path {} must be absolute, without `..`",
            guest.display()
        );
    }
    Ok(root.join(guest.strip_prefix("/").unwrap_or(guest)))
}

/// Copies a host file, symlink or tree (symlinks are kept as symlinks).
fn copy_in(host: &Path, dest: &Path) -> Result<()> {
    let md = fs::symlink_metadata(host).context(|| format!("--add {}", host.display()))?;
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).context(|| parent.display().to_string())?;
    }
    if md.file_type().is_symlink() {
        let target = fs::read_link(host).context(|| host.display().to_string())?;
        std::os::unix::fs::symlink(target, dest).context(|| dest.display().to_string())?;
    } else if md.is_dir() {
        fs::create_dir_all(dest).context(|| dest.display().to_string())?;
        for e in fs::read_dir(host).context(|| host.display().to_string())? {
            let e = e.context(|| host.display().to_string())?;
            copy_in(&e.path(), &dest.join(e.file_name()))?;
        }
    } else if md.is_file() {
        fs::copy(host, dest).context(|| format!("copying {}", host.display()))?;
    } else {
        eprintln!("smolvm: warning: skipping special file {}", host.display());
    }
    Ok(())
}

/// A progress line on stderr for long steps, only for a person watching
/// (stderr is a terminal and `CI` is not set).
pub fn progress(what: &str) {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() {
        eprintln!("smolvm: {what}");
    }
}

/// The staging rootfs (none for `--rootfs`) and the image config, if any.
pub fn stage(a: &BuildArgs) -> Result<(Option<TempDir>, Option<ImageConfig>)> {
    if let Some(tar) = &a.from_tar {
        return Ok((Some(stage_tar(a, tar)?), None));
    }
    if !a.exec.is_empty() {
        return Ok((Some(stage_exec(a)?), None));
    }
    let mut budget = layers::DEFAULT_LIMIT;
    let (image, unpacked, source) = match (&a.from_docker_archive, &a.from_oci) {
        (Some(file), _) => {
            let unpacked = TempDir::create_beside(&a.output, "archive")?;
            let shown = file.display().to_string();
            layers::apply(unpacked.path(), file, &shown, &mut budget, false)?;
            let image = container::docker_archive(unpacked.path())
                .map_err(|e| Error(format!("{shown}: {}", e.0)))?;
            (image, Some(unpacked), file)
        }
        (None, Some(dir)) => {
            let shown = dir.display().to_string();
            let image =
                container::oci_layout(dir).map_err(|e| Error(format!("{shown}: {}", e.0)))?;
            (image, None, dir)
        }
        (None, None) => return Ok((None, None)),
    };
    let dir = TempDir::create_beside(&a.output, "root")?;
    let keep_owners = layers::running_as_root(dir.path());
    let total = image.layers.len();
    let mut budget = layers::DEFAULT_LIMIT;
    for (i, layer) in image.layers.iter().enumerate() {
        // Named as inside the archive, not by the temporary unpacked path.
        let inner = unpacked
            .as_ref()
            .and_then(|u| layer.strip_prefix(u.path()).ok())
            .unwrap_or(layer);
        let shown = format!("{}: layer {}", source.display(), inner.display());
        let size = fs::metadata(layer).map(|m| m.len()).unwrap_or(0);
        progress(&format!("layer {}/{total}: {size} bytes", i + 1));
        layers::apply(dir.path(), layer, &shown, &mut budget, keep_owners)?;
    }
    Ok((Some(dir), Some(image.config)))
}

/// `--from-tar`: the tarball unpacked (safely) into a staging rootfs.
fn stage_tar(a: &BuildArgs, tar: &Path) -> Result<TempDir> {
    let dir = TempDir::create_beside(&a.output, "root")?;
    let keep_owners = layers::running_as_root(dir.path());
    let mut budget = layers::DEFAULT_LIMIT;
    let shown = tar.display().to_string();
    layers::apply(dir.path(), tar, &shown, &mut budget, keep_owners)?;
    Ok(dir)
}

/// `--exec` / `--add`: a staging rootfs beside the output.
fn stage_exec(a: &BuildArgs) -> Result<TempDir> {
    let dir = TempDir::create_beside(&a.output, "root")?;
    let closure = Closure::of(&a.exec)?;
    for (host, guest) in &closure.files {
        let dest = below(dir.path(), guest)?;
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).context(|| parent.display().to_string())?;
        }
        // Follows symlinks: the guest gets the file under the name the loader asks for.
        fs::copy(host, &dest).context(|| format!("copying {}", host.display()))?;
    }
    for spec in &a.add {
        let Some((host, guest)) = spec.split_once(':') else {
            bail!("bad --add `{spec}`: expected HOST:GUEST, e.g. /usr/lib/python3.11:/usr/lib/python3.11");
        };
        copy_in(Path::new(host), &below(dir.path(), Path::new(guest))?)?;
    }
    // A bad --user is reported by the manifest's check; here it only names no one.
    let user = a.user.as_deref().and_then(|u| {
        let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
        Some((uid.parse().ok()?, gid.parse().ok()?))
    });
    identity::add_missing(dir.path(), user)?;
    Ok(dir)
}
