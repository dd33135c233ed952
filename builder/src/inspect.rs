//! `smolvm inspect app.vm [--json]`: the section table, the manifest and
//! what is known of the kernel. Reads only the trailer and the small
//! sections; digests are checked by `smolvm verify`.

use crate::error::{Error, Result};
use linker::config;
use linker::image::{Image, Kind, Section, VERSION};
use linker::sha256::hex;
use linker::write::{open, read_section};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// The image to describe.
    pub image: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

struct Described {
    image: Image,
    manifest: Vec<(String, Vec<String>)>,
    kernel_info: Vec<(String, String)>,
    /// The signer's public key (the signature is checked by `verify`).
    signer: Option<[u8; 32]>,
    /// The kernel `smolvm kernel path` would use, if it is cached.
    cached: Option<kernel_config::Meta>,
}

/// The cached kernel's description, looked up (never built) as `smolvm
/// kernel path` would find it: default source and fragments.
fn cached_kernel() -> Option<kernel_config::Meta> {
    let req = kernel_config::Request::new(
        kernel_config::Source::resolve(None).ok()?,
        kernel_config::cache_root().ok()?,
    );
    kernel_config::lookup(&req).ok()??.meta().ok()
}

/// The leading `X.Y.Z` of a kernel release (`6.1.192-rekernel` → [6, 1, 192]).
fn release_numbers(release: &str) -> Vec<u64> {
    let numeric = release
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()
        .unwrap_or("");
    numeric.split('.').map_while(|n| n.parse().ok()).collect()
}

/// How the image's kernel compares with the cached one.
#[derive(Debug, PartialEq, Eq)]
enum KernelAge {
    Same,
    Older,
    Newer,
    /// Same release, built from another configuration.
    OtherConfig,
    /// The image records no kernel version.
    Unknown,
    NothingCached,
}

impl KernelAge {
    fn name(&self) -> &'static str {
        match self {
            KernelAge::Same => "same",
            KernelAge::Older => "older",
            KernelAge::Newer => "newer",
            KernelAge::OtherConfig => "other-config",
            KernelAge::Unknown => "unknown",
            KernelAge::NothingCached => "nothing-cached",
        }
    }

    fn sentence(&self) -> &'static str {
        match self {
            KernelAge::Same => "the image has the cached kernel",
            KernelAge::Older => "the image's kernel is OLDER than the cached one: `smolvm rekernel IMAGE -o NEW` puts the cached one in",
            KernelAge::Newer => "the image's kernel is newer than the cached one",
            KernelAge::OtherConfig => "same release as the cached kernel, other configuration (`smolvm rekernel` swaps it)",
            KernelAge::Unknown => "the image records no kernel version",
            KernelAge::NothingCached => "no cached kernel (`smolvm kernel build` makes one)",
        }
    }
}

fn kernel_age(image_info: &[(String, String)], cached: Option<&kernel_config::Meta>) -> KernelAge {
    let Some(cached) = cached else {
        return KernelAge::NothingCached;
    };
    let field = |k: &str| image_info.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let Some(release) = field("version").and_then(|v| v.split_whitespace().next()) else {
        return KernelAge::Unknown;
    };
    match release_numbers(release).cmp(&release_numbers(&cached.release)) {
        std::cmp::Ordering::Less => KernelAge::Older,
        std::cmp::Ordering::Greater => KernelAge::Newer,
        std::cmp::Ordering::Equal
            if release == cached.release
                && field("config_sha256") == Some(cached.config_sha256.as_str()) =>
        {
            KernelAge::Same
        }
        std::cmp::Ordering::Equal => KernelAge::OtherConfig,
    }
}

