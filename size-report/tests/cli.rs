//! End to end: build images with the linker crate's writer (real ELF files
//! for stub and init, a real cpio initramfs), run the `size-report` binary
//! and check what it prints and how it exits.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use linker::cpio::{Archive, FileData, Node};
use linker::image::{Kind, TRAILER_LEN};
use linker::write::ImageWriter;
use size_report::json::{self, Json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_size-report");

/// A fresh directory per test, removed when the test passes.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

fn scratch(test: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("size-report-test-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

/// A real, unstripped Rust ELF (~450 KB, mangled std symbols) of `main`,
/// compiled with the rustc that runs these tests.
fn compile(name: &str, main: &str) -> Vec<u8> {
    let dir = scratch(&format!("rustc-{name}"));
    let src = dir.join("app.rs");
    std::fs::write(&src, format!("fn main() {{ {main} }}\n")).unwrap();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = dir.join("app");
    let ok = Command::new(rustc).args(["-O", "-C", "strip=debuginfo", "-o"]).arg(&out).arg(&src).status().unwrap().success();
    assert!(ok, "rustc failed");
    std::fs::read(out).unwrap()
}

/// The ELF most tests use, compiled once per test run.
fn unstripped_elf() -> Vec<u8> {
    static ELF: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    ELF.get_or_init(|| compile("app", "let v: Vec<String> = std::env::args().collect(); println!(\"{}\", v.len());")).clone()
}

/// `elf` stripped with binutils `strip` (a build dependency).
fn stripped(dir: &Path, name: &str, elf: &[u8]) -> PathBuf {
    let full = dir.join(format!("{name}.full"));
    let out = dir.join(name);
    std::fs::write(&full, elf).unwrap();
    let ok = Command::new("strip").arg("-o").arg(&out).arg(&full).status().unwrap().success();
    assert!(ok, "strip failed");
    out
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}

struct Spec<'a> {
    stub: &'a [u8],
    init: &'a [u8],
    kernel_len: usize,
    rootfs_len: usize,
    app_len: usize,
}

/// Writes an image and returns (path, section lengths by kind name).
fn image(dir: &Path, name: &str, spec: &Spec<'_>) -> (PathBuf, Vec<(String, u64)>) {
    let mut kernel = b"\x7fELF-not-really\0Linux version 6.1.99-test (builder) #1\0".to_vec();
    kernel.extend(pattern(spec.kernel_len, 7));
    let manifest = linker::config::to_vec(&[(linker::config::Key::Entry, &[b"/bin/app"])]).unwrap();
    let mut cpio = Archive::new(0);
    let file = |data: &[u8]| Node::File { perm: 0o755, data: FileData::Bytes(data.to_vec()) };
    cpio.insert(b"init", file(spec.init)).unwrap();
    cpio.insert(b"smolvm/manifest", file(&manifest)).unwrap();
    cpio.insert(b"rootfs/bin/app", file(&pattern(spec.app_len, 3))).unwrap();
    let mut initramfs = Vec::new();
    cpio.write_to(&mut initramfs).unwrap();
    let mut w = ImageWriter::new(Vec::new());
    let mut sections = Vec::new();
    let mut add = |w: &mut ImageWriter<Vec<u8>>, kind: Kind, data: &[u8]| {
        w.add_bytes(kind, 0, data).unwrap();
        sections.push((kind.name().to_string(), data.len() as u64));
    };
    add(&mut w, Kind::Stub, spec.stub);
    add(&mut w, Kind::Kernel, &kernel);
    add(&mut w, Kind::Initramfs, &initramfs);
    if spec.rootfs_len > 0 {
        add(&mut w, Kind::Rootfs, &pattern(spec.rootfs_len, 9));
    }
    add(&mut w, Kind::Manifest, &manifest);
    add(&mut w, Kind::KernelInfo, b"version=6.1.99\nconfig_sha256=00ff00ff\n");
    let (bytes, _) = w.finish().unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    (path, sections)
}

fn small(elf: &[u8]) -> Spec<'_> {
    Spec { stub: elf, init: elf, kernel_len: 40_000, rootfs_len: 20_000, app_len: 3_000 }
}

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(BIN).args(args.iter().map(|a| a.as_ref())).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// `name → bytes` rows of the first table in text output.
fn text_rows(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .skip(2)
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols[0].to_string(), cols[1].replace(',', "").parse().unwrap())
        })
        .collect()
}

