//! Process hardening around the seccomp filter: the image must not be
//! writable by other users, and once the devices are set up the fd limit is
//! frozen at what they asked for (the 9p server raises the soft limit for
//! its fid table when a share opens) and core dumps (guest RAM) are off.

use crate::out::fail;
use rustix::fd::BorrowedFd;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Fails (125) when the image file is writable by others: anyone could
/// change the kernel or the app it runs.
pub fn check_image_mode(image: BorrowedFd<'_>) {
    const S_IWOTH: u32 = 0o002;
    if rustix::fs::fstat(image).is_ok_and(|st| st.st_mode & S_IWOTH != 0) {
        fail("the image file is writable by other users (anyone could change what it runs): `chmod o-w` it");
    }
}

/// Hard fd limit = the current soft one (nothing opens more files after
/// setup beyond what the devices sized it for); no core files.
pub fn freeze_limits() {
    let nofile = getrlimit(Resource::Nofile);
    if let Some(cur) = nofile.current {
        let _ = setrlimit(Resource::Nofile, Rlimit { current: Some(cur), maximum: Some(cur) });
    }
    let _ = setrlimit(Resource::Core, Rlimit { current: Some(0), maximum: Some(0) });
}
