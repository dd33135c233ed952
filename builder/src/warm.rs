//! `smolvm warm IMAGE -o WARM.vm`: runs IMAGE once under a stub that saves
//! the guest at its safe point (the guest writes `linker::abi::SNAPSHOT_PORT`)
//! and writes a warm image: IMAGE's sections with a stub that restores,
//! plus the machine-state and guest-memory sections (docs/WARM.md).
//!
//! First slice: this needs a KVM that runs the guest directly (hardware
//! KVM; on kvm_pvm only bare-metal guests), and a guest that asks for its
//! snapshot. smol-init does not ask yet, so a Linux image runs to its end
//! and the command says the guest never reached a safe point.

use crate::bail;
use crate::error::{Context, Error, Result};
use crate::output::{TempDir, TempFile};
use crate::rekernel::{copy_section, open_intact};
use linker::image::{Kind, MAX_SECTIONS};
use linker::write::ImageWriter;
use std::fs::{self, File};
use std::io::{BufWriter, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct WarmArgs {
    /// The cold image to run (left untouched).
    pub image: PathBuf,
    /// The warm image (written atomically, mode 0755; may be the input).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Stub that saves the snapshot (a vmm-stub built with the `warm-save`
    /// feature); default $SMOLVM_WARM_SAVE_STUB, then `vmm-stub-warm-save`
    /// next to smolvm, then `make build`'s target/warm-save/release/vmm-stub.
    #[arg(long, value_name = "FILE")]
    pub saver_stub: Option<PathBuf>,
    /// Stub the warm image starts with (built with the `warm` feature);
    /// default $SMOLVM_WARM_STUB, then `vmm-stub-warm` next to smolvm, then
    /// target/warm/release/vmm-stub.
    #[arg(long, value_name = "FILE")]
    pub stub: Option<PathBuf>,
    /// Seconds the guest may take to reach its safe point.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub timeout: u64,
}

/// A warm stub: the flag, the variable, next to smolvm, `make build`'s place.
fn locate(flag: Option<&Path>, env: &str, name: &str, feature: &str, flag_name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context(|| "locating the smolvm executable".into())?;
    let candidates: Vec<PathBuf> = match (flag, std::env::var_os(env).filter(|v| !v.is_empty())) {
        (Some(p), _) => vec![p.to_path_buf()],
        (None, Some(p)) => vec![PathBuf::from(p)],
        _ => {
            let dir = exe.parent().unwrap_or(Path::new("."));
            vec![dir.join(name), dir.join(format!("../{feature}/release/vmm-stub"))]
        }
    };
    for c in &candidates {
        if fs::read(c).is_ok_and(|b| b.starts_with(b"\x7fELF")) {
            return Ok(c.clone());
        }
    }
    bail!(
        "no {name} (a vmm-stub built with --features {feature}) at {}: run `make build`, or pass {flag_name} / ${env}",
        candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(" or ")
    )
}

/// Runs `image` until it exits or `limit` passes; returns its status and
/// the tail of its stderr.
fn run_to_safe_point(image: &Path, dir: &Path, limit: Duration) -> Result<(Option<i32>, String)> {
    let mut child = Command::new(image)
        .env("SMOLVM_WARM_SAVE", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context(|| format!("running {}", image.display()))?;
    let mut stderr = child.stderr.take().ok_or_else(|| Error("no stderr pipe".into()))?;
    let reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().context(|| "waiting for the guest".into())? {
            break st;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the guest did not reach its safe point within {} s (--timeout)", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = reader.join().unwrap_or_default();
    let text = String::from_utf8_lossy(&err);
    let tail: Vec<&str> = text.lines().rev().take(5).collect();
    Ok((status.code(), tail.into_iter().rev().collect::<Vec<_>>().join("\n")))
}

/// The error for a failed write of `what`.
fn write_err(what: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error(format!("writing {}: {e}", what.display()))
}

pub fn run(a: &WarmArgs) -> Result<()> {
    let started = Instant::now();
    let saver_stub = locate(a.saver_stub.as_deref(), "SMOLVM_WARM_SAVE_STUB", "vmm-stub-warm-save", "warm-save", "--saver-stub")?;
    let warm_stub = locate(a.stub.as_deref(), "SMOLVM_WARM_STUB", "vmm-stub-warm", "warm", "--stub")?;
    let (mut old, image) = open_intact(&a.image)?;
    // Every section but the stub, a signature (it would no longer match)
    // and an older snapshot.
    let kept: Vec<_> = image
        .sections()
        .iter()
        .filter(|s| !matches!(s.kind, Kind::Stub | Kind::Signature | Kind::MachineState | Kind::GuestMemory))
        .copied()
        .collect();
    if kept.len() + 3 > MAX_SECTIONS {
        bail!("{}: too many sections for a warm image ({} + stub + 2 > {MAX_SECTIONS})", a.image.display(), kept.len());
    }
    let work = TempDir::create_beside(&a.output, ".warm")?;
    let saver = work.path().join("saver.vm");
    {
        let mut w = ImageWriter::new(BufWriter::new(File::create(&saver).context(|| saver.display().to_string())?));
        let stub = File::open(&saver_stub).context(|| saver_stub.display().to_string())?;
        w.add(Kind::Stub, 0, stub).map_err(write_err(&saver))?;
        for s in &kept {
            copy_section(&mut old, s, &mut w).map_err(write_err(&saver))?;
        }
        let (buf, _) = w.finish().map_err(write_err(&saver))?;
        buf.into_inner().map_err(|e| write_err(&saver)(e.into_error()))?.sync_all().map_err(write_err(&saver))?;
    }
    fs::set_permissions(&saver, fs::Permissions::from_mode(0o700)).context(|| saver.display().to_string())?;
    let snap = work.path().join("snapshot");
    fs::create_dir(&snap).context(|| snap.display().to_string())?;
    eprintln!("smolvm: running {} to its safe point...", a.image.display());
    let (status, tail) = run_to_safe_point(&saver, &snap, Duration::from_secs(a.timeout))?;
    let state = fs::read(snap.join("state")).unwrap_or_default();
    let memory = fs::read(snap.join("memory")).unwrap_or_default();
    if status != Some(0) || state.is_empty() {
        let how = status.map_or("was killed".to_string(), |c| format!("exited with status {c}"));
        bail!(
            "the guest {how} without reaching a safe point (it must write port {:#x}; smol-init does not yet){}",
            linker::abi::SNAPSHOT_PORT,
            if tail.is_empty() { String::new() } else { format!("; its last lines:\n{tail}") }
        );
    }
    let s = linker::warm::MachineState::parse(&state).map_err(|e| Error(format!("the saved state is invalid: {e}")))?;
    linker::warm::MemoryRuns::parse(&memory, memory.len() as u64, s.layout.mem_size)
        .map_err(|e| Error(format!("the saved memory is invalid: {e}")))?;

    let out = TempFile::create_beside(&a.output, 0o755)?;
    let mut w = ImageWriter::new(BufWriter::new(out.file()?));
    let stub = File::open(&warm_stub).context(|| warm_stub.display().to_string())?;
    w.add(Kind::Stub, 0, stub).map_err(write_err(&a.output))?;
    for s in &kept {
        copy_section(&mut old, s, &mut w).map_err(write_err(&a.output))?;
    }
    w.add_bytes(Kind::MachineState, 0, &state).map_err(write_err(&a.output))?;
    w.add_bytes(Kind::GuestMemory, 0, &memory).map_err(write_err(&a.output))?;
    let (buf, _) = w.finish().map_err(write_err(&a.output))?;
    buf.into_inner().map_err(|e| write_err(&a.output)(e.into_error()))?.sync_all().map_err(write_err(&a.output))?;
    out.persist(&a.output)?;
    let signed = image.section(Kind::Signature).is_some();
    println!(
        "{}: warm image, state {} B, memory {} B ({} vCPU, {} MiB RAM); {:.1} s{}",
        a.output.display(),
        state.len(),
        memory.len(),
        s.layout.vcpus,
        s.layout.mem_size >> 20,
        started.elapsed().as_secs_f64(),
        if signed { "; the signature was dropped: sign it again (`smolvm sign`)" } else { "" }
    );
    Ok(())
}
