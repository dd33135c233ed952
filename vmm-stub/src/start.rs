//! From `exec` to the first `KVM_RUN`: options, payload, guest RAM, kernel,
//! initrd (image initramfs + runtime cpio), zero page, VM and vCPU.

use crate::boot::layout::*;
use crate::boot::load::{self, KernelFile, LoadError};
use crate::boot::{cpu, params::*};
use crate::bus::Bus;
use crate::cmdline::Cmdline;
use crate::devices::{self, DiskFile, Devices, MAX_EXTRA_DISKS};
use crate::hostio::tty::WinSize;
use crate::sys::kvm::{Kvm, Vcpu, Vm};
use crate::mem::{GuestAddress, GuestMemory, PAGE_SIZE};
use crate::options::{AddSpec, DiskSpec, OptError, Options, HELP_LEN, MAX_SHARES};
use crate::out::{self, fail, fail_errno, Line};
use crate::payload::{Payload, PayloadError};
use crate::serial::{Serial, Sink};
use crate::sys::kvm::{
    KvmCpuid2, KvmCpuid2Header, KvmCpuidEntry2, KVM_CAP_TSC_DEADLINE_TIMER, MAX_CPUID_ENTRIES,
};
use crate::vmm::Vmm;
use linker::abi::{self, GUEST_RUNTIME_PATH};
use linker::config::{self, Key, MAX_CONFIG_LEN};
use linker::cpio::CpioWriter;
use linker::image::Kind;
use rustix::io::Errno;

pub use crate::sys::process::CStrings;

fn payload_error(e: PayloadError) -> ! {
    match e {
        PayloadError::Io(e) => fail_errno("cannot read own executable /proc/self/exe", e),
        PayloadError::Image(e) => Line::new().s(e.message()).s("; rebuild it with `smolvm build`").fail(),
    }
}

/// A section the image reader already required to be there.
fn required(payload: &Payload, kind: Kind) -> linker::image::Section {
    payload.section(kind).unwrap_or_else(|| payload_error(PayloadError::Image(linker::image::ImageError::MissingSection(kind))))
}

