//! Files the host added for this run (`--smolvm-add=HOST:GUEST`). Each
//! arrives as a read-only disk holding the file's bytes, padded to whole
//! sectors; its `add` record names the device, the guest path, the length
//! and the permission bits. Init copies it into place after the mounts (so
//! a path under a tmpfs or share lands there) and before the root is
//! sealed, replacing what was there (a `/bin/sh -> dash` symlink, say).

use crate::mounts::{cstr, mkdir_all};
use crate::out::Line;
use crate::plan::Add;
use crate::Fail;
use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

/// Copies the added file to its guest path.
pub fn place(add: &Add<'_>) -> Result<(), Fail> {
    copy(add).map_err(|e| Fail::new(Line::new().s("cannot place the added file ").b(add.path).s(": ").e(e)))?;
    Line::new().s("added ").b(add.path).s(", ").n(add.len).s(" bytes").debug();
    Ok(())
}

fn copy(add: &Add<'_>) -> Result<(), Errno> {
    let dev = cstr(&[b"/dev/".as_slice(), add.dev].concat())?;
    let src = rustix::fs::open(dev.as_c_str(), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    install(&src, add)
}

/// Writes the first `add.len` bytes of `src` to a new file at `add.path`.
fn install(src: &OwnedFd, add: &Add<'_>) -> Result<(), Errno> {
    // The path is normal and absolute: its parent is the part before the last `/`.
    let slash = add.path.iter().rposition(|&b| b == b'/').unwrap_or(0);
    if let Some(parent) = add.path.get(..slash).filter(|p| !p.is_empty()) {
        mkdir_all(parent)?;
    }
    let path = cstr(add.path)?;
    match rustix::fs::unlink(path.as_c_str()) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(e) => return Err(e),
    }
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
    let dst = rustix::fs::open(path.as_c_str(), flags, Mode::from_raw_mode(add.mode))?;
    // Exactly the bits the host file has, whatever init's umask.
    rustix::fs::fchmod(&dst, Mode::from_raw_mode(add.mode))?;
    send(src, &dst, add.len)
}

/// Copies `len` bytes from the start of `src` to `dst` in the kernel.
fn send(src: &OwnedFd, dst: &OwnedFd, len: u64) -> Result<(), Errno> {
    let mut left = len;
    while left > 0 {
        let chunk = usize::try_from(left.min(1 << 30)).unwrap_or(1 << 30);
        match rustix::fs::sendfile(dst, src, None, chunk) {
            // The disk is shorter than its record says.
            Ok(0) => return Err(Errno::IO),
            Ok(n) => left = left.saturating_sub(u64::try_from(n).unwrap_or(u64::MAX)),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn installs_exact_bytes_and_mode_over_a_symlink() {
        let dir = std::env::temp_dir().join(std::format!("smol-init-add-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        // The "disk": the file padded with zeros to whole sectors.
        let disk = dir.join("disk");
        let script = b"#!/bin/sh\necho hi\n";
        let len = u64::try_from(script.len()).expect("small");
        let mut content = script.to_vec();
        content.resize(512, 0);
        std::fs::write(&disk, &content).expect("write");
        let disk = cstr(disk.to_str().expect("utf-8").as_bytes()).expect("path");
        let src = rustix::fs::open(disk.as_c_str(), OFlags::RDONLY, Mode::empty()).expect("open");
        std::fs::create_dir_all(dir.join("bin")).expect("mkdir");
        std::os::unix::fs::symlink("dash", dir.join("bin/sh")).expect("symlink");
        let path = dir.join("bin/sh");
        let path = path.to_str().expect("utf-8").as_bytes();
        install(&src, &Add { dev: b"vdb", path, len, mode: 0o751 }).expect("installed");
        let meta = std::fs::symlink_metadata(dir.join("bin/sh")).expect("stat");
        assert!(meta.is_file(), "the symlink is replaced, not followed");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o751, "exact bits, whatever the umask");
        assert_eq!(std::fs::read(dir.join("bin/sh")).expect("read"), script);
        // Missing parent directories are created.
        let deep = dir.join("new/dir/tool");
        let deep = deep.to_str().expect("utf-8").as_bytes();
        install(&src, &Add { dev: b"vdb", path: deep, len: 0, mode: 0o644 }).expect("empty file");
        assert_eq!(std::fs::read(dir.join("new/dir/tool")).expect("read"), b"");
        // A disk shorter than its record, or a directory in the way: errors.
        let too_long = Add { dev: b"vdb", path, len: 513, mode: 0o755 };
        assert_eq!(install(&src, &too_long), Err(Errno::IO));
        let at_dir = dir.join("new");
        let at_dir = Add { dev: b"vdb", path: at_dir.to_str().expect("utf-8").as_bytes(), len, mode: 0o755 };
        assert!(install(&src, &at_dir).is_err(), "a directory is not replaced");
        assert!(dir.join("new/dir/tool").exists());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
