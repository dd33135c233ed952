//! `smolvm build`: rootfs + entry + kernel + stub + init → one executable
//! image (format in `linker::image`). Every input is checked before the
//! output is touched; the image is written to a temporary file in the
//! output's directory and renamed into place, so an error never leaves a
//! partial file behind.

use crate::app::{app, manifest, AppFlags, ManifestFlags};
use crate::bail;
use crate::error::{Context, Error, Result};
use crate::kernel_file::KernelFile;
use crate::layers;
use crate::output::TempFile;
use crate::progress::progress;
use crate::rootfs::{self, Compressor, RootfsFormat, MOUNTPOINTS};
use crate::staging::{self, Sources};
use linker::cpio::{Archive, FileData, Node, S_IFCHR};
use linker::image::{Kind, FLAG_BZIMAGE};
use linker::write::ImageWriter;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["rootfs", "exec", "from_tar", "from_docker_archive", "from_oci"])))]
pub struct BuildArgs {
    /// Directory holding the app's root filesystem.
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    /// A root filesystem tarball (plain, gzip, xz or zstd); ownership is kept
    /// when smolvm runs as root.
    #[arg(long, value_name = "FILE")]
    pub from_tar: Option<PathBuf>,
    /// A `docker save` archive (classic or OCI layout) holding one image;
    /// its Entrypoint/Cmd/Env/WorkingDir/User apply unless given here.
    /// `./app.vm ARGS` follows `docker run`: ARGS replace Cmd and keep the
    /// Entrypoint with its arguments; with no Entrypoint, ARGS are the
    /// whole command (`./app.vm ls -l`).
    #[arg(long, value_name = "FILE")]
    pub from_docker_archive: Option<PathBuf>,
    /// An OCI image layout directory (multi-platform: linux/amd64 is used).
    #[arg(long, value_name = "DIR")]
    pub from_oci: Option<PathBuf>,
    /// The app: an absolute path inside the rootfs (or a name searched in PATH);
    /// default with --exec: the first program.
    #[arg(long, value_name = "PATH")]
    pub entry: Option<OsString>,
    /// Pack a host program with its ELF interpreter and shared libraries as
    /// the rootfs (repeatable).
    #[arg(long, value_name = "PROGRAM")]
    pub exec: Vec<PathBuf>,
    /// With --exec: also copy a host file or directory to a guest path
    /// (files the program opens at run time; the ELF objects among them get
    /// their shared libraries packed too), e.g. Python's stdlib:
    /// `--exec /usr/bin/python3 --env PYTHONHOME=/usr --add
    /// /usr/lib/python3.11/encodings:/usr/lib/python3.11/encodings` is enough
    /// for `-c 'print(2+2)'`; add the modules your script imports, or all of
    /// /usr/lib/python3.11.
    #[arg(long, value_name = "HOST:GUEST", requires = "exec")]
    pub add: Vec<String>,
    /// Default argument (repeatable); `./app.vm ARGS` replaces them all.
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    pub args: Vec<OsString>,
    /// Environment variable NAME=value (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<OsString>,
    /// Working directory of the app (absolute guest path).
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<OsString>,
    /// Guest memory, e.g. 256M or 1G (default: 128M, chosen by the stub).
    #[arg(long, value_name = "SIZE")]
    pub mem: Option<String>,
    /// vCPUs, 1 to 64 (default: 1); `--smolvm-cpus=N` overrides it at run time.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=linker::abi::MAX_CPUS as i64))]
    pub cpus: Option<u32>,
    /// Guest hostname (default: smolvm; /etc/hosts maps it to the guest's address).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Run the app as UID or UID:GID (numeric; default 0:0).
    #[arg(long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// Mount a tmpfs at this guest path (repeatable).
    #[arg(long, value_name = "DIR")]
    pub tmpfs: Vec<OsString>,
    /// Default network: user-mode networking through passt (`./app.vm
    /// --smolvm-net=none` turns it off). Without it (and --publish) the VM
    /// has no network device at all.
    #[arg(long)]
    pub net: bool,
    /// Default published port `[HOST_IP:]HOST_PORT:GUEST_PORT[/udp]`
    /// (repeatable; implies --net). Binds 127.0.0.1 unless HOST_IP is given.
    #[arg(long, value_name = "[IP:]HOST:GUEST[/udp]")]
    pub publish: Vec<String>,
    /// Keep the root filesystem read-only (the strict sandbox). By default it is
    /// writable, as a container's: an overlay whose changes live in guest memory
    /// and are discarded at exit.
    #[arg(long)]
    pub read_only: bool,
    /// Default data disk `PATH[:ro][:/GUEST/PATH]` (repeatable, at most 8), as
    /// `./app.vm --smolvm-disk` takes it: the host file is attached as
    /// /dev/vdb, vdc, ... (read-write unless :ro), its ext4 or squashfs file
    /// system mounted at GUEST/PATH. PATH is opened when the image runs: a
    /// relative one is resolved against the working directory of whoever runs
    /// `./app.vm`. Any `--smolvm-disk` at run time replaces all of these
    /// (`--smolvm-disk=none` runs without them).
    #[arg(long = "disk", value_name = "PATH[:ro][:/GUEST/PATH]")]
    pub disks: Vec<OsString>,
    #[command(flatten)]
    pub services: crate::services::ServiceArgs,
    /// Guest kernel (vmlinux or bzImage); default $SMOLVM_KERNEL, then the cached
    /// kernel from `smolvm kernel` in the form --kernel-format picks.
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// Form of the cached kernel to embed when --kernel is not given: an lz4
    /// bzImage (default: 2.1 MB; decompressing it costs the guest 5x fewer
    /// instructions than zstd, kernel-config/BOOT-PROFILE.md) keeps images small;
    /// `vmlinux` (~15 MB) is mapped zero-copy and shared between instances.
    #[arg(long, value_enum, default_value = "bzimage-lz4")]
    pub kernel_format: KernelFormat,
    #[arg(long, value_enum, default_value = "squashfs")]
    pub rootfs_format: RootfsFormat,
    /// squashfs compressor.
    #[arg(long, value_enum, default_value = "zstd")]
    pub compression: Compressor,
    /// vmm-stub binary; default $SMOLVM_STUB, then `vmm-stub` next to smolvm.
    #[arg(long, value_name = "FILE")]
    pub stub: Option<PathBuf>,
    /// smol-init binary; default $SMOLVM_INIT, then `smol-init` next to smolvm.
    #[arg(long, value_name = "FILE")]
    pub init: Option<PathBuf>,
    /// Output image (written atomically, mode 0755).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
}

