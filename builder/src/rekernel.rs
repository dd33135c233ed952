//! `smolvm rekernel APP.vm [--kernel FILE] -o NEW.vm`: the same image with
//! another kernel (a CVE fix, say) without rebuilding it. The kernel and
//! kernel-info sections are replaced; every other section is copied byte for
//! byte (same digests), in the same order, and the trailer is re-sealed. The
//! input must be intact (`smolvm verify`) and of the format version this
//! smolvm writes. Same inputs give a byte-identical output. A signature
//! covers the kernel too: it is dropped, and the output says to sign again.

use crate::bail;
use crate::build::{locate_kernel, KernelFormat};
use crate::error::{Context, Error, Result};
use crate::kernel_file::KernelFile;
use crate::output::TempFile;
use linker::image::{Kind, Section, FLAG_BZIMAGE, TRAILER_LEN, VERSION};
use linker::write::{verify, ImageWriter, VerifyError};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct RekernelArgs {
    /// The image whose kernel is replaced (left untouched).
    pub image: PathBuf,
    /// The new kernel (vmlinux or bzImage); default $SMOLVM_KERNEL, then the
    /// cached kernel (`smolvm kernel path`) in the form --kernel-format picks.
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// Form of the cached kernel when --kernel is not given; default: the
    /// form the image has now (vmlinux stays vmlinux, a bzImage becomes the
    /// lz4 bzImage).
    #[arg(long, value_enum)]
    pub kernel_format: Option<KernelFormat>,
    /// The new image (written atomically, mode 0755; may be the input).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
}

/// The format version recorded in a trailer that the reader refused, to say
/// which smolvm can handle it.
fn recorded_version(f: &mut File) -> Option<u32> {
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.checked_sub(TRAILER_LEN as u64)?.checked_add(8)?)).ok()?;
    let mut v = [0u8; 4];
    f.read_exact(&mut v).ok()?;
    Some(u32::from_le_bytes(v))
}

/// Opens and fully verifies the input image.
pub(crate) fn open_intact(path: &Path) -> Result<(File, linker::image::Image)> {
    let shown = path.display();
    let mut f = File::open(path).context(|| shown.to_string())?;
    match verify(&mut f) {
        Ok(image) => Ok((f, image)),
        Err(VerifyError::Format(linker::image::ImageError::UnsupportedVersion(_))) => {
            let v = recorded_version(&mut f).unwrap_or(0);
            bail!(
                "{shown}: image format v{v}, this smolvm rewrites only v{VERSION} images: \
                 use the smolvm that built it, or rebuild it with this one"
            )
        }
        Err(e @ VerifyError::Digest(_)) | Err(e @ VerifyError::Padding(_)) => {
            bail!("{shown}: {e}; refusing to rewrite a damaged image (rebuild it)")
        }
        Err(e) => bail!("{shown}: {e}"),
    }
}

fn kernel_info(f: &mut File, image: &linker::image::Image) -> String {
    image
        .section(Kind::KernelInfo)
        .and_then(|s| linker::write::read_section(f, &s).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// `version` of a kernel-info text, shortened to the release.
fn release_of(info: &str) -> String {
    info.lines()
        .find_map(|l| l.strip_prefix("version="))
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or("unknown")
        .to_string()
}

pub fn run(a: &RekernelArgs) -> Result<()> {
    let started = Instant::now();
    let (mut old, image) = open_intact(&a.image)?;
    let old_kernel = image
        .section(Kind::Kernel)
        .ok_or_else(|| Error("image has no kernel section".into()))?;
    let format = a.kernel_format.unwrap_or(if old_kernel.is_bzimage() {
        KernelFormat::BzimageLz4
    } else {
        KernelFormat::Vmlinux
    });
    let kernel = KernelFile::load(&locate_kernel(a.kernel.as_deref(), format)?)?;
    let old_info = kernel_info(&mut old, &image);
    let new_info = kernel.info();

    let out = TempFile::create_beside(&a.output, 0o755)?;
    let write_err = |e: std::io::Error| Error(format!("writing {}: {e}", a.output.display()));
    let mut w = ImageWriter::new(BufWriter::new(out.file()?));
    let mut wrote_info = false;
    for s in image.sections() {
        match s.kind {
            Kind::Kernel => {
                let flags = if kernel.bzimage { FLAG_BZIMAGE } else { 0 };
                let file = File::open(&kernel.path).context(|| kernel.path.display().to_string())?;
                w.add(Kind::Kernel, flags, file).map_err(write_err)?;
            }
            Kind::KernelInfo => {
                if !new_info.is_empty() {
                    w.add_bytes(Kind::KernelInfo, 0, &new_info).map_err(write_err)?;
                }
                wrote_info = true;
            }
            // Always last; it would no longer match.
            Kind::Signature => {}
            // A snapshot of the old kernel cannot resume the new one: the
            // result is a cold image (`smolvm warm` makes it warm again).
            Kind::MachineState | Kind::GuestMemory => {
                eprintln!("smolvm: dropping the warm snapshot (made with the old kernel)");
            }
            _ => {
                copy_section(&mut old, s, &mut w).map_err(write_err)?;
            }
        }
    }
    if !wrote_info && !new_info.is_empty() {
        w.add_bytes(Kind::KernelInfo, 0, &new_info).map_err(write_err)?;
    }
    let (buf, new_image) = w.finish().map_err(write_err)?;
    let file = buf.into_inner().map_err(|e| write_err(e.into_error()))?;
    file.sync_all().map_err(write_err)?;
    drop(file);
    for s in image.sections() {
        if !matches!(s.kind, Kind::Kernel | Kind::KernelInfo | Kind::Signature | Kind::MachineState | Kind::GuestMemory)
            && new_image.section(s.kind).map(|n| n.sha256) != Some(s.sha256)
        {
            bail!("internal error: section {} changed while copying", s.kind.name());
        }
    }
    out.persist(&a.output)?;
    println!(
        "{}: kernel {} -> {} ({}), {} -> {} bytes, other sections unchanged; {:.1} s",
        a.output.display(),
        release_of(&old_info),
        release_of(&String::from_utf8_lossy(&new_info)),
        kernel.path.display(),
        image.file_len(),
        new_image.file_len(),
        started.elapsed().as_secs_f64()
    );
    if image.section(Kind::Signature).is_some() {
        println!(
            "{}: the signature was dropped (it covered the old kernel): sign it again with `smolvm sign --key KEY {}`",
            a.output.display(),
            a.output.display()
        );
    }
    Ok(())
}

/// Streams one section's bytes from the old image into the new one.
pub(crate) fn copy_section<W: std::io::Write>(
    old: &mut File,
    s: &Section,
    w: &mut ImageWriter<W>,
) -> std::io::Result<()> {
    old.seek(SeekFrom::Start(s.offset))?;
    w.add(s.kind, s.flags, Read::by_ref(old).take(s.len))?;
    Ok(())
}
