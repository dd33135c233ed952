//! What a report says about each input file, independent of how it is shown.
//! Every renderer (table, markdown, JSON, SVG) reads these numbers, so the
//! outputs cannot disagree.

use crate::json::Json;

/// The report on one input file.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The key budgets and baselines use: the file name or `--name`.
    pub name: String,
    pub path: String,
    pub kind: ItemKind,
    /// File size in bytes; `parts` add up to it exactly.
    pub size: u64,
    pub parts: Vec<Part>,
    /// Images: where the initramfs bytes go.
    pub initramfs: Option<crate::cpio::Summary>,
    pub kernel: Option<Kernel>,
    /// The ELF files inside (stub, init) or the file itself.
    pub elfs: Vec<Binary>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    Image,
    Elf,
}

impl ItemKind {
    pub fn name(self) -> &'static str {
        match self {
            ItemKind::Image => "image",
            ItemKind::Elf => "elf",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub size: u64,
}

/// An ELF file's sections and (when symbols are available) largest symbols.
#[derive(Debug, Clone, PartialEq)]
pub struct Binary {
    /// `stub`, `init`, `kernel`, or the file name for an ELF given directly.
    pub label: String,
    pub size: u64,
    /// File bytes of its loadable segments (the rest is never loaded).
    pub loaded: u64,
    pub stripped: bool,
    /// Where the symbols came from (the file itself or `--symbols-from`).
    pub symbols_from: Option<String>,
    pub sections: Vec<SectionSize>,
    /// Largest functions and objects, biggest first, demangled.
    pub symbols: Vec<SymbolSize>,
    /// Sum of symbol sizes per crate, biggest first.
    pub crates: Vec<SymbolSize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionSize {
    pub name: String,
    /// Bytes in the file (0 for `.bss`).
    pub file_size: u64,
    /// Bytes in memory when loaded (0 for sections that are not loaded).
    pub mem_size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolSize {
    pub name: String,
    pub size: u64,
}

/// The kernel section of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// `vmlinux` (ELF) or `bzImage`.
    pub format: String,
    pub size: u64,
    /// From the image's kernel-info section, else the "Linux version" banner.
    pub version: Option<String>,
    pub config_sha256: Option<String>,
    /// What the kernel section would take compressed, per compressor, as
    /// the kernel's own build would compress it. `None`: tool not available.
    pub compressed: Vec<(String, Option<u64>)>,
}

impl Item {
    /// Flat `name → bytes` view used by budgets and baselines: every part,
    /// `total`, and for images `init` (the init ELF inside the initramfs)
    /// and `kernel.<compressor>`.
    pub fn metrics(&self) -> Vec<(String, u64)> {
        let mut m: Vec<(String, u64)> = self.parts.iter().map(|p| (p.name.clone(), p.size)).collect();
        m.push(("total".into(), self.size));
        if let Some(init) = &self.initramfs {
            m.push(("init".into(), init.init));
        }
        if let Some(k) = &self.kernel {
            for (tool, size) in &k.compressed {
                if let Some(size) = size {
                    m.push((format!("kernel.{tool}"), *size));
                }
            }
        }
        m
    }

    pub fn metric(&self, key: &str) -> Option<u64> {
        self.metrics().into_iter().find(|m| m.0 == key).map(|m| m.1)
    }

    pub fn to_json(&self) -> Json {
        let mut f = vec![
            ("name".into(), Json::Str(self.name.clone())),
            ("path".into(), Json::Str(self.path.clone())),
            ("kind".into(), Json::Str(self.kind.name().into())),
            ("size".into(), Json::Int(self.size)),
            ("parts".into(), Json::Array(self.parts.iter().map(|p| sized(&p.name, p.size)).collect())),
            ("metrics".into(), Json::Object(self.metrics().into_iter().map(|(k, v)| (k, Json::Int(v))).collect())),
        ];
        if let Some(s) = &self.initramfs {
            f.push((
                "initramfs".into(),
                Json::Object(vec![
                    ("init".into(), Json::Int(s.init)),
                    ("rootfs".into(), Json::Int(s.rootfs)),
                    ("other".into(), Json::Int(s.other)),
                    ("overhead".into(), Json::Int(s.overhead)),
                ]),
            ));
        }
        if let Some(k) = &self.kernel {
            let opt = |s: &Option<String>| s.as_ref().map_or(Json::Null, |s| Json::Str(s.clone()));
            let compressed = k.compressed.iter().map(|(t, n)| (t.clone(), n.map_or(Json::Null, Json::Int)));
            f.push((
                "kernel".into(),
                Json::Object(vec![
                    ("format".into(), Json::Str(k.format.clone())),
                    ("size".into(), Json::Int(k.size)),
                    ("version".into(), opt(&k.version)),
                    ("config_sha256".into(), opt(&k.config_sha256)),
                    ("compressed".into(), Json::Object(compressed.collect())),
                ]),
            ));
        }
        f.push(("elf".into(), Json::Array(self.elfs.iter().map(Binary::to_json).collect())));
        Json::Object(f)
    }
}

fn sized(name: &str, size: u64) -> Json {
    Json::Object(vec![("name".into(), Json::Str(name.into())), ("size".into(), Json::Int(size))])
}

impl Binary {
    fn to_json(&self) -> Json {
        let sections = self.sections.iter().map(|s| {
            Json::Object(vec![
                ("name".into(), Json::Str(s.name.clone())),
                ("file_size".into(), Json::Int(s.file_size)),
                ("mem_size".into(), Json::Int(s.mem_size)),
            ])
        });
        Json::Object(vec![
            ("label".into(), Json::Str(self.label.clone())),
            ("size".into(), Json::Int(self.size)),
            ("loaded".into(), Json::Int(self.loaded)),
            ("stripped".into(), Json::Bool(self.stripped)),
            ("symbols_from".into(), self.symbols_from.as_ref().map_or(Json::Null, |s| Json::Str(s.clone()))),
            ("sections".into(), Json::Array(sections.collect())),
            ("symbols".into(), Json::Array(self.symbols.iter().map(|s| sized(&s.name, s.size)).collect())),
            ("crates".into(), Json::Array(self.crates.iter().map(|s| sized(&s.name, s.size)).collect())),
        ])
    }
}

/// Version of the JSON layout; a baseline of another version is refused.
pub const JSON_VERSION: u64 = 1;
