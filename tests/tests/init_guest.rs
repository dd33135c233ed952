//! smol-init end to end: the real guest kernel boots under QEMU TCG
//! (`tests/src/qemu.rs`) with a test initramfs holding smol-init and its
//! config files (`smolvm/manifest`, `smolvm/run`); the app runs from a real
//! squashfs on /dev/vda (or from the initramfs), and each test checks what
//! the app printed on hvc0/hvc1 and the status byte init wrote to the exit
//! port.
//!
//! Needs: `target/<profile>/smol-init` (`cargo build -p smol-init`, or set
//! `SMOLVM_INIT`), a guest kernel (see `qemu::kernel`), qemu-system-x86,
//! busybox-static, squashfs-tools and gcc with a static libc (for the probe
//! apps, `tests/init/probe.c` and `tests/smp/cpus.c`).

use linker::config::{self, Key};
use linker::cpio::{Archive, FileData, Node};
use smolvm_tests::qemu::{self, Guest, Outcome};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

const BUSYBOX: &str = "/bin/busybox";

/// smol-init of this build profile (or `SMOLVM_INIT`).
fn init_binary() -> PathBuf {
    let path = std::env::var_os("SMOLVM_INIT").map(PathBuf::from).unwrap_or_else(|| qemu::profile_dir().join("smol-init"));
    assert!(path.is_file(), "{} missing: run `cargo build -p smol-init` (same profile) or set SMOLVM_INIT", path.display());
    path
}

/// Files shared by every test: the probe app and a squashfs root.
struct Fixture {
    rootfs_dir: PathBuf,
    squashfs: PathBuf,
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        assert!(Path::new(BUSYBOX).is_file(), "{BUSYBOX} missing: apt-get install busybox-static");
        remove_stale_fixtures();
        let dir = qemu::scratch_dir("init-fixture");
        let root = dir.join("root");
        for d in ["bin", "dev", "proc", "sys", "tmp", "run", "mnt", "data", "etc"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir rootfs");
        }
        std::fs::copy(BUSYBOX, root.join("bin/busybox")).expect("copy busybox");
        std::os::unix::fs::symlink("busybox", root.join("bin/sh")).expect("symlink sh");
        let probe_src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/init/probe.c");
        run(
            Command::new("gcc").args(["-static", "-Os", "-o"]).arg(root.join("bin/probe")).arg(&probe_src),
            "gcc -static probe.c (apt-get install build-essential)",
        );
        let cpus_src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smp/cpus.c");
        run(
            Command::new("gcc").args(["-static", "-O2", "-pthread", "-o"]).arg(root.join("bin/cpus")).arg(&cpus_src),
            "gcc -static -pthread cpus.c (apt-get install build-essential)",
        );
        std::fs::write(root.join("bin/noexec"), "#!/bin/sh\necho should not run\n").expect("write noexec");
        std::fs::write(root.join("etc/greeting"), "hi from squashfs\n").expect("write greeting");
        // The mount targets `smolvm build` adds (smol-init binds its files over them).
        std::fs::write(root.join("etc/hosts"), "").expect("write hosts");
        std::fs::write(root.join("etc/resolv.conf"), "").expect("write resolv.conf");
        let squashfs = dir.join("rootfs.sqfs");
        run(
            Command::new("mksquashfs")
                .arg(&root)
                .arg(&squashfs)
                .args(["-noappend", "-quiet", "-no-progress", "-all-root", "-comp", "gzip"]),
            "mksquashfs (apt-get install squashfs-tools)",
        );
        Fixture { rootfs_dir: root, squashfs }
    })
}

