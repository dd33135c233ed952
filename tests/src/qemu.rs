//! Boot a Linux guest under QEMU software emulation (`-M microvm,acpi=off
//! -accel tcg`) with QEMU's own virtio-mmio devices laid out like the stub's
//! (linker::abi slots): console ports hvc0 (stdin+stdout), hvc1 (stderr),
//! hvc2 (control), `/dev/vda` (a rootfs image) and 9p shares tagged
//! `smolvm<N>`. Used to test the guest side (kernel + smol-init) on hosts
//! whose KVM cannot run a Linux guest.
//!
//! The exit status is read from an `isa-debugcon` device on the exit port:
//! it records every byte written there, so the status arrives exact (QEMU's
//! `isa-debug-exit` would make QEMU exit with `(status << 1) | 1`, which an
//! 8-bit process status cannot hold for statuses >= 128). Init then falls
//! back to a reboot, which `-no-reboot` turns into QEMU exiting.
//!
//! Every run has a timeout; QEMU is killed on every path (timeouts and
//! panics included).

use linker::abi;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A healthy TCG boot takes 1-3 s; a busy 2-core machine can take far longer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// One guest to boot.
#[derive(Clone, Debug)]
pub struct Guest {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Raw image attached read-only as `/dev/vda`.
    pub rootfs: Option<PathBuf>,
    /// Shared directories, tag `smolvm<index>`: (host dir, read-only).
    pub shares: Vec<(PathBuf, bool)>,
    /// Bytes the guest reads from hvc0 (stdin).
    pub stdin: Option<Vec<u8>>,
    /// Bytes the guest reads from hvc2 (the control channel); `None` leaves
    /// hvc2 out. Sent once stdout contains `control_after` (bytes sent
    /// before init opens the channel are lost, as on a real console).
    pub control: Option<Vec<u8>>,
    pub control_after: Vec<u8>,
    /// Give stderr its own port (hvc1); without it only hvc0 exists.
    pub stderr_port: bool,
    /// The stub's layout for stdin and control: a multiport control device
    /// (virtio2) whose port 1 is the control channel (`/dev/vport2p1`) and
    /// port 2 the app's stdin (`/dev/vport2p2`, end-of-file where `stdin`
    /// ends). Without it, `stdin` goes to hvc0 and `control` to hvc2.
    pub control_device: bool,
    /// Appended to the kernel command line.
    pub cmdline: String,
    pub mem_mib: u32,
    pub timeout: Duration,
    /// More QEMU arguments, after the devices above (e.g. a virtio-net
    /// device with user networking).
    pub extra_args: Vec<String>,
}

/// What a boot produced.
#[derive(Debug)]
pub struct Outcome {
    /// The last byte written to the exit port, if any.
    pub status: Option<u8>,
    /// hvc0 output (or everything, when there are no virtio consoles).
    pub stdout: Vec<u8>,
    /// hvc1 output.
    pub stderr: Vec<u8>,
    /// The kernel's serial console (ttyS0).
    pub serial: String,
    /// Whether QEMU exited by itself before the timeout.
    pub finished: bool,
}

impl Outcome {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    /// A dump for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "status {:?} (finished: {})\n--- stdout\n{}\n--- stderr\n{}\n--- serial (tail)\n{}",
            self.status,
            self.finished,
            self.stdout_str(),
            self.stderr_str(),
            tail(&self.serial, 40)
        )
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Command-line options that spare a TCG guest ~0.2-0.5 s per boot
/// (kernel-config/BOOT-PROFILE.md, "Command line"): TCG's TSC follows the
/// host's, which microvm gives the kernel no other way to calibrate
/// (`tsc_early_khz`, no clocksource watchdog), and its APIC has no
/// TSC-deadline mode, so the LAPIC timer calibration would busy-wait
/// (`noapictimer`: the PIT stays the tick). TCG only: under KVM the stub's
/// guests get kvmclock and a TSC-deadline timer and need none of this.
fn tcg_clock_args() -> &'static str {
    static ARGS: OnceLock<String> = OnceLock::new();
    ARGS.get_or_init(|| {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let mhz = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("cpu MHz")?.split(':').nth(1)?.trim().parse::<f64>().ok())
            .unwrap_or(2000.0);
        format!("tsc_early_khz={} tsc=reliable noapictimer", (mhz * 1000.0) as u64)
    })
}

