//! The KVM lab: run commands (smolvm images above all) on a Linux that can
//! boot a Linux guest under KVM, and capture each one's exit status, stdout
//! and stderr byte-exact.
//!
//! Two modes, one API ([`run`] / [`run_images`]):
//! - [`Mode::Direct`]: the host's KVM is hardware virtualization (`vmx` or
//!   `svm` in /proc/cpuinfo and a usable /dev/kvm): cases run as host
//!   processes.
//! - [`Mode::Lab`]: otherwise. QEMU (TCG, emulated AMD CPU with SVM) boots a
//!   stock Debian kernel ("L1") that loads `kvm_amd`; the host's `/` is
//!   mounted read-only over virtio-9p inside it, so every host path (the
//!   image, qemu, busybox, …) is the same in L1, and cases run with it as
//!   their root (moved onto `/`, not a chroot: passt's user namespace needs
//!   that). One L1 per test binary is booted lazily and serves every
//!   [`run`] call (L1 boots cost seconds; cases cost a fraction of one).
//!
//! `SMOLVM_LAB=always|never|auto` overrides the choice (default `auto`).
//! `SMOLVM_TEST_CPUS=N` reruns lab tests with N vCPUs (issue #25): L1 gets
//! N CPUs and every case `SMOLVM_CPUS=N` unless it sets its own; a test
//! binary that needs more CPUs in L1 asks with [`require_l1_cpus`].
//! Writable places: a case may write under [`writable_dir`] (any mode) or a
//! host directory it lists in [`Case::shared_dirs`]; the rest of the host is
//! read-only inside L1. Files must not change on the host while a lab
//! serves (L1 caches the read-only tree; it drops its caches before each
//! [`run`] call). See tests/lab/README.md.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// A case's timeout unless it sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// `PATH` a case gets unless it sets its own.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How long L1 may take to boot and report ready (TCG on a busy host).
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// Slack over a case's own timeout before L1 itself is declared hung.
const CASE_SLACK: Duration = Duration::from_secs(60);
/// How long a clean L1 shutdown may take before QEMU is killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);

/// One command to run.
#[derive(Clone, Debug)]
pub struct Case {
    /// Shown in error messages.
    pub name: String,
    /// argv[0] is the program (a path, or a name looked up in `PATH`); it
    /// must not contain `=`.
    pub argv: Vec<OsString>,
    pub stdin: Vec<u8>,
    /// The whole environment of the command (`PATH` is preset); the
    /// command sees it sorted by name in both modes.
    pub env: Vec<(OsString, OsString)>,
    /// Working directory (default `/`).
    pub cwd: PathBuf,
    /// The case is killed (with its whole process group) after this long.
    pub timeout: Duration,
    /// Host directories the case writes to (read-only otherwise in L1).
    /// Prefer [`writable_dir`]: a new shared directory reboots L1.
    pub shared_dirs: Vec<PathBuf>,
    /// Signals to send to the command (not its group), as a user's `kill`
    /// would (e.g. to test signal forwarding), in order: each step waits
    /// for its trigger once the step before it was sent.
    pub signals: Vec<(Trigger, i32)>,
}

/// When a step of [`Case::signals`] sends its signal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// This long after the previous step (or the start).
    After(Duration),
    /// As soon as the command's stdout contains these bytes (checked about
    /// every 0.1 s; no newline or NUL). Use this rather than a delay when
    /// the command must first reach some state: under nested TCG the time
    /// it takes varies several-fold.
    Stdout(Vec<u8>),
}