/// The stub's whole life: returns only for `--smolvm-help`/`--smolvm-info`.
pub fn main(args: CStrings, env: CStrings) -> u8 {
    let opts = match Options::parse(args.skip(1), env) {
        Ok(o) => o,
        Err(OptError::Unknown(a)) => Line::new().s("unknown option ").b(a).s(" (see --smolvm-help)").fail(),
        Err(OptError::BadValue(a)) => Line::new().s("bad value in ").b(a).s(" (see --smolvm-help)").fail(),
        Err(OptError::TooMany(a)) => Line::new().s("too many options like ").b(a).fail(),
    };
    out::set_debug(opts.log.debug);
    if opts.help {
        let mut text = [0u8; HELP_LEN];
        let _ = out::write_all(out::stdout(), crate::options::help(&mut text));
        return 0;
    }
    let payload = Payload::open_self().unwrap_or_else(|e| payload_error(e));
    crate::harden::check_image_mode(payload.fd());
    crate::trust::enforce(&payload, opts.trust);
    let manifest_section = required(&payload, Kind::Manifest);
    let manifest = payload.map_checked(&manifest_section).unwrap_or_else(|e| payload_error(e));
    if config::validate(manifest.bytes()).is_err() {
        fail("image manifest is malformed (rebuild the image with `smolvm build`)");
    }
    if opts.info {
        crate::info::print(&payload, manifest.bytes());
        return 0;
    }
    // The manifest's defaults for the options, parsed once.
    let defaults = crate::options::Defaults::of(manifest.bytes());
    let net_plan = crate::network::plan(&opts, &defaults).unwrap_or_else(|e| fail(e));
    let mem_mib = opts.mem_mib.or_else(|| manifest_mem(manifest.bytes())).unwrap_or(abi::DEFAULT_MEM_MIB);
    if u64::from(mem_mib) << 20 > MEM_MAX {
        Line::new().s("guest memory ").u(u64::from(mem_mib)).s(" MiB is more than the maximum ").u(MEM_MAX >> 20).s(" MiB").fail();
    }
    // The network backend first: passt is forked, cheaply while the stub
    // is small and has one thread (no guest RAM mapped yet).
    let net = net_plan.map(|p| crate::network::start(&p, env.filter_map(|v| v.strip_prefix(b"PATH=")).next(), opts.log.debug));
    #[cfg(feature = "test-hooks")]
    let net = net.or_else(|| test_net_backend(env));
    // Any --smolvm-disk replaces the image's disks (which borrow the
    // manifest: it stays mapped until the runtime config is written).
    let disk_specs: &[DiskSpec<'_>] = if opts.disks_given { &opts.disks } else { &defaults.disks };

    // A Linux kernel has kernel-info (`smolvm build` records its version);
    // the bare-metal test guests, which such a host does run, have none.
    let linux = payload.section(Kind::KernelInfo).is_some();
    let kvm = crate::host::open_kvm(linux, opts.force, host_faults(env));
    let cpus = opts.cpus.or_else(|| manifest_cpus(manifest.bytes())).unwrap_or(1);
    check_cpus(cpus, &kvm, opts.force);
    let cpus = cpus as usize; // at most MAX_CPUS (checked)
    let mut mem = GuestMemory::new(u64::from(mem_mib) << 20)
        .unwrap_or_else(|e| fail_errno("cannot reserve guest memory", e));

    // The cold boot's steps are macros so that the warm build can skip
    // them when it resumes a snapshot, while the default stub expands them
    // in place, exactly as before (it has no room for a call boundary).
    macro_rules! load_kernel {
        ($kernel:ident) => {
            let kernel_section = required(&payload, Kind::Kernel);
            let kfile = KernelFile { fd: payload.fd(), offset: kernel_section.offset, len: kernel_section.len };
            let $kernel = match load::load(&mem, kfile) {
                Ok(k) => k,
                Err(LoadError::TooSmall) => Line::new().s("guest memory (").u(u64::from(mem_mib)).s(" MiB) is too small for the kernel; raise --smolvm-mem").fail(),
                Err(e) => Line::new().s(e.message()).s(" (rebuild the image with `smolvm build`)").fail(),
            };
        };
    }
    // A warm image whose snapshot this run can resume needs no kernel.
    #[cfg(feature = "warm")]
    let snapshot = crate::warm::restore::open(&payload, &kvm, u64::from(mem_mib) << 20, cpus);
    #[cfg(not(feature = "warm"))]
    load_kernel!(kernel);

    let serial_sink = if opts.log.kernel { Sink::Fd(out::stderr()) } else { Sink::Fd(out::stdout()) };
    // Terminal mode when stdin and stdout are terminals (hostio::tty); a
    // SIGTERM from here on waits for the handlers, which restore the terminal.
    crate::hostio::signals::hold_terminating();
    let terminal = crate::hostio::tty::enter_raw();
    let disks = open_disks(disk_specs, opts.disks_given, &opts.adds);
    if disks.len().wrapping_add(opts.shares.len()) > MAX_SHARES { // each at most MAX_SHARES
        Line::new().s("too many disks, added files and shares: at most ").u(MAX_SHARES as u64).s(" together").fail();
    }
    let shares = open_shares(&opts);
    let rootfs = payload.section(Kind::Rootfs).map(|s| (payload.fd(), s.offset, s.len));
    // The net watcher polls a duplicate of the backend fd; the device owns it.
    let (guest_net, net_watch_fd, mut net_dev) = match net {
        Some(n) => {
            let dup = rustix::io::fcntl_dupfd_cloexec(&n.fd, 0).unwrap_or_else(|e| fail_errno("cannot set up the network", e));
            let dev = crate::virtio::net::Net::new(crate::network::link(n.fd, n.framing), n.guest.mtu).with_guard(n.guard);
            (Some(n.guest), Some(dup), Some(dev))
        }
        None => (None, None, None),
    };
    let mut devices = Devices::new(terminal, rootfs, &disks);
    let mut transports = devices.transports();
    for share in shares.iter_mut() {
        // Slots after the disks, in share order: the n-th share is tag smolvm<n>.
        transports.add_dynamic(share).unwrap_or_else(|| fail("too many disks and shares"));
    }
    if let Some(dev) = &mut net_dev {
        // The slot after the disks and shares (the guest finds it by type: eth0).
        transports.add_dynamic(dev).unwrap_or_else(|| fail("too many disks and shares to add the network device"));
    }
    // Free page reporting, last (the guest finds it by type). No slot left
    // only costs the memory it would have given back.
    let mut balloon = (opts.balloon != Some(false)).then(crate::virtio::balloon::Balloon::new);
    let balloon_on = balloon.as_mut().and_then(|b| transports.add_dynamic(b)).is_some();
    let mut bus = Bus::new();
    transports.attach(&mut bus);
    // Warm builds decide here, with the run's devices known.
    #[cfg(feature = "warm")]
    let snapshot = snapshot.filter(|s| s.devices_fit(&bus));
    #[cfg(feature = "warm")]
    let kernel = snapshot.is_none().then(|| {
        load_kernel!(kernel);
        kernel
    });
    // The serial console carries the app's output only when no virtio
    // console occupies its slot.
    let serial = Serial::new(if bus.has(abi::slot::CONSOLE_STDIO) && !opts.log.kernel { Sink::Discard } else { serial_sink });

    let mut cmdline = Cmdline::new(!opts.log.kernel);
    for slot in bus.present() {
        if !cmdline.add_virtio_mmio(slot) {
            fail("kernel command line too long");
        }
    }
    // The cold boot: initrd, boot data, a VM at the kernel's entry.
    macro_rules! boot_cold {
        ($kernel:ident, $vm:ident, $vcpus:pat) => {
            let initrd_max = $kernel.bz.as_ref().map_or(u64::from(u32::MAX), |(b, _)| u64::from(b.initrd_addr_max));
            let app_args = args.skip(opts.consumed.wrapping_add(1)); // argv[0] and the consumed flags
            let added = disks.get(disk_specs.len()..).unwrap_or_default();
            let (initrd, initrd_len) = place_initrd(&mut mem, &payload, $kernel.end, initrd_max, &opts, disk_specs, added, terminal, guest_net, app_args);
            drop(defaults);
            drop(manifest);
            write_boot_data(&mut mem, &$kernel, &cmdline, initrd, initrd_len, cpus)
                .unwrap_or_else(|| fail("guest memory too small for the boot data; raise --smolvm-mem"));

            let ($vm, $vcpus) = create_vm(&kvm, &mut mem, $kernel.entry, cpus);
        };
    }
    #[cfg(not(feature = "warm"))]
    boot_cold!(kernel, vm, mut vcpus);
    #[cfg(feature = "warm")]
    let (vm, mut vcpus) = match (kernel, &snapshot) {
        (Some(kernel), _) => {
            boot_cold!(kernel, vm, vcpus);
            (vm, vcpus)
        }
        (None, Some(s)) => {
            let (vm, vcpus) = s.restore(&kvm, &payload, &mut mem);
            s.resume_devices(&mut bus, &mem, &vm);
            (vm, vcpus)
        }
        (None, None) => fail("internal error: neither a kernel nor a snapshot"),
    };
    #[cfg(feature = "warm-save")]
    crate::warm::save::prepare(env, cpus).unwrap_or_else(|e| fail_errno("SMOLVM_WARM_SAVE: cannot open DIR/state and DIR/memory (or more than one vCPU", e));
    drop(kvm);
    #[cfg(feature = "test-hooks")]
    test_hooks_before_filter(env, &vcpus[0]);
    // Signals interrupt KVM_RUN through immediate_exit; the stdin watcher
    // kicks vCPU 0's thread (this one) when host input arrives (hostio).
    for vcpu in &vcpus {
        vcpu.route_kicks();
    }
    crate::hostio::signals::install();
    if let Err(e) = crate::hostio::stdin_watch::start() {
        fail_errno("cannot start the stdin thread", e);
    }
    if let Some(fd) = net_watch_fd {
        crate::hostio::net_watch::start(fd).unwrap_or_else(|e| fail_errno("cannot start the network thread", e));
    }
    // The reaper keeps the VM fd and the last vCPU's (it closes those in
    // between in its own table: the VM fd alone keeps the VM alive).
    let keep = {
        use rustix::fd::AsRawFd;
        (vm.raw_fd(), vcpus.last().map_or(vm.raw_fd(), |v| v.as_fd().as_raw_fd()))
    };
    // The vCPU threads start first (the filter forbids a thread's clone)
    // and enter KVM_RUN, where vCPUs 1.. wait for the guest's INIT/SIPI,
    // which only vCPU 0, on this thread after the set-up below, can send.
    Vmm::new(vm, mem, serial, bus, opts.log.debug).run(&mut vcpus, || {
        // From here on only the run loop's system calls (seccomp.rs), on
        // every thread (TSYNC); the reaper below inherits the filter.
        crate::harden::freeze_limits();
        if !opts.no_seccomp {
            crate::seccomp::install(!opts.shares.is_empty(), balloon_on)
                .unwrap_or_else(|e| Line::new().s("cannot install the seccomp filter").errno(e).s("; --smolvm-no-seccomp skips it, unsafely)").fail());
        }
        #[cfg(feature = "test-hooks")]
        test_hooks(env);
        // Last step before the guest runs: VM teardown moves off the exit path.
        crate::reaper::start(keep.0, keep.1);
    })
}

fn manifest_cpus(manifest: &[u8]) -> Option<u32> {
    config::last_value(manifest, Key::Cpus).and_then(crate::options::decimal)
}

/// Fails with one line unless `cpus` vCPUs can run: at least 1, at most
/// `abi::MAX_CPUS` (the guest kernel's limit), KVM's limit, and, unless
/// `force`, the host CPUs this process may run on (more only time-slice
/// the guest's CPUs, which then spin waiting on each other's locks).
#[allow(clippy::cast_possible_truncation)] // MAX_CPUS = 64
fn check_cpus(cpus: u32, kvm: &Kvm, force: bool) {
    use crate::sys::kvm::KVM_CAP_MAX_VCPUS;
    let kvm_max = kvm.check_extension(KVM_CAP_MAX_VCPUS).ok().filter(|&m| m > 0).unwrap_or(u32::MAX);
    let host = if force { None } else { crate::sys::cpu::usable_cpus() }.unwrap_or(u32::MAX);
    let (max, limit) = if cpus as usize > abi::MAX_CPUS {
        (abi::MAX_CPUS as u32, "smolvm's limit")
    } else if cpus > kvm_max {
        (kvm_max, "KVM's limit here")
    } else if cpus > host {
        (host, "the host CPUs this process may use; --smolvm-force runs more")
    } else if cpus == 0 {
        (1, "the least")
    } else {
        return;
    };
    Line::new().s("--smolvm-cpus (or the image's cpus) is ").u(u64::from(cpus)).s(": ask for ").u(u64::from(max)).s(if cpus == 0 { " or more (" } else { " or fewer (" }).s(limit).s(")").fail()
}

/// Opens the disk files (`given`: from `--smolvm-disk`, else the image's
/// defaults), then each added file as a read-only disk after them, or fails
/// with a message naming the file.
fn open_disks(specs: &[DiskSpec<'_>], given: bool, adds: &[AddSpec<'_>]) -> heapless::Vec<DiskFile, MAX_EXTRA_DISKS> {
    let mut disks = heapless::Vec::new();
    // (spec, whether it is an added file)
    let added = adds.iter().map(|a| (DiskSpec { path: a.host, read_only: true, guest: None }, true));
    for (spec, is_add) in specs.iter().map(|&s| (s, false)).chain(added) {
        match devices::open_disk(spec) {
            Ok(d) => {
                // At most MAX_DISKS specs and MAX_ADDS adds.
                disks.push(d).unwrap_or_else(|_| fail("too many disks and shares"));
            }
            Err(e) => {
                let mut l = Line::new();
                if is_add {
                    l.s("--smolvm-add ").b(spec.path);
                } else {
                    l.s("disk ").b(spec.path);
                    if !given {
                        l.s(" (an image default; --smolvm-disk=PATH or =none replaces it)");
                    }
                }
                l.s(": ").s(e.message()).fail()
            }
        }
    }
    disks
}

/// Opens each `--smolvm-share` directory as a 9p device, or fails with a
/// message naming it.
fn open_shares(opts: &Options<'_>) -> &'static mut heapless::Vec<crate::virtio::p9::P9Device, MAX_SHARES> {
    let devs = devices::share_slots().unwrap_or_else(|| fail("share devices set up twice"));
    for spec in &opts.shares {
        // The n-th share (one pushed per share so far).
        let n = devs.len();
        let dev = crate::virtio::p9::Server::new(spec.host, spec.read_only)
            .and_then(|server| crate::virtio::p9::P9Device::new(server, n));
        let why = match dev {
            Ok(d) => {
                // Options holds at most MAX_SHARES (and nothing to drop on a path that exits).
                devs.push(d).unwrap_or_else(|_| fail("too many disks and shares"));
                continue;
            }
            Err(Errno::NOENT) => "no such directory",
            Err(Errno::NOTDIR) => "not a directory",
            Err(_) => "cannot open it",
        };
        Line::new().s("share ").b(spec.host).s(": ").s(why).fail();
    }
    devs
}

fn manifest_mem(manifest: &[u8]) -> Option<u32> {
    config::last_value(manifest, Key::Mem).and_then(crate::options::parse_mem)
}

/// Puts the image's initramfs and the runtime cpio (`smolvm/run`) at the top
/// of RAM (below `initrd_max`); returns its address and length.
fn place_initrd(
    mem: &mut GuestMemory,
    payload: &Payload,
    kernel_end: u64,
    initrd_max: u64,
    opts: &Options<'_>,
    disks: &[DiskSpec<'_>],
    added: &[DiskFile],
    terminal: Option<WinSize>,
    net: Option<crate::network::GuestNet>,
    app_args: impl Iterator<Item = &'static [u8]>,
) -> (u64, u64) {
    let section = required(&payload, Kind::Initramfs);
    // Room at the top: the runtime cpio and, above it, scratch for its file.
    let cpio_room = linker::cpio::entry_len(6, 0).unwrap_or(0)
        + linker::cpio::entry_len(GUEST_RUNTIME_PATH.len(), MAX_CONFIG_LEN).unwrap_or(0)
        + linker::cpio::entry_len(10, 0).unwrap_or(0);
    let top = mem.low_len().min(initrd_max.saturating_add(1)) / PAGE_SIZE * PAGE_SIZE;
    let start = top
        .checked_sub((cpio_room + MAX_CONFIG_LEN + 4) as u64)
        .and_then(|t| t.checked_sub(section.len))
        .map(|s| s / PAGE_SIZE * PAGE_SIZE)
        .filter(|&s| s >= kernel_end)
        .unwrap_or_else(|| fail("guest memory is too small for the kernel and initramfs; raise --smolvm-mem"));

    // The initramfs: mapped from the file when whole pages fit, else read.
    let checked = payload.map_checked(&section).unwrap_or_else(|e| payload_error(e));
    // The image reader bounds every section far below u64::MAX.
    let mapped_len = section.len.wrapping_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
    let file_len = payload.image().file_len();
    let mapped = section.offset.checked_add(mapped_len).is_some_and(|end| end <= file_len)
        && mem.map_file(GuestAddress(start), mapped_len, payload.fd(), section.offset).is_ok();
    if !mapped {
        mem.write_slice(GuestAddress(start), checked.bytes())
            .unwrap_or_else(|| fail("guest memory is too small for the initramfs"));
    }
    drop(checked);

    // start + section.len + room <= top (checked above): no sum below wraps.
    let data_end = start.wrapping_add(section.len);
    // Between the archives only zeros (a mapped page may hold file bytes).
    let pad = (data_end.wrapping_neg() % 4) as usize;
    let cpio_at = data_end.wrapping_add(pad as u64);
    mem.write_slice(GuestAddress(data_end), &[0; 3][..pad])
        .unwrap_or_else(|| fail("guest memory is too small for the initramfs"));
    let region = mem.boot_slice_mut(GuestAddress(cpio_at), top.wrapping_sub(cpio_at))
        .unwrap_or_else(|| fail("guest memory is too small for the initramfs"));
    let Some((cpio_buf, scratch)) = region.split_at_mut_checked(region.len().saturating_sub(MAX_CONFIG_LEN)) else {
        fail("guest memory is too small for the initramfs")
    };
    let config = runtime_config(scratch, opts, disks, added, terminal, net, app_args)
        .unwrap_or_else(|e| Line::new().s("run-time arguments: ").s(e.message()).fail());
    let mut w = CpioWriter::new(cpio_buf, 0x7000_0000);
    let written = w.dir(b"smolvm", 0o755)
        .and_then(|()| w.file(GUEST_RUNTIME_PATH.as_bytes(), 0o644, config))
        .and_then(|()| w.finish());
    let cpio_len = written.unwrap_or_else(|e| Line::new().s(e.message()).fail());
    (start, cpio_at.wrapping_sub(start).wrapping_add(cpio_len as u64))
}

/// Writes the runtime config records into `buf`; returns them.
fn runtime_config<'b>(
    buf: &'b mut [u8],
    opts: &Options<'_>,
    disks: &[DiskSpec<'_>],
    added: &[DiskFile],
    terminal: Option<WinSize>,
    net: Option<crate::network::GuestNet>,
    app_args: impl Iterator<Item = &'static [u8]>,
) -> Result<&'b [u8], config::ConfigError> {
    let mut w = config::Writer::new(&mut *buf)?;
    for arg in app_args {
        w.push(Key::Arg, &[arg])?;
    }
    for e in &opts.env {
        w.push(Key::Env, &[e])?;
    }
    if let Some(dir) = opts.workdir {
        w.push(Key::Workdir, &[dir])?;
    }
    if let Some(entry) = opts.entry {
        w.push(Key::Entry, &[entry])?;
    }
    if opts.log.debug {
        w.push(Key::Log, &[b"debug"])?;
    }
    // Counted by bounded ranges, which need no overflow check (`enumerate`
    // has one); each bound is at least its list's capacity.
    for (n, s) in (0..MAX_SHARES).zip(&opts.shares) {
        let mut tag = Line::bare();
        tag.s(abi::SHARE_TAG_PREFIX).u(n as u64);
        w.push(Key::Share, &[tag.as_bytes(), s.guest, if s.read_only { b"ro" } else { b"rw" }])?;
    }
    // The root is vda; the data disks follow in order, then one per added
    // file (together at most MAX_EXTRA_DISKS < 25).
    let extra_disk = |n: usize| [b'v', b'd', b'b'.wrapping_add(n as u8)];
    for (n, d) in (0..MAX_EXTRA_DISKS).zip(disks) {
        let Some(guest) = d.guest else { continue };
        w.push(Key::Disk, &[&extra_disk(n), guest, if d.read_only { b"ro" } else { b"rw" }])?;
    }
    for (n, (add, file)) in (0..MAX_EXTRA_DISKS).zip(opts.adds.iter().zip(added)) {
        let dev = extra_disk(disks.len().wrapping_add(n));
        let octal = |shift: u32| b'0' | (file.mode >> shift & 7) as u8;
        let mut len_mode = Line::bare();
        len_mode.u(file.len).s(" ").b(&[octal(6), octal(3), octal(0)]);
        w.push(Key::Add, &[&dev, add.guest, len_mode.as_bytes()])?;
    }
    if let Some(read_only) = opts.read_only {
        // Over the manifest's record either way (`no` opens a --read-only image).
        w.push(Key::ReadOnly, &[if read_only { b"yes" } else { b"no" }])?;
    }
    if opts.no_services {
        w.push(Key::Services, &[b"no"])?;
    }
    if let Some(n) = net {
        n.write_records(&mut w)?;
    }
    // Terminal mode: init gives the app /dev/hvc0 as its terminal;
    // otherwise its stdin, stdout and stderr are control device ports.
    match terminal {
        Some((rows, cols)) => {
            let mut l = Line::bare();
            l.u(u64::from(rows)).s(" ").u(u64::from(cols));
            w.push(Key::Tty, &[l.as_bytes()])?;
        }
        None => w.push(Key::Stdio, &[b"ports"])?,
    }
    let (len, buf): (usize, &'b [u8]) = (w.len(), buf);
    Ok(buf.get(..len).unwrap_or(&[]))
}

fn write_boot_data(mem: &mut GuestMemory, kernel: &load::Kernel, cmdline: &Cmdline, initrd: u64, initrd_len: u64, cpus: usize) -> Option<()> {
    cpu::write_tables(mem)?;
    // The command line and its NUL (it is shorter than CMDLINE_MAX).
    let c = cmdline.as_bytes();
    let c_len = c.len() as u64;
    mem.write_slice(GuestAddress(CMDLINE_ADDR), c)?;
    mem.write_slice(GuestAddress(CMDLINE_ADDR.wrapping_add(c_len)), &[0])?;

    let mut p = BootParams::new();
    match &kernel.bz {
        Some((b, hdr)) => p.set_setup_header(hdr.get(..b.hdr_end.wrapping_sub(crate::boot::bzimage::HDR_START)).unwrap_or(hdr)),
        None => p.set_minimal_header(),
    }
    p.set_loader_fields(CMDLINE_ADDR, c_len.wrapping_add(1) as u32, initrd, initrd_len);
    p.add_e820(0, EBDA_START, E820_RAM);
    p.add_e820(EBDA_START, KERNEL_MIN_ADDR - EBDA_START, E820_RESERVED);
    let [(_, low, _), (high_start, high, _)] = mem.ranges();
    p.add_e820(KERNEL_MIN_ADDR, low.checked_sub(KERNEL_MIN_ADDR)?, E820_RAM);
    if high > 0 {
        p.add_e820(high_start, high, E820_RAM);
    }
    crate::boot::mptable::write(mem, cpus)?;
    mem.write_slice(GuestAddress(ZERO_PAGE_ADDR), p.as_bytes())
}

/// KVM set-up step `what` failed: one line, 125.
fn setup_failed(what: &str, e: Errno) -> ! {
    Line::new().s("KVM setup failed: ").s(what).errno(e).s(")").fail()
}

/// The VM with `cpus` vCPUs: vCPU 0 at the kernel's 64-bit entry, the
/// others waiting (`KVM_MP_STATE_UNINITIALIZED`, as the in-kernel LAPIC
/// leaves every vCPU but the first) for the guest's INIT and SIPI.
#[allow(clippy::cast_possible_truncation)] // cpus <= MAX_CPUS = 64 (check_cpus)
fn create_vm(kvm: &Kvm, mem: &mut GuestMemory, entry: u64, cpus: usize) -> (Vm, heapless::Vec<Vcpu, { abi::MAX_CPUS }>) {
    let vm = kvm.create_vm().unwrap_or_else(|e| setup_failed("KVM_CREATE_VM", e));
    // RAM first: adding a memory slot once other slots or devices exist
    // waits for an SRCU grace period (milliseconds on nested hosts). RAM
    // above 4 GiB (a second slot) only exists for guests of > 3.25 GiB.
    mem.register(&vm).unwrap_or_else(|e| setup_failed("KVM_SET_USER_MEMORY_REGION", e));
    // No KVM_SET_TSS_ADDR/IDENTITY_MAP_ADDR: they only serve real-mode
    // emulation on Intel without unrestricted guests, and the vCPU starts
    // in long mode; each would add another memory slot.
    vm.create_irqchip().unwrap_or_else(|e| setup_failed("KVM_CREATE_IRQCHIP", e));
    vm.create_pit2().unwrap_or_else(|e| setup_failed("KVM_CREATE_PIT2", e));

    let mut supported = KvmCpuid2 {
        header: KvmCpuid2Header::default(),
        entries: [KvmCpuidEntry2::default(); MAX_CPUID_ENTRIES],
    };
    kvm.supported_cpuid(&mut supported).unwrap_or_else(|e| setup_failed("KVM_GET_SUPPORTED_CPUID", e));
    let tsc_deadline = kvm.check_extension(KVM_CAP_TSC_DEADLINE_TIMER).unwrap_or(0) > 0;
    let mut vcpus = heapless::Vec::new();
    for id in 0..cpus.min(abi::MAX_CPUS) as u32 {
        let vcpu = vm.create_vcpu(id).unwrap_or_else(|e| setup_failed("KVM_CREATE_VCPU", e));
        let mut cpuid = supported;
        cpu::patch_cpuid(&mut cpuid, tsc_deadline, id, cpus as u32);
        vcpu.set_cpuid2(&cpuid).unwrap_or_else(|e| setup_failed("KVM_SET_CPUID2", e));
        #[cfg(feature = "warm-save")]
        crate::warm::save::remember_cpuid(&cpuid);
        vcpu.set_msrs(&cpu::boot_msrs()).unwrap_or_else(|e| setup_failed("KVM_SET_MSRS", e));
        if id == 0 {
            let mut sregs = vcpu.get_sregs().unwrap_or_else(|e| setup_failed("KVM_GET_SREGS", e));
            cpu::long_mode_sregs(&mut sregs);
            vcpu.set_sregs(&sregs).unwrap_or_else(|e| setup_failed("KVM_SET_SREGS", e));
            vcpu.set_regs(&cpu::boot_regs(entry)).unwrap_or_else(|e| setup_failed("KVM_SET_REGS", e));
        }
        let mut lapic = vcpu.get_lapic().unwrap_or_else(|e| setup_failed("KVM_GET_LAPIC", e));
        cpu::patch_lapic(&mut lapic);
        vcpu.set_lapic(&lapic).unwrap_or_else(|e| setup_failed("KVM_SET_LAPIC", e));
        // At most MAX_CPUS (the loop's bound).
        let _ = vcpus.push(vcpu);
    }
    (vm, vcpus)
}

/// Test builds only (feature `test-hooks`): `SMOLVM_TEST_HOOK=missing-cap`
/// or `no-hw-virt` (see `host::Faults`).
#[cfg(feature = "test-hooks")]
fn host_faults(mut env: CStrings) -> crate::host::Faults {
    let hook = env.find_map(|v| v.strip_prefix(b"SMOLVM_TEST_HOOK="));
    crate::host::Faults { missing_cap: hook == Some(b"missing-cap"), no_hw_virt: hook == Some(b"no-hw-virt") }
}

#[cfg(not(feature = "test-hooks"))]
fn host_faults(_: CStrings) -> crate::host::Faults {
    crate::host::Faults::default()
}

/// Test builds only (feature `test-hooks`): `SMOLVM_TEST_NET_FD=N` makes
/// inherited fd N (one end of a stream socketpair the test holds) the
/// network backend, in passt's framing, so bare-metal test guests meet a
/// backend the test controls (tests/tests/net_guests.rs).
#[cfg(feature = "test-hooks")]
fn test_net_backend(mut env: CStrings) -> Option<crate::network::Started> {
    let v = env.find_map(|v| v.strip_prefix(b"SMOLVM_TEST_NET_FD="))?;
    let n = v.iter().try_fold(0i32, |n, &d| d.is_ascii_digit().then(|| n.saturating_mul(10).saturating_add(i32::from(d - b'0'))))?;
    let fd = crate::sys::fd::adopt_inherited(n).unwrap_or_else(|| fail("test hook: SMOLVM_TEST_NET_FD is not an open fd"));
    rustix::fs::fcntl_setfl(&fd, rustix::fs::OFlags::NONBLOCK).unwrap_or_else(|e| fail_errno("test hook: fcntl", e));
    let guest = crate::network::GuestNet { addr: [10, 0, 2, 15], prefix: 24, gateway: None, mtu: crate::virtio::net::link::PASST_MTU, dns: None };
    Some(crate::network::Started { fd, framing: crate::virtio::net::link::Framing::Stream, guest, guard: None })
}

/// Test builds only (feature `test-hooks`): `SMOLVM_TEST_HOOK=bad-entry`
/// sets CS.L and CS.D together in long mode, a state the CPU refuses to
/// enter (AMD VMRUN consistency check, Intel VM-entry guest-state check)
/// and KVM_SET_SREGS does not reject: the first `KVM_RUN` then reports
/// `KVM_EXIT_FAIL_ENTRY`. Before the filter, which forbids KVM_SET_SREGS.
#[cfg(feature = "test-hooks")]
fn test_hooks_before_filter(mut env: CStrings, vcpu: &Vcpu) {
    if env.any(|v| v == b"SMOLVM_TEST_HOOK=bad-entry") {
        let mut sregs = vcpu.get_sregs().unwrap_or_else(|_| fail("test hook: KVM_GET_SREGS failed"));
        sregs.cs.db = 1;
        vcpu.set_sregs(&sregs).unwrap_or_else(|_| fail("test hook: KVM_SET_SREGS failed"));
    }
}

/// Test builds only (feature `test-hooks`, never in release images):
/// `SMOLVM_TEST_HOOK=forbidden` makes a call outside the filter (SIGSYS),
/// `SMOLVM_TEST_HOOK=panic` panics (status 125 through the allowed calls).
#[cfg(feature = "test-hooks")]
fn test_hooks(mut env: CStrings) {
    match env.find_map(|v| v.strip_prefix(b"SMOLVM_TEST_HOOK=")) {
        Some(b"forbidden") => {
            let _ = rustix::process::getuid();
        }
        Some(b"panic") => panic!("test hook"),
        _ => {}
    }
}
