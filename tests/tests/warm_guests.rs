//! Warm images with a bare-metal guest under /dev/kvm (tests/guests/warm.c):
//! a stub built with `warm-save` saves the guest at its safe point, a new
//! process of a stub built with `warm` resumes it from the image, and the
//! guest continues exactly where it stopped (its count, registers, memory
//! and LAPIC timer). Also: what a warm image does on a stub that cannot
//! or must not resume it (damaged sections, another memory size, a stub
//! without the feature).

mod stub_common;

use linker::image::{Image, Kind, TRAILER_LEN};
use linker::write::ImageWriter;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use stub_common::*;

/// The stub built with `features`, in its own target directory.
fn feature_stub(features: &str) -> PathBuf {
    let dir = workspace().join(format!("target/{features}"));
    let st = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "vmm-stub", "--features", features, "--target-dir"])
        .arg(&dir)
        .current_dir(workspace())
        .status()
        .expect("cargo");
    assert!(st.success(), "building vmm-stub with {features} failed");
    dir.join("release/vmm-stub")
}

const COLD: &str = "count 0\ncount 1\ncount 2\ncount 3\ncount 4\ncount 5\ncount 6\ncount 7\ncount 8\ncount 9\n\
                    registers ok\nmemory ok\nlapic timer ok\n";
const BEFORE: &str = "count 0\ncount 1\ncount 2\ncount 3\ncount 4\n";
const AFTER: &str = "count 5\ncount 6\ncount 7\ncount 8\ncount 9\nregisters ok\nmemory ok\nlapic timer ok\n";

/// An image of `stub` and the warm guest, plus `extra` sections.
fn image_with(name: &str, stub: &Path, kernel: &[u8], extra: &[(Kind, &[u8])]) -> PathBuf {
    let cold = image_bytes_with(stub, kernel, 0, 64);
    let trailer: &[u8; TRAILER_LEN] = cold[cold.len() - TRAILER_LEN..].try_into().expect("trailer");
    let img = Image::parse(trailer, cold.len() as u64).expect("valid image");
    let mut w = ImageWriter::new(Vec::new());
    for s in img.sections() {
        let bytes = &cold[s.offset as usize..s.end() as usize];
        w.add_bytes(s.kind, s.flags, bytes).expect("section");
    }
    for (kind, bytes) in extra {
        w.add_bytes(*kind, 0, bytes).expect("warm section");
    }
    write_exe(name, &w.finish().expect("image").0)
}