/// Fixture dirs of earlier test processes that are gone (named
/// `smolvm-test-<pid>-init-fixture`).
fn remove_stale_fixtures() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name.strip_prefix("smolvm-test-").and_then(|r| r.strip_suffix("-init-fixture"));
        if pid.is_some_and(|pid| !Path::new("/proc").join(pid).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A config file as records of (key, fields).
#[derive(Clone, Default)]
struct Cfg(Vec<(Key, Vec<Vec<u8>>)>);

impl Cfg {
    fn rec(mut self, key: Key, fields: &[&[u8]]) -> Cfg {
        self.0.push((key, fields.iter().map(|f| f.to_vec()).collect()));
        self
    }
    fn args(self, args: &[&str]) -> Cfg {
        args.iter().fold(self, |c, a| c.rec(Key::Arg, &[a.as_bytes()]))
    }
    fn bytes(&self) -> Vec<u8> {
        let fields: Vec<Vec<&[u8]>> = self.0.iter().map(|(_, f)| f.iter().map(Vec::as_slice).collect()).collect();
        let records: Vec<(Key, &[&[u8]])> = self.0.iter().zip(&fields).map(|((k, _), f)| (*k, f.as_slice())).collect();
        config::to_vec(&records).expect("test config is valid")
    }
}

/// The usual manifest: squashfs root, `entry` with default `args`.
fn manifest(entry: &str, args: &[&str]) -> Cfg {
    Cfg::default().rec(Key::Entry, &[entry.as_bytes()]).rec(Key::Rootfs, &[b"squashfs"]).args(args)
}

/// A `busybox sh -c script` app.
fn shell(script: &str) -> Cfg {
    manifest(BUSYBOX, &["sh", "-c", script])
}

struct Boot {
    name: &'static str,
    manifest: Cfg,
    runtime: Option<Cfg>,
    /// Extra initramfs entries (path, node).
    extra: Vec<(String, Node)>,
    guest: Box<dyn Fn(&mut Guest)>,
}

impl Boot {
    fn new(name: &'static str, manifest: Cfg) -> Boot {
        Boot { name, manifest, runtime: None, extra: Vec::new(), guest: Box::new(|_| {}) }
    }
    fn runtime(mut self, runtime: Cfg) -> Boot {
        self.runtime = Some(runtime);
        self
    }
    fn guest(mut self, f: impl Fn(&mut Guest) + 'static) -> Boot {
        self.guest = Box::new(f);
        self
    }

    /// Builds the initramfs, boots, and returns what happened plus the
    /// scratch dir (for files the guest wrote to shares).
    fn run(self) -> Outcome {
        let fx = fixture();
        let dir = qemu::scratch_dir(self.name);
        let mut cpio = Archive::new(0);
        let mut put = |path: &str, node: Node| cpio.insert(path.as_bytes(), node).expect("cpio insert");
        put("init", Node::File { perm: 0o755, data: FileData::Path(init_binary()) });
        put(linker::abi::GUEST_MANIFEST_PATH, Node::File { perm: 0o644, data: FileData::Bytes(self.manifest.bytes()) });
        if let Some(rt) = &self.runtime {
            put(linker::abi::GUEST_RUNTIME_PATH, Node::File { perm: 0o644, data: FileData::Bytes(rt.bytes()) });
        }
        put("dev/console", Node::Device { mode: 0o020_600, major: 5, minor: 1 });
        for (path, node) in self.extra {
            put(&path, node);
        }
        let initrd = dir.join("initrd.cpio");
        cpio.write_to(&mut std::fs::File::create(&initrd).expect("create initrd")).expect("write initrd");
        let mut guest = Guest::new(qemu::kernel(), initrd);
        guest.rootfs = Some(fx.squashfs.clone());
        (self.guest)(&mut guest);
        let out = guest.run(&dir);
        assert!(out.finished, "{}: the VM did not end within {:?}\n{}", self.name, guest.timeout, out.describe());
        // Everything the guest wrote is in `out` now.
        let _ = std::fs::remove_dir_all(&dir);
        out
    }
}

fn assert_status(out: &Outcome, status: u8) {
    assert_eq!(out.status, Some(status), "wrong exit status\n{}", out.describe());
}

/// The probe's records: ("arg", bytes), ("env", bytes), ...
fn probe_records(out: &Outcome) -> Vec<(String, Vec<u8>)> {
    out.stdout_str()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| {
            let bytes = if matches!(k, "uid" | "gid" | "tty") {
                v.as_bytes().to_vec()
            } else {
                (0..v.len() / 2).map(|i| u8::from_str_radix(&v[2 * i..2 * i + 2], 16).expect("hex")).collect()
            };
            (k.to_string(), bytes)
        })
        .collect()
}

fn probe_values(records: &[(String, Vec<u8>)], key: &str) -> Vec<Vec<u8>> {
    records.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect()
}

#[test]
fn hello_prints_exactly_and_init_is_silent() {
    let out = Boot::new("hello", manifest(BUSYBOX, &["echo", "hello"])).run();
    assert_status(&out, 0);
    assert_eq!(out.stdout, b"hello\n", "{}", out.describe());
    assert_eq!(out.stderr, b"", "{}", out.describe());
}

/// The SMP kernel (issue #25) with two CPUs (`-smp 2`, QEMU's MP table): smol-init's app
/// sees both, and a thread pinned to each ran its CPU-bound loop there.
#[test]
fn two_cpus_are_online_and_each_runs_pinned_work() {
    let out = Boot::new("smp2", manifest("/bin/cpus", &["work", "5"]))
        .guest(|g| g.extra_args.extend(["-smp".into(), "2".into()]))
        .run();
    assert_status(&out, 0);
    let stdout = out.stdout_str();
    let lines: Vec<&str> = stdout.lines().map(str::trim_end).collect();
    for want in ["nproc 2", "cpuinfo 2", "affinity 2"] {
        assert!(lines.contains(&want), "no `{want}`\n{}", out.describe());
    }
    for cpu in 0..2 {
        let ran = format!("ran cpu={cpu} rounds=5 ");
        assert!(lines.iter().any(|l| l.starts_with(&ran)), "no work ran on CPU {cpu}\n{}", out.describe());
    }
}