impl Case {
    pub fn new<I, S>(name: impl Into<String>, argv: I) -> Case
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Case {
            name: name.into(),
            argv: argv.into_iter().map(|a| a.as_ref().to_owned()).collect(),
            stdin: Vec::new(),
            env: vec![("PATH".into(), DEFAULT_PATH.into())],
            cwd: "/".into(),
            timeout: DEFAULT_TIMEOUT,
            shared_dirs: Vec::new(),
            signals: Vec::new(),
        }
    }

    /// A smolvm image (or any executable file) run with `args`.
    pub fn image(image: impl AsRef<Path>, args: &[&str]) -> Case {
        let image = image.as_ref();
        let mut argv = vec![image.as_os_str().to_owned()];
        argv.extend(args.iter().map(OsString::from));
        Case::new(image.display().to_string(), argv)
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Case {
        self.stdin = bytes.into();
        self
    }

    /// Sets (or replaces) one environment variable.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Case {
        let key = key.as_ref();
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Case {
        self.cwd = dir.into();
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Case {
        self.timeout = timeout;
        self
    }

    pub fn share(mut self, dir: impl Into<PathBuf>) -> Case {
        self.shared_dirs.push(dir.into());
        self
    }

    /// Sends `signal` `delay` after the previous signal step (or the start).
    pub fn signal_after(mut self, delay: Duration, signal: i32) -> Case {
        self.signals.push((Trigger::After(delay), signal));
        self
    }

    /// Sends `signal` once stdout contains `marker` (and the previous signal
    /// step was sent).
    pub fn signal_on_stdout(mut self, marker: impl Into<Vec<u8>>, signal: i32) -> Case {
        self.signals.push((Trigger::Stdout(marker.into()), signal));
        self
    }

    /// `SMOLVM_CPUS=n` unless the case sets `SMOLVM_CPUS` itself (see
    /// [`test_cpus`]).
    fn default_cpus(self, n: u32) -> Case {
        if self.env.iter().any(|(k, _)| k == "SMOLVM_CPUS") {
            return self;
        }
        self.env("SMOLVM_CPUS", n.to_string())
    }

    /// Rejects what neither mode could run the same way.
    fn validate(&self) -> io::Result<()> {
        let bad = |what: String| Err(invalid(format!("lab case {:?}: {what}", self.name)));
        let Some(program) = self.argv.first() else {
            return bad("empty argv".into());
        };
        if program.is_empty() || program.as_bytes().contains(&b'=') {
            return bad(format!("argv[0] {program:?} is empty or contains '='"));
        }
        if self.argv.iter().any(|a| a.as_bytes().contains(&0)) {
            return bad("NUL byte in argv".into());
        }
        for (k, v) in &self.env {
            let k = k.as_bytes();
            if k.is_empty() || k.contains(&b'=') || k.contains(&0) || v.as_bytes().contains(&0) {
                return bad(format!("bad environment variable name {k:?}"));
            }
        }
        for (when, sig) in &self.signals {
            if !(1..=64).contains(sig) {
                return bad(format!("signal {sig} is not 1..=64"));
            }
            if let Trigger::Stdout(m) = when {
                if m.is_empty() || m.contains(&b'\n') || m.contains(&0) {
                    return bad(format!("stdout marker {m:?} is empty or has a newline or NUL"));
                }
            }
        }
        if !self.cwd.is_absolute() || !self.cwd.is_dir() {
            return bad(format!("cwd {:?} must be an existing absolute directory", self.cwd));
        }
        for dir in &self.shared_dirs {
            let b = dir.as_os_str().as_bytes();
            if !dir.is_absolute() || !dir.is_dir() || b.iter().any(|c| b"\n\r,\0".contains(c)) {
                return bad(format!(
                    "shared dir {dir:?} must be an existing absolute path without newline or ','"
                ));
            }
        }
        Ok(())
    }
}

/// What a case did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Exit code; `128 + N` when killed by signal N; `None` if it timed out.
    pub status: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: bool,
    /// Wall time of the case (inside L1 in lab mode).
    pub elapsed: Duration,
}

impl Outcome {
    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Where cases run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Inside the L1 guest (QEMU TCG + kvm_amd).
    Lab,
    /// As host processes (the host's KVM can boot Linux).
    Direct,
}

impl Mode {
    /// `SMOLVM_LAB` (`always`, `never`, `auto`/unset) and the host's KVM
    /// decide; computed once per process.
    pub fn current() -> Mode {
        static MODE: OnceLock<Mode> = OnceLock::new();
        *MODE.get_or_init(|| {
            let var = std::env::var("SMOLVM_LAB").ok();
            Mode::choose(var.as_deref(), host_kvm_boots_linux()).unwrap_or_else(|e| panic!("{e}"))
        })
    }

    fn choose(var: Option<&str>, kvm_ok: bool) -> Result<Mode, String> {
        match var.unwrap_or("auto") {
            "always" => Ok(Mode::Lab),
            "never" => Ok(Mode::Direct),
            "auto" | "" if kvm_ok => Ok(Mode::Direct),
            "auto" | "" => Ok(Mode::Lab),
            other => Err(format!("SMOLVM_LAB={other:?}: use always, never or auto")),
        }
    }
}

