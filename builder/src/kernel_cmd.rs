//! `smolvm kernel build|path|config`: the cached guest kernel (see the
//! `kernel-config` crate for the recipe and the cache layout).
use clap::{Args, Subcommand, ValueEnum};
use kernel_config::{build::BUILD_STEPS, Compression, Entry, Fragment, Progress, Request, Source};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
#[command(
    about = "Build or show the cached guest kernel",
    long_about = "Build or show the cached guest kernel.\n\n\
        The kernel is Linux from Debian's linux-source-6.1 (or --source), configured as \
        `make tinyconfig` + smolvm's Kconfig fragments + `make olddefconfig`; every option \
        a fragment sets is checked in the final .config. One build gives vmlinux (booted by \
        the stub) and a bzImage per compression (lz4, zstd, xz). Results are cached in \
        $SMOLVM_CACHE/kernel/<key>/ (default ~/.cache/smolvm), keyed by the source and the \
        fragments; a second build with the same inputs does nothing.\n\n\
        Needs: apt-get install linux-source-6.1 bc flex bison libelf-dev build-essential lz4 zstd"
)]
pub struct KernelArgs {
    #[command(subcommand)]
    command: KernelCommand,
}

#[derive(Subcommand)]
enum KernelCommand {
    /// Build vmlinux and the bzImages unless the cache has them; print sizes
    Build {
        #[command(flatten)]
        input: Input,
        /// Which bzImage to print the path of (all three are built)
        #[arg(long, value_enum, default_value_t = Comp::Lz4)]
        compression: Comp,
        /// Rebuild from scratch (fresh object dir) even if cached
        #[arg(long)]
        force: bool,
    },
    /// Print the path of the cached vmlinux, building it first if missing
    Path {
        #[command(flatten)]
        input: Input,
        /// Print the bzImage path instead of vmlinux
        #[arg(long)]
        bzimage: bool,
        /// Compression of the bzImage printed by --bzimage
        #[arg(long, value_enum, default_value_t = Comp::Lz4)]
        compression: Comp,
    },
    /// Print the path of the verified .config (configures, without building, if needed)
    Config {
        #[command(flatten)]
        input: Input,
        /// Print the .config's content instead of its path
        #[arg(long)]
        show: bool,
    },
}

#[derive(Args)]
struct Input {
    /// Kernel source: a tarball or a clean (mrproper) tree [default: /usr/src/linux-source-6.1.tar.xz]
    #[arg(long, value_name = "PATH")]
    source: Option<PathBuf>,
    /// Extra Kconfig fragment applied after the built-in ones (may override them;
    /// repeatable; part of the cache key)
    #[arg(long = "fragment", value_name = "FILE")]
    fragments: Vec<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Comp {
    Lz4,
    Zstd,
    Xz,
}

impl From<Comp> for Compression {
    fn from(c: Comp) -> Compression {
        match c {
            Comp::Lz4 => Compression::Lz4,
            Comp::Zstd => Compression::Zstd,
            Comp::Xz => Compression::Xz,
        }
    }
}

/// Runs a `smolvm kernel` command; failures print one line (plus the make log's
/// tail and path when make failed) and exit with 125.
pub fn run(args: KernelArgs) -> ExitCode {
    match dispatch(args.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("smolvm: {}", e.message);
            if let Some(log) = &e.log {
                if !e.log_tail.is_empty() {
                    eprintln!("--- last lines of the log ---\n{}\n---", e.log_tail);
                }
                eprintln!("smolvm: full log: {}", log.display());
            }
            ExitCode::from(125)
        }
    }
}

fn request(input: &Input, force: bool) -> Result<Request, kernel_config::Error> {
    let mut req = Request::new(Source::resolve(input.source.as_deref())?, kernel_config::cache_root()?);
    req.extra = input.fragments.iter().map(|p| Fragment::from_file(p)).collect::<Result<_, _>>()?;
    req.force = force;
    Ok(req)
}

/// The entry, built if needed (with progress); `kernel build` also says
/// when it came from the cache (`kernel path`, run by every `smolvm build`,
/// stays quiet then).
fn ensure(req: &Request, say_cached: bool) -> Result<Entry, kernel_config::Error> {
    let (entry, built) = kernel_config::ensure(req, &mut Progress::auto(BUILD_STEPS))?;
    if !built && say_cached {
        eprintln!("smolvm: kernel cached, no rebuild: {}", entry.dir.display());
    }
    Ok(entry)
}

fn dispatch(cmd: KernelCommand) -> Result<(), kernel_config::Error> {
    match cmd {
        KernelCommand::Build { input, compression, force } => {
            let entry = ensure(&request(&input, force)?, true)?;
            print_summary(&entry, compression.into())
        }
        KernelCommand::Path { input, bzimage, compression } => {
            let entry = ensure(&request(&input, false)?, false)?;
            let p = if bzimage { entry.bzimage(compression.into()) } else { entry.vmlinux() };
            println!("{}", p.display());
            Ok(())
        }
        KernelCommand::Config { input, show } => {
            let path = kernel_config::configure(&request(&input, false)?, &mut Progress::auto(3))?;
            if show {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| kernel_config::Error::io(format!("cannot read {}", path.display()), e))?;
                print!("{text}");
            } else {
                println!("{}", path.display());
            }
            Ok(())
        }
    }
}

fn print_summary(entry: &Entry, chosen: Compression) -> Result<(), kernel_config::Error> {
    let m = entry.meta()?;
    println!("kernel {} (config sha256 {})", m.release, m.config_sha256);
    println!("  {:<13} {:>9} bytes  text {} data {} bss {}", "vmlinux", m.vmlinux_bytes, m.vmlinux_text, m.vmlinux_data, m.vmlinux_bss);
    for (c, n) in &m.bzimage_bytes {
        let mark = if *c == chosen { "  <- bzImage" } else { "" };
        println!("  {:<13} {n:>9} bytes{mark}", format!("bzImage-{}", c.name()));
    }
    println!("vmlinux: {}", entry.vmlinux().display());
    println!("bzImage: {}", entry.bzimage(chosen).display());
    println!("config:  {}", entry.config().display());
    println!("built in {} s; log {}", m.build_seconds, entry.log().display());
    Ok(())
}
