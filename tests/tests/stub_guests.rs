//! vmm-stub under the real /dev/kvm with bare-metal test guests
//! (tests/guests/guest.c, built with gcc: no extra Rust targets needed),
//! packed into images by the linker crate's writer exactly like
//! `smolvm build` does, and run as `./image.vm args...`.
//!
//! Guest kernel-mode code is emulated on nested hosts (~1 µs/instruction),
//! so every guest does only a few hundred instructions.

mod stub_common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use stub_common::*;

#[test]
fn serial_output_reaches_stderr_only_with_log_kernel() {
    if !have_kvm() {
        return;
    }
    let img = image("hello", &guest("hello", "MODE_HELLO", &[]), 64);
    let out = run_serial(&img, &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(text(&out.stderr), "hello from the guest\n");
    assert_eq!(text(&out.stdout), "");
    let out = run(&img, &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!((text(&out.stdout), text(&out.stderr)), (String::new(), String::new()));
}

#[test]
fn exit_port_status_becomes_the_exit_status() {
    if !have_kvm() {
        return;
    }
    for n in [0u8, 1, 42, 255] {
        let g = guest(&format!("exit{n}"), "MODE_EXIT", &[&format!("-DSTATUS={n}")]);
        let img = image(&format!("exit{n}"), &g, 64);
        let out = run_serial(&img, &[]);
        assert_eq!(out.status.code(), Some(i32::from(n)), "{out:?}");
        assert_eq!(text(&out.stderr), "exiting\n");
    }
}

#[test]
fn boot_params_e820_cmdline_and_initrd_are_as_promised() {
    if !have_kvm() {
        return;
    }
    // The manifest says 32 MiB; the flag overrides it to 48, which the guest
    // checks against the e820 map. The arguments after the flag are the
    // app's and must appear in the runtime cpio.
    let g = guest("bootparams", "MODE_BOOTPARAMS", &["-DEXPECT_MEM_MIB=48"]);
    let img = image("bootparams", &g, 32);
    let out = run_serial(&img, &["--smolvm-mem=48", "MARKER-one", "two words"]);
    assert_eq!(out.status.code(), Some(0), "failed check = exit status; {out:?}");
    assert_eq!(text(&out.stderr), "boot_params ok\n");
    // SMOLVM_MEM works too, and the flag beats it.
    let mut cmd = Command::new(&img);
    cmd.env("SMOLVM_MEM", "48").args(["MARKER-one", "two words"]);
    let out = run_with_limit(&mut cmd, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let mut cmd = Command::new(&img);
    cmd.env("SMOLVM_MEM", "32").args(["--smolvm-mem=48", "MARKER-one", "two words"]);
    let out = run_with_limit(&mut cmd, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn guest_memory_above_the_mmio_window_continues_at_4_gib() {
    if !have_kvm() {
        return;
    }
    // 4.5 GiB: 3.25 GiB below the virtio-mmio window, 1.25 GiB from 4 GiB
    // (e820 says so, the guest writes the first and last word up there).
    // The mapping is MAP_NORESERVE: the host backs only touched pages.
    let g = guest("bootparams-high", "MODE_BOOTPARAMS", &["-DEXPECT_MEM_MIB=4608"]);
    let img = image("bootparams-high", &g, 32);
    let out = run_serial(&img, &["--smolvm-mem=4608", "MARKER-one", "two words"]);
    assert_eq!(out.status.code(), Some(0), "failed check = exit status; {out:?}");
    assert_eq!(text(&out.stderr), "boot_params ok\n");
}

#[test]
fn triple_fault_is_125_with_the_console_tail() {
    if !have_kvm() {
        return;
    }
    let img = image("triple", &guest("triple", "MODE_TRIPLE", &[]), 64);
    let out = run(&img, &[]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.starts_with("smolvm: guest kernel crashed (triple fault)\n"), "{err}");
    assert!(err.contains("guest: about to triple fault"), "{err}");
}

#[test]
fn a_spinning_guest_ends_on_sigterm() {
    if !have_kvm() {
        return;
    }
    let img = image("spin", &guest("spin", "MODE_SPIN", &[]), 64);
    let mut child = Command::new(&img)
        .env("SMOLVM_LOG", "kernel")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Never hang the suite: whatever goes wrong, the stub dies within 30 s
    // (then the reads below see EOF and the asserts fail).
    let pid = child.id().to_string();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let guard = std::thread::spawn(move || {
        let start = Instant::now();
        while !flag.load(std::sync::atomic::Ordering::SeqCst) && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !flag.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = Command::new("kill").arg("-KILL").arg(&pid).status();
        }
    });
    // Wait until the guest runs (it prints before spinning).
    let mut stderr = child.stderr.take().expect("stderr");
    let mut first = [0u8; 9];
    std::io::Read::read_exact(&mut stderr, &mut first).expect("guest output");
    assert_eq!(&first, b"spinning\n");
    std::thread::sleep(Duration::from_millis(100));
    assert!(child.try_wait().expect("try_wait").is_none(), "guest must still run");
    let t = Instant::now();
    Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("kill");
    let status = child.wait().expect("wait");
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    guard.join().expect("guard");
    assert!(t.elapsed() < Duration::from_secs(10), "stub ignored SIGTERM");
    use std::os::unix::process::ExitStatusExt;
    // Either killed by the signal or exited with 128+15: both end the VM.
    assert!(status.signal() == Some(15) || status.code() == Some(143), "{status:?}");
}

#[test]
fn unknown_ports_and_mmio_read_all_ones_and_are_noted_under_debug() {
    if !have_kvm() {
        return;
    }
    let img = image("unknown-io", &guest("unknown-io", "MODE_UNKNOWN_IO", &[]), 64);
    let out = run_serial(&img, &[]);
    assert_eq!(out.status.code(), Some(0), "1 = port, 2 = MMIO read was not all-ones; {out:?}");
    assert_eq!(text(&out.stderr), "unknown io ok\n");
    let mut cmd = Command::new(&img);
    cmd.env("SMOLVM_LOG", "debug");
    let out = run_with_limit(&mut cmd, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("smolvm: debug: unhandled port write 0x99 (1 bytes)"), "{err}");
    assert!(err.contains("smolvm: debug: unhandled port read 0x99 (1 bytes)"), "{err}");
    assert!(err.contains("smolvm: debug: unhandled MMIO read 0xd000f000 (4 bytes)"), "{err}");
}

#[test]
fn i8042_reset_is_a_crash_with_the_console_tail() {
    if !have_kvm() {
        return;
    }
    let img = image("reset", &guest("reset", "MODE_RESET", &[]), 64);
    let out = run(&img, &[]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.starts_with("smolvm: guest kernel crashed (it asked for a reset)\n"), "{err}");
    assert!(err.contains("guest: resetting through the i8042"), "{err}");
}

#[test]
fn bzimage_kernels_boot_through_the_64_bit_protocol() {
    if !have_kvm() {
        return;
    }
    let link = "-Wl,-Ttext-segment=0x1000000";
    let hello = bzimage_from_elf(&guest("bz-hello", "MODE_HELLO", &[link]));
    let img = write_exe("bz-hello", &image_bytes_flags(&hello, linker::image::FLAG_BZIMAGE, 64));
    let out = run_serial(&img, &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(text(&out.stderr), "hello from the guest\n");
    // The zero page carries the image's own setup header and our fields.
    let bp = bzimage_from_elf(&guest("bz-bootparams", "MODE_BOOTPARAMS", &[link, "-DEXPECT_MEM_MIB=64"]));
    let img = write_exe("bz-bootparams", &image_bytes_flags(&bp, linker::image::FLAG_BZIMAGE, 64));
    let out = run_serial(&img, &["MARKER-one", "two words"]);
    assert_eq!(out.status.code(), Some(0), "failed check = exit status; {out:?}");
    assert_eq!(text(&out.stderr), "boot_params ok\n");
}