/// True when /proc/cpuinfo shows hardware virtualization (`vmx`/`svm`) and
/// /dev/kvm opens read-write. A paravirtual /dev/kvm (kvm_pvm) without those
/// flags cannot run a Linux guest to user space.
pub fn host_kvm_boots_linux() -> bool {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let hw = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    hw && fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok()
}

/// Runs `cases` in order (in the shared L1 in lab mode) and returns one
/// outcome each. A case that fails or hangs is only reported. If the lab
/// itself fails (L1 under TCG on a loaded host: a lost control line, a
/// boot timeout), the batch runs once more in a fresh L1, then panics
/// with the reason (and L1's console).
pub fn run(cases: &[Case]) -> Vec<Outcome> {
    try_run(cases)
        .or_else(|e| {
            eprintln!("lab: {e}\nlab: retrying the batch once in a fresh L1");
            try_run(cases)
        })
        .unwrap_or_else(|e| panic!("lab: {e}"))
}

/// [`run`] for smolvm images: build each with [`Case::image`]. Tests collect
/// their images and run them in one call (see tests/lab/README.md).
pub fn run_images(cases: &[Case]) -> Vec<Outcome> {
    run(cases)
}

/// [`run`] returning the lab's failure instead of panicking.
pub fn try_run(cases: &[Case]) -> io::Result<Vec<Outcome>> {
    cases.iter().try_for_each(Case::validate)?;
    let with_cpus: Vec<Case>;
    let cases = match test_cpus()? {
        Some(n) => {
            with_cpus = cases.iter().map(|c| c.clone().default_cpus(n)).collect();
            &with_cpus[..]
        }
        None => cases,
    };
    match Mode::current() {
        Mode::Direct => cases.iter().map(run_direct).collect(),
        Mode::Lab => {
            let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
            let needed = extra_shares(cases, &process_dir()?.join("share"));
            if shared.as_mut().is_some_and(Instance::has_exited) {
                *shared = None; // L1 powered off after idling: boot a new one
            }
            if let Some(inst) = shared.as_ref() {
                if !needed.iter().all(|d| inst.shares.contains(d)) {
                    // A new writable directory needs a new 9p export.
                    let old = shared.take().map(|i| i.shares.clone()).unwrap_or_default();
                    return boot_and_run(&mut shared, union(old, needed), cases);
                }
            }
            match shared.as_mut() {
                Some(inst) => {
                    let result = inst.run(cases);
                    if result.is_err() {
                        *shared = None; // dropping kills it; the next call reboots
                    }
                    result
                }
                None => boot_and_run(&mut shared, needed, cases),
            }
        }
    }
}

/// The L1 this process's [`run`] calls share (lab mode).
static SHARED: Mutex<Option<Instance>> = Mutex::new(None);

/// The most CPUs a test of this process asked L1 for ([`require_l1_cpus`]).
static L1_CPUS: AtomicU32 = AtomicU32::new(1);

/// Makes the L1s this process boots from now on have at least `n` CPUs (a
/// test of N vCPUs needs N host CPUs). Call it before the first [`run`] or
/// [`prewarm`]: an L1 already booted keeps its CPUs. In direct mode the
/// host's own CPUs count; this changes nothing.
pub fn require_l1_cpus(n: u32) {
    L1_CPUS.fetch_max(n, Ordering::Relaxed);
}

/// `SMOLVM_TEST_CPUS`: the vCPUs every case's image gets (`SMOLVM_CPUS`);
/// unset or empty for the images' own default.
pub fn test_cpus() -> io::Result<Option<u32>> {
    match std::env::var("SMOLVM_TEST_CPUS") {
        Err(_) => Ok(None),
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => match v.parse::<u32>() {
            Ok(n @ 1..=64) => Ok(Some(n)),
            _ => Err(invalid(format!("SMOLVM_TEST_CPUS={v:?}: use a number of vCPUs, 1 to 64"))),
        },
    }
}

/// The CPUs L1 boots with: `SMOLVM_LAB_SMP` if set, else the most of
/// [`require_l1_cpus`] and `SMOLVM_TEST_CPUS`.
fn l1_cpus() -> io::Result<String> {
    if let Some(v) = std::env::var("SMOLVM_LAB_SMP").ok().filter(|v| !v.is_empty()) {
        return Ok(v);
    }
    let wanted = L1_CPUS.load(Ordering::Relaxed).max(test_cpus()?.unwrap_or(1));
    Ok(wanted.to_string())
}

