//! Root filesystem packing: the entry check, the squashfs (through
//! `mksquashfs`) and the initramfs tree (through `linker::cpio::Archive`).
//!
//! Why `mksquashfs` rather than a crate: squashfs-tools is the reference
//! implementation the kernel is tested against, Debian ships it, and with
//! fixed options (`-reproducible -all-root -all-time T -mkfs-time T
//! -root-mode 755 -no-xattrs -noappend`) it is byte-for-byte deterministic;
//! the pure-Rust writer (`backhand`) would add ~40 crates to the builder.

use crate::bail;
use crate::error::{Context, Error, Result};
use linker::cpio::{Archive, FileData, Node, S_IFBLK, S_IFCHR};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Directories smol-init mounts onto (devtmpfs, proc, sysfs, tmpfs, 9p
/// shares); created in the image when the rootfs lacks them, because a
/// squashfs root is read-only.
pub const MOUNTPOINTS: [&str; 7] = ["dev", "proc", "sys", "tmp", "run", "mnt", "data"];

/// Files smol-init bind-mounts its own over (`init/src/net.rs`); created
/// empty when the rootfs lacks them (a bind mount needs an existing target).
pub const MOUNT_FILES: [&str; 2] = ["etc/hosts", "etc/resolv.conf"];

/// The [`MOUNT_FILES`] to add to `dir`: those missing (not even a symlink),
/// when `/etc` is missing or a real directory (a symlinked /etc is left as
/// the image has it).
pub fn missing_mount_files(dir: &Path) -> Vec<&'static str> {
    match fs::symlink_metadata(dir.join("etc")) {
        Ok(md) if md.is_dir() => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        _ => return Vec::new(),
    }
    MOUNT_FILES
        .into_iter()
        .filter(|f| fs::symlink_metadata(dir.join(f)).is_err())
        .collect()
}

/// Where `PATH`-searched entries are looked up (init's default PATH).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const MAX_SYMLINK_HOPS: u32 = 40;

/// Resolves a guest path inside `root` the way the guest kernel would,
/// following symlinks (absolute targets are relative to `root`, `..` stops
/// at `root`). Returns the host path of the final file.
pub fn resolve(root: &Path, guest: &[u8]) -> Result<PathBuf> {
    let mut todo: Vec<Vec<u8>> = split(guest);
    todo.reverse();
    let mut done: Vec<Vec<u8>> = Vec::new();
    let mut hops = 0;
    while let Some(part) = todo.pop() {
        match part.as_slice() {
            b"." => continue,
            b".." => {
                done.pop();
                continue;
            }
            _ => done.push(part),
        }
        let host = join(root, &done);
        let md = match fs::symlink_metadata(&host) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("{} does not exist", show(&join(Path::new("/"), &done)))
            }
            Err(e) => bail!("{}: {e}", host.display()),
        };
        if md.file_type().is_symlink() {
            hops += 1;
            if hops > MAX_SYMLINK_HOPS {
                bail!(
                    "{}: too many levels of symbolic links",
                    String::from_utf8_lossy(guest)
                );
            }
            let target = fs::read_link(&host).context(|| host.display().to_string())?;
            let target = target.as_os_str().as_bytes();
            done.pop();
            if target.starts_with(b"/") {
                done.clear();
            }
            todo.extend(split(target).into_iter().rev());
        }
    }
    Ok(join(root, &done))
}

fn split(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|&b| b == b'/')
        .filter(|p| !p.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn join(root: &Path, parts: &[Vec<u8>]) -> PathBuf {
    let mut p = root.to_path_buf();
    for part in parts {
        p.push(OsStr::from_bytes(part));
    }
    p
}

fn show(p: &Path) -> String {
    p.display().to_string()
}

/// Checks that `entry` names an executable regular file in `root`: an
/// absolute guest path, or a name searched in `path` (a `PATH` value).
/// `label` names the rootfs in messages (a staging directory's name means
/// nothing to the user).
pub fn check_entry(root: &Path, label: &str, entry: &[u8], path: Option<&[u8]>) -> Result<()> {
    let shown = String::from_utf8_lossy(entry).into_owned();
    if entry.is_empty() {
        bail!("--entry is empty: give the app's path inside the rootfs, e.g. --entry /bin/app");
    }
    if !entry.contains(&b'/') {
        let path = path.unwrap_or(DEFAULT_PATH.as_bytes());
        for dir in path.split(|&b| b == b':').filter(|d| d.starts_with(b"/")) {
            let mut candidate = dir.to_vec();
            candidate.push(b'/');
            candidate.extend_from_slice(entry);
            if check_entry(root, label, &candidate, None).is_ok() {
                return Ok(());
            }
        }
        bail!(
            "entry `{shown}` not found as an executable in PATH ({}) of rootfs {}",
            String::from_utf8_lossy(path),
            label
        );
    }
    if !entry.starts_with(b"/") {
        bail!("entry `{shown}` must be an absolute path inside the rootfs (or a bare name searched in PATH)");
    }
    let host = resolve(root, entry)
        .map_err(|e| Error(format!("entry {shown} not found in rootfs {}: {e}", label)))?;
    let md = fs::metadata(&host).context(|| format!("entry {shown}"))?;
    if md.is_dir() {
        bail!(
            "entry {shown} is a directory in rootfs {}, not a program",
            label
        );
    }
    if !md.is_file() {
        bail!("entry {shown} is not a regular file in rootfs {}", label);
    }
    if md.permissions().mode() & 0o111 == 0 {
        bail!(
            "entry {shown} is not executable (mode {:o}): chmod +x {}",
            md.permissions().mode() & 0o7777,
            host.display()
        );
    }
    Ok(())
}

/// `major`/`minor` of a Linux `dev_t` (glibc's encoding).
fn dev_parts(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & 0xffff_f000);
    let minor = (rdev & 0xff) | ((rdev >> 12) & 0xffff_ff00);
    (
        u32::try_from(major).unwrap_or(0),
        u32::try_from(minor).unwrap_or(0),
    )
}