impl BuildArgs {
    /// The flags that say where the root filesystem comes from.
    fn sources(&self) -> Sources<'_> {
        Sources {
            from_tar: self.from_tar.as_deref(),
            from_docker_archive: self.from_docker_archive.as_deref(),
            from_oci: self.from_oci.as_deref(),
            exec: &self.exec,
            add: &self.add,
            output: &self.output,
            user: self.user.as_deref(),
        }
    }

    /// The flags that say what the app is.
    fn app_flags(&self) -> AppFlags<'_> {
        AppFlags {
            entry: self.entry.as_deref(),
            first_exec: self.exec.first().map(PathBuf::as_path),
            args: &self.args,
            env: &self.env,
            workdir: self.workdir.as_deref(),
            user: self.user.as_deref(),
        }
    }

    /// The manifest's other records; `mem` is `--mem` parsed, `services`
    /// the checked `--service*` flags.
    fn manifest_flags(&self, mem: Option<u32>, services: &[crate::services::Service]) -> ManifestFlags<'_> {
        ManifestFlags {
            mem,
            cpus: self.cpus,
            rootfs_format: self.rootfs_format,
            hostname: self.hostname.as_deref(),
            tmpfs: &self.tmpfs,
            read_only: self.read_only,
            net: self.net,
            publish: &self.publish,
            disks: &self.disks,
            services: crate::services::records(services),
        }
    }
}

/// Parses a memory size (`256M`, `1G`, `512MiB`, `1024` = MiB) into MiB.
pub fn parse_mem(s: &str) -> Result<u32> {
    const MIN_MIB: u64 = 16;
    const MAX_MIB: u64 = 1 << 20;
    let bad = || {
        Error(format!(
            "bad --mem `{s}`: give a size like 256M or 1G (between {MIN_MIB}M and 1T)"
        ))
    };
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = t.split_at(digits);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.trim_end_matches("ib").trim_end_matches('b');
    let kib = match unit {
        "k" => n,
        "" | "m" => n.checked_mul(1 << 10).ok_or_else(bad)?,
        "g" => n.checked_mul(1 << 20).ok_or_else(bad)?,
        "t" => n.checked_mul(1 << 30).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if kib % 1024 != 0 {
        return Err(Error(format!(
            "bad --mem `{s}`: must be a whole number of MiB"
        )));
    }
    let mib = kib / 1024;
    if !(MIN_MIB..=MAX_MIB).contains(&mib) {
        return Err(bad());
    }
    u32::try_from(mib).map_err(|_| bad())
}

/// `--stub`, then `$env`, then `name` next to the running smolvm.
fn locate(flag: Option<&Path>, env: &str, name: &str, cargo_pkg: &str) -> Result<PathBuf> {
    let path = match (flag, std::env::var_os(env)) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(p)) if !p.is_empty() => PathBuf::from(p),
        _ => {
            let exe =
                std::env::current_exe().context(|| "locating the smolvm executable".into())?;
            exe.with_file_name(name)
        }
    };
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) => bail!(
            "{name} not found at {} ({e}): build it with `cargo build --release -p {cargo_pkg}`, or pass its path with --{} / ${env}",
            path.display(),
            if name == "vmm-stub" { "stub" } else { "init" }
        ),
    };
    if !bytes.starts_with(b"\x7fELF") {
        bail!("{name} {} is not an ELF executable", path.display());
    }
    Ok(path)
}