/// In lab mode, starts booting the shared L1 in the background, so that it
/// boots while the test builds its images; [`run`] then finds it ready (or
/// waits for it). A failed boot is retried, and reported, by [`run`].
pub fn prewarm() {
    if Mode::current() != Mode::Lab {
        return;
    }
    std::thread::spawn(|| {
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if shared.is_none() {
            *shared = process_dir().and_then(|dir| Instance::boot(dir, Vec::new())).ok();
        }
    });
}

fn boot_and_run(
    slot: &mut Option<Instance>,
    shares: Vec<PathBuf>,
    cases: &[Case],
) -> io::Result<Vec<Outcome>> {
    let mut inst = Instance::boot(process_dir()?, shares)?;
    let result = inst.run(cases);
    if result.is_ok() {
        *slot = Some(inst);
    }
    result
}

/// A directory cases may write to, in both modes (in lab mode it lives in
/// the shared L1's writable 9p export, and the L1 starts booting: see
/// [`prewarm`]). Removed on drop.
pub fn writable_dir() -> io::Result<TempDir> {
    match Mode::current() {
        Mode::Direct => TempDir::new("smolvm-lab-w"),
        Mode::Lab => {
            let parent = process_dir()?.join("share").join("tmp");
            fs::create_dir_all(&parent)?;
            prewarm();
            TempDir::new_in(&parent, "w")
        }
    }
}

/// An explicit, private lab: boots its own L1 (even in direct mode) and
/// shuts it down on drop. Tests normally use [`run`]; this is for the lab's
/// own self-test and measurements.
pub struct Lab {
    inst: Instance,
    _work: TempDir,
}

/// L1 timings (seconds of L1 uptime) for measurements.
#[derive(Clone, Debug, Default)]
pub struct L1Times {
    /// /init started (kernel boot done).
    pub init: f64,
    /// Modules loaded, 9p mounted: cases can run.
    pub ready: f64,
}

impl Lab {
    /// Boots L1 exporting `shares` writable in addition to its own dir.
    pub fn boot(shares: &[PathBuf]) -> io::Result<Lab> {
        let work = TempDir::new("smolvm-lab-b")?;
        let inst = Instance::boot(work.path().to_owned(), shares.to_vec())?;
        Ok(Lab { inst, _work: work })
    }

    pub fn run_batch(&mut self, cases: &[Case]) -> io::Result<Vec<Outcome>> {
        cases.iter().try_for_each(Case::validate)?;
        let needed = extra_shares(cases, &self.inst.work.join("share"));
        if let Some(d) = needed.iter().find(|d| !self.inst.shares.contains(d)) {
            return Err(invalid(format!("{d:?} was not shared when this Lab booted")));
        }
        self.inst.run(cases)
    }

    /// QEMU's pid (also its process group).
    pub fn qemu_pid(&self) -> i32 {
        self.inst.qemu.as_raw_nonzero().get()
    }

    /// Host wall time from spawning QEMU to L1 reporting ready.
    pub fn boot_wall(&self) -> Duration {
        self.inst.boot_wall
    }

    pub fn l1_times(&self) -> io::Result<L1Times> {
        let text = fs::read_to_string(self.inst.work.join("share/l1-times"))?;
        let field = |name: &str| {
            text.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
                .unwrap_or(0.0)
        };
        Ok(L1Times { init: field("init"), ready: field("ready") })
    }
}

/// One running L1 serving cases over its second serial port.
struct Instance {
    work: PathBuf,
    shares: Vec<PathBuf>,
    qemu: Pid,
    exited: mpsc::Receiver<io::Result<ExitStatus>>,
    ctl: BufReader<UnixStream>,
    next_case: u64,
    boot_wall: Duration,
    exited_seen: bool,
}

impl Instance {
    /// Boots L1, once more if the first boot fails: a TCG boot on a busy
    /// host can fail for timing reasons that a second try does not repeat.
    fn boot(work: PathBuf, shares: Vec<PathBuf>) -> io::Result<Instance> {
        Instance::boot_once(work.clone(), shares.clone()).or_else(|e| {
            eprintln!("lab: L1 boot failed, retrying once: {e}");
            Instance::boot_once(work, shares)
        })
    }