/// Runs the guest once with the saving stub; returns (state, memory).
fn save_snapshot(kernel: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let saver = image_with("warm-saver", &feature_stub("warm-save"), kernel, &[]);
    let dir = scratch().join("warm-snapshot");
    std::fs::create_dir_all(&dir).expect("dir");
    let out = run_with_limit(
        Command::new(&saver).env("SMOLVM_LOG", "kernel").env("SMOLVM_WARM_SAVE", &dir),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(text(&out.stderr), BEFORE, "the saving run stops at the safe point");
    let state = std::fs::read(dir.join("state")).expect("state");
    let memory = std::fs::read(dir.join("memory")).expect("memory");
    (state, memory)
}

#[test]
fn a_saved_guest_resumes_in_a_new_process_where_it_stopped() {
    if !have_kvm() {
        return;
    }
    let kernel = guest_from("warm.c", "warm", "MODE_WARM", &[]);
    // Without a saving stub the safe point is a no-op: one cold run.
    let out = run_serial(&image("warm-cold", &kernel, 64), &[]);
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(0), COLD.to_string()), "{out:?}");

    let (state, memory) = save_snapshot(&kernel);
    let s = linker::warm::MachineState::parse(&state).expect("the stub writes a valid state");
    assert_eq!((s.layout.vcpus, s.layout.mem_size), (1, 64 << 20));
    assert!(s.layout.msr_count >= 10, "TSC, syscall and kvmclock MSRs: {}", s.layout.msr_count);
    let runs = linker::warm::MemoryRuns::parse(&memory, memory.len() as u64, 64 << 20).expect("valid memory");
    let pages: u64 = runs.iter().map(|r| r.pages).sum();
    // Only touched, non-zero pages: the guest, its 64 KiB pattern, page
    // tables, boot data; far from the 16,384 pages of RAM.
    assert!((16..2048).contains(&pages), "{pages} pages saved");
    eprintln!("warm snapshot: state {} B, memory {} B ({pages} pages in {} runs)", state.len(), memory.len(), runs.count());

    let warm = image_with("warm", &feature_stub("warm"), &kernel, &[(Kind::MachineState, &state), (Kind::GuestMemory, &memory)]);
    for _ in 0..2 {
        let out = run_serial(&warm, &[]);
        assert_eq!((out.status.code(), text(&out.stderr)), (Some(0), AFTER.to_string()), "{out:?}");
    }
    // --smolvm-log=debug says it resumed.
    let out = run_with_limit(Command::new(&warm).env("SMOLVM_LOG", "kernel,debug"), Duration::from_secs(60));
    assert!(text(&out.stderr).contains("warm image: resuming the snapshot ("), "{out:?}");
    // A run that cannot resume it (another memory size) boots cold, and
    // says why under --smolvm-log=debug.
    let out = run_with_limit(Command::new(&warm).env("SMOLVM_LOG", "kernel,debug").arg("--smolvm-mem=128"), Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("warm image: booting cold: the run asks for a different memory size"), "{err}");
    let console: String = err.lines().filter(|l| !l.starts_with("smolvm: ")).map(|l| format!("{l}\n")).collect();
    assert_eq!(console, COLD);

    // A snapshot from a host whose TSC ran at twice this one's rate: where
    // KVM cannot scale the TSC (kvm_pvm here) the run boots cold, saying
    // why; where it can, the guest resumes at the saved rate.
    let mut fast = state.clone();
    let khz = u32::from_le_bytes(fast[48..52].try_into().expect("4 bytes"));
    assert!(khz > 0, "the saving stub records the TSC rate");
    fast[48..52].copy_from_slice(&(khz * 2).to_le_bytes());
    let img = image_with("warm-fast-tsc", &feature_stub("warm"), &kernel, &[(Kind::MachineState, &fast), (Kind::GuestMemory, &memory)]);
    let out = run_with_limit(Command::new(&img).env("SMOLVM_LOG", "kernel,debug"), Duration::from_secs(60));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    if err.contains("booting cold") {
        assert!(err.contains("booting cold: this host's TSC runs at another frequency"), "{err}");
    } else {
        assert!(err.contains("resuming the snapshot") && err.ends_with(AFTER), "{err}");
    }

    // A stub without the feature refuses the warm image cleanly.
    let plain = image_with("warm-plain", stub(), &kernel, &[(Kind::MachineState, &state), (Kind::GuestMemory, &memory)]);
    let out = run_serial(&plain, &[]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(text(&out.stderr).contains("unknown section kind"), "{out:?}");
}

