//! Hostile and broken input to the stub binary: every kind of malformed
//! image from the image format's corruption generator, broken kernels,
//! bad options and host errors. Each must end with status 125 and exactly
//! one `smolvm: ...` line on stderr: never a panic, a hang or a boot.

mod stub_common;

use linker::image::{Kind, TRAILER_LEN};
use linker::testing::{cases, Mutation};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::time::Duration;
use stub_common::*;

/// Asserts the documented failure: status 125, one line naming smolvm,
/// no internal error (panic), nothing on stdout.
fn assert_refused(out: &Output, what: &str) -> String {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{what}: {out:?}");
    assert!(err.starts_with("smolvm: ") && err.ends_with('\n'), "{what}: {err:?}");
    assert_eq!(err.lines().count(), 1, "{what}: {err:?}");
    assert!(!err.contains("internal error"), "{what}: the stub panicked: {err:?}");
    assert_eq!(text(&out.stdout), "", "{what}");
    err
}

fn run_bytes(name: &str, bytes: &[u8], args: &[&str]) -> Option<Output> {
    let path = write_exe(name, bytes);
    // A file cut inside the stub's own ELF cannot even be executed: None.
    try_run_with_limit(Command::new(&path).args(args), Duration::from_secs(30))
}

#[test]
fn malformed_images_are_refused_before_any_vm_exists() {
    let base = image_bytes(&guest("hello", "MODE_HELLO", &[]), 64);
    let stub_len = std::fs::metadata(stub()).expect("stub").len();
    let all = cases(&base);
    let mut tried = 0;
    for (i, case) in all.iter().enumerate() {
        // Sample the bulk families (tens of thousands of truncations and
        // trailer bit flips); run every named, re-sealed corruption.
        let pick = match &case.mutation {
            Mutation::Truncate(n) => *n >= stub_len && (i % 4093 == 0 || *n + 1 == base.len() as u64
                || *n + TRAILER_LEN as u64 == base.len() as u64),
            Mutation::FlipTrailerBit(bit) => bit % 61 == 0,
            Mutation::Append(_) | Mutation::Trailer(_) => true,
        };
        if !pick || case.parse(&base).is_ok() {
            continue;
        }
        let Some(out) = run_bytes("corrupt", &case.apply(&base), &[]) else { continue };
        let err = assert_refused(&out, &case.name);
        assert!(err.contains("image") || err.contains("/proc/self/exe"), "{}: {err}", case.name);
        tried += 1;
    }
    assert!(tried > 60, "only {tried} cases ran");
}

