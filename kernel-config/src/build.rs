//! Configure, verify, build and cache the kernel.
//!
//! Configure = `make tinyconfig`, merge the fragments into `.config`, `make
//! olddefconfig`, then check every fragment setting in the result. Build = `vmlinux`
//! and the lz4 `bzImage`, then the zstd and xz `bzImage`s (switching the compression
//! only rebuilds the decompressor wrapper; `vmlinux` is checked to stay byte-identical).
//! Objects live in a reused out-of-tree dir; the entry is staged in a temporary dir
//! and renamed into place only when complete.
use crate::cache::{self, kernel_dir, Entry, Lock};
use crate::dotconfig;
use crate::fragment::{effective, Fragment};
use crate::progress::{fmt_duration, Progress};
use crate::run::{run, Log};
use crate::source::{self, Source};
use crate::{Compression, Error, Meta};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Fixed build identity, so the same inputs give a byte-identical kernel.
const KBUILD_ENV: &[(&str, &str)] = &[
    ("KBUILD_BUILD_TIMESTAMP", "Thu Jan  1 00:00:00 UTC 1970"),
    ("KBUILD_BUILD_USER", "smolvm"),
    ("KBUILD_BUILD_HOST", "smolvm"),
    ("KBUILD_BUILD_VERSION", "1"),
    ("LC_ALL", "C"),
];

/// The compression of the entry's `config` and of the first `bzImage` built.
pub const PRIMARY: Compression = Compression::Lz4;

/// Steps shown by a full build.
pub const BUILD_STEPS: usize = 7;

/// What to build and where to cache it.
pub struct Request {
    pub source: Source,
    /// Fragments applied after the built-in ones (they may override them).
    pub extra: Vec<Fragment>,
    pub cache_root: PathBuf,
    /// Rebuild from scratch (fresh object dir) even if the entry exists.
    pub force: bool,
    /// `make -j`.
    pub jobs: usize,
}

impl Request {
    /// Debian's tarball, the built-in fragments, the default cache, `-j$(nproc)`.
    pub fn new(source: Source, cache_root: PathBuf) -> Request {
        let jobs = std::thread::available_parallelism().map_or(1, usize::from);
        Request { source, extra: Vec::new(), cache_root, force: false, jobs }
    }

    pub fn fragments(&self) -> Vec<Fragment> {
        let mut f = Fragment::builtin();
        f.extend(self.extra.iter().cloned());
        f
    }

    /// (cache key, source identity).
    fn key(&self) -> Result<(String, String), Error> {
        let id = self.source.identity()?;
        Ok((cache::key(&id, &self.fragments())?, id))
    }
}

/// The cached entry for `req`, if complete. Needs neither build tools nor the lock.
pub fn lookup(req: &Request) -> Result<Option<Entry>, Error> {
    let (key, _) = req.key()?;
    Ok(Entry::open(kernel_dir(&req.cache_root).join(key)))
}

/// The entry for `req`, building it if missing (or if `req.force`). The bool says
/// whether a build ran.
pub fn ensure(req: &Request, progress: &mut Progress) -> Result<(Entry, bool), Error> {
    if !req.force {
        if let Some(e) = lookup(req)? {
            return Ok((e, false));
        }
    }
    // Before waiting for the lock: a missing tool is reported at once.
    progress.step("check build tools");
    source::check_tools()?;
    let kdir = kernel_dir(&req.cache_root);
    let _lock = Lock::acquire(&kdir)?;
    if !req.force {
        // Another process may have built it while we waited for the lock.
        if let Some(e) = lookup(req)? {
            return Ok((e, false));
        }
    }
    let started = Instant::now();
    let ctx = Ctx::prepare(req, progress)?;
    let stage = kdir.join(format!(".tmp-{}-{}", ctx.key, std::process::id()));
    mkdir(&stage)?;
    let result = build_into(&ctx, req, &stage, progress, started);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&stage);
    }
    result?;
    progress.step("install the cache entry");
    let dest = kdir.join(&ctx.key);
    if dest.exists() {
        let old = kdir.join(format!(".tmp-old-{}-{}", ctx.key, std::process::id()));
        std::fs::rename(&dest, &old).map_err(|e| Error::io(format!("cannot replace {}", dest.display()), e))?;
        let _ = std::fs::remove_dir_all(&old);
    }
    std::fs::rename(&stage, &dest).map_err(|e| Error::io(format!("cannot install {}", dest.display()), e))?;
    progress.finish();
    Entry::open(dest.clone())
        .map(|e| (e, true))
        .ok_or_else(|| Error::new(format!("{} is incomplete after install", dest.display())))
}

