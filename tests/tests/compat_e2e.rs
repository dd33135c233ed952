//! The compatibility suite (#26): real programs the project did not write,
//! packed from Debian's packages with `--exec`/`--add`, run unchanged end to
//! end through the stub, our kernel and smol-init (directly on hardware KVM,
//! else in the KVM lab), each with a workload that checks its own result.
//!
//! - `compat_fast` (part of `make test`, a few minutes): the kernel features
//!   programs probe for (`tests/compat/probe.py`), users and groups,
//!   `pthread_exit`, the writable root and a read-only image, git and the
//!   sqlite3 CLI on a share at a path the image lacks, an ext4 data disk.
//! - `compat_full` (`#[ignore]`d; `make compat`): python3's own regression
//!   tests (Debian's libpython3.11-testsuite) compared test by test with the
//!   same modules on the host, fio with data verification on a disk and on a
//!   share, openssl speed and a TLS handshake, PostgreSQL.
//!
//! Needs `target/<profile>/{vmm-stub,smol-init,smolvm}`, the guest kernel
//! (`qemu::kernel`) and the Debian packages in the Makefile's APT_PACKAGES
//! (COMPAT_PACKAGES for `compat_full`: `make compat` installs them).
//! docs/COMPAT.md has the table of what works and what each program needed.

use smolvm_tests::lab::{self, Case, Outcome};
use smolvm_tests::{product, qemu};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const PYLIB: &str = "/usr/lib/python3.11";
/// The guest scripts (`tests/compat/`), at /compat in the images.
const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/compat");

/// `smolvm build ARGS -o DIR/NAME.vm` with the test's kernel, init and stub.
fn build(dir: &Path, name: &str, args: &[String]) -> PathBuf {
    let out = dir.join(format!("{name}.vm"));
    let o = Command::new(product::smolvm())
        .arg("build")
        .args(args)
        .arg("--kernel")
        .arg(qemu::kernel())
        .arg("--init")
        .arg(product::init())
        .arg("--stub")
        .arg(product::stub())
        .arg("-o")
        .arg(&out)
        .env("CI", "1")
        .output()
        .expect("run smolvm build");
    assert!(o.status.success(), "smolvm build {name}: {}", String::from_utf8_lossy(&o.stderr));
    out
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// `--exec` for python3 and every extension module of its stdlib (their
/// libraries: sqlite, ssl, ffi, ... are found through the closure), dash as
/// /bin/sh, the guest scripts, and `stdlib` as the python library.
fn python_image_args(stdlib: &Path, programs: &[&str]) -> Vec<String> {
    let mut args = strings(&["--entry", "/bin/sh", "--compression", "lz4", "--exec", "/usr/bin/python3"]);
    let mut modules: Vec<PathBuf> = fs::read_dir(format!("{PYLIB}/lib-dynload"))
        .expect("python3 lib-dynload")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "so"))
        .collect();
    modules.sort();
    for m in modules {
        args.extend(["--exec".to_string(), m.display().to_string()]);
    }
    for p in programs.iter().chain(&["/usr/bin/dash"]) {
        args.extend(["--exec".to_string(), p.to_string()]);
    }
    for add in ["/usr/bin/dash:/bin/sh".to_string(), format!("{}:{PYLIB}", stdlib.display()), format!("{SCRIPTS}:/compat")] {
        args.extend(["--add".to_string(), add]);
    }
    args
}

/// The python standard library without its 57 MB of tests (the fast image).
fn stdlib_without_tests(dir: &Path) -> PathBuf {
    let copy = dir.join("stdlib");
    let o = Command::new("cp").arg("-a").arg(PYLIB).arg(&copy).output().expect("cp");
    assert!(o.status.success(), "cp -a {PYLIB}: {}", String::from_utf8_lossy(&o.stderr));
    fs::remove_dir_all(copy.join("test")).expect("remove test/");
    copy
}

fn show(name: &str, o: &Outcome) -> String {
    format!("{name}: status {:?}\nstdout: {}\nstderr: {}", o.status, o.stdout_lossy(), o.stderr_lossy())
}

/// Checks every case before failing, so one run shows all problems.
struct Checks<'a> {
    names: Vec<&'a str>,
    out: &'a [Outcome],
    failures: Vec<String>,
}