/// Which cached kernel file `smolvm build` embeds by default.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum KernelFormat {
    BzimageZstd,
    BzimageLz4,
    BzimageXz,
    Vmlinux,
}

impl KernelFormat {
    /// Arguments of `smolvm kernel path` that print this form's path.
    fn path_args(self) -> &'static [&'static str] {
        match self {
            KernelFormat::BzimageZstd => &["--bzimage", "--compression", "zstd"],
            KernelFormat::BzimageLz4 => &["--bzimage", "--compression", "lz4"],
            KernelFormat::BzimageXz => &["--bzimage", "--compression", "xz"],
            KernelFormat::Vmlinux => &[],
        }
    }
}

/// `--kernel`, then `$SMOLVM_KERNEL`, then what `smolvm kernel path` prints.
pub fn locate_kernel(flag: Option<&Path>, format: KernelFormat) -> Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("SMOLVM_KERNEL").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let hint =
        "no guest kernel: pass --kernel FILE, set SMOLVM_KERNEL, or run `smolvm kernel build`";
    let exe = std::env::current_exe().context(|| hint.into())?;
    let out = std::process::Command::new(exe)
        .args(["kernel", "path"])
        .args(format.path_args())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context(|| hint.into())?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || path.is_empty() {
        bail!("{hint}");
    }
    Ok(PathBuf::from(path))
}

/// `SOURCE_DATE_EPOCH` (reproducible-builds.org) or 0.
fn build_time() -> Result<u32> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Err(_) => Ok(0),
        Ok(s) => s.trim().parse().map_err(|_| {
            Error(format!(
                "bad SOURCE_DATE_EPOCH `{s}`: give seconds since 1970 (fits in 32 bits)"
            ))
        }),
    }
}

/// The image's initramfs: init, the manifest copy, /dev/console, and for
/// the initramfs rootfs format the tree under `rootfs/`.
fn initramfs(
    a: &BuildArgs,
    root: &Path,
    init: &Path,
    manifest: &[u8],
    mtime: u32,
) -> Result<Vec<u8>> {
    let mut ar = Archive::new(mtime);
    let mut add = |p: &str, n: Node| ar.insert(p.as_bytes(), n).context(|| "initramfs".into());
    add(
        linker::abi::INIT_PATH,
        Node::File {
            perm: 0o755,
            data: FileData::Path(init.to_path_buf()),
        },
    )?;
    add(
        linker::abi::GUEST_MANIFEST_PATH,
        Node::File {
            perm: 0o644,
            data: FileData::Bytes(manifest.to_vec()),
        },
    )?;
    // The kernel opens /dev/console for init's stdio before devtmpfs exists.
    add(
        "dev/console",
        Node::Device {
            mode: S_IFCHR | 0o600,
            major: 5,
            minor: 1,
        },
    )?;
    if a.rootfs_format == RootfsFormat::Initramfs {
        let prefix = linker::abi::INITRAMFS_ROOT_DIR;
        rootfs::add_tree(&mut ar, root, prefix.as_bytes())?;
        for m in MOUNTPOINTS {
            let p = format!("{prefix}/{m}");
            if !ar.contains(p.as_bytes()) {
                ar.insert(p.as_bytes(), Node::Dir { perm: 0o755 })
                    .context(|| "initramfs".into())?;
            }
        }
        for f in rootfs::missing_mount_files(root) {
            ar.insert(
                format!("{prefix}/{f}").as_bytes(),
                Node::File {
                    perm: 0o644,
                    data: FileData::Bytes(Vec::new()),
                },
            )
            .context(|| "initramfs".into())?;
        }
    }
    ar.to_vec().context(|| "initramfs".into())
}