#[test]
fn exit_code_is_the_apps() {
    let out = Boot::new("exit42", shell("exit 42")).run();
    assert_status(&out, 42);
    assert_eq!(out.stderr, b"", "{}", out.describe());
}

#[test]
fn argv_arrives_byte_exact_and_replaces_default_args() {
    let args: [&[u8]; 9] =
        [b"a b", b"", b"\"double\" 'single'", b"line1\nline2", "ünïcødé ✓".as_bytes(), b"\t", b"$HOME *", b"-", b"\xff\x01"];
    let runtime = args.iter().fold(Cfg::default(), |c, a| c.rec(Key::Arg, &[a]));
    let out = Boot::new("argv", manifest("/bin/probe", &["default-arg"])).runtime(runtime).run();
    assert_status(&out, 0);
    let mut want: Vec<Vec<u8>> = vec![b"/bin/probe".to_vec()];
    want.extend(args.iter().map(|a| a.to_vec()));
    assert_eq!(probe_values(&probe_records(&out), "arg"), want, "{}", out.describe());
}

#[test]
fn default_args_are_used_without_runtime_args() {
    let out = Boot::new("default-args", manifest("/bin/probe", &["x", "y z"])).runtime(Cfg::default()).run();
    assert_status(&out, 0);
    assert_eq!(probe_values(&probe_records(&out), "arg"), [&b"/bin/probe"[..], b"x", b"y z"]);
}

#[test]
fn env_workdir_hostname_and_user_are_applied() {
    let m = manifest("/bin/probe", &[])
        .rec(Key::Env, &[b"KEEP=manifest"])
        .rec(Key::Env, &[b"OVERRIDE=manifest"])
        .rec(Key::Workdir, &[b"/etc"])
        .rec(Key::Hostname, &[b"smolbox"])
        .rec(Key::User, &[b"1000:2000"]);
    let r = Cfg::default().rec(Key::Env, &[b"OVERRIDE=runtime = with spaces"]).rec(Key::Env, &[b"EMPTY="]);
    let out = Boot::new("env", m).runtime(r).run();
    assert_status(&out, 0);
    let rec = probe_records(&out);
    let env = probe_values(&rec, "env");
    let want: [&[u8]; 4] = [b"KEEP=manifest", b"OVERRIDE=runtime = with spaces", b"EMPTY=", plan_default_path()];
    assert_eq!(env, want, "{}", out.describe());
    assert_eq!(probe_values(&rec, "cwd"), [b"/etc"]);
    assert_eq!(probe_values(&rec, "host"), [b"smolbox"]);
    assert_eq!(probe_values(&rec, "uid"), [b"1000"]);
    assert_eq!(probe_values(&rec, "gid"), [b"2000"]);
    assert_eq!(probe_values(&rec, "tty"), [b"1"], "stdin is the hvc0 terminal");
}

#[test]
fn lo_is_up_and_hosts_and_resolv_conf_are_provided() {
    // A TCP round trip over 127.0.0.1 needs lo up; the server answers once.
    let script = "busybox nc -l -p 7777 -e busybox echo pong & \
        for i in 1 2 3 4 5 6 7 8 9 10; do busybox nc 127.0.0.1 7777 </dev/null && break; busybox sleep 0.3; done; \
        echo ---; busybox cat /etc/hosts; echo ---; busybox cat /etc/resolv.conf";
    let m = shell(script).rec(Key::Hostname, &[b"netbox"]);
    let r = Cfg::default().rec(Key::Dns, &[b"10.0.2.3"]).rec(Key::Dns, &[b"192.168.1.1"]);
    let out = Boot::new("net-lo", m).runtime(r).run();
    assert_status(&out, 0);
    let want = "pong\n---\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tnetbox\n\
        ---\nnameserver 10.0.2.3\nnameserver 192.168.1.1\n";
    assert_eq!(out.stdout_str(), want, "{}", out.describe());
}

/// Whether the test kernel has a virtio-net driver (kernel-config's
/// networking fragment).
fn kernel_has_virtio_net() -> bool {
    let config = qemu::kernel().with_file_name("config");
    std::fs::read_to_string(&config).is_ok_and(|c| c.contains("CONFIG_VIRTIO_NET=y"))
}

