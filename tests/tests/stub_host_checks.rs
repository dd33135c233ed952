//! How the stub judges the host before it boots anything, with bare-metal
//! test guests under /dev/kvm and injected faults (the `test-hooks` stub)
//! or fake devices (a private mount namespace):
//! - a /dev/kvm that cannot run Linux (no VMX/SVM: kvm_pvm) refuses an
//!   image whose kernel-info says Linux with one line; `--smolvm-force`
//!   and `SMOLVM_FORCE=1` boot it anyway; images without kernel-info (the
//!   bare test guests) are not refused;
//! - a KVM capability the stub needs missing; /dev/kvm that is not KVM;
//! - no /proc: the stub finds its own file through AT_EXECFN;
//! - an empty `--smolvm-entry`.

mod stub_common;

use linker::image::{Image, Kind, TRAILER_LEN};
use linker::write::ImageWriter;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;
use stub_common::*;

const LIMIT: Duration = Duration::from_secs(60);

/// Status 125 and exactly one `smolvm: ` line holding every `want`.
fn refused(out: &Output, want: &[&str]) -> String {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("smolvm: "), "{err:?}");
    for w in want {
        assert!(err.contains(w), "want {w:?} in {err:?}");
    }
    err
}

/// `bytes` (an image) rebuilt with a kernel-info section, as `smolvm build`
/// writes for a Linux kernel.
fn with_kernel_info(bytes: &[u8]) -> Vec<u8> {
    let image = Image::parse_slice(&bytes[bytes.len() - TRAILER_LEN..], bytes.len() as u64).expect("image");
    let mut w = ImageWriter::new(Vec::new());
    for s in image.sections() {
        let range = usize::try_from(s.offset).expect("fits")..usize::try_from(s.end()).expect("fits");
        w.add_bytes(s.kind, s.flags, &bytes[range]).expect("section");
    }
    w.add_bytes(Kind::KernelInfo, 0, b"version=6.1.0 (test) #1\n").expect("kernel info");
    w.finish().expect("image").0
}

fn host_has_hw_virt() -> bool {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpuinfo.lines().filter(|l| l.starts_with("flags")).any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

fn hello_ok(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(text(&out.stdout), "", "{out:?}");
}

#[test]
fn a_kvm_that_cannot_run_linux_is_named_and_force_still_tries() {
    if !have_kvm() {
        return;
    }
    let hello = guest("hello", "MODE_HELLO", &[]);
    // The hooked stub hides VMX/SVM (so this runs on hardware hosts too);
    // on a host without them (kvm_pvm) the release stub is checked as well.
    let mut stubs = vec![(hooked_stub(), "no-hw-virt")];
    if !host_has_hw_virt() {
        stubs.push((stub().to_path_buf(), ""));
    }
    for (n, (stub, hook)) in stubs.iter().enumerate() {
        let linux = write_exe(&format!("linux-{n}"), &with_kernel_info(&image_bytes_with(stub, &hello, 0, 64)));
        let run = |args: &[&str], force_env: bool| {
            let mut c = Command::new(&linux);
            c.args(args).env("SMOLVM_TEST_HOOK", hook).env_remove("SMOLVM_FORCE");
            if force_env {
                c.env("SMOLVM_FORCE", "1");
            }
            run_with_limit(&mut c, LIMIT)
        };
        refused(&run(&[], false), &["cannot run Linux", "VMX/SVM", "kvm_pvm", "nested virtualization", "--smolvm-force"]);
        hello_ok(&run(&["--smolvm-force"], false));
        hello_ok(&run(&[], true));
        // The bare guest without kernel-info is not Linux: it runs as before.
        let bare = write_exe(&format!("bare-{n}"), &image_bytes_with(stub, &hello, 0, 64));
        hello_ok(&run_with_limit(Command::new(&bare).env("SMOLVM_TEST_HOOK", hook), LIMIT));
    }
}

#[test]
fn a_missing_capability_and_a_fake_device_get_one_line() {
    if !have_kvm() {
        return;
    }
    let img = write_exe("nocap", &image_bytes_with(&hooked_stub(), &guest("hello", "MODE_HELLO", &[]), 0, 64));
    let out = run_with_limit(Command::new(&img).env("SMOLVM_TEST_HOOK", "missing-cap"), LIMIT);
    refused(&out, &["KVM lacks a capability", "immediate exit", "newer host kernel"]);

    // /dev/null posing as /dev/kvm: it opens, but answers no KVM ioctl.
    let img = image("fakekvm", &guest("hello", "MODE_HELLO", &[]), 64);
    if let Some(out) = in_private_mounts("mount --bind /dev/null /dev/kvm", &img) {
        refused(&out, &["/dev/kvm is not KVM", "KVM_GET_API_VERSION"]);
    }
}

/// Runs `image` after `setup` in a private mount namespace (root, or
/// unprivileged user namespaces); `None` (a visible skip) without one.
fn in_private_mounts(setup: &str, image: &Path) -> Option<Output> {
    let is_root = rustix::process::geteuid().is_root();
    let namespace: &[&str] = if is_root { &["--mount"] } else { &["--user", "--map-root-user", "--mount"] };
    let can = Command::new("unshare").args(namespace).arg("true").status().is_ok_and(|s| s.success());
    if !smolvm_tests::prereq::require(can, "a private mount namespace (`unshare --mount`)") {
        return None;
    }
    let mut cmd = Command::new("unshare");
    cmd.args(namespace).args(["sh", "-c", &format!("{setup} && exec \"$0\"")]).arg(image);
    Some(run_with_limit(&mut cmd, LIMIT))
}

#[test]
fn without_proc_the_stub_finds_itself_through_at_execfn() {
    if !have_kvm() {
        return;
    }
    let img = image("noproc", &guest("hello", "MODE_HELLO", &[]), 64);
    if let Some(out) = in_private_mounts("mount -t tmpfs none /proc", &img) {
        hello_ok(&out);
    }
}

#[test]
fn an_empty_entry_is_a_bad_value() {
    if !have_kvm() {
        return;
    }
    let img = image("entry", &guest("hello", "MODE_HELLO", &[]), 64);
    refused(&run(&img, &["--smolvm-entry="]), &["bad value", "--smolvm-entry="]);
    // The bare guest ignores the runtime config: an entry is taken.
    hello_ok(&run(&img, &["--smolvm-entry=/bin/sh"]));
}
