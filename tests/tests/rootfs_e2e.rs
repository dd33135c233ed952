//! Real root filesystems end to end: images built from a `docker save`
//! archive (classic and OCI-in-docker layouts), an OCI image layout,
//! compressed rootfs tarballs, and host programs packed with `--exec`
//! (`sort`, `python3` + the stdlib subset it needs) run through the real
//! stub, our kernel and smol-init, directly on hardware KVM or else in the
//! KVM lab, all in one lab batch. The archives are made here from busybox
//! files. Hostile archives are refused by `smolvm build` (no lab needed).
//!
//! Needs `target/<profile>/{vmm-stub,smol-init,smolvm}` (built per package:
//! `cargo build --release -p vmm-stub`, `-p smol-init`, `-p builder`, same
//! profile as the tests), the guest kernel (see `qemu::kernel`),
//! busybox-static, squashfs-tools, gzip, xz, zstd, coreutils' sort and
//! Debian's /usr/bin/python3.

use linker::sha256;
use smolvm_tests::lab::{self, Case, Outcome};
use smolvm_tests::{product, qemu};
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// `smolvm build ARGS` with the test's kernel, init and stub.
fn smolvm_build(args: &[OsString], out: &Path) -> Output {
    Command::new(product::smolvm())
        .arg("build")
        .args(args)
        .args(["--mem", "128M", "--kernel"])
        .arg(qemu::kernel())
        .arg("--init")
        .arg(product::init())
        .arg("--stub")
        .arg(product::stub())
        .arg("-o")
        .arg(out)
        .env("CI", "1")
        .output()
        .expect("run smolvm build")
}

/// Builds `dir/NAME.vm` and returns its path.
fn image(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(format!("{name}.vm"));
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let o = smolvm_build(&args, &out);
    assert!(o.status.success(), "smolvm build {name}: {}", String::from_utf8_lossy(&o.stderr));
    out
}

// ---- archives made here ------------------------------------------------

/// One tar entry: a directory, a file (mode, uid, data), a symlink or a hard link.
enum Entry<'a> {
    Dir(&'a str),
    File(&'a str, u32, u32, &'a [u8]),
    Sym(&'a str, &'a str),
    Hard(&'a str, &'a str),
}

/// A ustar header block.
fn header(name: &str, typeflag: u8, mode: u32, uid: u32, size: usize, link: &str) -> [u8; 512] {
    assert!(name.len() <= 100 && link.len() <= 100, "{name}: name too long for this writer");
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let mut field = |at: usize, width: usize, v: u64| {
        h[at..at + width - 1].copy_from_slice(format!("{v:0w$o}", w = width - 1).as_bytes());
    };
    field(100, 8, u64::from(mode));
    field(108, 8, u64::from(uid));
    field(116, 8, u64::from(uid));
    field(124, 12, size as u64);
    field(136, 12, 0);
    h[156] = typeflag;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// A tar archive of `entries`, in order.
fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut t = Vec::new();
    for e in entries {
        let (h, data): ([u8; 512], &[u8]) = match *e {
            Entry::Dir(n) => (header(n, b'5', 0o755, 0, 0, ""), &[]),
            Entry::File(n, mode, uid, data) => (header(n, b'0', mode, uid, data.len(), ""), data),
            Entry::Sym(n, target) => (header(n, b'2', 0o777, 0, 0, target), &[]),
            Entry::Hard(n, target) => (header(n, b'1', 0o644, 0, 0, target), &[]),
        };
        t.extend_from_slice(&h);
        t.extend_from_slice(data);
        t.resize(t.len().next_multiple_of(512), 0);
    }
    t.resize(t.len() + 1024, 0);
    t
}