#[test]
fn eth0_is_configured_from_the_ip_record() {
    if !kernel_has_virtio_net() {
        eprintln!("skipped: the test kernel has no CONFIG_VIRTIO_NET (kernel-config networking fragment)");
        return;
    }
    // QEMU's user networking: the same addressing as passt (10.0.2.15/24,
    // gateway 10.0.2.2); a guest-to-host connection to QEMU's own forward
    // proves the route and the address work.
    let script = "busybox cat /sys/class/net/eth0/mtu; busybox ip -4 addr show dev eth0 | busybox grep -o 'inet [0-9./]*'; \
        busybox ip route | busybox grep default; busybox ping -c 1 -W 5 10.0.2.2 >/dev/null && echo ping ok";
    let r = Cfg::default().rec(Key::Ip, &[b"10.0.2.15/24", b"10.0.2.2", b"1400"]);
    let out = Boot::new("net-eth0", shell(script))
        .runtime(r)
        .guest(|g| {
            g.extra_args.extend(
                ["-netdev", "user,id=n0", "-device", "virtio-net-device,netdev=n0"].map(String::from),
            )
        })
        .run();
    assert_status(&out, 0);
    let lines: Vec<String> = out.stdout_str().lines().map(|l| l.trim_end().to_string()).collect();
    assert_eq!(lines, ["1400", "inet 10.0.2.15/24", "default via 10.0.2.2 dev eth0", "ping ok"], "{}", out.describe());
}

#[test]
fn ip_record_without_eth0_is_125_naming_eth0() {
    let r = Cfg::default().rec(Key::Ip, &[b"10.0.2.15/24", b"10.0.2.2", b"65520"]);
    let out = Boot::new("net-noeth0", shell("echo should not run")).runtime(r).run();
    assert_status(&out, 125);
    assert_eq!(out.stdout, b"", "{}", out.describe());
    assert!(out.stderr_str().contains("eth0"), "{}", out.describe());
}

#[test]
fn bad_ip_record_is_125() {
    let r = Cfg::default().rec(Key::Ip, &[b"10.0.2.15/24", b"10.0.2.2", b"9"]);
    let out = Boot::new("net-badip", shell("echo should not run")).runtime(r).run();
    assert_status(&out, 125);
    assert!(out.stderr_str().contains("ip mtu is not 68-65535"), "{}", out.describe());
}

/// The PATH smol-init adds when the config has none.
fn plan_default_path() -> &'static [u8] {
    b"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}

#[test]
fn entry_is_searched_in_path() {
    let out = Boot::new("path-search", manifest("probe", &[]).rec(Key::Env, &[b"PATH=/nope:/bin"])).run();
    assert_status(&out, 0);
    assert_eq!(probe_values(&probe_records(&out), "arg"), [b"probe"]);
}

#[test]
fn missing_entry_is_127_with_one_line() {
    let out = Boot::new("missing", manifest("/bin/nope", &[])).run();
    assert_status(&out, 127);
    assert_eq!(out.stderr_str(), "smolvm: /bin/nope: not found (entry of the image manifest)\n");
    assert_eq!(out.stdout, b"");
}

#[test]
fn non_executable_entry_is_126_with_one_line() {
    let out = Boot::new("noexec", manifest("/bin/noexec", &[])).run();
    assert_status(&out, 126);
    assert_eq!(out.stderr_str(), "smolvm: /bin/noexec: not executable: permission denied (entry of the image manifest)\n");
    assert_eq!(out.stdout, b"");
}

#[test]
fn app_killed_by_sigkill_is_137() {
    let out = Boot::new("sigkill", shell("echo before; kill -9 $$; echo after")).run();
    assert_status(&out, 137);
    assert_eq!(out.stdout, b"before\n");
    assert_eq!(out.stderr_str(), "smolvm: the app was killed by signal 9 (SIGKILL)\n");
}

/// The memory line init prints after an OOM kill, without the figures.
fn oom_line(stderr: &str, victim: &str) -> bool {
    let l = stderr.trim_end();
    !l.contains('\n')
        && l.starts_with("smolvm: the guest ran out of memory (")
        && l.contains(" MiB usable) and the kernel killed process ")
        && l.contains(&format!(" ({victim}): give the VM more with --smolvm-mem="))
        && l.ends_with("M")
}

/// A 128 MiB guest whose root is the initramfs: busybox and the probe sit
/// in RAM, so running out of memory cannot evict their code and read it
/// back from a disk over and over (on a squashfs root that thrashing held
/// the OOM killer off for minutes under TCG on a busy host).
fn small_guest_in_ram(name: &'static str, entry: &str, args: &[&str]) -> Boot {
    let m = Cfg::default().rec(Key::Entry, &[entry.as_bytes()]).rec(Key::Rootfs, &[b"initramfs"]).args(args);
    let mut boot = Boot::new(name, m);
    for bin in ["busybox", "probe"] {
        let data = FileData::Path(fixture().rootfs_dir.join("bin").join(bin));
        boot.extra.push((format!("rootfs/bin/{bin}"), Node::File { perm: 0o755, data }));
    }
    boot.guest(|g| {
        g.rootfs = None;
        g.mem_mib = 128;
    })
}

