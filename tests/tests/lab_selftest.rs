//! Self-test of the KVM lab (tests/src/lab.rs): exact capture of plain
//! commands, and Linux guests booted under KVM by QEMU, all through one lab
//! (one L1 boot per test binary in lab mode; host processes in direct mode).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use smolvm_tests::lab::{self, Case, Outcome, TempDir};

fn expect(out: &Outcome, status: i32, stdout: &[u8], stderr: &[u8]) {
    assert_eq!(
        (out.status, out.stdout.as_slice(), out.stderr.as_slice(), out.timed_out),
        (Some(status), stdout, stderr, false),
        "stdout {:?} stderr {:?}",
        out.stdout_lossy(),
        out.stderr_lossy()
    );
}

#[test]
fn plain_commands_are_captured_exactly() {
    let all_bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let odd_args = ["a b", "it's", "\"q\"", "$(x) `y` \\z", "\n", "", "\u{e9}", "-"];
    let mut odd_arg_bytes: Vec<std::ffi::OsString> =
        odd_args.iter().map(Into::into).collect();
    odd_arg_bytes.push(std::os::unix::ffi::OsStringExt::from_vec(vec![0x80, 0xff, 0x81, 0x01]));
    let mut printf_argv: Vec<std::ffi::OsString> =
        vec!["sh".into(), "-c".into(), "printf '%s\\0' \"$@\"".into(), "sh".into()];
    printf_argv.extend(odd_arg_bytes.iter().cloned());
    let mut expected_args = Vec::new();
    for a in &odd_arg_bytes {
        expected_args.extend_from_slice(std::os::unix::ffi::OsStrExt::as_bytes(a.as_os_str()));
        expected_args.push(0);
    }
    let out_dir = lab::writable_dir().expect("writable dir");
    let dir_arg = out_dir.path().to_str().expect("utf-8 temp path");

    let cases = [
        Case::new("status", ["sh", "-c", "echo out; echo err >&2; exit 7"]),
        Case::new("binary stdin", ["cat"]).stdin(all_bytes.clone()),
        Case::new("argv bytes", printf_argv),
        Case::new("env and cwd", ["env"]).env("FOO", "a b'c").cwd("/usr"),
        Case::new("pwd", ["sh", "-c", "pwd; exit 0"]).cwd("/usr/bin"),
        Case::new("hang", ["sleep", "1000"]).timeout(Duration::from_secs(3)),
        Case::new("signal", ["sh", "-c", "kill -9 $$"]),
        Case::new("after hang", ["sh", "-c", "echo still here"]),
        Case::new("writes a file", ["sh", "-c", "printf data >\"$1/f\"", "sh", dir_arg]),
        Case::new("missing", ["/no/such/program"]),
        Case::new("signalled", ["sh", "-c", "trap 'echo got TERM; exit 3' TERM; sleep 60 & wait"])
            .signal_after(Duration::from_secs(3), 15),
    ];
    let out = lab::run(&cases);
    assert_eq!(out.len(), cases.len());
    expect(&out[0], 7, b"out\n", b"err\n");
    expect(&out[1], 0, &all_bytes, b"");
    expect(&out[2], 0, &expected_args, b"");
    expect(&out[3], 0, format!("FOO=a b'c\nPATH={}\n", lab::DEFAULT_PATH).as_bytes(), b"");
    expect(&out[4], 0, b"/usr/bin\n", b"");
    assert!(out[5].timed_out && out[5].status.is_none(), "{:?}", out[5]);
    assert!(out[5].elapsed >= Duration::from_secs(3), "{:?}", out[5].elapsed);
    expect(&out[6], 137, b"", b"");
    expect(&out[7], 0, b"still here\n", b"");
    expect(&out[8], 0, b"", b"");
    assert_eq!(fs::read(out_dir.path().join("f")).expect("file written in the lab"), b"data");
    assert_eq!(out[9].status, Some(127));
    assert!(out[9].stdout.is_empty() && !out[9].stderr.is_empty());
    expect(&out[10], 3, b"got TERM\n", b"");
}

/// The guest kernel: SMOLVM_TEST_KERNEL, else `smolvm kernel path`, else the
/// scratch build when it completed.
fn guest_kernel() -> PathBuf {
    if let Some(k) = std::env::var_os("SMOLVM_TEST_KERNEL") {
        return k.into();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for profile in ["release", "debug"] {
        let smolvm = root.join("target").join(profile).join("smolvm");
        let Ok(out) = Command::new(&smolvm).args(["kernel", "path"]).output() else { continue };
        let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() && Path::new(&path).is_file() {
            return path.into();
        }
    }
    let scratch = Path::new("/root/kbuild-scratch/linux-source-6.1/vmlinux");
    let done = fs::read_to_string("/root/kbuild-scratch/time.log").unwrap_or_default();
    if done.contains("real") && scratch.is_file() {
        return scratch.into();
    }
    panic!("no guest kernel: set SMOLVM_TEST_KERNEL or run `smolvm kernel build` (make kernel)");
}

/// L2's /init: prints its case's lines on the serial console (stdout) and
/// hvc0 (stderr), its exit code as the last serial line, then resets.
const GUEST_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mount -t devtmpfs dev /dev
case $labcase in
hang) exec /bin/busybox sleep 100000 ;;
esac
echo "L2: hello from $labcase"
echo "$labcase to stderr" >/dev/hvc0
echo "L2-exit=$labexit"
/bin/busybox reboot -f
"#;