/// `data` through `tool -c` (gzip, xz, zstd).
fn compress(tool: &str, data: &[u8]) -> Vec<u8> {
    let mut child = Command::new(tool)
        .args(["-c", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().expect("compressor");
    writer.join().expect("writer").expect("write to compressor");
    assert!(out.status.success(), "{tool} failed");
    out.stdout
}

fn busybox() -> Vec<u8> {
    fs::read("/bin/busybox").expect("busybox-static is installed")
}

/// What every container image runs by default: its Env, the whiteout, the
/// opaque directory, the layer order, its WorkingDir and a hard link.
const SCRIPT: &str = "echo \"$GREETING\"; test -e /etc/gone && echo gone is present || echo gone is deleted; \
                      echo /opt/old/*; pwd; cat /etc/motd; busybox stat -c %h /etc/motd.hard";
const SCRIPT_OUT: &str = "hello from the config\ngone is deleted\n/opt/old/b\n/work\nmotd v2\n2\n";

/// Layer 1: busybox, /etc/gone, /opt/old/{a,sub/x}, /work. Layer 2 deletes
/// /etc/gone (whiteout), makes /opt/old opaque with only b, replaces motd.
fn layers() -> [Vec<u8>; 2] {
    let bb = busybox();
    let l1 = tar(&[
        Entry::Dir("bin"),
        Entry::File("bin/busybox", 0o755, 0, &bb),
        Entry::Sym("bin/sh", "busybox"),
        Entry::Sym("bin/cat", "busybox"),
        Entry::Dir("etc"),
        Entry::File("etc/gone", 0o644, 0, b"doomed\n"),
        Entry::File("etc/motd", 0o644, 0, b"motd v1\n"),
        Entry::Dir("opt/"),
        Entry::Dir("opt/old/"),
        Entry::File("opt/old/a", 0o644, 0, b"a\n"),
        Entry::Dir("opt/old/sub"),
        Entry::File("opt/old/sub/x", 0o644, 0, b"x\n"),
        Entry::Dir("work"),
    ]);
    let l2 = tar(&[
        Entry::File("etc/.wh.gone", 0o644, 0, b""),
        Entry::File("opt/old/.wh..wh..opq", 0o644, 0, b""),
        Entry::File("opt/old/b", 0o644, 0, b"b\n"),
        Entry::File("etc/motd", 0o644, 0, b"motd v2\n"),
        Entry::Hard("etc/motd.hard", "etc/motd"),
    ]);
    [l1, l2]
}

/// The image config: Entrypoint `/bin/sh -c` (with an argument of its own,
/// which `./app.vm ARGS` must keep) and Cmd `SCRIPT`, or (with `entrypoint`
/// false) the whole command in Cmd (which `./app.vm ARGS` replaces whole).
fn config(entrypoint: bool) -> Vec<u8> {
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let (ep, cmd) = if entrypoint {
        (format!("[{},{}]", q("/bin/sh"), q("-c")), format!("[{}]", q(SCRIPT)))
    } else {
        ("null".to_string(), format!("[{},{},{}]", q("/bin/sh"), q("-c"), q(SCRIPT)))
    };
    format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Entrypoint":{ep},"Cmd":{cmd},"Env":["PATH=/bin","GREETING=hello from the config"],"WorkingDir":"/work"}},"rootfs":{{"type":"layers"}}}}"#
    )
    .into_bytes()
}

/// A classic `docker save` archive: manifest.json, config, `<id>/layer.tar`.
fn docker_archive(path: &Path) {
    let [l1, l2] = layers();
    let cfg = config(false);
    let manifest = br#"[{"Config":"cfg.json","RepoTags":["smolvm/test:1"],"Layers":["aaa/layer.tar","bbb/layer.tar"]}]"#;
    let outer = tar(&[
        Entry::Dir("aaa"),
        Entry::File("aaa/layer.tar", 0o644, 0, &l1),
        Entry::Dir("bbb"),
        Entry::File("bbb/layer.tar", 0o644, 0, &l2),
        Entry::File("cfg.json", 0o644, 0, &cfg),
        Entry::File("manifest.json", 0o644, 0, manifest),
        Entry::File("repositories", 0o644, 0, br#"{"smolvm/test":{"1":"bbb"}}"#),
    ]);
    fs::write(path, outer).expect("write archive");
}

/// An OCI image layout's files (relative path, bytes): the layers gzip'd,
/// an index naming an arm64 manifest too (linux/amd64 must be picked).
/// `docker_manifest` adds the manifest.json `docker save` (v25+) writes.
fn oci_files(docker_manifest: bool) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![("oci-layout".to_string(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec())];
    let mut blob = |data: Vec<u8>, media: &str| {
        let hex = sha256::hex(&sha256::sha256(&data));
        let desc = format!(r#"{{"mediaType":"{media}","digest":"sha256:{hex}","size":{}}}"#, data.len());
        files.push((format!("blobs/sha256/{hex}"), data));
        (desc, format!("blobs/sha256/{hex}"))
    };
    let [l1, l2] = layers();
    let layer = "application/vnd.oci.image.layer.v1.tar+gzip";
    let (l1d, l1p) = blob(compress("gzip", &l1), layer);
    let (l2d, l2p) = blob(compress("gzip", &l2), layer);
    let (cfgd, cfgp) = blob(config(true), "application/vnd.oci.image.config.v1+json");
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{cfgd},"layers":[{l1d},{l2d}]}}"#
    );
    let (mand, _) = blob(manifest.into_bytes(), "application/vnd.oci.image.manifest.v1+json");
    let (armd, _) = blob(b"{}".to_vec(), "application/vnd.oci.image.manifest.v1+json");
    let with_platform = |d: &str, arch: &str| {
        format!(r#"{},"platform":{{"os":"linux","architecture":"{arch}"}}}}"#, d.trim_end_matches('}'))
    };
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{},{}]}}"#,
        with_platform(&armd, "arm64"),
        with_platform(&mand, "amd64")
    );
    files.push(("index.json".into(), index.into_bytes()));
    if docker_manifest {
        let m = format!(r#"[{{"Config":"{cfgp}","RepoTags":["smolvm/test:1"],"Layers":["{l1p}","{l2p}"]}}]"#);
        files.push(("manifest.json".into(), m.into_bytes()));
    }
    files
}