impl<'a> Checks<'a> {
    fn get(&self, name: &str) -> &'a Outcome {
        &self.out[self.names.iter().position(|n| *n == name).expect("case name")]
    }

    /// Status 0 and `check(stdout)` holds.
    fn expect(&mut self, name: &str, check: impl Fn(&str) -> bool) {
        let o = self.get(name);
        if o.status != Some(0) || !check(&o.stdout_lossy()) {
            self.failures.push(show(name, o));
        }
    }

    fn finish(self) {
        let n = self.names.len();
        assert!(self.failures.is_empty(), "{} of {n} cases failed:\n{}", self.failures.len(), self.failures.join("\n---\n"));
    }
}

/// A fresh ext4 image with one file from the host (mkfs.ext4 -d needs no root).
fn ext4_disk(dir: &Path) -> PathBuf {
    let content = dir.join("ext4-content");
    fs::create_dir_all(&content).expect("mkdir");
    fs::write(content.join("from-host"), "written on the host\n").expect("write");
    let img = dir.join("data.ext4");
    let o = Command::new("/sbin/mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&content)
        .arg(&img)
        .arg("16M")
        .output()
        .expect("mkfs.ext4 (e2fsprogs)");
    assert!(o.status.success(), "mkfs.ext4: {}", String::from_utf8_lossy(&o.stderr));
    img
}

fn host(argv: &[&str], cwd: &Path) -> String {
    let o = Command::new(argv[0]).args(&argv[1..]).current_dir(cwd).output().expect("host command");
    assert!(o.status.success(), "host {argv:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const GIT_SCRIPT: &str = "cd /repo && git init -q -b main . && echo hello > greeting && git add greeting \
    && git -c user.name=smolvm -c user.email=smolvm@example.invalid commit -q -m 'first from the guest' \
    && git fsck --strict && git log --format=%s";

/// Exits at once with a daemon thread still running: CPython's finalization
/// ends that thread with pthread_exit, which glibc unwinds through a
/// dlopen'ed libgcc_s (it aborts if the image lacks it).
const PTHREAD_EXIT: &str = "import threading, time\n\
    def spin():\n    while True: time.sleep(0.001)\n\
    threading.Thread(target=spin, daemon=True).start(); time.sleep(0.05); print('ok')";

#[test]
fn compat_fast() {
    let w = lab::writable_dir().expect("writable dir");
    let dir = qemu::scratch_dir("compat-fast");
    let stdlib = stdlib_without_tests(&dir);
    let img = build(&dir, "compat", &python_image_args(&stdlib, &["/usr/bin/sqlite3", "/usr/bin/git"]));
    let dash = |name: &str, extra: &[&str]| {
        let mut args = strings(&["--exec", "/usr/bin/dash", "--entry", "/usr/bin/dash"]);
        args.extend(strings(extra));
        build(&dir, name, &args)
    };
    let writable = dash("dash", &[]);
    let read_only = dash("dash-ro", &["--read-only"]);

    let (repo, data) = (w.path().join("repo"), w.path().join("data"));
    fs::create_dir_all(&repo).expect("mkdir");
    fs::create_dir_all(&data).expect("mkdir");
    let disk = ext4_disk(w.path());
    let share = |host: &Path, guest: &str| format!("--smolvm-share={}:{guest}", host.display());
    let sql = fs::read(format!("{SCRIPTS}/sqlite.sql")).expect("sqlite.sql");
    let disk_opt = format!("--smolvm-disk={}", disk.display());
    let (repo_opt, data_opt, ro_opt) = (share(&repo, "/repo"), share(&data, "/srv/data"), share(&data, "/new/dir"));

    let py = |code: &str| vec!["-c".to_string(), format!("python3 -c \"{code}\"")];
    let cases: Vec<(&str, Vec<String>, &[u8])> = vec![
        ("kernel features", strings(&["-c", "python3 /compat/probe.py"]), b""),
        ("users and groups", py("import pwd, grp, getpass; print(pwd.getpwuid(0).pw_name, grp.getgrgid(0).gr_name, getpass.getuser())"), b""),
        ("pthread_exit", strings(&["-c", &format!("python3 -c \"{PTHREAD_EXIT}\"")]), b""),
        (
            "writable root",
            strings(&["-c", "echo changed > /etc/written && read line < /etc/written && echo $line \
                && python3 -c \"import os; os.makedirs('/var/log/app'); os.makedirs('/usr/lib/python3.11/cache')\" && echo ok"]),
            b"",
        ),
        ("git on a share at /repo", vec![repo_opt.clone(), "-c".into(), GIT_SCRIPT.into()], b""),
        ("sqlite3 on a share", vec![data_opt.clone(), "-c".into(), "sqlite3 /srv/data/bank.db".into()], &sql),
        ("ext4 disk", vec![disk_opt.clone(), "-c".into(), "cd /compat && python3 ext4.py".into()], b""),
    ];
    let mut named: Vec<(&str, Case)> =
        cases.iter().map(|(n, a, stdin)| (*n, Case::image(&img, &a.iter().map(String::as_str).collect::<Vec<_>>()).stdin(stdin.to_vec()))).collect();
    named.extend([
        ("default root writable", Case::image(&writable, &["-c", "echo x > /x && echo wrote"])),
        ("read-only root", Case::image(&read_only, &["-c", "echo x > /x || echo refused"])),
        ("read-only root, share at a new path", Case::image(&read_only, &[&ro_opt, "-c", "echo hi > /new/dir/from-ro && echo ok"])),
    ]);
    let (names, cases): (Vec<&str>, Vec<Case>) = named.into_iter().map(|(n, c)| (n, c.timeout(Duration::from_secs(300)))).unzip();
    let out = lab::run_images(&cases);
    let mut c = Checks { names, out: &out, failures: Vec::new() };

    c.expect("kernel features", |s| s.lines().count() >= 14 && s.lines().all(|l| l.ends_with(" ok")));
    c.expect("users and groups", |s| s == "root root root\n");
    c.expect("pthread_exit", |s| s == "ok\n");
    c.expect("writable root", |s| s == "changed\nok\n");
    c.expect("git on a share at /repo", |s| s == "first from the guest\n");
    c.expect("sqlite3 on a share", |s| s == "delete\n200|200000\n300\nok\n");
    c.expect("ext4 disk", |s| s == "written on the host\nunmounted\n");
    c.expect("default root writable", |s| s == "wrote\n");
    c.expect("read-only root", |s| s == "refused\n");
    c.expect("read-only root, share at a new path", |s| s == "ok\n");
    if !c.get("read-only root").stderr_lossy().contains("Read-only file system") {
        c.failures.push(show("read-only root (wanted EROFS)", c.get("read-only root")));
    }
    // The host sees what the guest wrote.
    if c.get("git on a share at /repo").status == Some(0) {
        assert_eq!(host(&["git", "log", "--format=%s"], &repo), "first from the guest\n");
        host(&["git", "fsck", "--strict"], &repo);
    }
    if c.get("sqlite3 on a share").status == Some(0) {
        assert_eq!(host(&["sqlite3", "bank.db", "PRAGMA integrity_check; SELECT sum(balance) FROM accounts;"], &data), "ok\n200000\n");
    }
    if c.get("ext4 disk").status == Some(0) {
        let cat = host(&["/sbin/debugfs", "-R", "cat /from-guest", &disk.display().to_string()], w.path());
        assert_eq!(cat, "written in the guest\n");
    }
    if c.get("read-only root, share at a new path").status == Some(0) {
        assert_eq!(fs::read_to_string(data.join("from-ro")).expect("written through the share"), "hi\n");
    }
    c.finish();
    fs::remove_dir_all(&dir).ok();
}

/// The python regression test modules of the suite (Debian's
/// libpython3.11-testsuite), each run by `python3 -m test -v` on the host and
/// in the guest.
/// (test_sqlite3 is not here: Debian's libpython3.11-testsuite does not ship
/// it; python's sqlite3 module is exercised by field_e2e and the sqlite3 CLI.)
const PY_MODULES: [&str; 15] = [
    "test_os",
    "test_posix",
    "test_select",
    "test_mmap",
    "test_fcntl",
    "test_resource",
    "test_pty",
    "test_tempfile",
    "test_time",
    "test_threading",
    "test_signal",
    "test_subprocess",
    "test_socket",
    "test_pwd",
    "test_multiprocessing_forkserver",
];

/// `PY_MODULES`, or the comma-separated subset in `$SMOLVM_COMPAT_PY`.
fn py_modules() -> Vec<String> {
    match std::env::var("SMOLVM_COMPAT_PY") {
        Ok(list) if !list.is_empty() => list.split(',').map(str::to_string).collect(),
        _ => PY_MODULES.iter().map(|m| m.to_string()).collect(),
    }
}

/// Test cases run on neither side: AF_VSOCK, a host-to-hypervisor socket the
/// guest kernel does not have (no use to a smolvm app); on a host that is
/// itself a VM with vsock, test_socket's ThreadedVSOCKSocketStreamTest blocks
/// in accept() for ever.
const PY_IGNORE: &str = "*VSOCK*";

/// Tests that pass on the host and may not in the guest, with the reason.
/// Matched as a prefix of `module.Class.test`.
const EXCUSED: [(&str, &str); 1] = [(
    "test.test_os.ExtendedAttributeTests.",
    "user.* xattrs: the tests run in /tmp, a tmpfs, which has them only from Linux 6.6 (the host's /tmp is a disk file system)",
)];

/// `test.test_os.FileTests.test_access` -> `ok` / `FAIL` / `ERROR` / `skipped ...`,
/// from `python -m test -v` output (a result may come lines after its test when
/// the test prints).
fn python_results(out: &str) -> BTreeMap<String, String> {
    let mut results = BTreeMap::new();
    let mut pending: Option<String> = None;
    let is_result = |r: &str| {
        ["ok", "FAIL", "ERROR", "expected failure", "unexpected success"].contains(&r) || r.starts_with("skipped")
    };
    for line in out.lines() {
        let head = line.split(" ... ").next().unwrap_or("");
        let id = head.split_once(" (").and_then(|(name, rest)| {
            let full = rest.strip_suffix(')')?;
            (full.ends_with(name) && !name.contains(' ')).then(|| full.to_string())
        });
        if let Some(id) = id {
            match line.split_once(" ... ").map(|(_, r)| r.trim()) {
                Some(r) if is_result(r) => {
                    results.insert(id, r.to_string());
                    pending = None;
                }
                _ => pending = Some(id),
            }
        } else if let Some(id) = &pending {
            let r = line.rsplit(" ... ").next().unwrap_or(line).trim();
            if is_result(r) {
                results.insert(id.clone(), r.to_string());
                pending = None;
            }
        }
    }
    results
}

#[test]
fn python_result_lines_are_parsed() {
    let out = "test_a (test.test_x.T.test_a) ... ok\ntest_b (test.test_x.T.test_b) ... printed\nmore\nFAIL\n\
        test_c (test.test_x.T.test_c) ... skipped 'no'\ntest_d (test.test_x.T.test_d) ... ERROR\n";
    let r = python_results(out);
    assert_eq!(r.len(), 4);
    assert_eq!((r["test.test_x.T.test_a"].as_str(), r["test.test_x.T.test_b"].as_str()), ("ok", "FAIL"));
    assert!(r["test.test_x.T.test_c"].starts_with("skipped") && r["test.test_x.T.test_d"] == "ERROR");
}

fn python_on_host(module: &str, dir: &Path) -> BTreeMap<String, String> {
    let o = Command::new("/usr/bin/python3")
        // A hanging host test must not stall the suite (the guest side has its case timeout).
        .args(["-m", "test", "-v", "--timeout", "600", "-i", PY_IGNORE, module])
        .current_dir(dir)
        .env_clear()
        .env("PATH", lab::DEFAULT_PATH)
        .output()
        .expect("host python3 -m test");
    python_results(&String::from_utf8_lossy(&o.stdout))
}

#[test]
#[ignore = "the whole compatibility suite: make compat"]
fn compat_full() {
    let w = lab::writable_dir().expect("writable dir");
    let dir = qemu::scratch_dir("compat-full");
    // id: test_posix's getgroups test compares with `id -G`; test_subprocess
    // runs cat, ls, bash and `sh -c 'sleep 3'` (it skips or errors without them).
    let programs = ["/usr/bin/fio", "/usr/bin/openssl", "/usr/bin/id", "/usr/bin/cat", "/usr/bin/ls", "/usr/bin/bash", "/usr/bin/sleep"];
    let mut args = python_image_args(Path::new(PYLIB), &programs);
    for p in ["initdb", "postgres", "pg_ctl", "psql"] {
        args.extend(["--exec".to_string(), format!("/usr/lib/postgresql/15/bin/{p}")]);
    }
    for add in [
        "/etc/ssl/openssl.cnf:/usr/lib/ssl/openssl.cnf",
        "/usr/share/postgresql/15:/usr/share/postgresql/15",
        "/usr/lib/postgresql/15/lib:/usr/lib/postgresql/15/lib",
        "/usr/share/zoneinfo/UTC:/usr/share/zoneinfo/UTC",
        // getservbyname / getaddrinfo with a service name (test_socket).
        "/etc/services:/etc/services",
    ] {
        args.extend(["--add".to_string(), add.to_string()]);
    }
    // fio links librados/libceph-common (a 136 MB bss) and cannot start in less.
    args.extend(strings(&["--mem", "1G"]));
    let img = build(&dir, "compat-full", &args);

    let fio_dir = w.path().join("fio");
    fs::create_dir_all(&fio_dir).expect("mkdir");
    let disk = w.path().join("fio.disk");
    fs::write(&disk, vec![0u8; 64 << 20]).expect("disk file");
    let fio = "fio --name=verify --rw=randwrite --bs=4k --size=16M --verify=crc32c --verify_fatal=1 --output-format=terse";
    let disk_opt = format!("--smolvm-disk={}", disk.display());
    let share_opt = format!("--smolvm-share={}:/srv/fio", fio_dir.display());

    // The python modules first: a disk case that hangs (seen once, see docs/COMPAT.md)
    // then costs only its own timeout at the end of the batch.
    let mut named: Vec<(String, Case)> = Vec::new();
    let modules = py_modules();
    for m in &modules {
        // lo up first: smol-init does it once #18's network set-up is merged (then a no-op).
        let run = format!("cd /tmp && python3 -c 'import sys; sys.path[0] = \"/compat\"; import guest; guest.lo_up()' && python3 -m test -v -i '{PY_IGNORE}' {m}");
        named.push((m.clone(), Case::image(&img, &["-c", &run]).timeout(Duration::from_secs(900))));
    }
    let short = Duration::from_secs(300);
    named.extend([
        ("openssl speed".into(), Case::image(&img, &["-c", "openssl speed -seconds 2 -evp aes-128-gcm sha256 2>&1"]).timeout(short)),
        ("openssl tls".into(), Case::image(&img, &["-c", "cd /compat && python3 tls.py"]).timeout(short)),
        ("postgresql".into(), Case::image(&img, &["-c", "python3 /compat/postgres.py"]).timeout(short)),
        ("fio share".into(), Case::image(&img, &[&share_opt, "-c", &format!("{fio} --directory=/srv/fio --ioengine=psync")]).timeout(short)),
        ("fio disk libaio".into(), Case::image(&img, &[&disk_opt, "-c", &format!("{fio} --filename=/dev/vdb --ioengine=libaio --direct=1 --iodepth=8")]).timeout(short)),
        ("fio disk io_uring".into(), Case::image(&img, &[&disk_opt, "-c", &format!("{fio} --filename=/dev/vdb --ioengine=io_uring --direct=1")]).timeout(short)),
    ]);
    let (names, cases): (Vec<String>, Vec<Case>) = named
        .into_iter()
        .unzip();
    let out = lab::run_images(&cases);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut c = Checks { names: names.clone(), out: &out, failures: Vec::new() };
    for name in ["fio disk io_uring", "fio disk libaio", "fio share"] {
        // terse v3: field 5 is the read error count... any verify failure exits non-zero.
        c.expect(name, |s| s.starts_with("3;"));
    }
    c.expect("openssl speed", |s| s.contains("\nsha256 ") && s.contains("\nAES-128-GCM "));
    c.expect("openssl tls", |s| s.contains("CONNECTION ESTABLISHED") && s.contains("Verification: OK"));
    c.expect("postgresql", |s| s == "psql: 1000|1000\nstopped\n");

    // Every test that passes on the host passes in the guest, or is excused.
    let scratch = dir.join("host-python");
    fs::create_dir_all(&scratch).expect("mkdir");
    let mut report = Vec::new();
    for m in &modules {
        let m = m.as_str();
        let host = python_on_host(m, &scratch);
        if host.is_empty() {
            // A module the host cannot run would make the comparison vacuous.
            c.failures.push(format!("python {m}: no test ran on the host (is the module installed?)"));
        }
        let guest = python_results(&c.get(m).stdout_lossy());
        let passed = |r: Option<&String>| r.is_some_and(|r| r == "ok" || r == "expected failure");
        let host_ok = host.iter().filter(|(_, r)| passed(Some(r))).count();
        let guest_ok = guest.iter().filter(|(_, r)| passed(Some(r))).count();
        report.push(format!("{m}: host {host_ok}/{} ok, guest {guest_ok}/{} ok", host.len(), guest.len()));
        for (id, r) in &host {
            if passed(Some(r)) && !passed(guest.get(id)) {
                let why = EXCUSED.iter().find(|(p, _)| id.starts_with(p)).map(|(_, why)| *why);
                let line = format!("  {id}: host ok, guest {}", guest.get(id).map_or("missing", String::as_str));
                match why {
                    Some(why) => report.push(format!("{line} (excused: {why})")),
                    None => {
                        report.push(line.clone());
                        c.failures.push(format!("python {line}"));
                    }
                }
            }
        }
    }
    eprintln!("python regression tests, host vs guest:\n{}", report.join("\n"));
    c.finish();
    fs::remove_dir_all(&dir).ok();
}
