//! `smolvm build / inspect / verify` end to end on the command line: real
//! busybox rootfs, real mksquashfs, the image read back through `linker`.
//! Stub, init and kernel are placeholder ELF files here (the builder only
//! packs them); booting real images is tested by the `tests` crate.

use linker::cpio::{read_entries, S_IFCHR, S_IFDIR, S_IFREG};
use linker::image::{Image, Kind, TRAILER_LEN};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SMOLVM: &str = env!("CARGO_BIN_EXE_smolvm");

struct Tmp(PathBuf);

impl Tmp {
    fn new(name: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!("smolvm-image-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("tmp dir");
        Tmp(p)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A busybox rootfs plus placeholder stub/init/kernel ELF files in `dir`.
fn inputs(dir: &Path) {
    let bin = dir.join("rootfs/bin");
    fs::create_dir_all(&bin).expect("mkdir");
    fs::copy("/bin/busybox", bin.join("busybox")).expect("busybox-static is installed");
    symlink("busybox", bin.join("sh")).expect("ln");
    fs::write(dir.join("rootfs/notes.txt"), b"not executable\n").expect("write");
    fs::create_dir_all(dir.join("rootfs/etc")).expect("mkdir");
    fs::write(dir.join("rootfs/etc/hostname"), b"vm\n").expect("write");
    fs::write(dir.join("stub"), b"\x7fELF placeholder stub").expect("write");
    fs::write(dir.join("init"), b"\x7fELF placeholder init").expect("write");
    fs::write(
        dir.join("vmlinux"),
        b"\x7fELF...Linux version 6.1.0-test #1\n\0",
    )
    .expect("write");
}

fn smolvm(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(SMOLVM);
    c.current_dir(dir)
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("smolvm runs")
}

const BASE: [&str; 10] = [
    "build", "--rootfs", "rootfs", "--kernel", "vmlinux", "--stub", "stub", "--init", "init",
    "--entry",
];

fn build(dir: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut args = BASE.to_vec();
    args.extend_from_slice(extra);
    smolvm(dir, &args, envs)
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "failed: {err}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn section(bytes: &[u8], kind: Kind) -> &[u8] {
    let len = bytes.len() as u64;
    let img = Image::parse_slice(&bytes[bytes.len() - TRAILER_LEN..], len).expect("valid image");
    let s = img.section(kind).expect("section present");
    let (a, b) = (
        usize::try_from(s.offset).expect("fits"),
        usize::try_from(s.end()).expect("fits"),
    );
    s.check_fast(&bytes[a..b]).expect("fast digest");
    &bytes[a..b]
}

#[test]
fn squashfs_image_holds_everything_and_verifies() {
    let t = Tmp::new("sq");
    inputs(&t.0);
    let out = build(
        &t.0,
        &[
            "/bin/sh",
            "--arg",
            "-c",
            "--arg",
            "echo hi",
            "--env",
            "A=1",
            "--workdir",
            "/etc",
            "--mem",
            "256M",
            "--cpus",
            "2",
            "--user",
            "1000:100",
            "--tmpfs",
            "/tmp",
            "-o",
            "app.vm",
        ],
        &[],
    );
    ok(&out);
    let path = t.0.join("app.vm");
    assert_eq!(
        fs::metadata(&path).expect("written").permissions().mode() & 0o777,
        0o755
    );
    let bytes = fs::read(&path).expect("read");
    assert_eq!(section(&bytes, Kind::Stub), b"\x7fELF placeholder stub");
    assert!(section(&bytes, Kind::Kernel).starts_with(b"\x7fELF"));
    let manifest = section(&bytes, Kind::Manifest);
    assert_eq!(
        manifest,
        b"SMOLCFG1entry\0/bin/sh\0arg\0-c\0arg\0echo hi\0env\0A=1\0workdir\0/etc\0mem\x00256\0cpus\x002\0rootfs\0squashfs\0user\x001000:100\0tmpfs\0/tmp\0"
    );
    let cpio = read_entries(section(&bytes, Kind::Initramfs)).expect("cpio");
    let names: Vec<&[u8]> = cpio.iter().map(|e| e.name.as_slice()).collect();
    assert_eq!(
        names,
        [
            &b"dev"[..],
            b"dev/console",
            b"init",
            b"smolvm",
            b"smolvm/manifest"
        ]
    );
    assert_eq!(cpio[1].mode, S_IFCHR | 0o600);
    assert_eq!(
        (cpio[2].mode, cpio[2].data.as_slice()),
        (S_IFREG | 0o755, &b"\x7fELF placeholder init"[..])
    );
    assert_eq!(cpio[4].data, manifest);

    // The squashfs holds the tree plus the mountpoints init needs.
    let sq = t.0.join("root.sqfs");
    fs::write(&sq, section(&bytes, Kind::Rootfs)).expect("write");
    let list = Command::new("unsquashfs")
        .arg("-lls")
        .arg(&sq)
        .output()
        .expect("unsquashfs");
    let list = String::from_utf8_lossy(&list.stdout);
    for want in [
        "squashfs-root/bin/busybox",
        "squashfs-root/bin/sh -> busybox",
        "squashfs-root/etc/hostname",
    ] {
        assert!(list.contains(want), "{want} missing:\n{list}");
    }
    for m in ["dev", "proc", "sys", "tmp", "run", "mnt", "data"] {
        assert!(
            list.lines().any(|l| l.starts_with("drwxr-xr-x root/root")
                && l.ends_with(&format!("squashfs-root/{m}"))),
            "{m}:\n{list}"
        );
    }

    let inspect = ok(&smolvm(&t.0, &["inspect", "app.vm"], &[]));
    assert!(
        inspect.contains("rootfs")
            && inspect.contains("vmlinux")
            && inspect.contains("\"echo hi\""),
        "{inspect}"
    );
    assert!(inspect.contains("version: 6.1.0-test #1"), "{inspect}");
    let json = ok(&smolvm(&t.0, &["inspect", "--json", "app.vm"], &[]));
    assert!(
        json.contains("{\"key\":\"arg\",\"fields\":[\"echo hi\"]}"),
        "{json}"
    );
    assert!(json.contains("\"kind\":\"rootfs\""), "{json}");
    assert!(json.contains("{\"key\":\"cpus\",\"fields\":[\"2\"]}"), "{json}");
    let verify = ok(&smolvm(&t.0, &["verify", "app.vm"], &[]));
    assert!(verify.contains("OK (6 sections intact"), "{verify}");
}

#[test]
fn initramfs_format_puts_the_tree_under_rootfs() {
    let t = Tmp::new("ird");
    inputs(&t.0);
    ok(&build(
        &t.0,
        &["sh", "--rootfs-format", "initramfs", "-o", "app.vm"],
        &[],
    ));
    let bytes = fs::read(t.0.join("app.vm")).expect("read");
    let img =
        Image::parse_slice(&bytes[bytes.len() - TRAILER_LEN..], bytes.len() as u64).expect("valid");
    assert!(img.section(Kind::Rootfs).is_none());
    assert!(section(&bytes, Kind::Manifest).ends_with(b"rootfs\0initramfs\0"));
    let cpio = read_entries(section(&bytes, Kind::Initramfs)).expect("cpio");
    let get = |n: &str| {
        cpio.iter()
            .find(|e| e.name == n.as_bytes())
            .unwrap_or_else(|| panic!("{n} missing"))
    };
    assert_eq!(
        get("rootfs/bin/busybox").data,
        fs::read("/bin/busybox").expect("busybox")
    );
    assert_eq!(get("rootfs/bin/sh").data, b"busybox");
    for m in ["dev", "proc", "sys", "tmp", "run", "mnt", "data"] {
        assert_eq!(get(&format!("rootfs/{m}")).mode, S_IFDIR | 0o755);
    }
    ok(&smolvm(&t.0, &["verify", "app.vm"], &[]));
}

/// Copies the inputs into a fresh directory with other mtimes and modes.
fn copy_inputs(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from.join("."))
        .arg(to)
        .status()
        .expect("cp");
    assert!(status.success());
    let status = Command::new("touch")
        .args(["-h", "-d", "2001-02-03 04:05:06"])
        .args([
            "rootfs",
            "rootfs/bin",
            "rootfs/bin/busybox",
            "rootfs/bin/sh",
            "rootfs/etc/hostname",
            "vmlinux",
        ])
        .current_dir(to)
        .status()
        .expect("touch");
    assert!(status.success());
    fs::set_permissions(to.join("rootfs"), fs::Permissions::from_mode(0o700)).expect("chmod");
}

#[test]
fn builds_are_reproducible() {
    let (a, b) = (Tmp::new("repro-a"), Tmp::new("repro-b"));
    inputs(&a.0);
    copy_inputs(&a.0, &b.0);
    for format in ["squashfs", "initramfs"] {
        let args = [
            "/bin/sh",
            "--arg",
            "x",
            "--rootfs-format",
            format,
            "-o",
            "out.vm",
        ];
        ok(&build(&a.0, &args, &[]));
        ok(&build(&b.0, &args, &[]));
        let (x, y) = (
            fs::read(a.0.join("out.vm")).expect("a"),
            fs::read(b.0.join("out.vm")).expect("b"),
        );
        assert!(x == y, "{format}: images differ");
        ok(&build(&b.0, &args, &[("SOURCE_DATE_EPOCH", "1700000000")]));
        let z = fs::read(b.0.join("out.vm")).expect("b");
        assert!(x != z, "{format}: SOURCE_DATE_EPOCH must be stamped");
        ok(&build(&a.0, &args, &[("SOURCE_DATE_EPOCH", "1700000000")]));
        assert!(
            z == fs::read(a.0.join("out.vm")).expect("a"),
            "{format}: same epoch, same image"
        );
    }
}

/// Fails with one `smolvm: ...` line containing `want` and leaves no file.
fn refused(dir: &Path, o: &Output, want: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("smolvm: ") && err.contains(want),
        "want `{want}` in: {err}"
    );
    let left: Vec<_> = fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".vm") || n.contains("tmp") || n.contains("sqfs"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn bad_inputs_are_refused_without_partial_output() {
    let t = Tmp::new("bad");
    inputs(&t.0);
    let d = &t.0;
    let o = smolvm(
        d,
        &[
            "build", "--rootfs", "nope", "--kernel", "vmlinux", "--stub", "stub", "--init", "init",
            "--entry", "/bin/sh", "-o", "a.vm",
        ],
        &[],
    );
    refused(d, &o, "rootfs nope");
    refused(
        d,
        &build(d, &["/bin/missing", "-o", "a.vm"], &[]),
        "entry /bin/missing not found",
    );
    refused(
        d,
        &build(d, &["/notes.txt", "-o", "a.vm"], &[]),
        "not executable",
    );
    refused(d, &build(d, &["/etc", "-o", "a.vm"], &[]), "is a directory");
    refused(
        d,
        &build(d, &["/bin/sh", "--mem", "lots", "-o", "a.vm"], &[]),
        "bad --mem `lots`",
    );
    // vCPUs: 1 to linker::abi::MAX_CPUS, refused by clap (usage error, 2).
    for bad in ["0", "65", "two", "-1"] {
        let o = build(d, &["/bin/sh", "--cpus", bad, "-o", "a.vm"], &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "--cpus {bad}: {err}");
        assert!(err.contains("--cpus <N>") || err.contains(&format!("'{bad}'")), "{err}");
        assert!(!d.join("a.vm").exists());
    }
    refused(
        d,
        &build(d, &["/bin/sh", "--mem", "1.5G", "-o", "a.vm"], &[]),
        "bad --mem",
    );
    refused(
        d,
        &build(d, &["/bin/sh", "--env", "=x", "-o", "a.vm"], &[]),
        "bad --env",
    );
    refused(
        d,
        &build(d, &["/bin/sh", "--workdir", "rel", "-o", "a.vm"], &[]),
        "bad --workdir",
    );
    for (args, want) in [
        (["--user", "root"], "bad --user `root`"),
        (["--user", "1:"], "bad --user `1:`"),
        (["--tmpfs", "tmp"], "bad --tmpfs `tmp`"),
    ] {
        let mut all = vec!["/bin/sh", "-o", "a.vm"];
        all.extend(args);
        refused(d, &build(d, &all, &[]), want);
    }
    refused(
        d,
        &build(d, &["/bin/sh", "-o", "no/such/dir/a.vm"], &[]),
        "cannot write output no/such/dir/a.vm",
    );
    refused(
        d,
        &build(d, &["/bin/sh", "-o", "/proc/a.vm"], &[]),
        "cannot write output /proc/a.vm",
    );
    refused(
        d,
        &build(d, &["/bin/sh", "-o", "rootfs"], &[]),
        "is a directory",
    );
    let with = |stub: &str, init: &str, kernel: &str, env: &[(&str, &str)]| {
        let mut args = vec![
            "build", "--rootfs", "rootfs", "--entry", "/bin/sh", "-o", "a.vm",
        ];
        for (flag, v) in [("--stub", stub), ("--init", init), ("--kernel", kernel)] {
            if !v.is_empty() {
                args.extend([flag, v]);
            }
        }
        smolvm(d, &args, env)
    };
    refused(
        d,
        &with("missing-stub", "init", "vmlinux", &[]),
        "vmm-stub not found at missing-stub",
    );
    refused(
        d,
        &with("", "init", "vmlinux", &[("SMOLVM_STUB", "env-stub")]),
        "vmm-stub not found at env-stub",
    );
    refused(
        d,
        &with(
            "stub",
            "",
            "vmlinux",
            &[("SMOLVM_INIT", "/nonexistent/init")],
        ),
        "smol-init not found",
    );
    refused(
        d,
        &with("stub", "rootfs/notes.txt", "vmlinux", &[]),
        "not an ELF",
    );
    refused(d, &with("stub", "init", "notes", &[]), "kernel notes");
    refused(
        d,
        &with("stub", "init", "rootfs/notes.txt", &[]),
        "neither an ELF",
    );
    refused(
        d,
        &build(
            d,
            &["/bin/sh", "-o", "a.vm"],
            &[("SOURCE_DATE_EPOCH", "soon")],
        ),
        "bad SOURCE_DATE_EPOCH",
    );
    let o = build(d, &["/bin/sh", "-o", "a.vm"], &[("PATH", "/nonexistent")]);
    refused(d, &o, "mksquashfs not found");
}

#[test]
fn verify_names_the_damaged_section() {
    let t = Tmp::new("verify");
    inputs(&t.0);
    ok(&build(&t.0, &["/bin/sh", "-o", "app.vm"], &[]));
    let good = fs::read(t.0.join("app.vm")).expect("read");
    let img =
        Image::parse_slice(&good[good.len() - TRAILER_LEN..], good.len() as u64).expect("valid");
    for s in img.sections() {
        let mut bad = good.clone();
        bad[usize::try_from(s.offset + s.len / 2).expect("fits")] ^= 0x40;
        fs::write(t.0.join("bad.vm"), &bad).expect("write");
        let o = smolvm(&t.0, &["verify", "bad.vm"], &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1));
        assert!(
            err.contains(&format!("section {} is damaged", s.kind.name())),
            "{err}"
        );
    }
    for cut in [1, TRAILER_LEN, 4096, good.len() / 2] {
        fs::write(t.0.join("bad.vm"), &good[..good.len() - cut]).expect("write");
        let o = smolvm(&t.0, &["verify", "bad.vm"], &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        let o = smolvm(&t.0, &["inspect", "bad.vm"], &[]);
        assert_eq!(o.status.code(), Some(1));
    }
    let o = smolvm(&t.0, &["verify", "/bin/busybox"], &[]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no smolvm trailer"));
}

#[test]
fn exec_packs_a_host_program_with_its_loader_and_libraries() {
    let t = Tmp::new("exec");
    inputs(&t.0);
    fs::create_dir_all(t.0.join("extra/sub")).expect("mkdir");
    fs::write(t.0.join("extra/sub/data.txt"), b"data\n").expect("write");
    let o = smolvm(
        &t.0,
        &[
            "build",
            "--exec",
            "/usr/bin/sort",
            "--add",
            "extra:/opt/extra",
            "--kernel",
            "vmlinux",
        ],
        &[("SMOLVM_STUB", "stub"), ("SMOLVM_INIT", "init")],
    );
    assert!(!o.status.success(), "needs -o");
    let args = [
        "build",
        "--exec",
        "/usr/bin/sort",
        "--add",
        "extra:/opt/extra",
        "--kernel",
        "vmlinux",
        "-o",
        "sort.vm",
    ];
    ok(&smolvm(
        &t.0,
        &args,
        &[("SMOLVM_STUB", "stub"), ("SMOLVM_INIT", "init")],
    ));
    let bytes = fs::read(t.0.join("sort.vm")).expect("read");
    assert!(section(&bytes, Kind::Manifest).starts_with(b"SMOLCFG1entry\0/usr/bin/sort\0"));
    fs::write(t.0.join("root.sqfs"), section(&bytes, Kind::Rootfs)).expect("write");
    let list = Command::new("unsquashfs")
        .arg("-lls")
        .arg(t.0.join("root.sqfs"))
        .output()
        .expect("unsquashfs");
    let list = String::from_utf8_lossy(&list.stdout);
    for want in [
        "squashfs-root/usr/bin/sort",
        "squashfs-root/lib64/ld-linux-x86-64.so.2",
        "squashfs-root/lib/x86_64-linux-gnu/libc.so.6",
        "squashfs-root/opt/extra/sub/data.txt",
    ] {
        assert!(
            list.lines().any(|l| l.ends_with(want)),
            "{want} missing:\n{list}"
        );
    }
    let leftovers: Vec<_> = fs::read_dir(&t.0)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    fs::remove_file(t.0.join("sort.vm")).expect("rm");
    fs::remove_file(t.0.join("root.sqfs")).expect("rm");
    let env = [("SMOLVM_STUB", "stub"), ("SMOLVM_INIT", "init")];
    let bad = |extra: &[&str]| {
        let mut a = vec![
            "build",
            "--exec",
            "/usr/bin/sort",
            "--kernel",
            "vmlinux",
            "-o",
            "x.vm",
        ];
        a.extend_from_slice(extra);
        smolvm(&t.0, &a, &env)
    };
    refused(&t.0, &bad(&["--add", "extra:/../etc"]), "without `..`");
    refused(&t.0, &bad(&["--add", "extra"]), "bad --add `extra`");
    refused(&t.0, &bad(&["--add", "nope:/x"]), "--add nope");
    let o = smolvm(
        &t.0,
        &[
            "build",
            "--exec",
            "/etc/passwd",
            "--kernel",
            "vmlinux",
            "-o",
            "x.vm",
        ],
        &env,
    );
    refused(&t.0, &o, "not an x86-64 ELF program");
}

/// (name, type, data or link target, uid)
type TarEntry<'a> = (&'a str, &'a str, &'a str, u32);

/// Writes a tar built by Python's tarfile from `(name, type, data_or_link, uid)`.
fn py_tar(path: &Path, entries: &[TarEntry], compression: &str) {
    let list: Vec<String> = entries
        .iter()
        .map(|(n, t, d, u)| format!("({n:?}, {t:?}, {d:?}, {u})"))
        .collect();
    let script = format!(
        "import tarfile, io, sys\n\
         t = tarfile.open(sys.argv[1], 'w:{compression}')\n\
         for name, kind, data, uid in [{}]:\n\
         \x20   i = tarfile.TarInfo(name); i.uid = uid; i.gid = uid; i.mode = 0o755\n\
         \x20   if kind == 'dir': i.type = tarfile.DIRTYPE; t.addfile(i)\n\
         \x20   elif kind == 'sym': i.type = tarfile.SYMTYPE; i.linkname = data; t.addfile(i)\n\
         \x20   elif kind == 'hard': i.type = tarfile.LNKTYPE; i.linkname = data; t.addfile(i)\n\
         \x20   elif kind == 'busybox': b = open('/bin/busybox', 'rb').read(); i.size = len(b); t.addfile(i, io.BytesIO(b))\n\
         \x20   else: b = data.encode(); i.size = len(b); t.addfile(i, io.BytesIO(b))\n\
         t.close()\n",
        list.join(", ")
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(path)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn from_tar_unpacks_safely_and_keeps_owners() {
    let t = Tmp::new("tar");
    inputs(&t.0);
    let d = &t.0;
    let good = [
        ("bin", "dir", "", 0),
        ("bin/busybox", "busybox", "", 0),
        ("bin/sh", "sym", "busybox", 0),
        ("./home/app/data.txt", "file", "mine\n", 1000),
        ("/etc/motd", "file", "hi\n", 0),
        ("etc/motd-link", "hard", "etc/motd", 0),
    ];
    for comp in ["gz", "xz", ""] {
        let tar = d.join(format!("root.tar.{comp}"));
        py_tar(&tar, &good, comp);
        let tar_arg = tar.display().to_string();
        let args = [
            "build",
            "--from-tar",
            &tar_arg,
            "--entry",
            "/bin/sh",
            "--kernel",
            "vmlinux",
            "-o",
            "t.vm",
        ];
        ok(&smolvm(
            d,
            &args,
            &[("SMOLVM_STUB", "stub"), ("SMOLVM_INIT", "init")],
        ));
        let bytes = fs::read(d.join("t.vm")).expect("read");
        fs::write(d.join("t.sqfs"), section(&bytes, Kind::Rootfs)).expect("write");
        let list = Command::new("unsquashfs")
            .arg("-lln")
            .arg(d.join("t.sqfs"))
            .output()
            .expect("unsquashfs");
        let list = String::from_utf8_lossy(&list.stdout);
        let line = |p: &str| {
            list.lines()
                .find(|l| l.ends_with(p))
                .unwrap_or_else(|| panic!("{p}:\n{list}"))
                .to_string()
        };
        assert!(
            line("squashfs-root/home/app/data.txt").contains(" 1000/1000 "),
            "{list}"
        );
        assert!(
            line("squashfs-root/bin/busybox").contains(" 0/0 "),
            "{list}"
        );
        assert!(
            line("squashfs-root/bin/sh -> busybox").starts_with('l'),
            "{list}"
        );
        line("squashfs-root/etc/motd-link");
        fs::remove_file(d.join("t.vm")).expect("rm");
        fs::remove_file(d.join("t.sqfs")).expect("rm");
        fs::remove_file(&tar).expect("rm");
    }
    let env = [("SMOLVM_STUB", "stub"), ("SMOLVM_INIT", "init")];
    let outside = std::env::temp_dir().join(format!("smolvm-escape-{}", std::process::id()));
    let outside_s = outside.display().to_string();
    let hostile: [(&str, Vec<TarEntry>, &str); 4] = [
        (
            "traversal",
            vec![("../../escape.txt", "file", "x", 0)],
            "has `..` in its path",
        ),
        (
            "symlink-escape",
            vec![
                ("evil", "sym", &outside_s, 0),
                ("evil/owned.txt", "file", "x", 0),
            ],
            "goes through the symlink evil",
        ),
        (
            "hardlink-escape",
            vec![("h", "hard", "../../etc/passwd", 0)],
            "has `..`",
        ),
        (
            "hardlink-missing",
            vec![("h", "hard", "nope", 0)],
            "missing or non-regular",
        ),
    ];
    fs::create_dir_all(&outside).expect("mkdir");
    for (name, entries, want) in hostile {
        let tar = d.join(format!("{name}.tar"));
        py_tar(&tar, &entries, "");
        let tar_arg = tar.display().to_string();
        let o = smolvm(
            d,
            &[
                "build",
                "--from-tar",
                &tar_arg,
                "--entry",
                "/x",
                "--kernel",
                "vmlinux",
                "-o",
                "h.vm",
            ],
            &env,
        );
        fs::remove_file(&tar).expect("rm");
        refused(d, &o, want);
        assert!(!outside.join("owned.txt").exists(), "{name} wrote outside");
    }
    fs::remove_dir_all(&outside).expect("cleanup");
    // A truncated gzip stream names the problem.
    let tar = d.join("cut.tar.gz");
    py_tar(&tar, &good, "gz");
    let bytes = fs::read(&tar).expect("read");
    fs::write(&tar, &bytes[..bytes.len() / 2]).expect("write");
    let tar_arg = tar.display().to_string();
    let o = smolvm(
        d,
        &[
            "build",
            "--from-tar",
            &tar_arg,
            "--entry",
            "/bin/sh",
            "--kernel",
            "vmlinux",
            "-o",
            "h.vm",
        ],
        &env,
    );
    fs::remove_file(&tar).expect("rm");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("truncated archive") || err.contains("decompression failed"),
        "{err}"
    );
}

/// Images made by `tests/make_image.py` (docker archive, OCI layout).
#[test]
fn container_images_bring_their_layers_and_config() {
    let t = Tmp::new("container");
    inputs(&t.0);
    let d = &t.0;
    let env = [("SMOLVM_STUB", "stub"), ("SMOLVM_INIT", "init")];
    let make = |kind: &str, out: &str| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/make_image.py");
        let o = Command::new("python3")
            .arg(script)
            .args([kind, out])
            .current_dir(d)
            .output()
            .expect("python3");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    make("docker", "img.tar");
    make("oci", "oci");
    make("oci-arm", "oci-arm");
    for source in [["--from-docker-archive", "img.tar"], ["--from-oci", "oci"]] {
        let mut args = vec!["build", "--kernel", "vmlinux", "-o", "c.vm"];
        args.extend(source);
        ok(&smolvm(d, &args, &env));
        let bytes = fs::read(d.join("c.vm")).expect("read");
        assert_eq!(
            section(&bytes, Kind::Manifest),
            b"SMOLCFG1entry\0/bin/sh\0arg\0-c\0arg\0echo $GREETING; test -e /etc/gone || echo gone; test -e /opt/old/a || cat /opt/old/b; echo; busybox id -u; pwd\0runtime-entry\0yes\0env\0PATH=/bin\0env\0GREETING=hello\0\
              workdir\0/opt\0rootfs\0squashfs\0user\x001000:1000\0",
            "{source:?}"
        );
        fs::write(d.join("c.sqfs"), section(&bytes, Kind::Rootfs)).expect("write");
        let list = Command::new("unsquashfs")
            .arg("-lln")
            .arg(d.join("c.sqfs"))
            .output()
            .expect("unsquashfs");
        let list = String::from_utf8_lossy(&list.stdout);
        let has = |p: &str| {
            list.lines()
                .any(|l| l.ends_with(&format!("squashfs-root/{p}")))
        };
        assert!(
            has("bin/busybox") && has("etc/motd") && has("opt/old/b"),
            "{source:?}\n{list}"
        );
        assert!(!has("etc/gone"), "whiteout ignored: {list}");
        assert!(!has("opt/old/a"), "opaque directory ignored: {list}");
        assert!(!list.contains(".wh."), "{list}");
        // Command-line values win over the image config (Docker's rule: with
        // no Entrypoint the args replace Cmd whole, the first becomes the entry).
        let mut args = vec![
            "build", "--kernel", "vmlinux", "-o", "c.vm", "--arg", "/bin/sh", "--arg", "-c",
            "--arg", "exit 3", "--user", "5",
        ];
        args.extend(source);
        ok(&smolvm(d, &args, &env));
        let bytes = fs::read(d.join("c.vm")).expect("read");
        let m = section(&bytes, Kind::Manifest);
        assert!(
            m.starts_with(
                b"SMOLCFG1entry\0/bin/sh\0arg\0-c\0arg\0exit 3\0runtime-entry\0yes\0env\0"
            ),
            "{}",
            String::from_utf8_lossy(m)
        );
        assert!(
            m.ends_with(b"user\x005\0"),
            "{}",
            String::from_utf8_lossy(m)
        );
        fs::remove_file(d.join("c.vm")).expect("rm");
        fs::remove_file(d.join("c.sqfs")).expect("rm");
    }
    let o = smolvm(
        d,
        &[
            "build",
            "--from-oci",
            "oci-arm",
            "--kernel",
            "vmlinux",
            "-o",
            "c.vm",
        ],
        &env,
    );
    refused(
        d,
        &o,
        "no linux/amd64 image among the platforms: linux/arm64, linux/s390x",
    );
    // A corrupted blob is caught by its digest.
    let blobs = d.join("oci/blobs/sha256");
    let biggest = fs::read_dir(&blobs)
        .expect("blobs")
        .map(|e| e.expect("e").path())
        .max_by_key(|p| fs::metadata(p).expect("md").len())
        .expect("a blob");
    let mut b = fs::read(&biggest).expect("read");
    b[1000] ^= 1;
    fs::write(&biggest, b).expect("write");
    let o = smolvm(
        d,
        &[
            "build",
            "--from-oci",
            "oci",
            "--kernel",
            "vmlinux",
            "-o",
            "c.vm",
        ],
        &env,
    );
    refused(d, &o, "is corrupt (digest mismatch)");
}

#[test]
fn network_defaults_are_recorded_shown_and_checked() {
    let t = Tmp::new("net");
    inputs(&t.0);
    let d = &t.0;
    let args = [
        "/bin/sh",
        "--publish",
        "8080:8080",
        "--publish",
        "127.0.0.1:5353:53/udp",
        "-o",
        "net.vm",
    ];
    ok(&build(d, &args, &[]));
    let bytes = fs::read(d.join("net.vm")).expect("read");
    assert!(
        section(&bytes, Kind::Manifest)
            .ends_with(b"net\0passt\0publish\x008080:8080\0publish\x00127.0.0.1:5353:53/udp\0"),
        "{:?}",
        String::from_utf8_lossy(section(&bytes, Kind::Manifest))
    );
    let text = ok(&smolvm(d, &["inspect", "net.vm"], &[]));
    assert!(
        text.contains("network: passt\n  publish 8080:8080\n  publish 127.0.0.1:5353:53/udp\n"),
        "{text}"
    );
    let json = ok(&smolvm(d, &["inspect", "--json", "net.vm"], &[]));
    assert!(
        json.contains(
            r#""network":{"default":"passt","publish":["8080:8080","127.0.0.1:5353:53/udp"]}"#
        ),
        "{json}"
    );
    // --net alone; and no network flag: no record, inspect says none.
    ok(&build(d, &["/bin/sh", "--net", "-o", "net2.vm"], &[]));
    let bytes = fs::read(d.join("net2.vm")).expect("read");
    assert!(section(&bytes, Kind::Manifest).ends_with(b"net\0passt\0"));
    ok(&build(d, &["/bin/sh", "-o", "plain.vm"], &[]));
    let bytes = fs::read(d.join("plain.vm")).expect("read");
    assert!(!String::from_utf8_lossy(section(&bytes, Kind::Manifest)).contains("net\0"));
    let json = ok(&smolvm(d, &["inspect", "--json", "plain.vm"], &[]));
    assert!(
        json.contains(r#""network":{"default":"none","publish":[]}"#),
        "{json}"
    );
    for f in ["net.vm", "net2.vm", "plain.vm"] {
        fs::remove_file(d.join(f)).expect("rm");
    }
    for (bad, want) in [
        ("8080", "bad --publish `8080`"),
        ("0:80", "port `0` is not 1-65535"),
        ("80:70000", "port `70000` is not 1-65535"),
        ("1.2.3:80:80", "HOST_IP is not an IPv4 address"),
        ("80:80/sctp", "the protocol must be tcp or udp"),
    ] {
        refused(
            d,
            &build(d, &["/bin/sh", "--publish", bad, "-o", "a.vm"], &[]),
            want,
        );
    }
}

#[test]
fn hosts_and_resolv_conf_mount_targets_are_added_when_missing() {
    let t = Tmp::new("etc");
    inputs(&t.0);
    let d = &t.0;
    let list = |image: &str| {
        let bytes = fs::read(d.join(image)).expect("read");
        let sq = d.join(format!("{image}.sqfs"));
        fs::write(&sq, section(&bytes, Kind::Rootfs)).expect("write");
        let out = Command::new("unsquashfs")
            .arg("-lls")
            .arg(&sq)
            .output()
            .expect("unsquashfs");
        fs::remove_file(&sq).expect("rm");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // /etc exists without the files: both added, empty, 0644 root.
    ok(&build(d, &["/bin/sh", "-o", "a.vm"], &[]));
    let l = list("a.vm");
    for f in ["hosts", "resolv.conf"] {
        assert!(
            l.lines().any(|x| x.starts_with("-rw-r--r-- root/root")
                && x.contains(" 0 ")
                && x.ends_with(&format!("squashfs-root/etc/{f}"))),
            "{f}:\n{l}"
        );
    }
    // The image's own files stay as they are.
    fs::write(d.join("rootfs/etc/hosts"), b"10.1.1.1 mine\n").expect("write");
    ok(&build(d, &["/bin/sh", "-o", "b.vm"], &[]));
    let l = list("b.vm");
    assert!(
        l.lines()
            .any(|x| x.contains(" 14 ") && x.ends_with("squashfs-root/etc/hosts")),
        "{l}"
    );
    // No /etc at all: /etc and both files are created.
    fs::remove_dir_all(d.join("rootfs/etc")).expect("rm etc");
    ok(&build(d, &["/bin/sh", "-o", "c.vm"], &[]));
    let l = list("c.vm");
    assert!(
        l.lines()
            .any(|x| x.starts_with("drwxr-xr-x root/root") && x.ends_with("squashfs-root/etc")),
        "{l}"
    );
    assert!(
        l.contains("squashfs-root/etc/hosts") && l.contains("squashfs-root/etc/resolv.conf"),
        "{l}"
    );
    // The initramfs format gets them too.
    ok(&build(
        d,
        &["/bin/sh", "--rootfs-format", "initramfs", "-o", "d.vm"],
        &[],
    ));
    let bytes = fs::read(d.join("d.vm")).expect("read");
    let cpio = read_entries(section(&bytes, Kind::Initramfs)).expect("cpio");
    for f in ["rootfs/etc/hosts", "rootfs/etc/resolv.conf"] {
        let e = cpio
            .iter()
            .find(|e| e.name == f.as_bytes())
            .unwrap_or_else(|| panic!("{f} missing"));
        assert_eq!((e.mode, e.data.len()), (S_IFREG | 0o644, 0));
    }
}