#[test]
fn damaged_or_hostile_snapshots_are_refused_with_125() {
    if !have_kvm() {
        return;
    }
    let kernel = guest_from("warm.c", "warm-bad", "MODE_WARM", &[]);
    let (state, memory) = save_snapshot(&kernel);
    let warm_stub = feature_stub("warm");
    // A flipped byte in the saved pages: the section digest catches it.
    let mut image = std::fs::read(image_with("warm-ok", &warm_stub, &kernel, &[(Kind::MachineState, &state), (Kind::GuestMemory, &memory)])).expect("image");
    let trailer: &[u8; TRAILER_LEN] = image[image.len() - TRAILER_LEN..].try_into().expect("trailer");
    let mem_at = Image::parse(trailer, image.len() as u64).expect("valid").section(Kind::GuestMemory).expect("memory").offset as usize;
    image[mem_at + 4096 + 100] ^= 1;
    let damaged = write_exe("warm-damaged", &image);
    let out = run_serial(&damaged, &[]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(text(&out.stderr).contains("section digest mismatch"), "{out:?}");
    // Hostile but well-sealed: an MSR the format does not allow (the
    // digest is recomputed by the writer), and a run outside RAM.
    let mut bad_state = state.clone();
    let msr0 = s_layout(&state).vcpu_at(0) + linker::warm::vcpu_at::MSRS;
    bad_state[msr0..msr0 + 4].copy_from_slice(&0x1bu32.to_le_bytes()); // IA32_APIC_BASE
    let hostile = image_with("warm-hostile", &warm_stub, &kernel, &[(Kind::MachineState, &bad_state), (Kind::GuestMemory, &memory)]);
    let out = run_serial(&hostile, &[]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(text(&out.stderr).contains("snapshot names an MSR it may not set"), "{out:?}");
    let mut bad_memory = memory.clone();
    let first_gpa = linker::warm::MEMORY_HEADER_LEN;
    bad_memory[first_gpa..first_gpa + 8].copy_from_slice(&(64u64 << 20).to_le_bytes());
    let hostile = image_with("warm-hostile-mem", &warm_stub, &kernel, &[(Kind::MachineState, &state), (Kind::GuestMemory, &bad_memory)]);
    let out = run_serial(&hostile, &[]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(text(&out.stderr).contains("memory run unaligned, overlapping or outside guest RAM"), "{out:?}");
}

fn s_layout(state: &[u8]) -> linker::warm::Layout {
    linker::warm::Layout::parse_header(state).expect("header")
}

#[test]
fn warm_capable_stubs_boot_a_cold_image_like_the_default_stub() {
    if !have_kvm() {
        return;
    }
    let kernel = guest_from("warm.c", "warm-cold-each", "MODE_WARM", &[]);
    for features in ["default", "warm", "warm-save"] {
        let stub = if features == "default" { stub().to_path_buf() } else { feature_stub(features) };
        let img = image_with(&format!("cold-{features}"), &stub, &kernel, &[]);
        let out = run_serial(&img, &[]);
        assert_eq!((out.status.code(), text(&out.stderr)), (Some(0), COLD.to_string()), "{features}: {out:?}");
    }
}

/// Device state is not saved yet: a saving stub refuses a guest whose
/// driver has touched a virtio device instead of writing a snapshot that
/// would resume it with its devices reset.
#[test]
fn saving_refuses_a_guest_with_a_virtio_device_in_use() {
    if !have_kvm() {
        return;
    }
    let kernel = guest_from("warm.c", "warm-live", "MODE_LIVE_DEVICE", &[]);
    let saver = image_with("warm-live-saver", &feature_stub("warm-save"), &kernel, &[]);
    let dir = scratch().join("warm-live-snapshot");
    std::fs::create_dir_all(&dir).expect("dir");
    let out = run_with_limit(
        Command::new(&saver).env("SMOLVM_LOG", "kernel").env("SMOLVM_WARM_SAVE", &dir),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(text(&out.stderr).contains("cannot save the warm snapshot: a virtio device is in use"), "{out:?}");
    assert_eq!(std::fs::metadata(dir.join("state")).map(|m| m.len()).ok(), Some(0), "nothing saved");
}

/// A guest mid-way through using its disk (the image's rootfs, slot 3):
/// the transport and queue state go into the snapshot, and after the
/// restore the device takes the next request from where its cursors were
/// (the request before the snapshot is not served twice).
#[test]
fn a_disk_in_use_continues_after_restore() {
    if !have_kvm() {
        return;
    }
    let kernel = guest_from("warm.c", "warm-blk", "MODE_BLK", &[]);
    let rootfs: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    let with_disk = [(Kind::Rootfs, rootfs.as_slice())];
    let cold = image_with("warm-blk-cold", stub(), &kernel, &with_disk);
    let out = run_serial(&cold, &[]);
    let cold_text = format!("blk before ok\n{COLD}blk after ok\n");
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(0), cold_text), "{out:?}");

    let saver = image_with("warm-blk-saver", &feature_stub("warm-save"), &kernel, &with_disk);
    let dir = scratch().join("warm-blk-snapshot");
    std::fs::create_dir_all(&dir).expect("dir");
    let out = run_with_limit(Command::new(&saver).env("SMOLVM_LOG", "kernel").env("SMOLVM_WARM_SAVE", &dir), Duration::from_secs(60));
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(0), format!("blk before ok\n{BEFORE}")), "{out:?}");
    let state = std::fs::read(dir.join("state")).expect("state");
    let memory = std::fs::read(dir.join("memory")).expect("memory");
    let s = linker::warm::MachineState::parse(&state).expect("valid state");
    let disk = (0..s.layout.device_count).filter_map(|i| s.device(i)).find(|d| d.slot == 3).expect("rootfs record");
    assert_eq!((disk.status, disk.queues[0].ready(), disk.queues[0].next_avail), (0xf, true, 1), "{disk:?}");

    let warm = image_with("warm-blk", &feature_stub("warm"), &kernel, &[(Kind::Rootfs, &rootfs), (Kind::MachineState, &state), (Kind::GuestMemory, &memory)]);
    let out = run_serial(&warm, &[]);
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(0), format!("{AFTER}blk after ok\n")), "{out:?}");
    // A disk of another size is not the one the driver saw: cold boot.
    let bigger: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
    let other = image_with("warm-blk-other", &feature_stub("warm"), &kernel, &[(Kind::Rootfs, &bigger), (Kind::MachineState, &state), (Kind::GuestMemory, &memory)]);
    let out = run_with_limit(Command::new(&other).env("SMOLVM_LOG", "kernel,debug"), Duration::from_secs(60));
    assert!(text(&out.stderr).contains("booting cold: this run's devices differ"), "{out:?}");
}