/// `name → bytes` rows of the first table in markdown output.
fn markdown_rows(md: &str) -> Vec<(String, u64)> {
    md.lines()
        .skip(4)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cols: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            (cols[0].to_string(), cols[1].replace(',', "").parse().unwrap())
        })
        .collect()
}

fn json_metrics(doc: &Json, item: usize) -> Vec<(String, u64)> {
    match doc.get("items").unwrap().as_array()[item].get("metrics").unwrap() {
        Json::Object(fields) => fields.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap())).collect(),
        other => panic!("metrics is {other:?}"),
    }
}

#[test]
fn parts_add_up_to_the_file_size_exactly() {
    let dir = scratch("add-up");
    let elf = unstripped_elf();
    for (name, rootfs_len) in [("with-rootfs.vm", 20_000), ("no-rootfs.vm", 0)] {
        let (path, sections) = image(&dir, name, &Spec { rootfs_len, ..small(&elf) });
        let out = run(&[&"--json", &"--no-compress", &path]);
        assert!(out.status.success(), "{}", stderr(&out));
        let doc = json::parse(&stdout(&out)).unwrap();
        let item = &doc.get("items").unwrap().as_array()[0];
        let file_len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(item.get("size").unwrap().as_u64(), Some(file_len));
        let parts: Vec<(String, u64)> = item
            .get("parts")
            .unwrap()
            .as_array()
            .iter()
            .map(|p| (p.get("name").unwrap().as_str().unwrap().to_string(), p.get("size").unwrap().as_u64().unwrap()))
            .collect();
        assert_eq!(parts.iter().map(|p| p.1).sum::<u64>(), file_len, "{parts:?}");
        for (kind, len) in &sections {
            assert!(parts.contains(&(kind.clone(), *len)), "{kind} {len} in {parts:?}");
        }
        assert!(parts.contains(&("trailer".to_string(), TRAILER_LEN as u64)));
        let padding = parts.iter().find(|p| p.0 == "padding").unwrap().1;
        assert!(padding > 0 && padding < 4096 * sections.len() as u64);
        // The initramfs breakdown adds up to the initramfs section.
        let s = item.get("initramfs").unwrap();
        let field = |k: &str| s.get(k).unwrap().as_u64().unwrap();
        assert_eq!(field("init"), elf.len() as u64);
        assert_eq!(field("rootfs"), 3_000);
        let initramfs = sections.iter().find(|s| s.0 == "initramfs").unwrap().1;
        assert_eq!(field("init") + field("rootfs") + field("other") + field("overhead"), initramfs);
        let kernel = item.get("kernel").unwrap();
        assert_eq!(kernel.get("version").unwrap().as_str(), Some("6.1.99"));
        assert_eq!(kernel.get("config_sha256").unwrap().as_str(), Some("00ff00ff"));
    }
}

#[test]
fn table_json_and_markdown_agree() {
    let dir = scratch("agree");
    let elf = unstripped_elf();
    let (a, _) = image(&dir, "a.vm", &small(&elf));
    let text = stdout(&run(&[&a]));
    let md = stdout(&run(&[&"--markdown", &a]));
    let doc = json::parse(&stdout(&run(&[&"--json", &a]))).unwrap();
    let from_json = json_metrics(&doc, 0);
    assert!(from_json.len() >= 10, "{from_json:?}");
    assert!(from_json.iter().any(|m| m.0 == "kernel.xz"), "compressors ran: {from_json:?}");
    assert_eq!(text_rows(&text), from_json, "text:\n{text}");
    assert_eq!(markdown_rows(&md), from_json, "markdown:\n{md}");
    // The compressed kernel is reported against the uncompressed section.
    let xz = from_json.iter().find(|m| m.0 == "kernel.xz").unwrap().1;
    let kernel = from_json.iter().find(|m| m.0 == "kernel").unwrap().1;
    assert!(xz > 0 && xz < kernel);
    assert!(text.contains("6.1.99") && md.contains("00ff00ff"));
    // The one-line summary shows the same parts.
    let summary = stdout(&run(&[&"--summary", &"--markdown", &"--no-compress", &a]));
    let row: Vec<u64> = summary.lines().nth(4).unwrap().trim_matches('|').split('|').skip(1).map(|c| c.trim().replace(',', "").parse().unwrap()).collect();
    let metric = |k: &str| from_json.iter().find(|m| m.0 == k).unwrap().1;
    let other = ["manifest", "kernel-info", "padding", "trailer"].iter().map(|k| metric(k)).sum::<u64>();
    assert_eq!(row, [metric("total"), metric("stub"), metric("kernel"), metric("initramfs"), metric("rootfs"), metric("init"), other]);
    // With budgets, the summary names what is over.
    let budget = dir.join("budget.toml");
    std::fs::write(&budget, "[\"a.vm\"]\ntotal = 1_000\nstub = 1_000_000_000\n").unwrap();
    let out = run(&[&"--summary", &"--budget", &budget, &"--no-compress", &a]);
    assert_eq!(out.status.code(), Some(1));
    let want = format!("OVER: total {} > 1,000", size_report::figures::bytes(metric("total")));
    assert!(stdout(&out).lines().nth(2).unwrap().ends_with(&want), "{}", stdout(&out));
}