/// Runs in L1 (or on a hardware-KVM host): boots KERNEL+INITRAMFS under KVM
/// and turns the guest's two consoles and exit line into stdout, stderr and
/// the exit status.
const RUN_GUEST: &str = r#"#!/bin/sh
set -u
d=$(mktemp -d /dev/shm/l2.XXXXXX) || exit 125
qemu-system-x86_64 -M microvm,acpi=off -accel kvm -cpu host -m 96 -nodefaults \
  -no-reboot -display none -monitor none \
  -kernel "$1" -initrd "$2" -append "console=ttyS0 quiet reboot=t panic=-1 labcase=$3 labexit=$4" \
  -serial "file:$d/out" -device virtio-serial-device \
  -chardev "file,id=err,path=$d/err" -device virtconsole,chardev=err >"$d/qemu" 2>&1
q=$?
[ "$q" = 0 ] || { cat "$d/qemu" >&2; echo "qemu exited $q" >&2; exit 125; }
tr -d '\r' <"$d/out" | sed -n 's/^L2: //p'
tr -d '\r' <"$d/err" >&2
code=$(tr -d '\r' <"$d/out" | sed -n 's/^L2-exit=//p')
rm -rf "$d"
exit "${code:-125}"
"#;

/// A directory with the guest initramfs (busybox + GUEST_INIT) and
/// RUN_GUEST, built on the host with cpio.
fn guest_files() -> TempDir {
    let dir = TempDir::new("smolvm-lab-selftest").expect("temp dir");
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("bin")).expect("mkdir");
    fs::create_dir_all(root.join("dev")).expect("mkdir");
    fs::create_dir_all(root.join("proc")).expect("mkdir");
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("busybox-static is needed (make deps)");
    fs::copy(busybox, root.join("bin/busybox")).expect("copy busybox");
    write_exec(&root.join("init"), GUEST_INIT);
    write_exec(&dir.path().join("run-guest"), RUN_GUEST);
    let status = Command::new("sh")
        .arg("-c")
        .arg("cd \"$1\" && find . | cpio -o -H newc --quiet -R 0:0 >\"$2\"")
        .arg("sh")
        .arg(&root)
        .arg(dir.path().join("initramfs.cpio"))
        .status()
        .expect("run cpio");
    assert!(status.success(), "cpio failed");
    dir
}

fn write_exec(path: &Path, text: &str) {
    fs::write(path, text).expect("write");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn kvm_guests_run_in_one_batch_and_a_hang_fails_only_itself() {
    lab::prewarm(); // L1 boots while the initramfs is built
    let kernel = guest_kernel();
    let files = guest_files();
    let run_guest = files.path().join("run-guest");
    let initramfs = files.path().join("initramfs.cpio");
    let guest = |name: &str, exit: &str| {
        let argv = [run_guest.as_os_str(), kernel.as_os_str(), initramfs.as_os_str()];
        let mut case = Case::new(name, argv);
        case.argv.extend([name.into(), exit.into()]);
        case.timeout(Duration::from_secs(90))
    };
    let cases = [
        guest("first", "0"),
        guest("second", "3"),
        guest("hang", "0").timeout(Duration::from_secs(20)),
        guest("third", "42"),
        guest("fourth", "0"),
    ];
    let out = lab::run(&cases);
    for (case, o) in cases.iter().zip(&out) {
        eprintln!("lab case {:>6}: {:.2} s", case.name, o.elapsed.as_secs_f64());
    }
    expect(&out[0], 0, b"hello from first\n", b"first to stderr\n");
    expect(&out[1], 3, b"hello from second\n", b"second to stderr\n");
    assert!(out[2].timed_out && out[2].status.is_none(), "{:?}", out[2]);
    expect(&out[3], 42, b"hello from third\n", b"third to stderr\n");
    expect(&out[4], 0, b"hello from fourth\n", b"fourth to stderr\n");
}

/// Env var that turns `lab_child_process` into the child of
/// `killing_the_test_process_leaves_no_qemu`.
const CHILD_ENV: &str = "SMOLVM_LAB_SELFTEST_CHILD";

/// Helper process: with CHILD_ENV set, boots a lab, prints QEMU's pid,
/// then waits to be killed. Run by hand (`--ignored`, no CHILD_ENV), it does
/// the parent's whole check instead of passing without testing.
#[test]
#[ignore = "helper run by killing_the_test_process_leaves_no_qemu"]
fn lab_child_process() {
    if std::env::var_os(CHILD_ENV).is_none() {
        killing_the_test_process_leaves_no_qemu();
        return;
    }
    let lab = lab::Lab::boot(&[]).expect("boot a lab");
    println!("qemu {}", lab.qemu_pid());
    std::thread::sleep(Duration::from_secs(600));
}

/// Whether `pid` is a live (not zombie) process.
fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

#[test]
fn killing_the_test_process_leaves_no_qemu() {
    use std::io::BufRead;
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .args(["--exact", "lab_child_process", "--ignored", "--nocapture"])
        .env(CHILD_ENV, "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the helper");
    let stdout = child.stdout.take().expect("piped");
    let qemu: i32 = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("qemu ")?.parse().ok())
        .expect("the helper printed QEMU's pid");
    assert!(alive(qemu), "QEMU {qemu} should be running");
    child.kill().expect("SIGKILL the helper");
    child.wait().expect("reap the helper");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while alive(qemu) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(qemu), "QEMU {qemu} outlived the process that started it");
}