fn describe(path: &Path) -> Result<Described> {
    let (mut f, image) = open(path).map_err(|e| Error(format!("{}: {e}", path.display())))?;
    let read = |f: &mut std::fs::File, s: Section| {
        read_section(f, &s).map_err(|e| Error(format!("{}: {e}", path.display())))
    };
    let mut manifest = Vec::new();
    if let Some(s) = image.section(Kind::Manifest) {
        let bytes = read(&mut f, s)?;
        let records =
            config::parse(&bytes).map_err(|e| Error(format!("manifest: {}", e.message())))?;
        for r in records {
            let r = r.map_err(|e| Error(format!("manifest: {}", e.message())))?;
            let fields =
                (0..r.key.arity()).map(|i| String::from_utf8_lossy(r.field(i)).into_owned());
            manifest.push((r.key.name().to_string(), fields.collect()));
        }
    }
    let mut kernel_info = Vec::new();
    if let Some(s) = image.section(Kind::KernelInfo) {
        let text = String::from_utf8_lossy(&read(&mut f, s)?).into_owned();
        for line in text.lines() {
            if let Some((k, v)) = line.split_once('=') {
                kernel_info.push((k.to_string(), v.to_string()));
            }
        }
    }
    let signer = crate::signing::embedded(&mut f, &image)
        .map_err(|e| Error(format!("{}: {e}", path.display())))?
        .map(|s| s.public_key);
    Ok(Described {
        image,
        manifest,
        kernel_info,
        signer,
        cached: cached_kernel(),
    })
}

fn flags_name(s: &Section) -> &'static str {
    match s.kind {
        Kind::Kernel if s.is_bzimage() => "bzImage",
        Kind::Kernel => "vmlinux",
        _ => "",
    }
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", u32::from(c));
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

impl Described {
    /// The default network (`net` record; `none` without one) and the
    /// default published ports.
    fn network(&self) -> (String, Vec<String>) {
        let values = |key: &str| -> Vec<String> {
            self.manifest
                .iter()
                .filter(|(k, _)| k == key)
                .filter_map(|(_, f)| f.first().cloned())
                .collect()
        };
        let net = values("net").pop().unwrap_or_else(|| "none".into());
        (net, values("publish"))
    }

    /// The default data disks (`default-disk` records), as `--disk` gave them.
    fn disks(&self) -> Vec<String> {
        self.manifest.iter().filter(|(k, _)| k == "default-disk").filter_map(|(_, f)| f.first().cloned()).collect()
    }
}

/// One service as the manifest describes it.
struct ServiceView {
    name: String,
    command: Vec<String>,
    restart: String,
    ready: Option<(String, String)>,
    env: Vec<String>,
    user: Option<String>,
    workdir: Option<String>,
}

impl Described {
    /// The manifest's services, in start order.
    fn services(&self) -> Vec<ServiceView> {
        let mut out: Vec<ServiceView> = Vec::new();
        for (k, f) in &self.manifest {
            let (name, value) = (f.first().cloned().unwrap_or_default(), f.get(1).cloned().unwrap_or_default());
            if k == "service" {
                out.push(ServiceView {
                    name,
                    command: vec![value],
                    restart: "on-failure".into(),
                    ready: None,
                    env: Vec::new(),
                    user: None,
                    workdir: None,
                });
                continue;
            }
            let Some(s) = out.iter_mut().find(|s| s.name == name) else { continue };
            match k.as_str() {
                "service-arg" => s.command.push(value),
                "service-env" => s.env.push(value),
                "service-user" => s.user = Some(value),
                "service-workdir" => s.workdir = Some(value),
                "service-restart" => s.restart = value,
                "service-ready" => s.ready = Some((value, f.get(2).cloned().unwrap_or_default())),
                _ => {}
            }
        }
        out
    }
}