/// `smolvm warm`: runs a cold image under the saving stub and writes the
/// warm image (the image's sections, the restoring stub, the snapshot),
/// which `smolvm verify` accepts and which resumes; an image whose guest
/// never reaches a safe point gets an error naming why, and no output.
#[test]
fn smolvm_warm_makes_a_warm_image_from_a_cold_one() {
    if !have_kvm() {
        return;
    }
    let smolvm = smolvm_tests::product::smolvm();
    let (saver, warm_stub) = (feature_stub("warm-save"), feature_stub("warm"));
    let kernel = guest_from("warm.c", "warm-cmd", "MODE_BLK", &[]);
    let rootfs: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    let cold = image_with("warm-cmd-cold", stub(), &kernel, &[(Kind::Rootfs, &rootfs)]);
    let warm = scratch().join("warm-cmd.vm");
    let out = Command::new(&smolvm).arg("warm").arg(&cold).arg("-o").arg(&warm)
        .arg("--saver-stub").arg(&saver).arg("--stub").arg(&warm_stub).output().expect("smolvm");
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stdout).contains("warm image, state"), "{out:?}");
    let out = Command::new(&smolvm).arg("verify").arg(&warm).output().expect("smolvm");
    assert!(out.status.success(), "{out:?}");
    let out = run_serial(&warm, &[]);
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(0), format!("{AFTER}blk after ok\n")), "{out:?}");

    // The plain guest.c never writes the snapshot port: it exits first.
    let hello = image("warm-cmd-hello", &guest("warm-cmd-hello", "MODE_HELLO", &[]), 64);
    let none = scratch().join("warm-cmd-none.vm");
    let out = Command::new(&smolvm).arg("warm").arg(&hello).arg("-o").arg(&none)
        .arg("--saver-stub").arg(&saver).arg("--stub").arg(&warm_stub).output().expect("smolvm");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("exited with status 0 without reaching a safe point"), "{out:?}");
    assert!(!none.exists(), "no output on failure");
}