    fn boot_once(work: PathBuf, shares: Vec<PathBuf>) -> io::Result<Instance> {
        let share = work.join("share");
        let cases = share.join("cases");
        fs::create_dir_all(&cases)?;
        let sock = work.join("ctl.sock");
        let _ = fs::remove_file(&sock);
        let mut config = share.as_os_str().as_bytes().to_vec();
        config.push(b'\n');
        for (i, dir) in shares.iter().enumerate() {
            config.extend_from_slice(format!("w{i} ").as_bytes());
            config.extend_from_slice(dir.as_os_str().as_bytes());
            config.push(b'\n');
        }
        fs::write(share.join("config"), config)?;
        fs::write(share.join("serve"), b"")?;
        let console = fs::File::create(work.join("console.log"))?;

        let mut cmd = Command::new(lab_script("boot"));
        cmd.arg(&work)
            .env("SMOLVM_LAB_CONTROL", &sock)
            .env("SMOLVM_LAB_SMP", l1_cpus()?)
            .stdin(Stdio::null())
            .stdout(console.try_clone()?)
            .stderr(console)
            .process_group(0);
        // SAFETY: the closure runs between fork and exec and only makes the prctl syscall (async-signal-safe, no allocation, no locks).
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
                    .map_err(io::Error::from)
            });
        }
        // QEMU gets SIGKILL when the thread that spawned it ends, so spawn it
        // from a thread that lives exactly as long as QEMU: if this process
        // dies, QEMU dies with it.
        let start = Instant::now();
        let (pid_tx, pid_rx) = mpsc::channel();
        let (exit_tx, exited) = mpsc::channel();
        std::thread::spawn(move || match cmd.spawn() {
            Ok(mut child) => {
                let _ = pid_tx.send(Ok(child.id()));
                let _ = exit_tx.send(child.wait());
            }
            Err(e) => {
                let _ = pid_tx.send(Err(e));
            }
        });
        let raw = pid_rx.recv().map_err(|_| other("lab: spawner thread died"))??;
        let qemu = i32::try_from(raw).ok().and_then(Pid::from_raw).ok_or_else(|| other("bad pid"))?;
        let mut inst = Instance {
            work,
            shares,
            qemu,
            exited,
            // Placeholder until connected (replaced below).
            ctl: BufReader::new(UnixStream::pair()?.0),
            next_case: 0,
            boot_wall: Duration::ZERO,
            exited_seen: false,
        };
        inst.ctl = BufReader::new(inst.connect(&sock, start)?);
        let left = BOOT_TIMEOUT.saturating_sub(start.elapsed()).max(Duration::from_secs(1));
        inst.ctl.get_ref().set_read_timeout(Some(left))?;
        loop {
            match inst.read_line()?.as_str() {
                "ready" => break,
                _ => continue, // noise before init took over the port
            }
        }
        inst.boot_wall = start.elapsed();
        Ok(inst)
    }

    fn connect(&mut self, sock: &Path, start: Instant) -> io::Result<UnixStream> {
        loop {
            match UnixStream::connect(sock) {
                Ok(s) => return Ok(s),
                Err(_) if start.elapsed() < BOOT_TIMEOUT => {
                    if self.has_exited() {
                        return Err(self.fail("QEMU exited while booting"));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(self.fail(&format!("no control socket: {e}"))),
            }
        }
    }

    fn has_exited(&mut self) -> bool {
        self.exited_seen |= self.exited.try_recv().is_ok();
        self.exited_seen
    }

    fn run(&mut self, cases: &[Case]) -> io::Result<Vec<Outcome>> {
        let cases_dir = self.work.join("share/cases");
        let mut names = Vec::new();
        for case in cases {
            let name = format!("{:06}", self.next_case);
            self.next_case += 1;
            write_case(&cases_dir.join(&name), case)?;
            names.push(name);
        }
        // Host files may have changed since the last call: drop L1's caches.
        self.command("fresh", "fresh", Duration::from_secs(60))?;
        let mut outcomes = Vec::new();
        for (case, name) in cases.iter().zip(&names) {
            let limit = case.timeout + CASE_SLACK;
            self.command(&format!("run {name}"), &format!("done {name}"), limit)?;
            let dir = cases_dir.join(name);
            outcomes.push(read_outcome(&dir).map_err(|e| {
                self.fail(&format!("case {:?}: no result ({e})", case.name))
            })?);
            let _ = fs::remove_dir_all(dir);
        }
        Ok(outcomes)
    }

    /// Sends one control line and waits for its reply.
    fn command(&mut self, line: &str, reply: &str, limit: Duration) -> io::Result<()> {
        let stream = self.ctl.get_mut();
        stream.set_read_timeout(Some(limit))?;
        stream.write_all(format!("{line}\n").as_bytes())?;
        let got = self.read_line()?;
        if got != reply {
            return Err(self.fail(&format!("sent {line:?}, L1 answered {got:?}")));
        }
        Ok(())
    }

    fn read_line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        match self.ctl.read_line(&mut line) {
            Ok(0) => Err(self.fail("L1 closed its control port (QEMU exited?)")),
            Ok(_) => Ok(line.trim_end().to_owned()),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                Err(self.fail("L1 did not answer in time"))
            }
            Err(e) => Err(self.fail(&format!("L1 control port: {e} (QEMU exited?)"))),
        }
    }

    /// An error that carries the end of L1's console, for diagnosis.
    fn fail(&self, what: &str) -> io::Error {
        let log = fs::read(self.work.join("console.log")).unwrap_or_default();
        let tail: Vec<&[u8]> = log.split(|&b| b == b'\n').rev().take(25).collect();
        let tail: Vec<String> = tail.iter().rev().map(|l| String::from_utf8_lossy(l).into()).collect();
        other(format!("{what}\n--- L1 console (last lines) ---\n{}", tail.join("\n")))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if self.has_exited() {
            return;
        }
        let _ = self.ctl.get_mut().write_all(b"quit\n");
        if self.exited.recv_timeout(SHUTDOWN_TIMEOUT).is_err() {
            let _ = rustix::process::kill_process_group(self.qemu, Signal::KILL);
            let _ = self.exited.recv_timeout(SHUTDOWN_TIMEOUT);
        }
    }
}