#[test]
fn broken_kernels_are_refused() {
    let hello = guest("hello", "MODE_HELLO", &[]);
    let mut not_elf = hello.clone();
    not_elf[..4].copy_from_slice(b"MZ\0\0");
    let mut wrong_machine = hello.clone();
    wrong_machine[18] = 3; // EM_386
    let mut wild_phoff = hello.clone();
    wild_phoff[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
    let mut wild_entry = hello.clone();
    wild_entry[24..32].copy_from_slice(&0xdead_0000u64.to_le_bytes());
    let mut bz = vec![0u8; 8192];
    bz[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    bz[0x206..0x208].copy_from_slice(&0x0200u16.to_le_bytes()); // protocol 2.00
    for (name, kernel, needle) in [
        ("not-elf", not_elf, "neither an ELF"),
        ("wrong-machine", wrong_machine, "x86_64"),
        ("wild-phoff", wild_phoff, "program headers"),
        ("wild-entry", wild_entry, "entry point"),
        ("old-bzimage", bz, "2.12"),
    ] {
        let out = run(&image(name, &kernel, 64), &[]);
        let err = assert_refused(&out, name);
        assert!(err.contains(needle), "{name}: {err}");
    }
}

#[test]
fn guest_memory_too_small_is_one_line() {
    let img = image("small", &guest("hello", "MODE_HELLO", &[]), 64);
    // The guest loads at 2 MiB: neither 1 nor 2 MiB can hold it.
    for mem in ["--smolvm-mem=1", "--smolvm-mem=2"] {
        let err = assert_refused(&run(&img, &[mem]), mem);
        assert!(err.contains("too small") && err.contains("--smolvm-mem"), "{err}");
    }
    let err = assert_refused(&run(&img, &["--smolvm-mem=2000G"]), "2000 GiB");
    assert!(err.contains("maximum"), "{err}");
}

#[test]
fn bad_options_are_refused_and_help_and_info_work() {
    let img = image("opts", &guest("hello", "MODE_HELLO", &[]), 64);
    let err = assert_refused(&run(&img, &["--smolvm-nope"]), "unknown option");
    assert!(err.contains("--smolvm-nope") && err.contains("--smolvm-help"), "{err}");
    assert_refused(&run(&img, &["--smolvm-mem=lots"]), "bad mem");
    let mut cmd = Command::new(&img);
    cmd.env("SMOLVM_MEM", "0");
    assert_refused(&run_with_limit(&mut cmd, Duration::from_secs(30)), "SMOLVM_MEM=0");

    let out = run(&img, &["--smolvm-help"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text(&out.stdout).contains("--smolvm-mem=MIB"));
    let out = run(&img, &["--smolvm-info"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let info = text(&out.stdout);
    for needle in ["kernel: ", "(ELF vmlinux)", "initramfs: ", "manifest:", "entry /bin/app", "mem 64"] {
        assert!(info.contains(needle), "{needle} missing in {info}");
    }
    let rootfs_section = format!("  {}: ", Kind::Rootfs.name());
    assert!(!info.contains(&rootfs_section), "no rootfs section in this image: {info}");
}

#[test]
fn a_relative_or_empty_working_directory_is_refused_before_the_boot() {
    let img = image("workdir", &guest("hello", "MODE_HELLO", &[]), 64);
    let err = assert_refused(&run(&img, &["--smolvm-workdir=tmp"]), "relative workdir");
    assert!(err.contains("bad value in --smolvm-workdir=tmp"), "{err}");
    for value in ["", "data"] {
        let mut cmd = Command::new(&img);
        cmd.env("SMOLVM_WORKDIR", value);
        let err = assert_refused(&run_with_limit(&mut cmd, Duration::from_secs(30)), "SMOLVM_WORKDIR");
        assert!(err.contains(&format!("SMOLVM_WORKDIR={value} ")), "{err}");
    }
}

#[test]
fn a_switch_variable_with_another_value_than_yes_or_no_is_refused() {
    let img = image("switch-vars", &guest("hello", "MODE_HELLO", &[]), 64);
    for (var, value) in [("SMOLVM_FORCE", "true"), ("SMOLVM_NO_SERVICES", "on"), ("SMOLVM_NO_SECCOMP", "")] {
        let mut cmd = Command::new(&img);
        cmd.env(var, value);
        let err = assert_refused(&run_with_limit(&mut cmd, Duration::from_secs(30)), var);
        assert!(err.contains(&format!("bad value in {var}={value} ")), "{err}");
    }
}

#[test]
fn host_loopback_without_passt_is_refused_not_ignored() {
    let img = image("host-loopback", &guest("hello", "MODE_HELLO", &[]), 64);
    let err = assert_refused(&run(&img, &["--smolvm-net=none", "--smolvm-net-host-loopback"]), "with none");
    assert!(err.contains("-net-host-loopback need a network"), "{err}");
    let tap = ["--smolvm-net=tap:smolvmqa0", "--smolvm-ip=10.9.0.2/24", "--smolvm-net-host-loopback"];
    let err = assert_refused(&run(&img, &tap), "with a TAP");
    assert!(err.contains("-net-host-loopback work with passt only"), "{err}");
}

#[test]
fn control_characters_in_a_bad_value_stay_on_one_line() {
    let img = image("ctl-chars", &guest("hello", "MODE_HELLO", &[]), 64);
    // A newline once split the message in two; an escape reached the terminal.
    let err = assert_refused(&run(&img, &["--smolvm-mem=1\nsmolvm: forged"]), "newline");
    assert!(err.contains("--smolvm-mem=1?smolvm: forged (see"), "{err}");
    let mut cmd = Command::new(&img);
    cmd.env("SMOLVM_CPUS", "\x1b]0;title\x07");
    let err = assert_refused(&run_with_limit(&mut cmd, Duration::from_secs(30)), "escape");
    assert!(err.contains("SMOLVM_CPUS=?]0;title? (see") && !err.contains('\x1b'), "{err:?}");
}

#[test]
fn a_writable_disk_given_twice_is_named_as_such() {
    let img = image("disk-twice", &guest("hello", "MODE_HELLO", &[]), 64);
    let disk = scratch().join("disk-twice.img");
    std::fs::write(&disk, vec![0u8; 4096]).expect("disk");
    let arg = format!("--smolvm-disk={}", disk.display());
    let err = assert_refused(&run(&img, &[&arg, &arg]), "disk twice");
    assert!(err.contains("locked by another VM, or given twice"), "{err}");
}

#[test]
fn a_host_port_published_twice_is_refused_before_passt_starts() {
    let img = image("publish-twice", &guest("hello", "MODE_HELLO", &[]), 64);
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    // Same port and protocol on another address: passt refuses it too
    // ("Overlapping port specifier") and would exit once started.
    let again = format!("--smolvm-publish=127.0.0.2:{port}:81");
    let err = assert_refused(&run(&img, &[&format!("--smolvm-publish={port}:80"), &again]), "port twice");
    assert!(err.contains(&format!("127.0.0.2:{port}/tcp")) && err.contains("already taken"), "{err}");
    let mut cmd = Command::new(&img);
    cmd.env("SMOLVM_PUBLISH", format!("{port}:53/udp,0.0.0.0:{port}:54/udp"));
    let err = assert_refused(&run_with_limit(&mut cmd, Duration::from_secs(30)), "SMOLVM_PUBLISH twice");
    assert!(err.contains(&format!("0.0.0.0:{port}/udp")), "{err}");
}

#[test]
fn bad_shares_are_refused_with_one_line() {
    let img = image("shares", &guest("hello", "MODE_HELLO", &[]), 64);
    let err = assert_refused(&run(&img, &["--smolvm-share=/nonexistent-smolvm:/x"]), "missing share");
    assert!(err.contains("share /nonexistent-smolvm: no such directory"), "{err}");
    let err = assert_refused(&run(&img, &["--smolvm-share=/etc/hostname:/x"]), "file as share");
    assert!(err.contains("not a directory"), "{err}");
    assert_refused(&run(&img, &["--smolvm-share=/tmp:relative"]), "relative guest path");
    // Over the root, or not normal: refused as a disk's guest path is.
    for guest in ["/", "/a/..", "//x"] {
        assert_refused(&run(&img, &[&format!("--smolvm-share=/tmp:{guest}")]), guest);
    }
    let many = vec!["/tmp:/s"; 13].join(",");
    let mut cmd = Command::new(&img);
    cmd.env("SMOLVM_SHARE", &many);
    let err = assert_refused(&run_with_limit(&mut cmd, Duration::from_secs(30)), "13 shares");
    assert!(err.contains("too many"), "{err}");
}

#[test]
fn host_without_usable_kvm_gets_a_clear_line() {
    let img = image("nokvm", &guest("hello", "MODE_HELLO", &[]), 64);
    // No /dev/kvm: a private mount namespace with an empty /dev. The
    // prerequisite is checked before the stub runs: whatever the stub does
    // then (a crash, no output) is judged, never taken for a skip.
    let is_root = rustix::process::geteuid().is_root();
    let namespace: &[&str] = if is_root { &["--mount"] } else { &["--user", "--map-root-user", "--mount"] };
    let can_unshare = Command::new("unshare").args(namespace).arg("true").status().is_ok_and(|s| s.success());
    if smolvm_tests::prereq::require(
        can_unshare,
        "a private mount namespace (`unshare --mount`: root, or unprivileged user namespaces)",
    ) {
        let mut cmd = Command::new("unshare");
        cmd.args(namespace).args(["sh", "-c", "mount -t tmpfs none /dev && exec \"$0\""]).arg(&img);
        let err = assert_refused(&run_with_limit(&mut cmd, Duration::from_secs(30)), "no /dev/kvm");
        assert!(err.contains("no /dev/kvm"), "{err}");
    }
    // No permission: an unprivileged user, when /dev/kvm is not world-writable.
    let mode = std::fs::metadata("/dev/kvm").map(|m| m.permissions().mode());
    if smolvm_tests::prereq::root("to run the stub as another user (setpriv)")
        && smolvm_tests::prereq::require(
            mode.as_ref().is_ok_and(|m| m & 0o006 != 0o006),
            &match &mode {
                Ok(m) => format!("a /dev/kvm that other users may not open (it is mode {m:o})"),
                Err(e) => format!("a /dev/kvm ({e})"),
            },
        )
    {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(&img);
        let err = assert_refused(&run_with_limit(&mut cmd, Duration::from_secs(30)), "no permission");
        assert!(err.contains("add the user to the group that owns it (ls -l /dev/kvm"), "{err}");
    }
}
