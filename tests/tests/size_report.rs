//! size-report on real images: `smolvm build` with the real stub, smol-init
//! and guest kernel, then `size-report --json`: every part is the size of
//! the file that went into it, and the parts add up to the image exactly.
//!
//! Needs `target/<profile>/{smolvm,vmm-stub,smol-init,size-report}` (`cargo
//! build -p builder -p vmm-stub -p smol-init -p size-report`, same profile),
//! a guest kernel (`SMOLVM_TEST_KERNEL`, else `smolvm kernel path`), gcc
//! and squashfs-tools. No VM is started.

use smolvm_tests::{product, qemu};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn size_report(args: &[&Path]) -> Output {
    Command::new(product::binary("size-report", "SIZE_REPORT_BIN", "size-report")).args(args).output().expect("run size-report")
}

fn file_len(p: &Path) -> u64 {
    fs::metadata(p).expect("stat").len()
}

/// demo/hello.c built as the demo builds it, in `dir/rootfs/bin/hello`.
fn hello_rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    fs::create_dir_all(root.join("bin")).expect("mkdir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/hello.c");
    let ok = Command::new("gcc")
        .args(["-Os", "-static", "-nostdlib", "-fno-asynchronous-unwind-tables", "-fno-stack-protector", "-s"])
        .arg("-o")
        .arg(root.join("bin/hello"))
        .arg(src)
        .status()
        .expect("run gcc")
        .success();
    assert!(ok, "gcc failed");
    root
}

/// A `smolvm build` of the hello rootfs with the real stub, init and kernel.
fn build(dir: &Path, root: &Path, format: &str, stub: &Path, init: &Path) -> PathBuf {
    let out = dir.join(format!("hello-{format}.vm"));
    let result = Command::new(product::smolvm())
        .arg("build")
        .arg("--rootfs")
        .arg(root)
        .args(["--entry", "/bin/hello", "--rootfs-format", format])
        .arg("--kernel")
        .arg(qemu::kernel())
        .arg("--stub")
        .arg(stub)
        .arg("--init")
        .arg(init)
        .arg("-o")
        .arg(&out)
        .output()
        .expect("run smolvm build");
    assert!(result.status.success(), "smolvm build: {}", String::from_utf8_lossy(&result.stderr));
    out
}

/// The first table of `size-report IMAGE`: (metric, bytes) rows, e.g.
/// `  kernel   1,234,567   80.1%`.
fn metrics(image: &Path) -> Vec<(String, u64)> {
    let out = size_report(&[Path::new("--no-compress"), image]);
    assert!(out.status.success(), "size-report: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .skip(2)
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols[0].to_string(), cols[1].replace(',', "").parse().expect("byte count"))
        })
        .collect()
}

fn get(m: &[(String, u64)], key: &str) -> u64 {
    m.iter().find(|e| e.0 == key).map_or(0, |e| e.1)
}

#[test]
fn real_images_are_accounted_for_byte_by_byte() {
    let dir = std::env::temp_dir().join(format!("smolvm-test-{}-size-report", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("scratch dir");
    let root = hello_rootfs(&dir);
    let stub = product::stub();
    let init = product::init();
    let kernel_len = file_len(&qemu::kernel());
    let hello_len = file_len(&root.join("bin/hello"));
    for format in ["squashfs", "initramfs"] {
        let image = build(&dir, &root, format, &stub, &init);
        let m = metrics(&image);
        let parts = ["stub", "kernel", "initramfs", "rootfs", "manifest", "kernel-info", "padding", "trailer"];
        assert_eq!(parts.iter().map(|p| get(&m, p)).sum::<u64>(), file_len(&image), "{format}: {m:?}");
        assert_eq!(get(&m, "total"), file_len(&image));
        assert_eq!(get(&m, "stub"), file_len(&stub), "{format}: the stub section is the vmm-stub file");
        assert_eq!(get(&m, "kernel"), kernel_len, "{format}: the kernel section is the kernel file");
        assert_eq!(get(&m, "init"), file_len(&init), "{format}: init in the initramfs is the smol-init file");
        assert_eq!(get(&m, "trailer"), linker::image::TRAILER_LEN as u64);
        assert!(get(&m, "padding") < 4096 * 7, "{format}: padding only aligns sections");
        match format {
            "squashfs" => assert!(get(&m, "rootfs") > 0),
            _ => assert_eq!(get(&m, "rootfs"), 0, "initramfs format has no rootfs section"),
        }
        assert!(get(&m, "initramfs") > file_len(&init) + if format == "initramfs" { hello_len } else { 0 });
    }
    // A budget one byte under the real stub is a breach, exit 1, named.
    let image = dir.join("hello-squashfs.vm");
    let budget = dir.join("budget.toml");
    fs::write(&budget, format!("[\"hello-squashfs.vm\"]\nstub = {}\n", file_len(&stub) - 1)).expect("write");
    let out = size_report(&[Path::new("--budget"), &budget, Path::new("--no-compress"), &image]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hello-squashfs.vm: stub is 1 bytes"));
    let _ = fs::remove_dir_all(&dir);
}