fn oci_dir(dir: &Path) {
    for (rel, data) in oci_files(false) {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, data).expect("write");
    }
}

/// The layout packed in a tar: `docker save` (v25+) with manifest.json, or
/// an `oci-archive` without.
fn oci_archive(path: &Path, docker_manifest: bool) {
    let files = oci_files(docker_manifest);
    let mut entries = vec![Entry::Dir("blobs"), Entry::Dir("blobs/sha256")];
    entries.extend(files.iter().map(|(n, d)| Entry::File(n, 0o644, 0, d)));
    fs::write(path, tar(&entries)).expect("write archive");
}

/// A rootfs tarball: busybox, a 0640 file owned by 1000, a hard link.
fn rootfs_tar() -> Vec<u8> {
    let bb = busybox();
    tar(&[
        Entry::Dir("./"),
        Entry::Dir("./bin"),
        Entry::File("./bin/busybox", 0o755, 0, &bb),
        Entry::Sym("./bin/sh", "/bin/busybox"),
        Entry::Dir("./etc"),
        Entry::File("./etc/release", 0o644, 0, b"rootfs from a tarball\n"),
        Entry::Hard("./etc/release.hard", "./etc/release"),
        Entry::Dir("./home"),
        Entry::File("./home/secret", 0o640, 1000, b"s\n"),
    ])
}

const TAR_SCRIPT: &str = "busybox cat /etc/release; busybox stat -c '%a %u %h' /home/secret /etc/release";

// ---- the lab batch -----------------------------------------------------

/// Runs `cases` in the lab (once more in a fresh L1 if the lab itself,
/// not a case, fails: see lab::run).
fn run_cases(cases: &[Case]) -> Vec<Outcome> {
    lab::run_images(cases)
}

fn show(name: &str, o: &Outcome) -> String {
    format!("{name}: status {:?}\nstdout: {}\nstderr: {}", o.status, o.stdout_lossy(), o.stderr_lossy())
}

