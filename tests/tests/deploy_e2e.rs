//! docs/DEPLOY.md's device update flow and systemd unit (issue 24):
//! `docs/deploy/smolvm-update` against a real registry on loopback
//! (`docker-registry`): first install, "already current" without a restart,
//! an update that keeps the old file as `.prev` and restarts, and a release
//! signed by another key that is refused with the running file untouched;
//! the unit passes `systemd-analyze verify` where systemd is installed.
//!
//! Needs `target/<profile>/{vmm-stub,smol-init,smolvm}`, the guest kernel,
//! busybox-static and docker-registry.

use smolvm_tests::registry::{have_registry, Registry};
use smolvm_tests::{prereq, product, qemu};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/deploy/smolvm-update")
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "failed: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn smolvm(args: &[&str]) -> String {
    ok(Command::new(product::smolvm()).args(args).env("DOCKER_CONFIG", "/nonexistent").output().expect("smolvm"))
}

fn image(dir: &Path, name: &str, text: &str) -> PathBuf {
    let root = dir.join(format!("root-{name}"));
    product::busybox_rootfs(&root, &["sh", "echo"], &["proc", "sys", "dev"]);
    let script = format!("echo {text}");
    product::build_image(&root, "/bin/sh", &["--arg", "-c", "--arg", &script], &dir.join(format!("{name}.vm")))
}

fn update(reference: &str, target: &Path, key: &Path, restart_log: &Path) -> Output {
    Command::new(script())
        .args([reference, &target.display().to_string(), &key.display().to_string()])
        .args(["sh", "-c", &format!("echo restarted >> {}", restart_log.display())])
        .env("SMOLVM", product::smolvm())
        .env("DOCKER_CONFIG", "/nonexistent")
        .output()
        .expect("run smolvm-update")
}

fn restarts(log: &Path) -> usize {
    std::fs::read_to_string(log).map_or(0, |s| s.lines().count())
}

#[test]
fn update_flow_pulls_verifies_renames_and_restarts() {
    if !have_registry() {
        return;
    }
    let dir = qemu::scratch_dir("deploy");
    let (v1, v2, rogue) = (image(&dir, "v1", "one"), image(&dir, "v2", "two"), image(&dir, "rogue", "evil"));
    let (key, other) = (dir.join("key"), dir.join("other"));
    smolvm(&["keygen", "-o", &key.display().to_string()]);
    smolvm(&["keygen", "-o", &other.display().to_string()]);
    for (img, k) in [(&v1, &key), (&v2, &key), (&rogue, &other)] {
        smolvm(&["sign", "--key", &k.display().to_string(), &img.display().to_string()]);
    }
    let reg = Registry::start(&dir, None);
    let reference = format!("{}/fleet/app:stable", reg.addr);
    let push = |img: &Path| smolvm(&["push", &img.display().to_string(), &reference]);
    let device = dir.join("device");
    std::fs::create_dir_all(&device).expect("mkdir");
    let target = device.join("app.vm");
    let pubkey = dir.join("key.pub");
    let log = dir.join("restarts");

    push(&v1);
    let out = ok(update(&reference, &target, &pubkey, &log));
    assert!(out.contains("updated"), "{out}");
    assert_eq!(std::fs::read(&target).expect("target"), std::fs::read(&v1).expect("v1"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&target).expect("meta").permissions().mode() & 0o777, 0o755);
    assert_eq!(restarts(&log), 1);

    let out = ok(update(&reference, &target, &pubkey, &log));
    assert!(out.contains("already"), "{out}");
    assert_eq!(restarts(&log), 1, "restarted without a new image");

    push(&v2);
    ok(update(&reference, &target, &pubkey, &log));
    assert_eq!(std::fs::read(&target).expect("target"), std::fs::read(&v2).expect("v2"));
    assert_eq!(std::fs::read(device.join("app.vm.prev")).expect("prev"), std::fs::read(&v1).expect("v1"));
    assert_eq!(restarts(&log), 2);

    // A release signed by someone else: refused, nothing replaced, nothing left over.
    push(&rogue);
    let o = update(&reference, &target, &pubkey, &log);
    assert!(!o.status.success(), "a foreign signature was installed");
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a given key"), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&target).expect("target"), std::fs::read(&v2).expect("v2"));
    assert_eq!(restarts(&log), 2);
    let mut left: Vec<String> = std::fs::read_dir(&device).expect("dir").filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    left.sort();
    assert_eq!(left, ["app.vm", "app.vm.prev"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_systemd_unit_verifies() {
    let analyze = Path::new("/usr/bin/systemd-analyze");
    if !prereq::require(analyze.is_file(), "systemd-analyze (package systemd)") {
        return;
    }
    let dir = qemu::scratch_dir("deploy-unit");
    let unit = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/deploy/smolvm-app.service")).expect("unit");
    // The same unit with its two programs at paths that exist here.
    let app = dir.join("app.vm");
    std::fs::copy(product::smolvm(), &app).expect("copy");
    let unit = unit
        .replace("/usr/local/bin/smolvm", &product::smolvm().display().to_string())
        .replace("/var/lib/smolvm/app.vm", &app.display().to_string());
    let path = dir.join("smolvm-app.service");
    std::fs::write(&path, unit).expect("write");
    let o = Command::new(analyze).args(["verify", "--man=no"]).arg(&path).output().expect("systemd-analyze");
    let err = String::from_utf8_lossy(&o.stderr);
    let unit_errors: Vec<&str> = err.lines().filter(|l| l.contains("smolvm-app.service")).collect();
    assert!(o.status.success() && unit_errors.is_empty(), "systemd-analyze verify: {err}");
    std::fs::remove_dir_all(&dir).ok();
}