/// Adds the tree under `dir` to `archive` below `prefix` (e.g. `rootfs`).
/// Sockets are skipped with a warning; ownership is not kept (uid/gid 0).
pub fn add_tree(archive: &mut Archive, dir: &Path, prefix: &[u8]) -> Result<()> {
    // The top directory is always 0755: a temp dir's 0700 must not leak in.
    archive
        .insert(prefix, Node::Dir { perm: 0o755 })
        .context(|| "initramfs".into())?;
    let mut entries: Vec<_> = fs::read_dir(dir)
        .context(|| format!("reading {}", dir.display()))?
        .collect::<std::io::Result<_>>()
        .context(|| format!("reading {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let host = e.path();
        let mut guest = prefix.to_vec();
        guest.push(b'/');
        guest.extend_from_slice(e.file_name().as_bytes());
        let md = fs::symlink_metadata(&host).context(|| host.display().to_string())?;
        let perm = md.permissions().mode() & 0o7777;
        let ft = md.file_type();
        let node = if ft.is_dir() {
            add_tree(archive, &host, &guest)?;
            archive
                .insert(&guest, Node::Dir { perm })
                .context(|| "initramfs".into())?;
            continue;
        } else if ft.is_file() {
            Node::File {
                perm,
                data: FileData::Path(host.clone()),
            }
        } else if ft.is_symlink() {
            let t = fs::read_link(&host).context(|| host.display().to_string())?;
            Node::Symlink {
                target: t.as_os_str().as_bytes().to_vec(),
            }
        } else if ft.is_char_device() || ft.is_block_device() {
            let (major, minor) = dev_parts(md.rdev());
            let kind = if ft.is_char_device() {
                S_IFCHR
            } else {
                S_IFBLK
            };
            Node::Device {
                mode: kind | perm,
                major,
                minor,
            }
        } else if ft.is_fifo() {
            Node::Fifo { perm }
        } else {
            eprintln!("smolvm: warning: skipping socket {}", host.display());
            continue;
        };
        archive
            .insert(&guest, node)
            .context(|| "initramfs".into())?;
    }
    Ok(())
}

/// Where the image carries the root filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RootfsFormat {
    /// Read-only squashfs section, served to the guest as /dev/vda.
    Squashfs,
    /// The tree inside the initramfs under /rootfs (small apps).
    Initramfs,
}

impl RootfsFormat {
    pub fn name(self) -> &'static str {
        match self {
            RootfsFormat::Squashfs => "squashfs",
            RootfsFormat::Initramfs => "initramfs",
        }
    }
}

/// squashfs compressors the guest kernel supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Compressor {
    Zstd,
    Xz,
    Lz4,
    Gzip,
}

impl Compressor {
    fn args(self) -> &'static [&'static str] {
        match self {
            Compressor::Zstd => &["-comp", "zstd", "-Xcompression-level", "19"],
            Compressor::Xz => &["-comp", "xz"],
            Compressor::Lz4 => &["-comp", "lz4", "-Xhc"],
            Compressor::Gzip => &["-comp", "gzip"],
        }
    }
}