#[test]
fn app_killed_by_the_oom_killer_gets_one_line_pointing_to_smolvm_mem() {
    // The app itself is the victim: the memory line replaces the SIGKILL one.
    let out = small_guest_in_ram("oom-app", "/bin/probe", &["hog", "1024"]).run();
    assert_status(&out, 137);
    assert!(oom_line(&out.stderr_str(), "probe"), "{}", out.describe());
    // A process of the app is the victim; the app fails after it.
    let out = small_guest_in_ram("oom-child", BUSYBOX, &["sh", "-c", "/bin/probe hog 1024; echo status $?; exit 3"]).run();
    assert_status(&out, 3);
    assert_eq!(out.stdout, b"status 137\n", "{}", out.describe());
    // The shell's own word first, then init's line.
    let stderr = out.stderr_str();
    assert!(stderr.strip_prefix("Killed\n").is_some_and(|l| oom_line(l, "probe")), "{}", out.describe());
}

#[test]
fn app_that_fits_in_memory_or_fails_otherwise_gets_no_memory_line() {
    let out = Boot::new("oom-control", shell("/bin/probe hog 16; exit 3")).guest(|g| g.mem_mib = 128).run();
    assert_status(&out, 3);
    assert_eq!(out.stdout, b"hogged 16\n", "{}", out.describe());
    assert_eq!(out.stderr, b"", "{}", out.describe());
}

#[test]
fn orphans_are_reaped_and_leftovers_killed() {
    // Three orphans end while the app runs: init must reap them (no
    // zombies). Three more still run when the app exits, one ignoring
    // SIGTERM: init must end them (SIGTERM, then SIGKILL) instead of waiting
    // 1000 s.
    let script = r#"
        for i in 1 2 3; do (sleep 0.2 &); done
        sleep 2
        z=0
        for f in /proc/[0-9]*/stat; do
            read -r line < "$f" 2>/dev/null || continue
            case "${line##*) }" in Z*) z=$((z+1));; esac
        done
        echo "zombies=$z"
        sleep 1000 &
        (sleep 1000 &)
        (trap '' TERM HUP; exec /bin/busybox sleep 1000) &
        sleep 0.5
        exit 3
    "#;
    // Bounded by the guest's own 100 s timeout (a run that hits it has no
    // exit status): how long the grace period takes is for benchmarks, and
    // a wall clock here would also count the wait for a QEMU slot.
    let out = Boot::new("orphans", shell(script))
        .runtime(Cfg::default().rec(Key::Log, &[b"debug"]))
        .guest(|g| g.timeout = Duration::from_secs(100))
        .run();
    assert_status(&out, 3);
    assert_eq!(out.stdout_str(), "zombies=0\n", "{}", out.describe());
    let log = out.stderr_str();
    assert!(log.contains("] terminating the processes the app left"), "{log}");
    assert!(!log.contains("some processes did not end"), "{log}");
}

#[test]
fn rootfs_is_writable_by_default_in_guest_memory() {
    // Writes land in the overlay's upper layer (guest memory); the image is untouched.
    let script = "cat /etc/greeting
        echo changed > /etc/greeting && cat /etc/greeting
        echo new > /etc/new && cat /etc/new
        rm /etc/new && [ ! -e /etc/new ] && echo removed";
    let out = Boot::new("writable-root", shell(script)).run();
    assert_status(&out, 0);
    assert_eq!(out.stdout_str(), "hi from squashfs\nchanged\nnew\nremoved\n", "{}", out.describe());
}

#[test]
fn read_only_rootfs_refuses_writes_while_tmp_and_tmpfs_are_writable() {
    let script = "cat /etc/greeting
        if echo x > /etc/new 2>/dev/null; then echo root-writable; else echo root-ro; fi
        echo tmp-ok > /tmp/f && cat /tmp/f
        echo mnt-ok > /mnt/f && cat /mnt/f
        echo run-ok > /run/f && cat /run/f";
    let m = shell(script).rec(Key::Tmpfs, &[b"/mnt"]).rec(Key::ReadOnly, &[b"yes"]);
    let out = Boot::new("readonly", m).run();
    assert_status(&out, 0);
    assert_eq!(out.stdout_str(), "hi from squashfs\nroot-ro\ntmp-ok\nmnt-ok\nrun-ok\n", "{}", out.describe());
}