pub fn run(a: &BuildArgs) -> Result<()> {
    let mem = a.mem.as_deref().map(parse_mem).transpose()?;
    let mtime = build_time()?;
    let (staging, image_config, summary) = staging::stage(&a.sources())?;
    let root = match (&staging, &a.rootfs) {
        (Some(dir), _) => dir.path().to_path_buf(),
        (None, Some(r)) => r.clone(),
        (None, None) => bail!("give --rootfs DIR, --from-tar FILE, --from-docker-archive FILE, --from-oci DIR or --exec PROGRAM"),
    };
    let md = fs::metadata(&root).context(|| format!("rootfs {}", root.display()))?;
    if !md.is_dir() {
        bail!("rootfs {} is not a directory", root.display());
    }
    let app = app(&a.app_flags(), image_config.as_ref(), &root)?;
    let path_env = app.env.iter().rev().find_map(|e| e.strip_prefix(b"PATH="));
    let source = a
        .from_tar
        .as_ref()
        .or(a.from_docker_archive.as_ref())
        .or(a.from_oci.as_ref());
    let label = match (&staging, source) {
        (Some(_), Some(src)) => format!("built from {}", src.display()),
        (Some(_), None) => "built from --exec/--add".to_string(),
        (None, _) => root.display().to_string(),
    };
    rootfs::check_entry(&root, &label, &app.entry, path_env)?;
    let services = a.services.parse()?;
    for s in &services {
        let env = s.env.iter().rev().find_map(|e| e.strip_prefix("PATH=")).map(str::as_bytes);
        rootfs::check_entry(&root, &label, s.command[0].as_bytes(), env.or(path_env))
            .map_err(|e| Error(format!("service {}: {}", s.name, e.0)))?;
    }
    let manifest = manifest(&a.manifest_flags(mem, &services), &app)?;
    let stub = locate(a.stub.as_deref(), "SMOLVM_STUB", "vmm-stub", "vmm-stub")?;
    let init = locate(a.init.as_deref(), "SMOLVM_INIT", "smol-init", "smol-init")?;
    let kernel = KernelFile::load(&locate_kernel(a.kernel.as_deref(), a.kernel_format)?)?;

    let out = TempFile::create_beside(&a.output, 0o755)?;
    let squashfs = match a.rootfs_format {
        RootfsFormat::Squashfs => {
            let sq = TempFile::reserve_beside(&a.output, "sqfs")?;
            progress("packing the root filesystem (mksquashfs)");
            // Owners from an archive are kept when we could chown them.
            let keep = (a.from_tar.is_some() || image_config.is_some())
                && staging
                    .as_ref()
                    .is_some_and(|d| layers::running_as_root(d.path()));
            rootfs::mksquashfs(&root, sq.path(), a.compression, mtime, !keep)?;
            Some(sq)
        }
        RootfsFormat::Initramfs => None,
    };
    let cpio = initramfs(a, &root, &init, &manifest, mtime)?;
    let open = |p: &Path| File::open(p).context(|| p.display().to_string());
    let write_err = |e: std::io::Error| Error(format!("writing {}: {e}", a.output.display()));
    let mut w = ImageWriter::new(BufWriter::new(out.file()?));
    w.add(Kind::Stub, 0, open(&stub)?).map_err(write_err)?;
    let kflags = if kernel.bzimage { FLAG_BZIMAGE } else { 0 };
    w.add(Kind::Kernel, kflags, open(&kernel.path)?)
        .map_err(write_err)?;
    w.add_bytes(Kind::Initramfs, 0, &cpio).map_err(write_err)?;
    if let Some(sq) = &squashfs {
        w.add(Kind::Rootfs, 0, open(sq.path())?)
            .map_err(write_err)?;
    }
    w.add_bytes(Kind::Manifest, 0, &manifest)
        .map_err(write_err)?;
    let info = kernel.info();
    if !info.is_empty() {
        w.add_bytes(Kind::KernelInfo, 0, &info).map_err(write_err)?;
    }
    let (buf, _image) = w.finish().map_err(write_err)?;
    let file = buf.into_inner().map_err(|e| write_err(e.into_error()))?;
    file.sync_all().map_err(write_err)?;
    drop(file);
    out.persist(&a.output)?;
    if let Some(sq) = squashfs {
        drop(sq);
    }
    for line in &summary {
        println!("{line}");
    }
    if !summary.is_empty() {
        let len = fs::metadata(&a.output).map(|m| m.len()).unwrap_or(0);
        println!("wrote {}: {len} bytes", a.output.display());
    }
    std::io::stdout().flush().ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_sizes() {
        assert_eq!(parse_mem("256M").ok(), Some(256));
        assert_eq!(parse_mem("256MiB").ok(), Some(256));
        assert_eq!(parse_mem("1G").ok(), Some(1024));
        assert_eq!(parse_mem("1g").ok(), Some(1024));
        assert_eq!(parse_mem("512").ok(), Some(512));
        assert_eq!(parse_mem("65536K").ok(), Some(64));
        for bad in [
            "",
            "M",
            "-1G",
            "1.5G",
            "abc",
            "8M",
            "2T",
            "1000K",
            "99999999999999999999G",
            "1 X",
        ] {
            let e = parse_mem(bad).expect_err(bad).0;
            assert!(e.starts_with("bad --mem"), "{e}");
        }
    }
}