/// The verified `.config` for `req` without building: the entry's if built, else
/// `configs/<key>.config`, configured now if missing.
pub fn configure(req: &Request, progress: &mut Progress) -> Result<PathBuf, Error> {
    if let Some(e) = lookup(req)? {
        return Ok(e.config());
    }
    let (key, _) = req.key()?;
    let out = kernel_dir(&req.cache_root).join("configs").join(format!("{key}.config"));
    if out.is_file() && !req.force {
        return Ok(out);
    }
    progress.step("check build tools");
    source::check_tools()?;
    let _lock = Lock::acquire(&kernel_dir(&req.cache_root))?;
    let ctx = Ctx::prepare(req, progress)?;
    progress.step("configure: tinyconfig + fragments + olddefconfig, verify");
    let config = ctx.configure(&req.fragments(), PRIMARY)?;
    progress.finish();
    mkdir(out.parent().unwrap_or(Path::new(".")))?;
    write_atomic(&out, config.as_bytes())?;
    Ok(out)
}

/// Everything a build step needs.
struct Ctx {
    key: String,
    source_id: String,
    tree: PathBuf,
    work: PathBuf,
    log: Log,
    jobs: usize,
}

impl Ctx {
    /// Checks tools, extracts the source if needed, opens the log.
    fn prepare(req: &Request, progress: &mut Progress) -> Result<Ctx, Error> {
        let (key, source_id) = req.key()?;
        let kdir = kernel_dir(&req.cache_root);
        remove_stale_temporaries(&kdir);
        let logs = kdir.join("logs");
        mkdir(&logs)?;
        let log = Log::create(&logs.join(format!("{key}.log")))?;
        log.line(&format!("# smolvm kernel build {key}\n# source: {source_id}"));
        let src_key = cache::source_key(&source_id);
        let src_dir = kdir.join("src").join(&src_key);
        let extracting = matches!(req.source, Source::Tarball(_)) && !src_dir.join("Makefile").is_file();
        progress.step(&if extracting {
            format!("extract {} (once per source)", req.source.path().display())
        } else {
            format!("kernel source {}", req.source.path().display())
        });
        mkdir(&kdir.join("src"))?;
        let tree = source::tree(&req.source, &src_dir, &log)?;
        let work = kdir.join("work").join(&src_key);
        if req.force {
            let _ = std::fs::remove_dir_all(&work);
        }
        mkdir(&work)?;
        Ok(Ctx { key, source_id, tree, work, log, jobs: req.jobs.max(1) })
    }

    fn make(&self, targets: &[&str], progress: &mut Progress) -> Result<(), Error> {
        let mut cmd = Command::new("make");
        cmd.arg("-C").arg(&self.tree).arg(format!("O={}", self.work.display()));
        cmd.arg(format!("-j{}", self.jobs)).args(targets).envs(KBUILD_ENV.iter().copied());
        run(&mut cmd, &self.log, progress, &format!("make {}", targets.join(" ")))
    }

    fn dot_config(&self) -> PathBuf {
        self.work.join(".config")
    }

    fn read(&self, p: &Path) -> Result<String, Error> {
        std::fs::read_to_string(p).map_err(|e| Error::io(format!("cannot read {}", p.display()), e))
    }

    /// `.config` := `base` + `fragments` + `compression`, olddefconfig'd and verified.
    fn apply(&self, base: &str, fragments: &[Fragment], c: Compression) -> Result<String, Error> {
        let mut all = fragments.to_vec();
        all.push(c.fragment());
        let settings = effective(&all)?;
        write_atomic(&self.dot_config(), dotconfig::merge(base, &settings).as_bytes())?;
        self.make(&["olddefconfig"], &mut Progress::silent())?;
        let config = self.read(&self.dot_config())?;
        dotconfig::verify(&config, &settings).map_err(|e| {
            self.log.line(&e.message);
            Error { log: Some(self.log.path().to_path_buf()), ..e }
        })?;
        Ok(config)
    }

    /// From scratch: tinyconfig, then the fragments.
    fn configure(&self, fragments: &[Fragment], c: Compression) -> Result<String, Error> {
        self.make(&["tinyconfig"], &mut Progress::silent())?;
        let base = self.read(&self.dot_config())?;
        self.apply(&base, fragments, c)
    }
}