#[test]
fn budget_breach_is_named_and_fails() {
    let dir = scratch("budget");
    let elf = unstripped_elf();
    let (a, sections) = image(&dir, "a.vm", &small(&elf));
    let stub = sections[0].1;
    let budget = dir.join("budget.toml");
    std::fs::write(&budget, format!("[\"a.vm\"]\nstub = {}\nrootfs = 1_000_000\n", stub / 2)).unwrap();
    let out = run(&[&"--budget", &budget, &"--no-compress", &a]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let excess = stub - stub / 2;
    let fmt = |n: u64| size_report::figures::bytes(n);
    let pct = size_report::figures::growth_percent(stub / 2, stub);
    assert_eq!(err, format!("size-report: a.vm: stub is {} bytes ({pct}) over budget: {} > {}\n", fmt(excess), fmt(stub), fmt(stub / 2)));
    assert!(stdout(&out).contains("OVER by"), "{}", stdout(&out));
    // Within budget: exit 0; --name selects the budget table.
    std::fs::write(&budget, "[hello]\ntotal = 100_000_000\nstub = 100_000_000\n").unwrap();
    let out = run(&[&"--budget", &budget, &"--no-compress", &"--name", &"hello", &a]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // An image without a budget table, or a misspelt key, is an error.
    let out = run(&[&"--budget", &budget, &"--no-compress", &a]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no budget for \"a.vm\""));
    std::fs::write(&budget, "[\"a.vm\"]\nkernal = 1\n").unwrap();
    let out = run(&[&"--budget", &budget, &"--no-compress", &a]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("kernal"));
}

#[test]
fn missing_or_corrupt_input_is_one_clear_line() {
    let dir = scratch("corrupt");
    let elf = unstripped_elf();
    let (a, sections) = image(&dir, "a.vm", &small(&elf));
    let good = std::fs::read(&a).unwrap();
    let check = |path: &Path, want: &str| {
        let out = run(&[&"--no-compress", &path]);
        assert_eq!(out.status.code(), Some(2), "{}", path.display());
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with(&format!("size-report: {}: ", path.display())), "{err}");
        assert!(err.contains(want), "want {want:?} in {err}");
        assert!(out.stdout.is_empty());
    };
    check(&dir.join("missing.vm"), "No such file");
    let truncated = dir.join("truncated.vm");
    std::fs::write(&truncated, &good[..good.len() - 1000]).unwrap();
    check(&truncated, "damaged smolvm image");
    let flipped = dir.join("flipped.vm");
    let mut bytes = good.clone();
    bytes[4096 + 100] ^= 0xff; // inside the kernel section
    std::fs::write(&flipped, &bytes).unwrap();
    check(&flipped, "digest mismatch");
    let text = dir.join("text.vm");
    std::fs::write(&text, b"just text").unwrap();
    check(&text, "neither a smolvm image");
    let empty = dir.join("empty.vm");
    std::fs::write(&empty, b"").unwrap();
    check(&empty, "neither");
    assert_eq!(sections[0].0, "stub");
    let bad_budget = dir.join("bad.toml");
    std::fs::write(&bad_budget, "[a.vm]\n").unwrap();
    let out = run(&[&"--budget", &bad_budget, &a]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("line 1"), "{}", stderr(&out));
    let out = run(&[&"--bogus"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn baseline_shows_growth_and_svg_has_every_image() {
    let dir = scratch("baseline");
    let elf = unstripped_elf();
    let (old, _) = image(&dir, "app.vm", &small(&elf));
    let base = run(&[&"--json", &"--no-compress", &old]);
    let base_path = dir.join("base.json");
    std::fs::write(&base_path, &base.stdout).unwrap();
    std::fs::rename(&old, dir.join("old.vm")).unwrap();
    let (new, _) = image(&dir, "app.vm", &Spec { rootfs_len: 30_000, ..small(&elf) });
    let svg = dir.join("out.svg");
    let out = run(&[&"--baseline", &base_path, &"--svg", &svg, &"--no-compress", &new, &dir.join("old.vm")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let rootfs = text.lines().find(|l| l.trim_start().starts_with("rootfs ")).unwrap();
    assert!(rootfs.contains("20,000") && rootfs.contains("+10,000") && rootfs.contains("+50.0%"), "{rootfs}");
    assert!(text.contains("new"), "old.vm is not in the baseline");
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(picture.starts_with("<svg") && picture.contains(">app.vm<") && picture.contains(">old.vm<"));
    assert_eq!(picture.matches("<title>rootfs").count(), 2);
    let out = run(&[&"--baseline", &dir.join("app.vm"), &new]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a text file"), "{}", stderr(&out));
    std::fs::write(dir.join("bad.json"), "{\"items\": []").unwrap();
    let out = run(&[&"--baseline", &dir.join("bad.json"), &new]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a JSON report"), "{}", stderr(&out));
}

#[test]
fn symbols_come_from_a_matching_unstripped_build() {
    let dir = scratch("symbols");
    let elf = unstripped_elf();
    let stub = stripped(&dir, "stub", &elf);
    let full = dir.join("stub.full");
    let (a, _) = image(&dir, "a.vm", &small(&std::fs::read(&stub).unwrap()));
    let out = run(&[&"--no-compress", &a]);
    assert!(stdout(&out).contains("stub ELF") && stdout(&out).contains("no symbols"));
    let out = run(&[&"--no-compress", &"--json", &"--top", &"5", &"--symbols-from", &full, &a]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc = json::parse(&stdout(&out)).unwrap();
    let elfs = doc.get("items").unwrap().as_array()[0].get("elf").unwrap().as_array();
    let stub_report = elfs.iter().find(|e| e.get("label").unwrap().as_str() == Some("stub")).unwrap();
    assert_eq!(stub_report.get("symbols_from").unwrap().as_str(), full.to_str());
    let symbols = stub_report.get("symbols").unwrap().as_array();
    assert_eq!(symbols.len(), 5);
    let sizes: Vec<u64> = symbols.iter().map(|s| s.get("size").unwrap().as_u64().unwrap()).collect();
    assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
    // Demangled, without the hash suffix.
    assert!(symbols.iter().all(|s| !s.get("name").unwrap().as_str().unwrap().starts_with("_ZN")));
    // A build of other code does not match and is refused.
    let other = dir.join("other.full");
    std::fs::write(&other, compile("other", "println!(\"other code\");")).unwrap();
    let out = run(&[&"--no-compress", &"--symbols-from", &other, &a]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("matches no stripped ELF"), "{}", stderr(&out));
}

#[test]
fn elf_files_are_reported_directly() {
    let dir = scratch("elf");
    let stub = stripped(&dir, "vmm-stub", &unstripped_elf());
    let out = run(&[&"--json", &stub]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc = json::parse(&stdout(&out)).unwrap();
    let m = json_metrics(&doc, 0);
    let total = m.iter().find(|m| m.0 == "total").unwrap().1;
    assert_eq!(total, std::fs::metadata(&stub).unwrap().len());
    assert_eq!(m.iter().filter(|m| m.0 != "total").map(|m| m.1).sum::<u64>(), total);
    assert!(m.iter().any(|m| m.0 == ".text" && m.1 > 0));
}
