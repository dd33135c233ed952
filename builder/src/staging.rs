//! The staging root filesystem for sources that are not a directory:
//! `--from-tar`, `--from-docker-archive`, `--from-oci` (layers applied in
//! order) and `--exec`/`--add` (a host program's closure, plus
//! `/etc/passwd` and `/etc/group` naming root: `identity.rs`). It lives in a
//! temporary directory beside the output, removed when the build ends.

use crate::bail;
use crate::closure::Closure;
use crate::container::{self, ImageConfig};
use crate::error::{Context, Error, Result};
use crate::identity;
use crate::layers;
use crate::output::TempDir;
use crate::progress::progress;
use std::fs;
use std::path::{Path, PathBuf};

/// Where the root filesystem comes from (the command line's source flags;
/// at most one of the archive sources, or `exec`), and the output it is
/// staged beside.
pub struct Sources<'a> {
    pub from_tar: Option<&'a Path>,
    pub from_docker_archive: Option<&'a Path>,
    pub from_oci: Option<&'a Path>,
    /// `--exec` programs, packed with their closures.
    pub exec: &'a [PathBuf],
    /// `--add HOST:GUEST` specs.
    pub add: &'a [String],
    /// The output image: the staging directory is created beside it.
    pub output: &'a Path,
    /// `--user`: the identity files name it when the rootfs lacks them.
    pub user: Option<&'a str>,
}

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

/// What one `--add` brought in.
#[derive(Default)]
struct Added {
    files: u64,
    bytes: u64,
    /// The x86-64 ELF objects among the files (host paths).
    elf: Vec<PathBuf>,
}

/// Whether the file starts like an x86-64 ELF object (reads its header only).
fn looks_like_elf(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 20];
    fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok()
        && crate::closure::is_x86_64_elf(&head)
}

/// Copies a host file, symlink or tree (symlinks are kept as symlinks).
fn copy_in(host: &Path, dest: &Path, added: &mut Added) -> Result<()> {
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
            copy_in(&e.path(), &dest.join(e.file_name()), added)?;
        }
    } else if md.is_file() {
        added.bytes += fs::copy(host, dest).context(|| format!("copying {}", host.display()))?;
        added.files += 1;
        if looks_like_elf(host) {
            added.elf.push(host.to_path_buf());
        }
    } else {
        eprintln!("smolvm: warning: skipping special file {}", host.display());
    }
    Ok(())
}

/// The staging rootfs (none for `--rootfs`), the image config, if any,
/// and lines for the build summary (what `--exec` and `--add` packed).
pub fn stage(a: &Sources<'_>) -> Result<(Option<TempDir>, Option<ImageConfig>, Vec<String>)> {
    if let Some(tar) = a.from_tar {
        return Ok((Some(stage_tar(a, tar)?), None, Vec::new()));
    }
    if !a.exec.is_empty() {
        let (dir, summary) = stage_exec(a)?;
        return Ok((Some(dir), None, summary));
    }
    let mut budget = layers::DEFAULT_LIMIT;
    let (image, unpacked, source) = match (a.from_docker_archive, a.from_oci) {
        (Some(file), _) => {
            let unpacked = TempDir::create_beside(a.output, "archive")?;
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
        (None, None) => return Ok((None, None, Vec::new())),
    };
    let dir = TempDir::create_beside(a.output, "root")?;
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
    Ok((Some(dir), Some(image.config), Vec::new()))
}

/// `--from-tar`: the tarball unpacked (safely) into a staging rootfs.
fn stage_tar(a: &Sources<'_>, tar: &Path) -> Result<TempDir> {
    let dir = TempDir::create_beside(a.output, "root")?;
    let keep_owners = layers::running_as_root(dir.path());
    let mut budget = layers::DEFAULT_LIMIT;
    let shown = tar.display().to_string();
    layers::apply(dir.path(), tar, &shown, &mut budget, keep_owners)?;
    Ok(dir)
}

/// `n` bytes for a person: `19.7 MB`, `812 KB`.
fn size(n: u64) -> String {
    match n {
        n if n >= 1_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        n => format!("{} KB", n.div_ceil(1000)),
    }
}

fn total_size(files: &[PathBuf]) -> u64 {
    files.iter().filter_map(|f| fs::metadata(f).ok()).map(|m| m.len()).sum()
}

/// Copies each closure file not already in the staging root (an `--add`
/// may have put it there) to its guest path.
fn copy_closure(root: &Path, files: &[(PathBuf, PathBuf)]) -> Result<()> {
    for (host, guest) in files {
        let dest = below(root, guest)?;
        if fs::symlink_metadata(&dest).is_ok() {
            continue;
        }
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).context(|| parent.display().to_string())?;
        }
        // Follows symlinks: the guest gets the file under the name the loader asks for.
        fs::copy(host, &dest).context(|| format!("copying {}", host.display()))?;
    }
    Ok(())
}

/// `--exec` / `--add`: a staging rootfs beside the output, and the summary
/// of what went in.
fn stage_exec(a: &Sources<'_>) -> Result<(TempDir, Vec<String>)> {
    let dir = TempDir::create_beside(a.output, "root")?;
    let mut closure = Closure::of(a.exec)?;
    let packed: Vec<(PathBuf, PathBuf)> = closure.files.iter().map(|(h, g)| (h.clone(), g.clone())).collect();
    copy_closure(dir.path(), &packed)?;
    let hosts: Vec<PathBuf> = packed.iter().map(|(h, _)| h.clone()).collect();
    let mut summary = vec![format!(
        "packed --exec: {} and {} files it loads, {}",
        a.exec.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" "),
        hosts.len().saturating_sub(a.exec.len()),
        size(total_size(&hosts))
    )];
    let mut elf = Vec::new();
    for spec in a.add {
        let Some((host, guest)) = spec.split_once(':') else {
            bail!("bad --add `{spec}`: expected HOST:GUEST, e.g. /usr/lib/python3.11:/usr/lib/python3.11");
        };
        let mut added = Added::default();
        copy_in(Path::new(host), &below(dir.path(), Path::new(guest))?, &mut added)?;
        summary.push(format!(
            "packed --add {spec}: {} files, {}, {} ELF objects",
            added.files,
            size(added.bytes),
            added.elf.len()
        ));
        elf.append(&mut added.elf);
    }
    // What the added ELF objects (extension modules, plugins) load, as for --exec.
    let (loaded, warnings) = closure.add_loaded_by(&elf)?;
    for w in &warnings {
        eprintln!("smolvm: warning: --add {w}");
    }
    let loaded: Vec<(PathBuf, PathBuf)> = loaded
        .into_iter()
        .filter_map(|h| closure.files.get(&h).map(|g| (h, g.clone())))
        .collect();
    copy_closure(dir.path(), &loaded)?;
    if !elf.is_empty() {
        let hosts: Vec<PathBuf> = loaded.iter().map(|(h, _)| h.clone()).collect();
        let names: Vec<String> = hosts
            .iter()
            .filter_map(|h| h.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        summary.push(format!(
            "packed for the added ELF objects: {} more files, {}{}{}",
            hosts.len(),
            size(total_size(&hosts)),
            if names.is_empty() { "" } else { ": " },
            names.join(" ")
        ));
    }
    // A bad --user is reported by the manifest's check; here it only names no one.
    let user = a.user.as_deref().and_then(|u| {
        let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
        Some((uid.parse().ok()?, gid.parse().ok()?))
    });
    identity::add_missing(dir.path(), user)?;
    Ok((dir, summary))
}