fn build_into(ctx: &Ctx, req: &Request, stage: &Path, progress: &mut Progress, started: Instant) -> Result<(), Error> {
    let fragments = req.fragments();
    progress.step("configure: tinyconfig + fragments + olddefconfig, verify");
    let config = ctx.configure(&fragments, PRIMARY)?;
    write_atomic(&stage.join("config"), config.as_bytes())?;

    progress.step(&format!("build vmlinux and bzImage ({}), make -j{}", PRIMARY.name(), ctx.jobs));
    ctx.make(&["vmlinux", "bzImage"], progress)?;
    let vmlinux = ctx.work.join("vmlinux");
    let bzimage = ctx.work.join("arch/x86/boot/bzImage");
    copy(&vmlinux, &stage.join("vmlinux"))?;
    copy(&bzimage, &stage.join(format!("bzImage-{}", PRIMARY.name())))?;
    let vmlinux_bytes = read_bytes(&vmlinux)?;

    for c in Compression::ALL.into_iter().filter(|c| *c != PRIMARY) {
        progress.step(&format!("bzImage ({}): only the decompressor rebuilds", c.name()));
        let current = ctx.read(&ctx.dot_config())?;
        ctx.apply(&current, &fragments, c)?;
        ctx.make(&["bzImage"], progress)?;
        if read_bytes(&vmlinux)? != vmlinux_bytes {
            return Err(ctx.log.error(format!("vmlinux changed while switching the compression to {}", c.name())));
        }
        copy(&bzimage, &stage.join(format!("bzImage-{}", c.name())))?;
    }

    let (text, data, bss) = berkeley_size(&stage.join("vmlinux"))?;
    let release = ctx.read(&ctx.work.join("include/config/kernel.release"))?.trim().to_string();
    let meta = Meta {
        release,
        version: banner(&vmlinux_bytes).unwrap_or_default(),
        config_sha256: cache::sha256_hex(config.as_bytes()),
        key: ctx.key.clone(),
        source: req.source.path().display().to_string(),
        source_id: ctx.source_id.clone(),
        fragments: fragments.iter().map(|f| f.name.clone()).collect(),
        vmlinux_bytes: u64::try_from(vmlinux_bytes.len()).unwrap_or(u64::MAX),
        vmlinux_text: text,
        vmlinux_data: data,
        vmlinux_bss: bss,
        bzimage_bytes: Compression::ALL
            .iter()
            .map(|c| Ok((*c, file_len(&stage.join(format!("bzImage-{}", c.name())))?)))
            .collect::<Result<_, Error>>()?,
        build_seconds: started.elapsed().as_secs(),
    };
    ctx.log.line(&format!("# built in {}", fmt_duration(started.elapsed())));
    copy(ctx.log.path(), &stage.join("build.log"))?;
    // Written last: an entry is complete when its meta file exists.
    write_atomic(&stage.join(crate::meta::FILE_NAME), meta.to_text().as_bytes())
}

/// `Linux version ...` as compiled into the kernel (`linux_banner`). 6.1 also holds a
/// placeholder copy ending in `# `: the longest (the later on a tie) is the real one.
fn banner(vmlinux: &[u8]) -> Option<String> {
    let needle = b"Linux version ";
    let mut best: Option<&[u8]> = None;
    let mut at = 0;
    while let Some(pos) = vmlinux[at..].windows(needle.len()).position(|w| w == needle) {
        let rest = &vmlinux[at + pos..];
        at += pos + needle.len();
        let Some(end) = rest.iter().take(256).position(|b| *b == b'\n' || *b == 0) else { continue };
        if best.is_none_or(|b| b.len() <= end) {
            best = Some(&rest[..end]);
        }
    }
    best.map(|b| String::from_utf8_lossy(b).into_owned())
}

/// (text, data, bss) as `size -B` reports them.
fn berkeley_size(elf: &Path) -> Result<(u64, u64, u64), Error> {
    let out = Command::new("size")
        .arg("-B")
        .arg(elf)
        .output()
        .map_err(|e| Error::io("cannot run size (binutils)", e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let nums: Vec<u64> = text.lines().nth(1).unwrap_or("").split_whitespace().take(3).filter_map(|n| n.parse().ok()).collect();
    match nums[..] {
        [t, d, b] if out.status.success() => Ok((t, d, b)),
        _ => Err(Error::new(format!("unexpected `size -B` output for {}: {text}", elf.display()))),
    }
}

/// Leftovers of interrupted runs (only called with the lock held, so none is live).
fn remove_stale_temporaries(kdir: &Path) {
    for dir in [kdir.to_path_buf(), kdir.join("src")] {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

fn mkdir(p: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(p).map_err(|e| Error::io(format!("cannot create {}", p.display()), e))
}

fn copy(from: &Path, to: &Path) -> Result<(), Error> {
    std::fs::copy(from, to).map(drop).map_err(|e| Error::io(format!("cannot copy {} to {}", from.display(), to.display()), e))
}

fn read_bytes(p: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(p).map_err(|e| Error::io(format!("cannot read {}", p.display()), e))
}

fn file_len(p: &Path) -> Result<u64, Error> {
    std::fs::metadata(p).map(|m| m.len()).map_err(|e| Error::io(format!("cannot stat {}", p.display()), e))
}

/// Write to a sibling temporary, then rename: readers never see a partial file.
fn write_atomic(p: &Path, data: &[u8]) -> Result<(), Error> {
    let tmp = p.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, data).map_err(|e| Error::io(format!("cannot write {}", tmp.display()), e))?;
    std::fs::rename(&tmp, p).map_err(|e| Error::io(format!("cannot write {}", p.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banner_is_found_and_cut_at_newline() {
        let img = b"\0Linux version 6.1.0 (smolvm@smolvm) # \0junkLinux version 6.1.0 (smolvm@smolvm) #1\nmore\0";
        assert_eq!(banner(img).as_deref(), Some("Linux version 6.1.0 (smolvm@smolvm) #1"));
        assert_eq!(banner(b"nothing here"), None);
    }
}
