//! The kernel section: what it would take compressed, and which kernel it is.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

/// Compressors with the options the kernel's own build uses for bzImage
/// payloads (scripts/Makefile.lib, scripts/xz_wrap.sh), so the figures say
/// what a compressed kernel section would cost.
pub const COMPRESSORS: [(&str, &str, &[&str]); 3] = [
    ("xz", "xz", &["--check=crc32", "--x86", "--lzma2=dict=32MiB", "-c"]),
    ("zstd", "zstd", &["-22", "--ultra", "-c", "-q"]),
    ("lz4", "lz4", &["-l", "-12", "-c", "-q"]),
];

/// Size of `data` compressed by `program args…` (stdin → stdout), or `None`
/// when the tool is missing or fails.
pub fn compressed_size(program: &str, args: &[&str], data: &[u8]) -> Option<u64> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let mut stdout = child.stdout.take()?;
    // Feed and drain at once so neither pipe fills up and blocks the other.
    let counted = std::thread::scope(|s| {
        let reader = s.spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0u64;
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) => return Some(total),
                    Ok(n) => total += n as u64,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => return None,
                }
            }
        });
        let written = stdin.write_all(data).is_ok();
        drop(stdin);
        let total = reader.join().ok().flatten();
        total.filter(|_| written)
    });
    let ok = child.wait().ok()?.success();
    counted.filter(|_| ok)
}

/// Every compressor's size for `data`, the compressors running in parallel
/// (a real kernel takes each of them seconds).
pub fn compress_all(data: &[u8]) -> Vec<(String, Option<u64>)> {
    std::thread::scope(|s| {
        let runs: Vec<_> = COMPRESSORS
            .iter()
            .map(|(name, prog, args)| (name, s.spawn(move || compressed_size(prog, args, data))))
            .collect();
        runs.into_iter().map(|(name, run)| (name.to_string(), run.join().ok().flatten())).collect()
    })
}

/// The version from the `Linux version X ...` banner in a kernel image.
pub fn banner_version(data: &[u8]) -> Option<String> {
    const BANNER: &[u8] = b"Linux version ";
    let at = data.windows(BANNER.len()).position(|w| w == BANNER)? + BANNER.len();
    let rest = &data[at..data.len().min(at + 64)];
    let end = rest.iter().position(|&b| b == b' ' || b == 0 || b == b'\n')?;
    let v = std::str::from_utf8(&rest[..end]).ok()?;
    (!v.is_empty()).then(|| v.to_string())
}

/// `key=value` lines of the image's kernel-info section.
pub fn info_value(info: &[u8], key: &str) -> Option<String> {
    let text = std::str::from_utf8(info).ok()?;
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).map(|v| v.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_banner_and_info() {
        let k = b"\0\0Linux version 6.1.158 (root@x) #1 SMP\0";
        assert_eq!(banner_version(k).as_deref(), Some("6.1.158"));
        assert_eq!(banner_version(b"nothing here"), None);
        let info = b"version=6.1.158\nconfig_sha256=abcd\n";
        assert_eq!(info_value(info, "config_sha256").as_deref(), Some("abcd"));
        assert_eq!(info_value(info, "version").as_deref(), Some("6.1.158"));
        assert_eq!(info_value(info, "missing"), None);
    }

    #[test]
    fn compresses_through_real_tools() {
        let data = vec![b'a'; 1 << 20];
        // xz, zstd and lz4 are build dependencies (Makefile `deps`).
        for (name, size) in compress_all(&data) {
            let size = size.unwrap_or_else(|| panic!("{name} missing or failed"));
            assert!(size > 0 && size < 1 << 16, "{name}: {size}");
        }
        assert_eq!(compressed_size("/nonexistent/tool", &[], &data), None);
        assert_eq!(compressed_size("false", &[], &data), None);
    }
}
