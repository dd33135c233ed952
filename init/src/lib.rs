//! smol-init: the guest's PID 1. It mounts what the app needs, starts the
//! image's services (`services/`) and, once they are ready, the app as its
//! child with the caller's argv/env and stdio on the virtio consoles;
//! forwards signals, reaps every process, and reports the app's exit status
//! to the host through the exit port. The binary (`main.rs`) only adds the
//! entry point, allocator, panic handler and mem* functions (`src/rt/`, part
//! of the binary only); all logic is here.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod adds;
pub mod app;
pub mod exec;
pub mod console;
pub mod disks;
pub mod mounts;
pub mod net;
pub mod oom;
pub mod out;
pub mod plan;
pub mod services;
pub mod shutdown;
pub mod status;
pub mod sys;
pub mod values;

use alloc::vec::Vec;
use linker::abi::{self, status::SMOLVM_FAILED};
use linker::config::MAX_CONFIG_LEN;
use out::Line;
use plan::Plan;
use services::Supervisor;
use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use sys::SigSet;

/// Init could not do its job: the line to print and the status to report.
pub struct Fail {
    pub status: u8,
    pub line: Line,
}

impl Fail {
    /// An init failure (status 125).
    pub fn new(line: Line) -> Fail {
        Fail { status: SMOLVM_FAILED, line }
    }
}

/// Init's whole life. `start_ns` is the monotonic time of its first
/// instruction, `env_debug` whether its environment has `SMOLVM_LOG=debug`.
pub fn main(start_ns: u64, env_debug: bool) -> ! {
    // Signals reach init only through the signalfd, from before the first
    // child exists: none can be lost, and no handler can interrupt init.
    let _ = sys::set_signal_mask(SigSet::ALL);
    let mut signals = None;
    let status = match run(start_ns, env_debug, &mut signals) {
        Ok(status) => status,
        Err(fail) => {
            fail.line.print();
            fail.status
        }
    };
    shutdown::finish(status, signals.as_ref())
}

/// Free page reporting (the stub's virtio-balloon) of blocks from one page
/// up: Linux 6.1 fixes the order at `pageblock_order` (4 MiB blocks) when the
/// balloon registers, and an idle VM's freed pages (decompression area, init
/// memory, initramfs) are rarely whole free 4 MiB blocks. Measured in
/// docs/bench/memory.md. No file without the balloon: nothing to do.
fn report_every_free_page() {
    let path = c"/sys/module/page_reporting/parameters/page_reporting_order";
    let Ok(fd) = rustix::fs::open(path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()) else { return };
    if rustix::io::write(&fd, b"0").is_ok() {
        // The new order counts from the next pass, and a pass is asked for
        // only by a free into the buddy allocator (an idle guest's frees stay
        // in the per-cpu lists); the first pass may have run already.
        // getxattr of a missing name kvzallocs a buffer of the size asked for,
        // 64 KiB (order 4: never per-cpu), and frees it on the error. The
        // buffer here is only reserved: nothing touches its pages.
        let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
        let _ = rustix::fs::getxattr(c"/", c"user.smolvm-report-free-pages", rustix::buffer::spare_capacity(&mut buf));
    }
}

fn run(start_ns: u64, env_debug: bool, signals: &mut Option<OwnedFd>) -> Result<u8, Fail> {
    if env_debug {
        // Until the consoles are open, the log goes to the kernel's console.
        out::enable_debug();
        Line::new().s("init started").debug_at(start_ns);
    }
    mounts::mount_basics()?;
    report_every_free_page();
    console::fill_std_fds();
    let stdio = console::open_stdio();
    let cmdline = read_file("/proc/cmdline", 4096).unwrap_or_default();
    if !out::debug_enabled() && plan::cmdline_wants_debug(&cmdline) {
        out::enable_debug();
    }
    Line::new().s("init started").debug_at(start_ns);

    let manifest_path = ["/", abi::GUEST_MANIFEST_PATH].concat();
    let manifest = read_file(&manifest_path, MAX_CONFIG_LEN).map_err(|e| {
        Fail::new(Line::new().s("cannot read the image manifest ").s(&manifest_path).s(": ").e(e))
    })?;
    let runtime_path = ["/", abi::GUEST_RUNTIME_PATH].concat();
    let runtime = match read_file(&runtime_path, MAX_CONFIG_LEN) {
        Ok(bytes) => Some(bytes),
        Err(Errno::NOENT) => None,
        Err(e) => return Err(Fail::new(Line::new().s("cannot read the runtime config ").s(&runtime_path).s(": ").e(e))),
    };
    let plan = Plan::new(&manifest, runtime.as_deref()).map_err(|e| {
        Fail::new(Line::new().s(e.origin.name()).s(": ").s(e.what).s(if e.value.is_empty() { "" } else { ": " }).b(e.value))
    })?;
    if plan.debug && !out::debug_enabled() {
        out::enable_debug();
        Line::new().s("init started").debug_at(start_ns);
    }
    Line::new().s("read the configuration").debug();
    stdio.set_modes(plan.tty, plan.stdio_ports);
    let control = console::open_control();

    net::configure(&plan)?;
    if let Some(name) = plan.hostname {
        rustix::system::sethostname(name)
            .map_err(|e| Fail::new(Line::new().s("cannot set the hostname ").b(name).s(": ").e(e)))?;
    }
    let net_files = net::Files::prepare(&plan)?;
    mounts::switch_root(plan.rootfs)?;
    net_files.bind()?;
    for path in &plan.tmpfs {
        mounts::mount_tmpfs(path)?;
    }
    for share in &plan.shares {
        mounts::mount_share(share)?;
    }
    for disk in &plan.disks {
        disks::mount_disk(disk)?;
    }
    for add in &plan.adds {
        adds::place(add)?;
    }
    if plan.read_only {
        mounts::seal_root()?;
    }
    if let Some(dir) = plan.workdir {
        rustix::process::chdir(dir)
            .map_err(|e| Fail::new(Line::new().s("cannot enter the working directory ").b(dir).s(": ").e(e)))?;
    }

    let exec = exec::Exec::new(&plan)?;
    let mut services = Supervisor::new(&plan)?;
    let fd = sys::signalfd(SigSet::ALL).map_err(|e| Fail::new(Line::new().s("signalfd: ").e(e)))?;
    let signals = &*signals.insert(fd);
    let mut control = control;
    services.start_all();
    let status = app::supervise(None, signals, &mut control, &mut services).and_then(|_| {
        let pid = exec::spawn(&exec, None).map_err(|e| Fail::new(Line::new().s("cannot start the app: fork: ").e(e)))?;
        Line::new().s("started the app, pid ").n(u64::try_from(pid).unwrap_or(0)).debug();
        app::supervise(Some(pid), signals, &mut control, &mut services)
    });
    if let Ok(status) = status {
        Line::new().s("the app ended, status ").n(u64::from(status)).debug();
    }
    services.stop(signals);
    status
}

/// Reads a whole file of at most `limit` bytes (a longer one is EFBIG).
fn read_file(path: &str, limit: usize) -> Result<Vec<u8>, Errno> {
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match rustix::io::read(&fd, &mut chunk) {
            Ok(0) => return Ok(bytes),
            Ok(n) => {
                if bytes.len().saturating_add(n) > limit {
                    return Err(Errno::FBIG);
                }
                bytes.extend_from_slice(&chunk[..n]);
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
}
