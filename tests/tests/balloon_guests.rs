//! The virtio-balloon of vmm-stub (free page reporting) under the real
//! /dev/kvm, driven by a bare-metal test guest (tests/guests/balloon.c, a
//! minimal polling driver), with the seccomp filter on:
//!
//! - reported free ranges go back to the host and read as zeros, their
//!   neighbours keep their bytes, and the guest can use the pages again;
//! - hostile reports (unaligned start or length, empty, read-only buffer)
//!   are refused in-band and free nothing; an inflate request frees nothing;
//! - a range past the end of RAM or one whose address wraps is a malformed
//!   queue: NEEDS_RESET, never a host fault; after a reset the device works;
//! - `--smolvm-balloon=no` leaves the slot empty (and `madvise` out of the filter).
//!
//! Each guest exits through the exit port with 0, or the number of the
//! check that failed.

mod stub_common;

use std::process::Command;
use std::time::Duration;
use stub_common::{guest_from, have_kvm, image_bytes, run_with_limit, text, write_exe};

#[test]
fn balloon_reports_free_pages_and_refuses_hostile_ranges() {
    if !have_kvm() {
        return;
    }
    let g = guest_from("balloon.c", "balloon", "MODE_BALLOON", &[]);
    let img = write_exe("balloon", &image_bytes(&g, 64));
    let out = run_with_limit(&mut Command::new(&img), Duration::from_secs(120));
    assert_eq!(out.status.code(), Some(0), "failed check = exit status; stderr {}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");

    let g = guest_from("balloon.c", "balloon-absent", "MODE_ABSENT", &[]);
    let img = write_exe("balloon-absent", &image_bytes(&g, 64));
    for (flag, env) in [(Some("--smolvm-balloon=no"), None), (None, Some("0"))] {
        let mut cmd = Command::new(&img);
        cmd.args(flag);
        if let Some(v) = env {
            cmd.env("SMOLVM_BALLOON", v);
        }
        let out = run_with_limit(&mut cmd, Duration::from_secs(120));
        assert_eq!(out.status.code(), Some(0), "{flag:?} {env:?}: the balloon is still there; {}", text(&out.stderr));
    }
    // And on by default: the absent-guest fails its check.
    let out = run_with_limit(&mut Command::new(&img), Duration::from_secs(120));
    assert_eq!(out.status.code(), Some(1), "balloon missing by default; {}", text(&out.stderr));
}