/// Where Debian's python3 keeps its `encodings` package.
fn python_encodings() -> String {
    let o = Command::new("/usr/bin/python3")
        .args(["-I", "-S", "-c", "import encodings; print(encodings.__path__[0])"])
        .output()
        .expect("/usr/bin/python3");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn container_tar_and_exec_images_run() {
    lab::prewarm();
    let dir = qemu::scratch_dir("rootfs-e2e");
    let d = |n: &str| dir.join(n).display().to_string();

    docker_archive(&dir.join("docker.tar"));
    oci_dir(&dir.join("oci"));
    oci_archive(&dir.join("oci-docker.tar"), true);
    oci_archive(&dir.join("oci-archive.tar"), false);
    let docker = image(&dir, "docker", &["--from-docker-archive", &d("docker.tar")]);
    let oci = image(&dir, "oci", &["--from-oci", &d("oci")]);
    let oci_docker = image(&dir, "oci-docker", &["--from-docker-archive", &d("oci-docker.tar")]);
    let oci_archive = image(&dir, "oci-archive", &["--from-docker-archive", &d("oci-archive.tar")]);

    let plain = rootfs_tar();
    let mut tars = Vec::new();
    for tool in ["gzip", "xz", "zstd"] {
        let file = dir.join(format!("rootfs.tar.{tool}"));
        fs::write(&file, compress(tool, &plain)).expect("write");
        let f = file.display().to_string();
        tars.push(image(&dir, tool, &["--from-tar", &f, "--entry", "/bin/sh", "--arg", "-c", "--arg", TAR_SCRIPT]));
    }
    let as_root = fs::metadata(&dir).expect("scratch dir").uid() == 0;
    let tar_out = format!("rootfs from a tarball\n640 {} 1\n644 0 2\n", if as_root { 1000 } else { 0 });

    let sort = image(&dir, "sort", &["--exec", "/usr/bin/sort"]);
    let enc = python_encodings();
    let py = image(
        &dir,
        "py",
        &["--exec", "/usr/bin/python3", "--env", "PYTHONHOME=/usr", "--add", &format!("{enc}:{enc}")],
    );

    let sort_in: Vec<u8> = b"pear\nApple\n10\n9\nbanana\n\xc3\xa9clair\napple\n~tilde\n\n  space\n".to_vec();
    let host_sort = |args: &[&str]| {
        let mut c = Command::new("/usr/bin/sort")
            .args(args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("host sort");
        c.stdin.take().expect("stdin").write_all(&sort_in).expect("write");
        let o = c.wait_with_output().expect("host sort");
        assert!(o.status.success());
        o.stdout
    };

    let long = Duration::from_secs(150);
    let mut cases = vec![
        ("docker default Cmd", Case::image(&docker, &[])),
        ("docker args replace Cmd", Case::image(&docker, &["/bin/sh", "-c", "echo args replace Cmd; pwd"])),
        ("docker args name the program", Case::image(&docker, &["cat", "/etc/motd"])),
        ("oci default Cmd", Case::image(&oci, &[])),
        ("oci args replace Cmd", Case::image(&oci, &["echo only Cmd replaced: $GREETING"])),
        ("oci-in-docker default Cmd", Case::image(&oci_docker, &[])),
        ("oci-archive default Cmd", Case::image(&oci_archive, &[])),
    ];
    for (tool, img) in ["gzip", "xz", "zstd"].iter().zip(&tars) {
        cases.push((tool, Case::image(img, &[])));
    }
    cases.extend([
        ("sort", Case::image(&sort, &[]).stdin(sort_in.clone())),
        ("sort -rn", Case::image(&sort, &["-rn"]).stdin(sort_in.clone())),
        ("python print", Case::image(&py, &["-c", "print(2+2)"])),
        (
            "python stdin",
            Case::image(&py, &["-c", "import sys; print(sys.stdin.read().upper(), end='')"]).stdin(&b"hi py\n"[..]),
        ),
    ]);
    let (names, cases): (Vec<&str>, Vec<Case>) = cases.into_iter().map(|(n, c)| (n, c.timeout(long))).unzip();
    let out = run_cases(&cases);
    let by = |name: &str| {
        let i = names.iter().position(|n| *n == name).expect("case name");
        (&out[i], show(name, &out[i]))
    };
    // Every case is checked before failing, so one run shows all problems.
    let failures = std::cell::RefCell::new(Vec::new());
    let expect = |name: &str, stdout: &[u8]| {
        let (o, s) = by(name);
        if (o.status, o.stdout.as_slice(), o.stderr.as_slice()) != (Some(0), stdout, &b""[..]) {
            failures.borrow_mut().push(format!("{s}\nwanted stdout: {}", String::from_utf8_lossy(stdout)));
        }
    };
    for name in ["docker default Cmd", "oci default Cmd", "oci-in-docker default Cmd", "oci-archive default Cmd"] {
        expect(name, SCRIPT_OUT.as_bytes());
    }
    expect("docker args replace Cmd", b"args replace Cmd\n/work\n");
    expect("docker args name the program", b"motd v2\n");
    expect("oci args replace Cmd", b"only Cmd replaced: hello from the config\n");
    for tool in ["gzip", "xz", "zstd"] {
        expect(tool, tar_out.as_bytes());
    }
    expect("sort", &host_sort(&[]));
    expect("sort -rn", &host_sort(&["-rn"]));
    expect("python print", b"4\n");
    expect("python stdin", b"HI PY\n");
    let failures = failures.into_inner();
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), names.len(), failures.join("\n---\n"));
    fs::remove_dir_all(&dir).ok();
}

// ---- hostile archives (no lab) ------------------------------------------

