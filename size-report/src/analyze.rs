//! Turns one input file (a smolvm image or an ELF file) into a report item.

use crate::binary::{self, SymbolSource};
use crate::report::{Item, ItemKind, Kernel, Part};
use crate::{cpio, elf, kernel};
use linker::abi::{INITRAMFS_ROOT_DIR, INIT_PATH};
use linker::image::{Image, ImageError, Kind, TRAILER_LEN};

/// Compressed size per compressor (`None`: tool missing or failed).
pub type CompressedSizes = Vec<(String, Option<u64>)>;

pub struct Options {
    /// How many symbols and crates to list per ELF file.
    pub top: usize,
    /// Run the compressors over the kernel section.
    pub compress: bool,
    /// Compressed sizes by kernel digest: images of one build share a
    /// kernel, which is then compressed once per run.
    compressed: std::cell::RefCell<Vec<(u64, CompressedSizes)>>,
}

impl Options {
    pub fn new(top: usize, compress: bool) -> Options {
        Options { top, compress, compressed: Default::default() }
    }

    fn compress(&self, digest: u64, data: &[u8]) -> CompressedSizes {
        if !self.compress {
            return Vec::new();
        }
        if let Some((_, sizes)) = self.compressed.borrow().iter().find(|c| c.0 == digest) {
            return sizes.clone();
        }
        let sizes = kernel::compress_all(data);
        self.compressed.borrow_mut().push((digest, sizes.clone()));
        sizes
    }
}

/// Reads and analyses `path`. Errors are one line, naming the file.
pub fn analyze(path: &str, name: Option<&str>, sources: &[SymbolSource], opts: &Options) -> Result<Item, String> {
    let data = std::fs::read(path).map_err(|e| format!("{path}: cannot read: {e}"))?;
    let default_name = std::path::Path::new(path).file_name().map(|n| n.to_string_lossy().into_owned());
    let name = name.map(str::to_string).or(default_name).unwrap_or_else(|| path.to_string());
    analyze_bytes(&data, path, &name, sources, opts).map_err(|e| format!("{path}: {e}"))
}

pub fn analyze_bytes(data: &[u8], path: &str, name: &str, sources: &[SymbolSource], opts: &Options) -> Result<Item, String> {
    let file_len = data.len() as u64;
    let tail = &data[data.len().saturating_sub(TRAILER_LEN)..];
    match Image::parse_slice(tail, file_len) {
        Ok(image) => analyze_image(data, &image, path, name, sources, opts),
        Err(ImageError::BadMagic | ImageError::TooSmall) if elf::is_elf(data) => analyze_elf(data, path, name, sources, opts),
        Err(ImageError::BadMagic | ImageError::TooSmall) => {
            Err("neither a smolvm image (no trailer at the end) nor an ELF file".into())
        }
        Err(e) => Err(e.to_string()),
    }
}

fn analyze_elf(data: &[u8], path: &str, name: &str, sources: &[SymbolSource], opts: &Options) -> Result<Item, String> {
    let e = elf::parse(data).map_err(|e| format!("corrupt ELF file: {e}"))?;
    // An image whose trailer was cut off (truncated, or `strip`ped) is
    // its stub followed by bytes no ELF header accounts for.
    let extra = e.file_len - e.extent().min(e.file_len);
    if extra > 0 {
        return Err(format!(
            "no smolvm trailer, but {} bytes follow the ELF file: a damaged smolvm image?",
            crate::figures::bytes(extra)
        ));
    }
    let parts = e.file_parts().into_iter().map(|(name, size)| Part { name, size }).collect();
    Ok(Item {
        name: name.into(),
        path: path.into(),
        kind: ItemKind::Elf,
        size: e.file_len,
        parts,
        initramfs: None,
        kernel: None,
        elfs: vec![binary::describe(name, &e, path, sources, opts.top)],
    })
}

fn analyze_image(
    data: &[u8],
    image: &Image,
    path: &str,
    name: &str,
    sources: &[SymbolSource],
    opts: &Options,
) -> Result<Item, String> {
    let bytes = |s: &linker::image::Section| {
        // The reader checked offset + len against the file length.
        let range = usize::try_from(s.offset).ok().zip(usize::try_from(s.end()).ok());
        range.and_then(|(a, b)| data.get(a..b)).ok_or_else(|| format!("{} section out of range", s.kind.name()))
    };
    let mut parts = Vec::new();
    let mut covered = 0u64;
    for s in image.sections() {
        s.check_fast(bytes(s)?).map_err(|e| e.to_string())?;
        parts.push(Part { name: s.kind.name().into(), size: s.len });
        covered += s.len;
    }
    let trailer = TRAILER_LEN as u64;
    parts.push(Part { name: "padding".into(), size: image.file_len() - trailer - covered });
    parts.push(Part { name: "trailer".into(), size: trailer });

    let mut elfs = Vec::new();
    let stub = image.section(Kind::Stub).ok_or("no stub section")?;
    let stub_elf = elf::parse(bytes(&stub)?).map_err(|e| format!("stub section is not a valid ELF: {e}"))?;
    elfs.push(binary::describe("stub", &stub_elf, path, sources, opts.top));

    let initramfs = image.section(Kind::Initramfs).ok_or("no initramfs section")?;
    let cpio_bytes = bytes(&initramfs)?;
    let summary = cpio::summarize(cpio_bytes, INITRAMFS_ROOT_DIR, INIT_PATH).map_err(|e| format!("initramfs: {e}"))?;
    if let Some(init) = cpio::find(cpio_bytes, INIT_PATH).map_err(|e| format!("initramfs: {e}"))? {
        let init_elf = elf::parse(init).map_err(|e| format!("initramfs /{INIT_PATH} is not a valid ELF: {e}"))?;
        elfs.push(binary::describe("init", &init_elf, path, sources, opts.top));
    }

    let kernel_section = image.section(Kind::Kernel).ok_or("no kernel section")?;
    let kernel_bytes = bytes(&kernel_section)?;
    let info = match image.section(Kind::KernelInfo) {
        Some(s) => bytes(&s)?.to_vec(),
        None => Vec::new(),
    };
    let kernel = Kernel {
        format: if kernel_section.is_bzimage() { "bzImage" } else { "vmlinux" }.into(),
        size: kernel_section.len,
        version: kernel::info_value(&info, "version").or_else(|| kernel::banner_version(kernel_bytes)),
        config_sha256: kernel::info_value(&info, "config_sha256"),
        compressed: opts.compress(kernel_section.fast_digest, kernel_bytes),
    };
    if let Ok(vmlinux) = elf::parse(kernel_bytes) {
        elfs.push(binary::describe("kernel", &vmlinux, path, &[], opts.top));
    }
    Ok(Item {
        name: name.into(),
        path: path.into(),
        kind: ItemKind::Image,
        size: image.file_len(),
        parts,
        initramfs: Some(summary),
        kernel: Some(kernel),
        elfs,
    })
}
