//! `/etc/passwd`, `/etc/group` and `/etc/nsswitch.conf` for `--exec` images,
//! which otherwise have no `/etc` at all: without them `getpwuid(0)` fails
//! (python's `pwd`, `getpass.getuser()`, ssh, git's committer fallback, ...).
//! Files that `--add` put there already are kept as they are.

use crate::error::{Context, Result};
use std::fs;
use std::path::Path;

/// Where glibc finds users, groups and hosts (all built into libc >= 2.34).
const NSSWITCH: &str = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n";

/// Writes the files below `root` that are missing. `user` is `--user`'s
/// numeric `(uid, gid)`, which gets an entry of its own (`app`) when it is not root.
pub fn add_missing(root: &Path, user: Option<(u32, u32)>) -> Result<()> {
    let etc = root.join("etc");
    fs::create_dir_all(&etc).context(|| etc.display().to_string())?;
    let (passwd, group) = tables(user);
    for (name, text) in [
        ("passwd", passwd.as_str()),
        ("group", group.as_str()),
        ("nsswitch.conf", NSSWITCH),
    ] {
        let path = etc.join(name);
        if fs::symlink_metadata(&path).is_err() {
            fs::write(&path, text).context(|| path.display().to_string())?;
        }
    }
    let home = root.join("root");
    if fs::symlink_metadata(&home).is_err() {
        fs::create_dir_all(&home).context(|| home.display().to_string())?;
    }
    Ok(())
}

/// The contents of `/etc/passwd` and `/etc/group`.
fn tables(user: Option<(u32, u32)>) -> (String, String) {
    let mut passwd = String::from("root:x:0:0:root:/root:/bin/sh\n");
    let mut group = String::from("root:x:0:\n");
    if let Some((uid, gid)) = user.filter(|&(uid, _)| uid != 0 && uid != NOBODY) {
        passwd.push_str(&format!("app:x:{uid}:{gid}:app:/tmp:/bin/sh\n"));
        if gid != 0 && gid != NOBODY {
            group.push_str(&format!("app:x:{gid}:\n"));
        }
    }
    passwd.push_str("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
    group.push_str("nogroup:x:65534:\n");
    (passwd, group)
}

const NOBODY: u32 = 65534;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_always_and_the_user_when_given() {
        let (p, g) = tables(None);
        assert!(p.starts_with("root:x:0:0:") && g.starts_with("root:x:0:\n"));
        assert!(!p.contains("app:"));
        let (p, g) = tables(Some((1000, 100)));
        assert!(
            p.contains("\napp:x:1000:100:") && g.contains("\napp:x:100:\n"),
            "{p}{g}"
        );
        let (p, g) = tables(Some((1000, 0)));
        assert!(p.contains("\napp:x:1000:0:") && !g.contains("app:"));
        assert_eq!(tables(Some((0, 0))), tables(None));
    }

    #[test]
    fn existing_files_are_kept() {
        let dir = std::env::temp_dir().join(format!("smolvm-identity-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("etc")).expect("mkdir");
        fs::write(dir.join("etc/passwd"), "mine\n").expect("write");
        add_missing(&dir, None).expect("added");
        assert_eq!(
            fs::read_to_string(dir.join("etc/passwd")).expect("read"),
            "mine\n"
        );
        assert!(fs::read_to_string(dir.join("etc/group"))
            .expect("read")
            .starts_with("root:x:0:"));
        assert!(dir.join("root").is_dir() && dir.join("etc/nsswitch.conf").is_file());
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