/// `smolvm build` fails with one `smolvm: …` line containing `want`,
/// leaves nothing beside the output and writes nothing outside.
fn refused(dir: &Path, args: &[OsString], want: &str, outside: &Path) {
    let o = smolvm_build(args, &dir.join("h.vm"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: not one line: {err}");
    assert!(err.starts_with("smolvm: ") && err.contains(want), "{args:?}: want `{want}` in: {err}");
    let left: Vec<_> = fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".h.vm") || n == "h.vm")
        .collect();
    assert!(left.is_empty(), "{args:?}: left behind: {left:?}");
    let escaped: Vec<_> = fs::read_dir(outside).expect("outside").collect();
    assert!(escaped.is_empty(), "{args:?}: wrote outside the build dir: {escaped:?}");
}

#[test]
fn hostile_archives_are_refused() {
    let dir = qemu::scratch_dir("rootfs-hostile");
    let outside = qemu::scratch_dir("rootfs-hostile-outside");
    let build_dir = dir.join("build");
    fs::create_dir_all(&build_dir).expect("mkdir");
    let out_s = outside.display().to_string();
    let escape_rel = format!("../../../../../../../..{out_s}/owned");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("traversal", tar(&[Entry::File(&escape_rel, 0o644, 0, b"x")]), "has `..` in its path"),
        (
            "symlink escape",
            tar(&[Entry::Sym("evil", &out_s), Entry::File("evil/owned", 0o644, 0, b"x")]),
            "goes through the symlink evil",
        ),
        (
            "symlink parent escape",
            tar(&[Entry::Dir("a"), Entry::Sym("a/up", "../../../../../../.."), Entry::File("a/up/tmp/owned", 0o644, 0, b"x")]),
            "goes through the symlink up",
        ),
        (
            "hard link escape",
            tar(&[Entry::Hard("h", "/../../../etc/passwd")]),
            "has `..`",
        ),
    ];
    let tar_args = |file: &Path| -> Vec<OsString> {
        vec!["--from-tar".into(), file.into(), "--entry".into(), "/bin/sh".into()]
    };
    for (name, bytes, want) in &cases {
        let file = dir.join(format!("{}.tar", name.replace(' ', "-")));
        fs::write(&file, bytes).expect("write");
        refused(&build_dir, &tar_args(&file), want, &outside);
        // The same layer inside a docker archive.
        let cfg = config(false);
        let archive = tar(&[
            Entry::File("l.tar", 0o644, 0, bytes),
            Entry::File("c.json", 0o644, 0, &cfg),
            Entry::File("manifest.json", 0o644, 0, br#"[{"Config":"c.json","Layers":["l.tar"]}]"#),
        ]);
        let file = dir.join(format!("{}-docker.tar", name.replace(' ', "-")));
        fs::write(&file, archive).expect("write");
        refused(&build_dir, &["--from-docker-archive".into(), file.into()], want, &outside);
    }
    // A manifest.json naming a layer outside the archive.
    let archive = tar(&[
        Entry::File("c.json", 0o644, 0, &config(false)),
        Entry::File("manifest.json", 0o644, 0, br#"[{"Config":"c.json","Layers":["../../etc/passwd"]}]"#),
    ]);
    fs::write(dir.join("manifest-escape.tar"), archive).expect("write");
    refused(
        &build_dir,
        &["--from-docker-archive".into(), dir.join("manifest-escape.tar").into()],
        "leaves the archive",
        &outside,
    );
    // A layer that is a symlink to a host file is resolved inside the archive.
    let archive = tar(&[
        Entry::Sym("l.tar", "/etc/passwd"),
        Entry::File("c.json", 0o644, 0, &config(false)),
        Entry::File("manifest.json", 0o644, 0, br#"[{"Config":"c.json","Layers":["l.tar"]}]"#),
    ]);
    fs::write(dir.join("host-link.tar"), archive).expect("write");
    refused(
        &build_dir,
        &["--from-docker-archive".into(), dir.join("host-link.tar").into()],
        "layer `l.tar`: /etc does not exist",
        &outside,
    );
    // Truncated compressed tarballs: one line naming the problem.
    let whole = rootfs_tar();
    for tool in ["gzip", "xz", "zstd"] {
        let c = compress(tool, &whole);
        let file = dir.join(format!("cut.tar.{tool}"));
        fs::write(&file, &c[..c.len() / 2]).expect("write");
        let o = smolvm_build(&tar_args(&file), &build_dir.join("h.vm"));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{tool}: {err}");
        assert_eq!(err.lines().count(), 1, "{tool}: not one line: {err}");
        assert!(err.contains("truncated archive") || err.contains("decompression failed"), "{tool}: {err}");
    }
    // Absolute paths are confined to the root: the file lands inside the image.
    let bb = busybox();
    let abs = tar(&[
        Entry::File("/bin/busybox", 0o755, 0, &bb),
        Entry::Sym("/bin/sh", "busybox"),
        Entry::File(&format!("{out_s}/owned"), 0o644, 0, b"inside\n"),
    ]);
    fs::write(dir.join("abs.tar"), abs).expect("write");
    let o = smolvm_build(&tar_args(&dir.join("abs.tar")), &build_dir.join("abs.vm"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(fs::read_dir(&outside).expect("outside").count(), 0, "absolute path escaped");
    let list = Command::new("unsquashfs")
        .arg("-l")
        .arg("-o")
        .arg(rootfs_offset(&build_dir.join("abs.vm")).to_string())
        .arg(build_dir.join("abs.vm"))
        .output()
        .expect("unsquashfs");
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains(&format!("squashfs-root{out_s}/owned")), "{list}");
    fs::remove_dir_all(&dir).ok();
    fs::remove_dir_all(&outside).ok();
}

/// Byte offset of an image's rootfs section.
fn rootfs_offset(image: &Path) -> u64 {
    use linker::image::{Image, Kind, TRAILER_LEN};
    let bytes = fs::read(image).expect("image");
    let table = Image::parse_slice(&bytes[bytes.len() - TRAILER_LEN..], bytes.len() as u64).expect("valid image");
    table.section(Kind::Rootfs).expect("rootfs section").offset
}

/// A real multi-layer image: four layers of Debian packages (libc, dash,
/// busybox, python3-minimal, then a layer of whiteouts) assembled into a
/// `docker save` archive by tests/rootfs/debian-image.sh. Downloads the
/// packages with `apt-get download` (cached), so it is opt-in:
/// `cargo test -p smolvm-tests --test rootfs_e2e -- --ignored`.
#[test]
#[ignore = "downloads Debian packages (apt-get download); run with --ignored"]
fn debian_multilayer_image_runs() {
    lab::prewarm();
    let dir = qemu::scratch_dir("rootfs-debian");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/rootfs/debian-image.sh");
    let archive = dir.join("debian.tar");
    let o = Command::new(script).arg(&archive).output().expect("run debian-image.sh");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let img = image(&dir, "debian", &["--from-docker-archive", &archive.display().to_string()]);
    let probe = "import os; print(os.getcwd(), os.path.exists('/usr/share/doc'), os.path.exists('/bin/busybox'))";
    let long = Duration::from_secs(150);
    let out = run_cases(&[Case::image(&img, &[]).timeout(long), Case::image(&img, &["-c", probe]).timeout(long)]);
    let (default, probed) = (&out[0], &out[1]);
    // The config's Cmd: python3 prints its version and /etc/os-release's first line.
    assert_eq!(default.status, Some(0), "{}", show("default", default));
    let text = default.stdout_lossy();
    assert!(text.starts_with("python 3.") && text.contains("Debian GNU/Linux"), "{}", show("default", default));
    // WorkingDir, the whiteout layer (docs gone), the busybox layer.
    assert_eq!((probed.status, probed.stdout_lossy()), (Some(0), "/root False True\n".into()), "{}", show("probe", probed));
    fs::remove_dir_all(&dir).ok();
}

/// A gzip'd `docker save` archive (`docker save | gzip`) gives the same
/// image, byte for byte, as the plain one, and so does an OCI layout: the
/// staging directories and the archive's compression leave no trace.
#[test]
fn compressed_archives_build_identical_images() {
    let dir = qemu::scratch_dir("rootfs-same");
    let d = |n: &str| dir.join(n).display().to_string();
    docker_archive(&dir.join("docker.tar"));
    fs::write(dir.join("docker.tar.gz"), compress("gzip", &fs::read(dir.join("docker.tar")).expect("read"))).expect("write");
    let plain = fs::read(image(&dir, "plain", &["--from-docker-archive", &d("docker.tar")])).expect("read");
    let gz = fs::read(image(&dir, "gz", &["--from-docker-archive", &d("docker.tar.gz")])).expect("read");
    assert!(plain == gz, "docker.tar and docker.tar.gz give different images");
    oci_archive(&dir.join("a.tar"), true);
    oci_archive(&dir.join("b.tar"), false);
    let a = fs::read(image(&dir, "a", &["--from-docker-archive", &d("a.tar")])).expect("read");
    let b = fs::read(image(&dir, "b", &["--from-docker-archive", &d("b.tar")])).expect("read");
    assert!(a == b, "the OCI layout with and without manifest.json give different images");
    fs::remove_dir_all(&dir).ok();
}
