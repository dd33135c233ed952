//! Field readiness (#22) end to end, in one lab batch (directly on
//! hardware KVM):
//! - `smolvm rekernel` swaps an image's kernel for one built with an extra
//!   fragment (`field/rekernel.config`: release `…-rekernel`): the new image
//!   boots and its app sees the new kernel, every other section keeps its
//!   digests, and two rekernels give the same bytes;
//! - `--exec python3 --add <stdlib>`: the extension modules' libraries come
//!   with them (`import sqlite3, ssl, json` works);
//! - debugging an image without a shell: a host directory of tools shared
//!   for the run (`--smolvm-share=TOOLS:/dbg:ro --smolvm-entry=/dbg/busybox
//!   sh -c …`), `SMOLVM_ENTRY`, a read-only root, an entry that does not
//!   exist (127); one host file added for the run as the image's `/bin/sh`
//!   (`--smolvm-add=BUSYBOX:/bin/sh --smolvm-entry=/bin/sh`, `SMOLVM_ADD`
//!   with a read-only root): same bytes, executable; a missing file and a
//!   directory refused with one line (125).
//!
//! Needs `target/<profile>/{vmm-stub,smol-init,smolvm}`, the test kernel
//! (`qemu::kernel`), the kernel with the extra fragment (built on first use:
//! incremental after the default one, ~2 min here), busybox-static, python3.

use linker::image::{Image, Kind, TRAILER_LEN};
use smolvm_tests::lab::{self, Case, Outcome};
use smolvm_tests::{product, qemu};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const FRAGMENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/field/rekernel.config");
const PYLIB: &str = "/usr/lib/python3.11";