impl Guest {
    pub fn new(kernel: impl Into<PathBuf>, initrd: impl Into<PathBuf>) -> Guest {
        Guest {
            kernel: kernel.into(),
            initrd: initrd.into(),
            rootfs: None,
            shares: Vec::new(),
            stdin: None,
            control: None,
            control_after: Vec::new(),
            stderr_port: true,
            control_device: false,
            cmdline: String::new(),
            mem_mib: 256,
            timeout: DEFAULT_TIMEOUT,
            extra_args: Vec::new(),
        }
    }

    /// QEMU's arguments, writing its chardev files under `dir`.
    fn args(&self, dir: &Path) -> Vec<String> {
        let p = |name: &str| dir.join(name).display().to_string();
        let mut a: Vec<String> = [
            "-M", "microvm,acpi=off", "-accel", "tcg", "-cpu", "max", "-nodefaults", "-no-user-config",
            "-nographic", "-no-reboot",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut push = |items: &[String]| a.extend_from_slice(items);
        push(&["-m".into(), format!("{}M", self.mem_mib)]);
        push(&["-kernel".into(), self.kernel.display().to_string()]);
        push(&["-initrd".into(), self.initrd.display().to_string()]);
        let cmdline = format!("console=ttyS0 reboot=t panic=-1 {} {}", tcg_clock_args(), self.cmdline);
        push(&["-append".into(), cmdline.trim().to_string()]);
        push(&["-serial".into(), format!("file:{}", p("serial"))]);
        push(&[
            "-chardev".into(),
            format!("file,id=exit,path={}", p("exit")),
            "-device".into(),
            format!("isa-debugcon,iobase={:#x},chardev=exit", abi::EXIT_PORT),
        ]);
        // One single-port console device per stream, in the ABI's slot order,
        // like the stub: without MULTIPORT (max_ports=1) Linux adds the port
        // while probing, so hvc numbers follow device order and the ports
        // exist before init runs.
        // A port with input is a unix socket QEMU waits on before it starts
        // the guest (`run` connects, writes the input, reads the output);
        // QEMU 7.2's file backend has no input.
        let backend = |name: &str, input: &Option<Vec<u8>>| match input {
            Some(_) => format!("socket,path={},server=on,wait=on", p(&format!("{name}.sock"))),
            None => format!("file,path={}", p(name)),
        };
        let mut console = |id: &str, backend: String| {
            push(&[
                "-device".into(),
                format!("virtio-serial-device,max_ports=1,id=serial-{id}"),
                "-chardev".into(),
                format!("{backend},id={id}"),
                "-device".into(),
                format!("virtconsole,chardev={id},bus=serial-{id}.0"),
            ])
        };
        let hvc0_input = if self.control_device { &None } else { &self.stdin };
        console("hvc0", backend("stdout", hvc0_input));
        if self.stderr_port {
            console("hvc1", backend("stderr", &None));
        }
        if self.control_device {
            assert!(self.stderr_port, "the control device is virtio2: it needs hvc0 and hvc1 before it");
            push(&["-device".into(), "virtio-serial-device,id=serial-ctl".into()]);
            for (nr, name, file, input) in [(1, "smolvm.control", "control", &self.control), (2, "smolvm.stdin", "stdin", &self.stdin)] {
                push(&[
                    "-chardev".into(),
                    format!("{},id={file}", backend(file, input)),
                    "-device".into(),
                    format!("virtserialport,bus=serial-ctl.0,nr={nr},name={name},chardev={file}"),
                ]);
            }
        } else if self.control.is_some() {
            assert!(self.stderr_port, "the control channel is hvc2: it needs the stderr port (hvc1) before it");
            console("hvc2", backend("control", &self.control));
        }
        if let Some(rootfs) = &self.rootfs {
            push(&[
                "-drive".into(),
                format!("file={},format=raw,if=none,id=vda,readonly=on", rootfs.display()),
                "-device".into(),
                "virtio-blk-device,drive=vda".into(),
            ]);
        }
        for (i, (dir, read_only)) in self.shares.iter().enumerate() {
            push(&[
                "-fsdev".into(),
                format!(
                    "local,id=fs{i},path={},security_model=none{}",
                    dir.display(),
                    if *read_only { ",readonly=on" } else { "" }
                ),
                "-device".into(),
                format!("virtio-9p-device,fsdev=fs{i},mount_tag={}{i}", abi::SHARE_TAG_PREFIX),
            ]);
        }
        // `SMOLVM_TEST_CPUS=N` (tests/lab/README.md) boots every guest with N CPUs,
        // unless the test chose its own.
        if let Some(n) = crate::lab::test_cpus().unwrap_or_else(|e| panic!("{e}")) {
            if !self.extra_args.iter().any(|a| a == "-smp") {
                a.extend(["-smp".to_string(), n.to_string()]);
            }
        }
        a.extend(self.extra_args.iter().cloned());
        a
    }

    /// Boots the guest, waits for QEMU to exit (or the timeout) and collects
    /// what it wrote. `dir` receives QEMU's files (it must exist).
    pub fn run(&self, dir: &Path) -> Outcome {
        let _slot = QemuSlot::acquire();
        for name in ["serial", "exit", "stdout", "stderr", "stdout.sock", "control.sock", "stdin.sock"] {
            let _ = std::fs::remove_file(dir.join(name));
        }
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(self.args(dir)).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let child = cmd.spawn().expect("run qemu-system-x86_64 (apt-get install qemu-system-x86)");
        let mut qemu = KillOnDrop(child);
        let deadline = Instant::now() + self.timeout;
        // In QEMU's chardev order: it waits for each socket in turn.
        let mut sockets = Vec::new();
        let control = |sockets: &mut Vec<_>, qemu: &mut Child| {
            if let Some(input) = &self.control {
                let port = SocketPort::open(&dir.join("control.sock"), qemu, deadline);
                port.send(input.clone(), Some((dir.join("stdout"), self.control_after.clone())), deadline, false);
                sockets.push(("control", port));
            }
        };
        if self.control_device {
            control(&mut sockets, &mut qemu.0);
            if let Some(input) = &self.stdin {
                let port = SocketPort::open(&dir.join("stdin.sock"), &mut qemu.0, deadline);
                // Closing our side is the host's end of stdin.
                port.send(input.clone(), None, deadline, true);
                sockets.push(("stdin", port));
            }
        } else {
            if let Some(input) = &self.stdin {
                let port = SocketPort::open(&dir.join("stdout.sock"), &mut qemu.0, deadline);
                port.send(input.clone(), None, deadline, false);
                sockets.push(("stdout", port));
            }
            control(&mut sockets, &mut qemu.0);
        }
        let finished = loop {
            match qemu.0.try_wait().expect("wait for QEMU") {
                Some(status) => {
                    if !status.success() {
                        let mut err = String::new();
                        if let Some(mut e) = qemu.0.stderr.take() {
                            let _ = e.read_to_string(&mut err);
                        }
                        panic!("QEMU failed ({status}): {err}");
                    }
                    break true;
                }
                None if Instant::now() > deadline => break false,
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        drop(qemu);
        let read = |name: &str| std::fs::read(dir.join(name)).unwrap_or_default();
        let mut stdout = read("stdout");
        for (name, port) in sockets {
            let output = port.finish();
            if name == "stdout" {
                stdout = output;
            }
        }
        Outcome {
            status: read("exit").last().copied(),
            stdout,
            stderr: read("stderr"),
            serial: String::from_utf8_lossy(&read("serial")).into_owned(),
            finished,
        }
    }
}

/// A console port on a unix socket: input written once connected, output
/// collected by a thread until QEMU closes the connection.
struct SocketPort {
    /// Kept open so QEMU never sees the input end (a console has no EOF).
    _stream: UnixStream,
    reader: std::thread::JoinHandle<Vec<u8>>,
}

impl SocketPort {
    fn open(path: &Path, qemu: &mut Child, deadline: Instant) -> SocketPort {
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) => {
                    let exited = qemu.try_wait().ok().flatten();
                    assert!(exited.is_none() && Instant::now() < deadline, "QEMU never listened on {}: {e} ({exited:?})", path.display());
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        };
        let mut out = stream.try_clone().expect("clone socket");
        let reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = out.read_to_end(&mut buf);
            buf
        });
        SocketPort { _stream: stream, reader }
    }