/// Writes a case directory in the format tests/lab/init reads: `cmd` is an
/// ash fragment with every byte single-quoted.
fn write_case(dir: &Path, case: &Case) -> io::Result<()> {
    // A previous L1 of this process may have left results under this name.
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir)?;
    let mut cmd = b"cwd=".to_vec();
    cmd.extend(sh_quote(case.cwd.as_os_str().as_bytes()));
    cmd.extend_from_slice(b"\nset --");
    // Sorted by name, as std::process::Command passes them in direct mode.
    let mut env: Vec<_> = case.env.iter().collect();
    env.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, v) in env {
        let mut kv = k.as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        cmd.push(b' ');
        cmd.extend(sh_quote(&kv));
    }
    for arg in &case.argv {
        cmd.push(b' ');
        cmd.extend(sh_quote(arg.as_bytes()));
    }
    cmd.push(b'\n');
    fs::write(dir.join("cmd"), cmd)?;
    fs::write(dir.join("stdin"), &case.stdin)?;
    if !case.signals.is_empty() {
        // One step a line; a marker in its own file (grep -F -f).
        let mut steps = String::new();
        for (i, (when, sig)) in case.signals.iter().enumerate() {
            match when {
                Trigger::After(d) => steps.push_str(&format!("after {sig} {:.3}\n", d.as_secs_f64())),
                Trigger::Stdout(m) => {
                    fs::write(dir.join(format!("marker.{i}")), m)?;
                    steps.push_str(&format!("stdout {sig}\n"));
                }
            }
        }
        fs::write(dir.join("signals"), steps)?;
    }
    fs::write(dir.join("timeout"), format!("{:.3}\n", case.timeout.as_secs_f64()))
}

fn read_outcome(dir: &Path) -> io::Result<Outcome> {
    let status: i32 = fs::read_to_string(dir.join("status"))?
        .trim()
        .parse()
        .map_err(|e| invalid(format!("status: {e}")))?;
    let timed_out = dir.join("timed_out").exists();
    let time = fs::read_to_string(dir.join("time")).unwrap_or_default();
    let t: Vec<f64> = time.split_whitespace().filter_map(|s| s.parse().ok()).collect();
    let elapsed = match t[..] {
        [start, end] if end >= start => Duration::from_secs_f64(end - start),
        _ => Duration::ZERO,
    };
    Ok(Outcome {
        status: (!timed_out).then_some(status),
        stdout: fs::read(dir.join("stdout"))?,
        stderr: fs::read(dir.join("stderr"))?,
        timed_out,
        elapsed,
    })
}

