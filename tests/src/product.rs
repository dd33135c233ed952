//! The product's binaries, and busybox images built with them, for the
//! end-to-end test files (one copy instead of one per file).

use crate::qemu;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `$ENV` if set, else `target/<profile>/NAME` of the running test (built
/// per package, `cargo build -p PKG`, in the test's own profile).
pub fn binary(name: &str, env: &str, pkg: &str) -> PathBuf {
    let path = std::env::var_os(env).map_or_else(|| qemu::profile_dir().join(name), PathBuf::from);
    assert!(path.is_file(), "{} missing: run `cargo build -p {pkg}` (same profile) or set {env}", path.display());
    path
}

/// The builder, `smolvm` (or `$SMOLVM_BIN`).
pub fn smolvm() -> PathBuf {
    binary("smolvm", "SMOLVM_BIN", "builder")
}

/// smol-init (or `$SMOLVM_INIT`).
pub fn init() -> PathBuf {
    binary("smol-init", "SMOLVM_INIT", "smol-init")
}

/// The stub (or `$SMOLVM_STUB`).
pub fn stub() -> PathBuf {
    binary("vmm-stub", "SMOLVM_STUB", "vmm-stub")
}

/// Fills `root` with a static busybox at /bin/busybox, each of `applets` as
/// a /bin link to it, and the empty directories `dirs`.
pub fn busybox_rootfs(root: &Path, applets: &[&str], dirs: &[&str]) {
    fs::create_dir_all(root.join("bin")).expect("mkdir");
    fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static is installed");
    for applet in applets {
        symlink("busybox", root.join("bin").join(applet)).expect("ln");
    }
    for d in dirs {
        fs::create_dir_all(root.join(d)).expect("mkdir");
    }
}

/// `smolvm build --rootfs ROOT --entry ENTRY ARGS… -o OUT` with the test
/// kernel (`qemu::kernel`), smol-init and the stub; fails the test with the
/// builder's stderr if the build fails. Returns `out`.
pub fn build_image(root: &Path, entry: &str, args: &[&str], out: &Path) -> PathBuf {
    let result = Command::new(smolvm())
        .arg("build")
        .arg("--rootfs")
        .arg(root)
        .args(["--entry", entry])
        .args(args)
        .arg("--kernel")
        .arg(qemu::kernel())
        .arg("--init")
        .arg(init())
        .arg("--stub")
        .arg(stub())
        .arg("-o")
        .arg(out)
        .output()
        .expect("run smolvm build");
    assert!(result.status.success(), "smolvm build: {}", String::from_utf8_lossy(&result.stderr));
    out.to_path_buf()
}
