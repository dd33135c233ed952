//! `kernel.meta`: what a cache entry holds, as `key=value` lines (one per line, `#`
//! comments, unknown keys ignored) so `smolvm inspect` and scripts can read it.
//!
//! ```text
//! format=1
//! release=6.1.0               # `make kernelrelease`
//! version=Linux version 6.1.0 (smolvm@smolvm) (gcc ...) #1 Thu Jan  1 00:00:00 UTC 1970
//! config_sha256=<hex>         # of the entry's `config` (the lz4 one)
//! key=<cache key>
//! source=<path>
//! source_id=<identity used in the key>
//! fragments=10-base.config,20-console.config,...
//! vmlinux_bytes=N  vmlinux_text=N  vmlinux_data=N  vmlinux_bss=N  (one per line)
//! bzimage_lz4_bytes=N  bzimage_zstd_bytes=N  bzimage_xz_bytes=N
//! build_seconds=N
//! ```
use crate::{Compression, Error};
use std::path::Path;

pub const FILE_NAME: &str = "kernel.meta";
const FORMAT: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub release: String,
    pub version: String,
    pub config_sha256: String,
    pub key: String,
    pub source: String,
    pub source_id: String,
    pub fragments: Vec<String>,
    pub vmlinux_bytes: u64,
    pub vmlinux_text: u64,
    pub vmlinux_data: u64,
    pub vmlinux_bss: u64,
    /// Size of each `bzImage-<compression>`, in `Compression::ALL` order.
    pub bzimage_bytes: Vec<(Compression, u64)>,
    pub build_seconds: u64,
}

impl Meta {
    pub fn to_text(&self) -> String {
        let mut t = format!("# smolvm kernel cache entry\nformat={FORMAT}\n");
        let mut kv = |k: &str, v: &dyn std::fmt::Display| t.push_str(&format!("{k}={v}\n"));
        kv("release", &self.release);
        kv("version", &self.version);
        kv("config_sha256", &self.config_sha256);
        kv("key", &self.key);
        kv("source", &self.source);
        kv("source_id", &self.source_id);
        kv("fragments", &self.fragments.join(","));
        kv("vmlinux_bytes", &self.vmlinux_bytes);
        kv("vmlinux_text", &self.vmlinux_text);
        kv("vmlinux_data", &self.vmlinux_data);
        kv("vmlinux_bss", &self.vmlinux_bss);
        for (c, n) in &self.bzimage_bytes {
            kv(&format!("bzimage_{}_bytes", c.name()), n);
        }
        kv("build_seconds", &self.build_seconds);
        t
    }

    pub fn parse(text: &str) -> Result<Meta, Error> {
        let mut m = Meta::default();
        let mut format = None;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let (k, v) = line.split_once('=').ok_or_else(|| Error::new(format!("kernel.meta: bad line `{line}`")))?;
            let num = || v.parse::<u64>().map_err(|_| Error::new(format!("kernel.meta: {k} is not a number")));
            match k {
                "format" => format = Some(num()?),
                "release" => m.release = v.into(),
                "version" => m.version = v.into(),
                "config_sha256" => m.config_sha256 = v.into(),
                "key" => m.key = v.into(),
                "source" => m.source = v.into(),
                "source_id" => m.source_id = v.into(),
                "fragments" => m.fragments = v.split(',').filter(|s| !s.is_empty()).map(Into::into).collect(),
                "vmlinux_bytes" => m.vmlinux_bytes = num()?,
                "vmlinux_text" => m.vmlinux_text = num()?,
                "vmlinux_data" => m.vmlinux_data = num()?,
                "vmlinux_bss" => m.vmlinux_bss = num()?,
                "build_seconds" => m.build_seconds = num()?,
                _ => {
                    let comp = k.strip_prefix("bzimage_").and_then(|r| r.strip_suffix("_bytes"));
                    if let Some(c) = comp.and_then(Compression::parse) {
                        m.bzimage_bytes.push((c, num()?));
                    }
                }
            }
        }
        if format != Some(u64::from(FORMAT)) {
            return Err(Error::new(format!("kernel.meta: unsupported format {format:?}")));
        }
        Ok(m)
    }

    pub fn load(entry_dir: &Path) -> Result<Meta, Error> {
        let p = entry_dir.join(FILE_NAME);
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io(format!("cannot read {}", p.display()), e))?;
        Meta::parse(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let m = Meta {
            release: "6.1.0".into(),
            version: "Linux version 6.1.0 (smolvm@smolvm) #1".into(),
            config_sha256: "ab".repeat(32),
            key: "k".into(),
            source: "/usr/src/x.tar.xz".into(),
            source_id: "tarball /usr/src/x.tar.xz size=1 mtime=2".into(),
            fragments: vec!["a.config".into(), "b.config".into()],
            vmlinux_bytes: 10,
            vmlinux_text: 6,
            vmlinux_data: 3,
            vmlinux_bss: 1,
            bzimage_bytes: vec![(Compression::Lz4, 5), (Compression::Xz, 4)],
            build_seconds: 240,
        };
        assert_eq!(Meta::parse(&m.to_text()).expect("parses"), m);
    }

    #[test]
    fn rejects_unknown_format_and_bad_numbers() {
        assert!(Meta::parse("format=2\n").is_err());
        assert!(Meta::parse("release=1\n").is_err());
        assert!(Meta::parse("format=1\nvmlinux_bytes=x\n").is_err());
        assert!(Meta::parse("format=1\nfuture_key=1\n").is_ok());
    }
}