    /// Writes `input` from a thread, once the file `after.0` contains
    /// `after.1` (if given; never after `deadline`).
    fn send(&self, input: Vec<u8>, after: Option<(PathBuf, Vec<u8>)>, deadline: Instant, then_close: bool) {
        let mut stream = self._stream.try_clone().expect("clone socket");
        std::thread::spawn(move || {
            if let Some((file, marker)) = after {
                loop {
                    let seen = std::fs::read(&file).unwrap_or_default();
                    if seen.windows(marker.len().max(1)).any(|w| w == marker.as_slice()) || marker.is_empty() {
                        break;
                    }
                    if Instant::now() > deadline {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let _ = stream.write_all(&input);
            if then_close {
                let _ = stream.shutdown(std::net::Shutdown::Write);
            }
        });
    }

    /// The output, once QEMU is gone.
    fn finish(self) -> Vec<u8> {
        self.reader.join().unwrap_or_default()
    }
}

/// Kills and reaps QEMU however the run ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// At most `SMOLVM_TEST_QEMUS` (default: the number of CPUs) QEMUs at once
/// in this process: TCG is CPU-bound, and an overloaded host only makes
/// every boot slower and timeouts likelier.
struct QemuSlot;

fn slots() -> &'static (Mutex<usize>, Condvar) {
    static SLOTS: OnceLock<(Mutex<usize>, Condvar)> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let n = std::env::var("SMOLVM_TEST_QEMUS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
        (Mutex::new(n.max(1)), Condvar::new())
    })
}

impl QemuSlot {
    fn acquire() -> QemuSlot {
        let (free, cv) = slots();
        let mut n = free.lock().unwrap_or_else(|e| e.into_inner());
        while *n == 0 {
            n = cv.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        *n -= 1;
        QemuSlot
    }
}

impl Drop for QemuSlot {
    fn drop(&mut self) {
        let (free, cv) = slots();
        *free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        cv.notify_one();
    }
}

/// The guest kernel (an uncompressed `vmlinux`) for tests:
/// `SMOLVM_TEST_KERNEL`, else `smolvm kernel path` (the cached build, built
/// on first use) with the `smolvm` next to the test binary or in
/// `SMOLVM_BIN`. Panics with what to do when there is none.
pub fn kernel() -> PathBuf {
    static KERNEL: OnceLock<PathBuf> = OnceLock::new();
    KERNEL
        .get_or_init(|| {
            if let Some(k) = std::env::var_os("SMOLVM_TEST_KERNEL") {
                let k = PathBuf::from(k);
                assert!(k.is_file(), "SMOLVM_TEST_KERNEL={} is not a file", k.display());
                return k;
            }
            let smolvm = std::env::var_os("SMOLVM_BIN").map(PathBuf::from).unwrap_or_else(|| profile_dir().join("smolvm"));
            assert!(
                smolvm.is_file(),
                "no guest kernel: build `smolvm` (cargo build -p builder) or set SMOLVM_TEST_KERNEL=/path/to/vmlinux"
            );
            let out = Command::new(&smolvm)
                .args(["kernel", "path"])
                .stdin(Stdio::null())
                .output()
                .expect("run smolvm kernel path");
            assert!(out.status.success(), "smolvm kernel path failed:\n{}", String::from_utf8_lossy(&out.stderr));
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        })
        .clone()
}

/// `target/<profile>` of the running test binary.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>").to_path_buf()
}

/// A fresh, empty scratch directory for one test.
pub fn scratch_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("smolvm-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}
