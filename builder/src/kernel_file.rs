//! The kernel file that goes into an image: its format (ELF vmlinux or
//! bzImage), its version string, and the hash of the `.config` it was built
//! from when that file sits next to it. These become the `KernelInfo` section.

use crate::bail;
use crate::error::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

pub struct KernelFile {
    pub path: PathBuf,
    pub bzimage: bool,
    pub version: Option<String>,
    pub config_sha256: Option<String>,
}

const VERSION_PREFIX: &[u8] = b"Linux version ";
const MAX_VERSION_LEN: usize = 200;

/// Version string of a bzImage: setup header field `kernel_version` (0x20e)
/// points to a NUL-terminated string at that offset + 0x200.
fn bzimage_version(bytes: &[u8]) -> Option<String> {
    let at = usize::from(u16::from_le_bytes([*bytes.get(0x20e)?, *bytes.get(0x20f)?])) + 0x200;
    let s = bytes.get(at..)?;
    let end = s.iter().take(MAX_VERSION_LEN).position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&s[..end]).into_owned())
}

/// `Linux version ...` banner of a vmlinux. 6.1 holds two: a placeholder
/// ending in `# ` and the real one with the build number; take the longest (the later one on a tie).
fn elf_version(bytes: &[u8]) -> Option<String> {
    let mut best: Option<&[u8]> = None;
    let mut rest = bytes;
    while let Some(at) = rest
        .windows(VERSION_PREFIX.len())
        .position(|w| w == VERSION_PREFIX)
    {
        rest = &rest[at + VERSION_PREFIX.len()..];
        let Some(end) = rest
            .iter()
            .take(MAX_VERSION_LEN)
            .position(|&b| b == 0 || b == b'\n')
        else {
            continue;
        };
        if best.is_none_or(|b| b.len() <= end) {
            best = Some(&rest[..end]);
        }
    }
    best.map(|b| String::from_utf8_lossy(b).into_owned())
}

/// The `.config` next to the kernel: a kernel build tree has `.config`, the
/// smolvm kernel cache stores it as `config`.
fn config_next_to(path: &Path) -> Option<PathBuf> {
    let dir = path.parent()?;
    let mut candidates = vec![dir.join(".config"), dir.join("config")];
    // A bzImage sits in arch/x86/boot of a build tree.
    if let Some(root) = dir.parent().and_then(Path::parent).and_then(Path::parent) {
        candidates.push(root.join(".config"));
    }
    candidates.into_iter().find(|p| p.is_file())
}

impl KernelFile {
    pub fn load(path: &Path) -> Result<KernelFile> {
        let bytes = fs::read(path).context(|| format!("kernel {}", path.display()))?;
        let bzimage = bytes.get(0x202..0x206) == Some(b"HdrS");
        if !bzimage && !bytes.starts_with(b"\x7fELF") {
            bail!(
                "kernel {} is neither an ELF vmlinux nor a bzImage",
                path.display()
            );
        }
        let version = if bzimage {
            bzimage_version(&bytes)
        } else {
            elf_version(&bytes)
        };
        let config_sha256 = config_next_to(path)
            .and_then(|c| fs::read(c).ok())
            .map(|c| linker::sha256::hex(&linker::sha256::sha256(&c)));
        Ok(KernelFile {
            path: path.to_path_buf(),
            bzimage,
            version,
            config_sha256,
        })
    }

    /// The `KernelInfo` section: `key=value` lines (empty if nothing is known).
    pub fn info(&self) -> Vec<u8> {
        let mut s = String::new();
        if let Some(v) = &self.version {
            s.push_str(&format!("version={}\n", v.replace('\n', " ")));
        }
        if let Some(h) = &self.config_sha256 {
            s.push_str(&format!("config_sha256={h}\n"));
        }
        let mut bytes = s.into_bytes();
        bytes.truncate(usize::try_from(linker::image::MAX_KERNEL_INFO_LEN).unwrap_or(usize::MAX));
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_found_in_both_formats() {
        let mut elf = b"\x7fELF....".to_vec();
        elf.extend_from_slice(b"Linux version 6.1.0-smol (gcc 12) # \0");
        elf.extend_from_slice(b"xx Linux version 6.1.0-smol (gcc 12) #1\n\0rest");
        assert_eq!(elf_version(&elf).as_deref(), Some("6.1.0-smol (gcc 12) #1"));
        let mut bz = vec![0u8; 0x400];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        bz[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        bz[0x300..0x30a].copy_from_slice(b"6.1.0 #1\0\0");
        assert_eq!(bzimage_version(&bz).as_deref(), Some("6.1.0 #1"));
        bz[0x20e..0x210].copy_from_slice(&0xffffu16.to_le_bytes());
        assert_eq!(bzimage_version(&bz), None);
    }
}