/// Packs `dir` into the squashfs file `out` (which must not exist),
/// adding the [`MOUNTPOINTS`] it lacks. Timestamps are `mtime`.
/// With `all_root`, every file is owned by 0:0 (a directory of the user's);
/// without, the owners in `dir` are kept (an unpacked archive).
pub fn mksquashfs(
    dir: &Path,
    out: &Path,
    comp: Compressor,
    mtime: u32,
    all_root: bool,
) -> Result<()> {
    let t = mtime.to_string();
    let mut cmd = Command::new("mksquashfs");
    cmd.arg(dir).arg(out);
    if all_root {
        cmd.arg("-all-root");
    }
    cmd.args([
        "-noappend",
        "-reproducible",
        "-no-xattrs",
        "-no-progress",
        "-quiet",
    ]);
    cmd.args([
        "-mkfs-time",
        &t,
        "-all-time",
        &t,
        "-root-time",
        &t,
        "-root-mode",
        "755",
    ]);
    cmd.args(comp.args());
    for m in MOUNTPOINTS {
        if fs::symlink_metadata(dir.join(m)).is_err() {
            cmd.arg("-p").arg(format!("{m} d 755 0 0"));
        }
    }
    let files = missing_mount_files(dir);
    if !files.is_empty() && fs::symlink_metadata(dir.join("etc")).is_err() {
        cmd.arg("-p").arg("etc d 755 0 0");
    }
    for f in files {
        // An empty file: the output of `true`.
        cmd.arg("-p").arg(format!("{f} f 644 0 0 true"));
    }
    // mksquashfs refuses SOURCE_DATE_EPOCH together with the explicit times.
    cmd.env_remove("SOURCE_DATE_EPOCH");
    let output = match cmd.output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("mksquashfs not found: install squashfs-tools (apt-get install squashfs-tools), or use --rootfs-format initramfs")
        }
        Err(e) => bail!("running mksquashfs: {e}"),
    };
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        let line = err
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        bail!("mksquashfs failed ({}): {line}", output.status);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("smolvm-rootfs-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("tmp");
        d
    }

    fn exe(path: &Path) {
        fs::write(path, b"#!/bin/sh\n").expect("write");
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    #[test]
    fn entry_checks_follow_symlinks_inside_the_root() {
        let root = tmp("entry");
        fs::create_dir_all(root.join("bin")).expect("mkdir");
        fs::create_dir_all(root.join("usr/bin")).expect("mkdir");
        exe(&root.join("bin/busybox"));
        symlink("busybox", root.join("bin/sh")).expect("ln");
        symlink("/bin/busybox", root.join("usr/bin/abs")).expect("ln");
        symlink("../../../../bin/busybox", root.join("usr/bin/up")).expect("ln");
        symlink("/etc/passwd", root.join("bin/host")).expect("ln");
        symlink("loop", root.join("bin/loop")).expect("ln");
        fs::write(root.join("bin/data"), b"x").expect("write");
        assert!(check_entry(&root, "r", b"/bin/sh", None).is_ok());
        assert!(check_entry(&root, "r", b"/usr/bin/abs", None).is_ok());
        assert!(check_entry(&root, "r", b"/usr/bin/up", None).is_ok());
        assert!(check_entry(&root, "r", b"sh", None).is_ok());
        let err = |e: &[u8]| check_entry(&root, "r", e, None).expect_err("refused").0;
        // An absolute symlink resolves inside the root, never to the host's file.
        assert!(
            err(b"/bin/host").contains("does not exist"),
            "{}",
            err(b"/bin/host")
        );
        assert!(err(b"/bin/loop").contains("too many levels"));
        assert!(err(b"/bin/data").contains("not executable"));
        assert!(err(b"/bin").contains("is a directory"));
        assert!(err(b"/nope").contains("not found"));
        assert!(err(b"nope").contains("PATH"));
        assert!(err(b"bin/sh").contains("absolute"));
        fs::remove_dir_all(&root).expect("cleanup");
    }

    #[test]
    fn tree_goes_under_the_prefix_with_modes() {
        let root = tmp("tree");
        fs::create_dir_all(root.join("etc")).expect("mkdir");
        exe(&root.join("app"));
        symlink("app", root.join("link")).expect("ln");
        let mut a = Archive::new(0);
        add_tree(&mut a, &root, b"rootfs").expect("adds");
        let bytes = a.to_vec().expect("writes");
        let entries = linker::cpio::read_entries(&bytes).expect("parses");
        let names: Vec<_> = entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.name).into_owned())
            .collect();
        assert_eq!(names, ["rootfs", "rootfs/app", "rootfs/etc", "rootfs/link"]);
        assert_eq!(entries[1].mode, linker::cpio::S_IFREG | 0o755);
        assert_eq!(entries[3].data, b"app");
        fs::remove_dir_all(&root).expect("cleanup");
    }

    #[test]
    fn dev_t_decoding() {
        assert_eq!(dev_parts(0x0501), (5, 1));
        let makedev = |ma: u64, mi: u64| {
            (mi & 0xff) | ((ma & 0xfff) << 8) | ((mi & !0xff) << 12) | ((ma & !0xfff) << 32)
        };
        assert_eq!(dev_parts(makedev(259, 300)), (259, 300));
        assert_eq!(dev_parts(makedev(4100, 70000)), (4100, 70000));
    }
}