/// `'…'` with each `'` written as `'\''`: any byte but NUL survives ash.
fn sh_quote(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![b'\''];
    for &b in bytes {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

/// Runs a case as a host process in its own process group, with the same
/// conventions as in L1 (clean environment, 128+N for signal N, the group
/// killed on timeout and after exit).
fn run_direct(case: &Case) -> io::Result<Outcome> {
    let dir = TempDir::new("smolvm-lab-d")?;
    let stdin_path = dir.path().join("stdin");
    fs::write(&stdin_path, &case.stdin)?;
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let start = Instant::now();
    let spawned = Command::new(&case.argv[0])
        .args(&case.argv[1..])
        .env_clear()
        .envs(case.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&case.cwd)
        .stdin(fs::File::open(&stdin_path)?)
        .stdout(fs::File::create(&out_path)?)
        .stderr(fs::File::create(&err_path)?)
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            // What `env` (the lab's launcher) reports for the same failure.
            let status = match e.kind() {
                io::ErrorKind::NotFound => 127,
                io::ErrorKind::PermissionDenied => 126,
                _ => 125,
            };
            let msg = format!("env: {:?}: {e}\n", case.argv[0]);
            return Ok(Outcome {
                status: Some(status),
                stdout: Vec::new(),
                stderr: msg.into_bytes(),
                timed_out: false,
                elapsed: start.elapsed(),
            });
        }
    };
    let group = Pid::from_child(&child);
    let mut timed_out = false;
    let mut steps = case.signals.iter();
    let mut step = steps.next();
    let mut step_start = start;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let due = match step {
            Some((Trigger::After(delay), _)) => step_start.elapsed() >= *delay,
            Some((Trigger::Stdout(marker), _)) => {
                fs::read(&out_path)?.windows(marker.len()).any(|w| w == &marker[..])
            }
            None => false,
        };
        if let Some((_, sig)) = step.filter(|_| due) {
            // kill(1): rustix builds a Signal from a number only unsafely.
            // The child is not reaped yet, so its pid is still its own.
            let _ = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(child.id().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            step = steps.next();
            step_start = Instant::now();
        }
        if start.elapsed() >= case.timeout {
            timed_out = true;
            let _ = rustix::process::kill_process_group(group, Signal::KILL);
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    // Leftover background processes of the case must not outlive it.
    let _ = rustix::process::kill_process_group(group, Signal::KILL);
    let code = status.code().or_else(|| status.signal().map(|s| 128 + s));
    Ok(Outcome {
        status: if timed_out { None } else { code },
        stdout: fs::read(&out_path)?,
        stderr: fs::read(&err_path)?,
        timed_out,
        elapsed,
    })
}

/// Writable directories the cases need beyond `own` (the lab's export).
fn extra_shares(cases: &[Case], own: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for dir in cases.iter().flat_map(|c| &c.shared_dirs) {
        if !dir.starts_with(own) && !dirs.contains(dir) {
            dirs.push(dir.clone());
        }
    }
    dirs
}

fn union(mut a: Vec<PathBuf>, b: Vec<PathBuf>) -> Vec<PathBuf> {
    for d in b {
        if !a.contains(&d) {
            a.push(d);
        }
    }
    // Parents are mounted before their children.
    a.sort_by_key(|d| d.components().count());
    a
}

/// This process's lab directory (the shared L1's export lives in it);
/// directories left by dead processes are removed on first use.
fn process_dir() -> io::Result<PathBuf> {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    if let Some(dir) = DIR.get() {
        return Ok(dir.clone());
    }
    let tmp = std::env::temp_dir();
    remove_stale(&tmp);
    let dir = tmp.join(format!("smolvm-lab-{}", std::process::id()));
    fs::create_dir_all(dir.join("share"))?;
    Ok(DIR.get_or_init(|| dir).clone())
}

/// Removes `smolvm-lab-[<kind>-]<pid>[-…]` directories (this module's, the
/// CLI's) whose process is gone: a killed test leaves them behind.
fn remove_stale(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("smolvm-lab-")) else {
            continue;
        };
        let pid = rest.split(['-', '.']).find(|p| p.parse::<u32>().is_ok()).unwrap_or("");
        if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn lab_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("lab").join(name)
}

/// A uniquely named directory, removed (with its contents) on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// `<tmp>/<prefix>-<pid>-<n>`: the pid lets stale ones be found.
    pub fn new(prefix: &str) -> io::Result<TempDir> {
        Self::new_in(&std::env::temp_dir(), prefix)
    }

    pub fn new_in(parent: &Path, prefix: &str) -> io::Result<TempDir> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = parent.join(format!("{prefix}-{}-{n}", std::process::id()));
            match fs::create_dir(&dir) {
                Ok(()) => return Ok(TempDir(dir)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn other(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_follows_the_override_then_the_host() {
        assert_eq!(Mode::choose(Some("always"), true), Ok(Mode::Lab));
        assert_eq!(Mode::choose(Some("never"), false), Ok(Mode::Direct));
        assert_eq!(Mode::choose(None, true), Ok(Mode::Direct));
        assert_eq!(Mode::choose(Some("auto"), false), Ok(Mode::Lab));
        assert!(Mode::choose(Some("yes"), true).is_err());
    }

    #[test]
    fn test_cpus_default_keeps_a_cases_own_choice() {
        let case = Case::new("x", ["true"]).default_cpus(2);
        assert!(case.env.contains(&("SMOLVM_CPUS".into(), "2".into())));
        let own = Case::new("x", ["true"]).env("SMOLVM_CPUS", "3").default_cpus(2);
        assert_eq!(own.env.iter().filter(|(k, _)| k == "SMOLVM_CPUS").count(), 1);
        assert!(own.env.contains(&("SMOLVM_CPUS".into(), "3".into())));
    }

    #[test]
    fn quoting_keeps_every_byte() {
        assert_eq!(sh_quote(b"a'b"), b"'a'\\''b'".to_vec());
        assert_eq!(sh_quote(b""), b"''".to_vec());
    }

    #[test]
    fn cases_that_cannot_run_the_same_way_are_rejected() {
        assert!(Case::new("x", ["a=b"]).validate().is_err());
        assert!(Case::new("x", Vec::<&str>::new()).validate().is_err());
        assert!(Case::new("x", ["true"]).cwd("rel").validate().is_err());
        assert!(Case::new("x", ["true"]).cwd("/no/such/dir").validate().is_err());
        assert!(Case::new("x", ["true"]).env("A=B", "c").validate().is_err());
        assert!(Case::new("x", ["true"]).share("/no/such/dir").validate().is_err());
        assert!(Case::new("x", ["true"]).validate().is_ok());
    }

    #[test]
    fn direct_mode_captures_status_streams_and_timeouts() {
        let out = run_direct(
            &Case::new("x", ["sh", "-c", "cat; echo err >&2; exit 7"]).stdin(&b"in\0put"[..]),
        )
        .expect("run");
        assert_eq!((out.status, &out.stdout[..], &out.stderr[..]), (Some(7), &b"in\0put"[..], &b"err\n"[..]));
        let hung = run_direct(&Case::new("x", ["sleep", "30"]).timeout(Duration::from_millis(200)))
            .expect("run");
        assert!(hung.timed_out && hung.status.is_none());
        let term = Case::new("x", ["sh", "-c", "trap 'echo T; exit 3' TERM; sleep 9 & wait"]);
        let term = run_direct(&term.signal_after(Duration::from_millis(300), 15)).expect("run");
        assert_eq!((term.status, &term.stdout[..]), (Some(3), &b"T\n"[..]));
        let missing = run_direct(&Case::new("x", ["/no/such/program"])).expect("run");
        assert_eq!(missing.status, Some(127));
    }

    #[test]
    fn signal_steps_follow_stdout_markers_in_order() {
        // INT is trapped and printed; the second step waits for that line.
        let script = "trap 'echo got INT' INT; trap 'echo got TERM; exit 5' TERM; echo ready; \
                      while :; do sleep 0.05; done";
        let case = Case::new("x", ["sh", "-c", script])
            .signal_on_stdout("ready", 2)
            .signal_on_stdout("got INT", 15)
            .timeout(Duration::from_secs(20));
        let out = run_direct(&case).expect("run");
        assert_eq!((out.status, out.stdout_lossy()), (Some(5), "ready\ngot INT\ngot TERM\n".into()));
        assert!(Case::new("x", ["true"]).signal_on_stdout("a\nb", 2).validate().is_err());
        assert!(Case::new("x", ["true"]).signal_on_stdout("", 2).validate().is_err());
        assert!(Case::new("x", ["true"]).signal_after(Duration::ZERO, 65).validate().is_err());
    }
}
