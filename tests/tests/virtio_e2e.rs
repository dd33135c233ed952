//! virtio-console and virtio-blk end to end: real images (`smolvm build`,
//! busybox rootfs on the squashfs /dev/vda) run by the real stub with our
//! kernel and smol-init, directly on hardware KVM or else through the KVM
//! lab. stdin streams in and ends with EOF, stdout/stderr stay separate
//! and byte-exact, exit statuses and forwarded signals arrive, and an
//! extra `--smolvm-disk` is written through.
//!
//! Needs `target/<profile>/{vmm-stub,smol-init,smolvm}` (built per package:
//! `cargo build -p vmm-stub`, `-p smol-init`, `-p builder`, same profile),
//! the guest kernel (see `qemu::kernel`) and busybox-static.

use smolvm_tests::lab::{self, Case};
use smolvm_tests::{product, qemu};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `dir/NAME.vm`: a busybox rootfs whose entry is `/bin/ENTRY`.
fn image(dir: &Path, name: &str, entry: &str) -> PathBuf {
    let root = dir.join(format!("rootfs-{name}"));
    let applets = ["sh", "cat", "echo", "ls", "wc", "false", "sleep", "dd", "head"];
    product::busybox_rootfs(&root, &applets, &["proc", "sys", "dev", "tmp"]);
    product::build_image(&root, &format!("/bin/{entry}"), &["--mem", "128M"], &dir.join(format!("{name}.vm")))
}

fn random_bytes(n: usize) -> Vec<u8> {
    // xorshift: deterministic, covers every byte value (NUL, ^C, ^D, \r, 0xff).
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Runs `cases` in the lab (once more in a fresh L1 if the lab itself,
/// not a case, fails: see lab::run).
fn run_cases(cases: &[Case]) -> Vec<lab::Outcome> {
    lab::run_images(cases)
}

#[test]
fn stdio_exit_status_and_disks() {
    let work = qemu::scratch_dir("virtio-e2e");
    let cat = image(&work, "cat", "cat");
    let fals = image(&work, "false", "false");
    let sh = image(&work, "sh", "sh");
    let w = lab::writable_dir().expect("writable dir");
    let disk = w.path().join("disk.img");
    fs::write(&disk, vec![0u8; 1 << 20]).expect("disk");
    let disk_opt = format!("--smolvm-disk={}", disk.display());
    let random = random_bytes(1 << 20);
    let long = Duration::from_secs(150);
    let mut out = run_cases(&[
        Case::image(&cat, &[]).stdin(b"hi\n".to_vec()).timeout(long),
        Case::image(&cat, &[]).stdin(random.clone()).timeout(long),
        Case::image(&sh, &["-c", "echo out; echo err >&2; echo out2"]).timeout(long),
        Case::image(&fals, &[]).timeout(long),
        Case::image(&sh, &["-c", "exit 3"]).timeout(long),
    ]);
    out.extend(run_cases(&[
        Case::image(&sh, &["-c", "ls /; wc -c"]).stdin(vec![b'x'; 5000]).timeout(long),
        Case::image(&sh, &[&disk_opt, "-c", "echo written-through | dd of=/dev/vdb conv=fsync 2>/dev/null; echo ok"])
            .timeout(long),
        Case::image(&sh, &["-c", "head -c 5 /dev/vda | wc -c"]).timeout(long),
        // Host stdio is pipes: as under `docker run` without -t, no stream is a tty.
        Case::image(&sh, &["-c", "for fd in 0 1 2; do test -t $fd && echo $fd-tty || echo $fd-notty; done; echo e >&2"])
            .timeout(long),
        // 4.5 GiB: RAM continues above 4 GiB past the virtio-mmio window
        // (the page allocator hands out ZONE_NORMAL, i.e. that RAM, first).
        Case::image(&sh, &["--smolvm-mem=4608", "-c", "while read k v u; do [ $k = MemTotal: ] && echo $v; done </proc/meminfo; head -c 300000 /dev/vda | wc -c"])
            .timeout(long),
    ]));
    let show = |i: usize| format!("case {i}: status {:?}\nstdout: {}\nstderr: {}", out[i].status, out[i].stdout_lossy(), out[i].stderr_lossy());
    assert_eq!((out[0].status, out[0].stdout.as_slice()), (Some(0), &b"hi\n"[..]), "{}", show(0));
    assert_eq!(out[1].status, Some(0), "{}", show(1));
    assert!(out[1].stdout == random, "1 MiB through cat differs ({} bytes back)", out[1].stdout.len());
    assert_eq!((out[2].stdout_lossy(), out[2].stderr_lossy()), ("out\nout2\n".into(), "err\n".into()), "{}", show(2));
    assert_eq!(out[3].status, Some(1), "{}", show(3));
    assert_eq!(out[4].status, Some(3), "{}", show(4));
    assert_eq!(out[5].status, Some(0), "{}", show(5));
    // stdout is not a tty, so busybox ls prints one name per line.
    assert!(out[5].stdout_lossy().lines().any(|l| l == "bin") && out[5].stdout_lossy().ends_with("5000\n"), "{}", show(5));
    assert_eq!((out[6].status, out[6].stdout_lossy()), (Some(0), "ok\n".into()), "{}", show(6));
    assert!(fs::read(&disk).expect("disk").starts_with(b"written-through\n"), "{}", show(6));
    assert_eq!((out[7].status, out[7].stdout_lossy()), (Some(0), "5\n".into()), "{}", show(7));
    assert_eq!((out[8].status, out[8].stdout_lossy(), out[8].stderr_lossy()), (Some(0), "0-notty\n1-notty\n2-notty\n".into(), "e\n".into()), "{}", show(8));
    let lines: Vec<String> = out[9].stdout_lossy().lines().map(String::from).collect();
    let total_kib: u64 = lines.first().and_then(|l| l.parse().ok()).unwrap_or(0);
    assert!(out[9].status == Some(0) && (4 << 20..4608 << 10).contains(&total_kib), "MemTotal > 4 GiB expected; {}", show(9));
    assert_eq!(lines.get(1).map(String::as_str), Some("300000"), "{}", show(9));
    fs::remove_dir_all(&work).ok();
}

/// SIGTERM to the stub reaches the app through init (a trapping shell
/// prints and exits with its own status).
#[test]
fn sigterm_reaches_a_trapping_app() {
    let work = qemu::scratch_dir("virtio-e2e-signal");
    let sh = image(&work, "sh", "sh");
    let trap = "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 1; done";
    // Sent once the app is ready (a fixed delay was either flaky or slow under TCG).
    let out = lab::run_images(&[Case::image(&sh, &["-c", trap])
        .timeout(Duration::from_secs(150))
        .signal_on_stdout("ready", 15)]);
    let o = &out[0];
    assert_eq!((o.status, o.stdout_lossy()), (Some(7), "ready\ngot TERM\n".into()), "stderr: {}", o.stderr_lossy());
    fs::remove_dir_all(&work).ok();
}