fn smolvm(args: &[&str]) -> String {
    let o = Command::new(product::smolvm()).args(args).env("CI", "1").output().expect("run smolvm");
    assert!(o.status.success(), "smolvm {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `smolvm build ARGS -o DIR/NAME.vm` with the test's kernel, init and stub.
fn build(dir: &Path, name: &str, args: &[&str]) -> (PathBuf, String) {
    let out = dir.join(format!("{name}.vm"));
    let (kernel, init, stub) = (qemu::kernel(), product::init(), product::stub());
    let mut all: Vec<&str> = vec!["build"];
    all.extend(args);
    let paths = [kernel.to_str(), init.to_str(), stub.to_str(), out.to_str()].map(|p| p.expect("utf-8 path"));
    all.extend(["--kernel", paths[0], "--init", paths[1], "--stub", paths[2], "-o", paths[3]]);
    let said = smolvm(&all);
    (out, said)
}

fn table(path: &Path) -> Image {
    let bytes = fs::read(path).expect("image");
    Image::parse_slice(&bytes[bytes.len() - TRAILER_LEN..], bytes.len() as u64).expect("valid image")
}

/// The python standard library without its tests (57 MB less to pack).
fn stdlib_without_tests(dir: &Path) -> PathBuf {
    let copy = dir.join("stdlib");
    let o = Command::new("cp").arg("-a").arg(PYLIB).arg(&copy).output().expect("cp");
    assert!(o.status.success(), "cp -a {PYLIB}: {}", String::from_utf8_lossy(&o.stderr));
    let _ = fs::remove_dir_all(copy.join("test"));
    copy
}

fn show(name: &str, o: &Outcome) -> String {
    format!("{name}: status {:?}\nstdout: {}\nstderr: {}", o.status, o.stdout_lossy(), o.stderr_lossy())
}

#[test]
fn rekernel_closure_and_debugging_end_to_end() {
    lab::prewarm();
    let dir = qemu::scratch_dir("field-e2e");

    // 1. rekernel: the app prints the release of the kernel it runs on.
    let root = dir.join("uname-root");
    product::busybox_rootfs(&root, &[], &["proc", "sys", "dev", "tmp"]);
    let (old, _) = build(&dir, "uname", &["--rootfs", root.to_str().expect("utf-8"), "--entry", "/bin/busybox", "--arg", "uname", "--arg", "-r"]);
    let frag_kernel = smolvm(&["kernel", "path", "--bzimage", "--fragment", FRAGMENT]).trim().to_string();
    let new = dir.join("uname-rekernel.vm");
    let again = dir.join("uname-rekernel-again.vm");
    for out in [&new, &again] {
        let said = smolvm(&["rekernel", old.to_str().expect("utf-8"), "--kernel", &frag_kernel, "-o", out.to_str().expect("utf-8")]);
        assert!(said.contains("-rekernel"), "{said}");
    }
    assert!(fs::read(&new).expect("new") == fs::read(&again).expect("again"), "two rekernels differ");
    let (a, b) = (table(&old), table(&new));
    for s in a.sections().iter().filter(|s| !matches!(s.kind, Kind::Kernel | Kind::KernelInfo)) {
        assert_eq!(Some(s.sha256), b.section(s.kind).map(|n| n.sha256), "{:?} changed", s.kind);
    }
    assert_ne!(a.section(Kind::Kernel).map(|s| s.sha256), b.section(Kind::Kernel).map(|s| s.sha256));
    let shown = smolvm(&["inspect", new.to_str().expect("utf-8")]);
    assert!(shown.contains("-rekernel") && shown.contains("cached kernel (smolvm kernel path):"), "{shown}");

    // 2. python3 + its stdlib: the libraries of the extension modules come along.
    let stdlib = stdlib_without_tests(&dir);
    let add = format!("{}:{PYLIB}", stdlib.display());
    let (py, summary) = build(&dir, "py", &["--exec", "/usr/bin/python3", "--env", "PYTHONHOME=/usr", "--add", &add, "--compression", "lz4"]);
    assert!(summary.contains("packed for the added ELF objects") && summary.contains("libsqlite3.so.0"), "{summary}");
    assert!(summary.contains("libssl.so.3"), "{summary}");

    // 3. An image without a shell (sort and its libraries), debugged.
    let (sort, _) = build(&dir, "sort", &["--exec", "/usr/bin/sort"]);
    let tools = dir.join("tools");
    fs::create_dir_all(&tools).expect("mkdir");
    fs::copy("/bin/busybox", tools.join("busybox")).expect("busybox-static is installed");
    fs::write(tools.join("note.txt"), "shared for this run\n").expect("write");
    let share = format!("--smolvm-share={}:/dbg:ro", tools.display());
    let sh = share.as_str();
    let script = "ls /usr/bin; cat /dbg/note.txt; ls -l /dbg/busybox | cut -c1-10";
    let busybox = tools.join("busybox");
    let busybox_len = fs::metadata(&busybox).expect("busybox").len();
    let add_sh = format!("--smolvm-add={}:/bin/sh", busybox.display());
    let add_script = "echo ok; wc -c < /bin/sh; ls -l /bin/sh | cut -c1-10";

    let long = Duration::from_secs(150);
    let cases: Vec<(&str, Case)> = vec![
        ("old kernel", Case::image(&old, &[])),
        ("new kernel", Case::image(&new, &[])),
        (
            "python modules",
            // A 20 MB image whose imports read a few MB through the lab's nested
            // TCG: once over 150 s on a loaded host (a hang guard, not a timing).
            Case::image(&py, &["-c", "import sqlite3, ssl, json; c = sqlite3.connect(':memory:'); \
                print(c.execute('select 6*7').fetchone()[0], ssl.OPENSSL_VERSION.split()[0], json.dumps({'ok': True}))"])
            .timeout(Duration::from_secs(450)),
        ),
        ("shell shared", Case::image(&sort, &[sh, "--smolvm-entry=/dbg/busybox", "sh", "-c", script])),
        ("entry from env", Case::image(&sort, &[sh, "sh", "-c", "echo entry from env"]).env("SMOLVM_ENTRY", "/dbg/busybox")),
        (
            "read-only root",
            Case::image(&sort, &["--smolvm-read-only", sh, "--smolvm-entry=/dbg/busybox", "sh", "-c", "touch /x 2>/dev/null || echo sealed; echo runs"]),
        ),
        ("entry of the image", Case::image(&sort, &["--smolvm-entry=/usr/bin/sort", "-r"]).stdin(&b"a\nc\nb\n"[..])),
        ("missing entry", Case::image(&sort, &["--smolvm-entry=/bin/nothing-here"])),
        ("added shell", Case::image(&sort, &[&add_sh, "--smolvm-entry=/bin/sh", "-c", add_script])),
        (
            "added shell from env, read-only root",
            Case::image(&sort, &["--smolvm-read-only", "-c", "touch /x 2>/dev/null || echo sealed; echo ok"])
                .env("SMOLVM_ADD", format!("{}:/usr/local/bin/sh", busybox.display()))
                .env("SMOLVM_ENTRY", "/usr/local/bin/sh"),
        ),
        ("added file missing", Case::image(&sort, &["--smolvm-add=/nonexistent-smolvm/busybox:/bin/sh", "--smolvm-entry=/bin/sh"])),
        ("added file a directory", Case::image(&sort, &[&format!("--smolvm-add={}:/bin/sh", tools.display())])),
    ];
    let (names, cases): (Vec<&str>, Vec<Case>) =
        cases.into_iter().map(|(n, c)| (n, if c.timeout > long { c } else { c.timeout(long) })).unzip();
    let out = lab::run_images(&cases);
    let get = |name: &str| &out[names.iter().position(|n| *n == name).expect("case")];
    let mut failures = Vec::new();
    let mut expect = |name: &str, status: i32, ok: &dyn Fn(&str) -> bool| {
        let o = get(name);
        if o.status != Some(status) || !ok(&o.stdout_lossy()) {
            failures.push(show(name, o));
        }
    };
    expect("old kernel", 0, &|s| s.starts_with("6.") && !s.contains("rekernel"));
    expect("new kernel", 0, &|s| s.trim_end().ends_with("-rekernel"));
    expect("python modules", 0, &|s| s.starts_with("42 OpenSSL {\"ok\": true}"));
    expect("shell shared", 0, &|s| s.lines().any(|l| l == "sort") && s.contains("shared for this run\n") && s.contains("-rwxr-xr-x"));
    expect("entry from env", 0, &|s| s == "entry from env\n");
    expect("read-only root", 0, &|s| s == "sealed\nruns\n");
    expect("entry of the image", 0, &|s| s == "c\nb\na\n");
    expect("missing entry", 127, &|_| true);
    let added = ["ok".to_string(), busybox_len.to_string(), "-rwxr-xr-x".to_string()];
    expect("added shell", 0, &|s| s.lines().map(str::trim).eq(added.iter().map(String::as_str)));
    expect("added shell from env, read-only root", 0, &|s| s == "sealed\nok\n");
    for (name, why) in [("added file missing", "no such file"), ("added file a directory", "not a regular file")] {
        let o = get(name);
        let err = o.stderr_lossy();
        if o.status != Some(125) || err.lines().count() != 1 || !err.contains("--smolvm-add ") || !err.contains(why) {
            failures.push(show(name, o));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), names.len(), failures.join("\n---\n"));
    fs::remove_dir_all(&dir).ok();
}