fn text(path: &Path, d: &Described) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{}: smolvm image, format v{VERSION}, {} bytes",
        path.display(),
        d.image.file_len()
    );
    let _ = writeln!(
        o,
        "{:<12} {:>10} {:>10}  {:<8} {:<16}  sha256",
        "section", "offset", "length", "format", "xxh64"
    );
    for s in d.image.sections() {
        let _ = writeln!(
            o,
            "{:<12} {:>10} {:>10}  {:<8} {:016x}  {}",
            s.kind.name(),
            s.offset,
            s.len,
            flags_name(s),
            s.fast_digest,
            hex(&s.sha256)
        );
    }
    let _ = writeln!(o, "manifest:");
    for (k, fields) in &d.manifest {
        let _ = writeln!(
            o,
            "  {k} {}",
            fields
                .iter()
                .map(|f| format!("{f:?}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let (net, publish) = d.network();
    let _ = writeln!(
        o,
        "network: {net}{}",
        if net == "none" {
            " (no network device unless --smolvm-net)"
        } else {
            ""
        }
    );
    for p in &publish {
        let _ = writeln!(o, "  publish {p}");
    }
    let disks = d.disks();
    if !disks.is_empty() {
        let _ = writeln!(o, "disks (attached by default, paths relative to the caller's directory; any --smolvm-disk replaces them):");
    }
    for disk in &disks {
        let _ = writeln!(o, "  {disk}");
    }
    let services = d.services();
    if !services.is_empty() {
        let _ = writeln!(o, "services (started in this order, before the app; ./app.vm --smolvm-no-services runs the app alone):");
    }
    for s in &services {
        let _ = write!(o, "  {}: {:?}, restart {}", s.name, s.command, s.restart);
        if let Some((cond, secs)) = &s.ready {
            let _ = write!(o, ", the app waits for {cond} (up to {secs} s)");
        }
        if let Some(u) = &s.user {
            let _ = write!(o, ", user {u}");
        }
        if let Some(w) = &s.workdir {
            let _ = write!(o, ", workdir {w}");
        }
        for e in &s.env {
            let _ = write!(o, ", env {e}");
        }
        let _ = writeln!(o);
    }
    match &d.signer {
        Some(k) => {
            let _ = writeln!(
                o,
                "signature: signed, key {} (checked by `smolvm verify --key KEY.pub`)",
                crate::signing::fingerprint(k)
            );
        }
        None => {
            let _ = writeln!(o, "signature: unsigned");
        }
    }
    let _ = writeln!(o, "kernel:");
    if d.kernel_info.is_empty() {
        let _ = writeln!(o, "  (no kernel info recorded)");
    }
    for (k, v) in &d.kernel_info {
        let _ = writeln!(o, "  {k}: {v}");
    }
    let _ = writeln!(o, "cached kernel (smolvm kernel path):");
    if let Some(m) = &d.cached {
        let _ = writeln!(o, "  release: {}", m.release);
        let _ = writeln!(o, "  config_sha256: {}", m.config_sha256);
    }
    let _ = writeln!(o, "  {}", kernel_age(&d.kernel_info, d.cached.as_ref()).sentence());
    o
}

fn json(path: &Path, d: &Described) -> String {
    let mut o = String::from("{");
    let _ = write!(
        o,
        "\"file\":{},\"size\":{},\"format_version\":{VERSION},",
        json_str(&path.display().to_string()),
        d.image.file_len()
    );
    let sections: Vec<String> = d
        .image
        .sections()
        .iter()
        .map(|s| {
            format!(
                "{{\"kind\":{},\"offset\":{},\"length\":{},\"format\":{},\"xxh64\":\"{:016x}\",\"sha256\":\"{}\"}}",
                json_str(s.kind.name()),
                s.offset,
                s.len,
                json_str(flags_name(s)),
                s.fast_digest,
                hex(&s.sha256)
            )
        })
        .collect();
    let _ = write!(o, "\"sections\":[{}],", sections.join(","));
    let manifest: Vec<String> = d
        .manifest
        .iter()
        .map(|(k, f)| {
            let fields: Vec<String> = f.iter().map(|x| json_str(x)).collect();
            format!(
                "{{\"key\":{},\"fields\":[{}]}}",
                json_str(k),
                fields.join(",")
            )
        })
        .collect();
    let _ = write!(o, "\"manifest\":[{}],", manifest.join(","));
    let (net, publish) = d.network();
    let publish: Vec<String> = publish.iter().map(|p| json_str(p)).collect();
    let _ = write!(
        o,
        "\"network\":{{\"default\":{},\"publish\":[{}]}},",
        json_str(&net),
        publish.join(",")
    );
    let opt = |v: &Option<String>| v.as_deref().map_or("null".to_string(), json_str);
    let list = |v: &[String]| v.iter().map(|x| json_str(x)).collect::<Vec<_>>().join(",");
    let services: Vec<String> = d
        .services()
        .iter()
        .map(|s| {
            let ready = match &s.ready {
                Some((cond, secs)) => format!("{{\"condition\":{},\"timeout_s\":{}}}", json_str(cond), secs.parse::<u32>().unwrap_or(0)),
                None => "null".into(),
            };
            format!(
                "{{\"name\":{},\"command\":[{}],\"restart\":{},\"ready\":{ready},\"env\":[{}],\"user\":{},\"workdir\":{}}}",
                json_str(&s.name),
                list(&s.command),
                json_str(&s.restart),
                list(&s.env),
                opt(&s.user),
                opt(&s.workdir)
            )
        })
        .collect();
    let _ = write!(o, "\"services\":[{}],", services.join(","));
    let disks: Vec<String> = d.disks().iter().map(|x| json_str(x)).collect();
    let _ = write!(o, "\"disks\":[{}],", disks.join(","));
    let kernel: Vec<String> = d
        .kernel_info
        .iter()
        .map(|(k, v)| format!("{}:{}", json_str(k), json_str(v)))
        .collect();
    let _ = write!(o, "\"kernel\":{{{}}},", kernel.join(","));
    let cached = d.cached.as_ref().map_or_else(
        || "null".to_string(),
        |m| format!("{{\"release\":{},\"config_sha256\":{}}}", json_str(&m.release), json_str(&m.config_sha256)),
    );
    let age = kernel_age(&d.kernel_info, d.cached.as_ref());
    let _ = write!(o, "\"cached_kernel\":{cached},\"kernel_vs_cached\":{},", json_str(age.name()));
    match &d.signer {
        Some(k) => {
            let _ = write!(
                o,
                "\"signature\":{{\"public_key\":\"{}\",\"fingerprint\":{}}}}}",
                hex(k),
                json_str(&crate::signing::fingerprint(k))
            );
        }
        None => o.push_str("\"signature\":null}"),
    }
    o
}

/// What `inspect --json` prints for `path` (also the config blob of `push`).
pub fn json_of(path: &Path) -> Result<String> {
    Ok(json(path, &describe(path)?))
}

pub fn run(a: &InspectArgs) -> Result<()> {
    let d = describe(&a.image)?;
    if a.json {
        println!("{}", json(&a.image, &d));
    } else {
        print!("{}", text(&a.image, &d));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(release: &str, config: &str) -> kernel_config::Meta {
        kernel_config::Meta {
            release: release.into(),
            config_sha256: config.into(),
            ..Default::default()
        }
    }

    #[test]
    fn kernel_age_compares_release_then_config() {
        let info = |v: &str, c: &str| vec![("version".to_string(), v.to_string()), ("config_sha256".to_string(), c.to_string())];
        let cached = meta("6.1.192", "aa");
        let age = |v: &str, c: &str| kernel_age(&info(v, c), Some(&cached));
        assert_eq!(age("6.1.192 (smolvm@smolvm) #1", "aa"), KernelAge::Same);
        assert_eq!(age("6.1.99 (x) #1", "aa"), KernelAge::Older);
        assert_eq!(age("6.1.9", "bb"), KernelAge::Older);
        assert_eq!(age("5.15.200", "aa"), KernelAge::Older);
        assert_eq!(age("6.1.193", "aa"), KernelAge::Newer);
        assert_eq!(age("6.1.192", "bb"), KernelAge::OtherConfig);
        assert_eq!(age("6.1.192-rekernel #1", "aa"), KernelAge::OtherConfig);
        assert_eq!(kernel_age(&[], Some(&cached)), KernelAge::Unknown);
        assert_eq!(kernel_age(&info("6.1.1", "aa"), None), KernelAge::NothingCached);
        assert_eq!(release_numbers("6.1.192-rc1"), vec![6, 1, 192]);
        assert_eq!(release_numbers("garbage"), Vec::<u64>::new());
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\nd\u{1}é"), "\"a\\\"b\\\\c\\nd\\u0001é\"");
    }
}