#[test]
fn read_only_share_refuses_writes_and_read_write_share_accepts_them() {
    let dir = qemu::scratch_dir("shares-host");
    let (ro, rw) = (dir.join("ro"), dir.join("rw"));
    std::fs::create_dir_all(&ro).expect("mkdir");
    std::fs::create_dir_all(&rw).expect("mkdir");
    std::fs::write(ro.join("hello"), "from-host\n").expect("write");
    let script = "cat /data/hello
        if echo x > /data/new 2>/dev/null; then echo ro-share-writable; else echo ro-refused; fi
        echo from-guest > /mnt/w/out && echo rw-ok";
    let runtime = Cfg::default()
        .rec(Key::Share, &[b"smolvm0", b"/data", b"ro"])
        .rec(Key::Share, &[b"smolvm1", b"/mnt/w", b"rw"]);
    // /mnt/w does not exist in the read-only root: a tmpfs on /mnt lets init create it.
    let (g_ro, g_rw) = (ro.clone(), rw.clone());
    let out = Boot::new("shares", shell(script).rec(Key::Tmpfs, &[b"/mnt"]))
        .runtime(runtime)
        .guest(move |g| g.shares = vec![(g_ro.clone(), true), (g_rw.clone(), false)])
        .run();
    assert_status(&out, 0);
    assert_eq!(out.stdout_str(), "from-host\nro-refused\nrw-ok\n", "{}", out.describe());
    assert!(!ro.join("new").exists(), "the read-only share was written");
    assert_eq!(std::fs::read_to_string(rw.join("out")).expect("file written through the share"), "from-guest\n");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn share_whose_mount_point_cannot_be_made_fails_with_125() {
    // A path under a regular file: no directory can exist there, writable root or not.
    let dir = qemu::scratch_dir("share-nomp-host");
    let runtime = Cfg::default().rec(Key::Share, &[b"smolvm0", b"/etc/greeting/data", b"ro"]);
    let host = dir.clone();
    let out = Boot::new("share-nomp", shell("echo ran"))
        .runtime(runtime)
        .guest(move |g| g.shares = vec![(host.clone(), true)])
        .run();
    assert_status(&out, 125);
    assert_eq!(out.stdout, b"", "the app must not run");
    assert_eq!(
        out.stderr_str(),
        "smolvm: cannot create the mount point /etc/greeting/data for the shared directory smolvm0: not a directory\n"
    );
}

#[test]
fn share_at_a_path_the_image_lacks_is_created_even_with_a_read_only_root() {
    let dir = qemu::scratch_dir("share-newmp-host");
    std::fs::write(dir.join("hello"), "from-host\n").expect("write");
    let runtime = Cfg::default().rec(Key::Share, &[b"smolvm0", b"/no/such/dir", b"ro"]);
    let host = dir.clone();
    let m = shell("cat /no/such/dir/hello; touch /no/x 2>/dev/null || echo root-ro").rec(Key::ReadOnly, &[b"yes"]);
    let out = Boot::new("share-newmp", m)
        .runtime(runtime)
        .guest(move |g| g.shares = vec![(host.clone(), true)])
        .run();
    assert_status(&out, 0);
    assert_eq!(out.stdout_str(), "from-host\nroot-ro\n", "{}", out.describe());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn stderr_is_separate_from_stdout() {
    let out = Boot::new("stderr", shell("echo out; echo err >&2; echo out2")).run();
    assert_status(&out, 0);
    assert_eq!(out.stdout, b"out\nout2\n");
    assert_eq!(out.stderr, b"err\n");
}

#[test]
fn without_a_stderr_port_stderr_shares_hvc0() {
    let out = Boot::new("no-stderr-port", shell("echo out; echo err >&2")).guest(|g| g.stderr_port = false).run();
    assert_status(&out, 0);
    assert_eq!(out.stdout, b"out\nerr\n");
}

#[test]
fn host_signal_on_the_control_channel_reaches_the_app() {
    // SIGTERM (15) asked for by the host ends a sleeping app: 128 + 15.
    let app = shell("echo ready; exec sleep 60");
    let out = Boot::new("control", app)
        .guest(|g| {
            g.control = Some(vec![0, 200, 15]);
            g.control_after = b"ready\n".to_vec();
        })
        .run();
    assert_eq!(out.stdout, b"ready\n");
    assert_status(&out, 143);
    assert_eq!(out.stderr_str(), "smolvm: the app was killed by signal 15 (SIGTERM)\n");
}

#[test]
fn stdin_port_delivers_bytes_and_end_of_file() {
    // The stub's layout: stdin on port 2 of the multiport control device.
    let input = b"line1\nbin\x00ary\xff\n no newline at the end".to_vec();
    let want = [input.as_slice(), b"<EOF>\n"].concat();
    let out = Boot::new("stdin-port", shell("cat; echo '<EOF>'"))
        .guest(move |g| {
            g.control_device = true;
            g.stdin = Some(input.clone());
        })
        .run();
    assert_status(&out, 0);
    assert_eq!(out.stdout, want, "{}", out.describe());
}

#[test]
fn control_port_of_the_control_device_delivers_signals() {
    let out = Boot::new("control-port", shell("echo ready; exec sleep 60"))
        .guest(|g| {
            g.control_device = true;
            g.stdin = Some(Vec::new());
            g.control = Some(vec![10]);
            g.control_after = b"ready\n".to_vec();
        })
        .run();
    assert_status(&out, 128 + 10);
}

#[test]
fn host_terminal_mode_gives_a_cooked_tty_with_the_host_size() {
    // With a `tty` record the guest tty does the line discipline (LF → CR LF
    // on output) and knows the host window size; stdin is hvc0.
    let out = Boot::new("tty", shell("stty size; [ -t 0 ] && echo stdin-is-tty"))
        .runtime(Cfg::default().rec(Key::Tty, &[b"33 101"]))
        .run();
    assert_status(&out, 0);
    assert_eq!(out.stdout_str(), "33 101\r\nstdin-is-tty\r\n", "{}", out.describe());
}

#[test]
fn signals_sent_to_init_are_forwarded_to_the_app() {
    let script = r#"trap 'echo got-usr1; exit 5' USR1
        kill -USR1 1
        i=0; while [ $i -lt 200 ]; do i=$((i+1)); sleep 0.05; done
        echo not-forwarded"#;
    let out = Boot::new("forward", shell(script)).run();
    assert_status(&out, 5);
    assert_eq!(out.stdout_str(), "got-usr1\n", "{}", out.describe());
}

#[test]
fn initramfs_rootfs_is_writable_and_sealed_by_read_only() {
    let boot = |name: &'static str, read_only: bool| {
        let mut m = Cfg::default()
            .rec(Key::Entry, &[b"/bin/busybox"])
            .rec(Key::Rootfs, &[b"initramfs"])
            .args(&["sh", "-c", "echo hi; touch /x 2>/dev/null && echo rw || echo ro; echo t > /tmp/t && cat /tmp/t"]);
        if read_only {
            m = m.rec(Key::ReadOnly, &[b"yes"]);
        }
        let mut boot = Boot::new(name, m);
        boot.extra.push(("rootfs/bin/busybox".into(), Node::File { perm: 0o755, data: FileData::Path(BUSYBOX.into()) }));
        boot.guest(|g| g.rootfs = None).run()
    };
    let out = boot("initramfs-root", false);
    assert_status(&out, 0);
    assert_eq!(out.stdout_str(), "hi\nrw\nt\n", "{}", out.describe());
    let out = boot("initramfs-root-ro", true);
    assert_status(&out, 0);
    assert_eq!(out.stdout_str(), "hi\nro\nt\n", "{}", out.describe());
}

#[test]
fn debug_log_shows_timestamped_steps() {
    let out = Boot::new("debug", manifest(BUSYBOX, &["true"])).runtime(Cfg::default().rec(Key::Log, &[b"debug"])).run();
    assert_status(&out, 0);
    let err = out.stderr_str();
    for step in ["] init started", "] switched root", "] exec /bin/busybox", "] exit status 0"] {
        assert!(err.lines().any(|l| l.starts_with("smolvm: [") && l.contains(step)), "no {step:?} in\n{err}");
    }
}

#[test]
fn bad_manifest_is_125_with_one_line() {
    let m = manifest("/bin/probe", &[]).rec(Key::Env, &[b"NOEQUALS"]);
    let out = Boot::new("bad-manifest", m).run();
    assert_status(&out, 125);
    assert_eq!(out.stderr_str(), "smolvm: image manifest: env entry is not NAME=value: NOEQUALS\n");
}

#[test]
fn fixture_rootfs_has_the_test_apps() {
    // Guards the other tests' assumptions about the squashfs content.
    let fx = fixture();
    for f in ["bin/busybox", "bin/probe", "bin/noexec", "etc/greeting"] {
        assert!(fx.rootfs_dir.join(f).exists(), "{f}");
    }
}

// Services beside the app (issue 23). Each is `busybox sh -c SCRIPT`.

fn with_service(cfg: Cfg, name: &str, script: &str) -> Cfg {
    let n = name.as_bytes();
    cfg.rec(Key::Service, &[n, BUSYBOX.as_bytes()])
        .rec(Key::ServiceArg, &[n, b"sh"])
        .rec(Key::ServiceArg, &[n, b"-c"])
        .rec(Key::ServiceArg, &[n, script.as_bytes()])
}

#[test]
fn services_get_ready_before_the_app_and_their_output_is_prefixed() {
    // `files` gets ready by a file, `web` by a TCP port (busybox httpd); the
    // app checks both, and its own stdout/stderr stay byte-exact.
    let m = with_service(shell("cat /tmp/up; busybox wget -q -O - http://127.0.0.1:7000/ok.txt; printf 'no newline' >&2; exit 3"), "files", "echo one; echo two >&2; sleep 0.3; echo up > /tmp/up.new; mv /tmp/up.new /tmp/up; printf partial; exec sleep 100");
    let m = with_service(m, "web", "mkdir -p /tmp/www; echo served > /tmp/www/ok.txt; exec busybox httpd -f -p 127.0.0.1:7000 -h /tmp/www")
        .rec(Key::ServiceReady, &[b"files", b"file:/tmp/up", b"60"])
        .rec(Key::ServiceReady, &[b"web", b"tcp:7000", b"60"])
        .rec(Key::ServiceEnv, &[b"web", b"WEB=1"]);
    let out = Boot::new("services-ready", m).run();
    assert_status(&out, 3);
    assert_eq!(out.stdout_str(), "up\nserved\n", "{}", out.describe());
    let err = out.stderr_str();
    assert!(err.starts_with("[files] one\n[files] two\n"), "{}", out.describe());
    assert!(err.contains("no newline"), "{}", out.describe());
    assert!(err.contains("[files] partial\n"), "the last partial line is passed on at the end\n{}", out.describe());
}

#[test]
fn a_crashing_service_is_restarted_with_back_off_then_given_up() {
    // 5 restarts (0.1 + 0.2 + 0.4 + 0.8 + 1.6 s), then given up; the app
    // goes on and its status is the VM's.
    let m = with_service(shell("sleep 12; echo app-done"), "crash", "echo start; exit 3");
    let out = Boot::new("services-crash", m).guest(|g| g.timeout = Duration::from_secs(100)).run();
    assert_status(&out, 0);
    assert_eq!(out.stdout_str(), "app-done\n");
    let err = out.stderr_str();
    assert_eq!(err.matches("[crash] start\n").count(), 6, "{err}");
    for n in 1..=5 {
        let pause = [100, 200, 400, 800, 1600][n - 1];
        let line = format!("[crash] smolvm: service ended with status 3, restart {n} in {pause} ms\n");
        assert!(err.contains(&line), "{line:?} missing:\n{err}");
    }
    assert!(err.contains("[crash] smolvm: service ended with status 3, 5 restarts in a row failed: given up (the app goes on)\n"), "{err}");
}

#[test]
fn a_service_that_never_gets_ready_ends_the_vm_with_125_naming_it() {
    let m = with_service(shell("echo app-ran"), "late", "exec sleep 100").rec(Key::ServiceReady, &[b"late", b"tcp:7001", b"2"]);
    let out = Boot::new("services-never-ready", m).run();
    assert_status(&out, 125);
    assert_eq!(out.stdout, b"", "the app never starts\n{}", out.describe());
    assert_eq!(out.stderr_str(), "smolvm: service late never got ready: no connection on 127.0.0.1:7001 within 2 s\n");
    // One that ends for good before it is ready fails at once.
    let m = with_service(shell("echo app-ran"), "quits", "exit 0").rec(Key::ServiceReady, &[b"quits", b"file:/tmp/never", b"60"]);
    let out = Boot::new("services-quits", m).run();
    assert_status(&out, 125);
    assert!(out.stderr_str().ends_with("smolvm: service quits ended before it was ready\n"), "{}", out.describe());
}

#[test]
fn app_exit_terminates_services_and_a_host_signal_goes_to_the_app_first() {
    // The host's SIGTERM reaches the app (not the service); the app exits
    // 7, then the service gets SIGTERM and says so.
    let app = shell("trap 'echo app got TERM; exit 7' TERM; echo ready; while :; do sleep 0.1; done");
    let m = with_service(app, "svc", "trap 'echo svc got TERM; exit 0' TERM; while :; do sleep 0.1; done")
        .rec(Key::ServiceRestart, &[b"svc", b"always"]);
    let out = Boot::new("services-stop", m)
        .guest(|g| {
            g.control = Some(vec![15]);
            g.control_after = b"ready\n".to_vec();
        })
        .run();
    assert_status(&out, 7);
    assert_eq!(out.stdout_str(), "ready\napp got TERM\n");
    // The service's process group gets SIGTERM: its shell may also report
    // its `sleep` child as "Terminated".
    let err = out.stderr_str();
    assert!(err.ends_with("[svc] svc got TERM\n") && err.lines().all(|l| l.starts_with("[svc] ")), "{}", out.describe());
}

#[test]
fn orphans_of_a_service_are_reaped() {
    // The service leaves 10 orphans that end at once; init reaps them.
    let script = r#"
        sleep 2
        z=0
        for f in /proc/[0-9]*/stat; do
            read -r line < "$f" 2>/dev/null || continue
            case "${line##*) }" in Z*) z=$((z+1));; esac
        done
        echo "zombies=$z orphans-seen=$(cat /tmp/spawned)"
    "#;
    let m = with_service(shell(script), "forker", "for i in 1 2 3 4 5 6 7 8 9 10; do (true &); done; echo 10 > /tmp/spawned; exec sleep 100");
    let out = Boot::new("services-orphans", m).run();
    assert_status(&out, 0);
    assert_eq!(out.stdout_str(), "zombies=0 orphans-seen=10\n", "{}", out.describe());
}

#[test]
fn services_no_at_run_time_runs_the_app_alone() {
    let m = with_service(shell("sleep 1; echo app"), "svc", "echo svc-ran; exec sleep 100").rec(Key::ServiceReady, &[b"svc", b"file:/nonexistent", b"1"]);
    let out = Boot::new("services-off", m).runtime(Cfg::default().rec(Key::Services, &[b"no"])).run();
    assert_status(&out, 0);
    assert_eq!((out.stdout_str(), out.stderr_str()), ("app\n".to_string(), String::new()), "{}", out.describe());
}
