//! TAP devices: `/dev/net/tun` with `TUNSETIFF` (an existing TAP by name,
//! no packet-info prefix, virtio-net headers on every frame) and
//! `TUNSETVNETHDRSZ`.

use super::ioctl;
use rustix::fd::{AsFd, OwnedFd};
use rustix::ioctl::{opcode, Opcode};
use rustix::fs::{self, Mode, OFlags};
use rustix::io::Errno;

const TUNSETIFF: Opcode = opcode::write::<i32>(b'T', 202);
const TUNSETVNETHDRSZ: Opcode = opcode::write::<i32>(b'T', 216);
const IFF_TAP: u16 = 0x0002;
const IFF_NO_PI: u16 = 0x1000;
const IFF_VNET_HDR: u16 = 0x4000;
/// `IFNAMSIZ`, including the NUL.
pub const IFNAMSIZ: usize = 16;

/// `struct ifreq` with the `ifr_flags` member (40 bytes on x86_64).
#[repr(C)]
struct IfReq {
    name: [u8; IFNAMSIZ],
    flags: u16,
    _pad: [u8; 22],
}
static_assertions::const_assert_eq!(core::mem::size_of::<IfReq>(), 40);

/// Which step of [`open_tap`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TapError {
    /// The name is empty, too long or holds a NUL or `/`.
    BadName,
    /// No network interface of that name (TUNSETIFF would create one when
    /// privileged: a fresh TAP nobody configured is of no use).
    NoSuchDevice,
    /// `/dev/net/tun` could not be opened.
    Open(Errno),
    /// `TUNSETIFF` failed (no such TAP and no right to create one, busy, ...).
    Attach(Errno),
    /// `TUNSETVNETHDRSZ` failed.
    HeaderSize(Errno),
}

/// Attaches to the TAP device `name` (non-blocking, close-on-exec), every
/// frame preceded by a virtio-net header of `vnet_hdr_len` bytes.
pub fn open_tap(name: &[u8], vnet_hdr_len: usize) -> Result<OwnedFd, TapError> {
    if name.is_empty() || name.len() >= IFNAMSIZ || name.iter().any(|&b| b == 0 || b == b'/') {
        return Err(TapError::BadName);
    }
    // "/sys/class/net/" + name + NUL, name < IFNAMSIZ (checked above).
    let mut path = [0u8; 15 + IFNAMSIZ];
    let (prefix, rest) = path.split_at_mut(15);
    prefix.copy_from_slice(b"/sys/class/net/");
    for (d, &s) in rest.iter_mut().zip(name) {
        *d = s;
    }
    let path = core::ffi::CStr::from_bytes_until_nul(&path).map_err(|_| TapError::BadName)?;
    if fs::access(path, fs::Access::EXISTS).is_err() {
        return Err(TapError::NoSuchDevice);
    }
    let fd = fs::open(c"/dev/net/tun", OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty())
        .map_err(TapError::Open)?;
    let mut req = IfReq { name: [0; IFNAMSIZ], flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, _pad: [0; 22] };
    for (d, &s) in req.name.iter_mut().zip(name) {
        *d = s;
    }
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `req` is (size checked above) and which lives across the call.
    unsafe { ioctl::raw(fd.as_fd(), TUNSETIFF, ioctl::arg(&mut req)) }.map_err(TapError::Attach)?;
    let mut len = i32::try_from(vnet_hdr_len).map_err(|_| TapError::HeaderSize(Errno::INVAL))?;
    // SAFETY: TUNSETVNETHDRSZ reads one `int` through the pointer, `len`, alive across the call.
    unsafe { ioctl::raw(fd.as_fd(), TUNSETVNETHDRSZ, ioctl::arg(&mut len)) }.map_err(TapError::HeaderSize)?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_names_before_opening_anything() {
        for bad in [&b""[..], b"0123456789abcdef", b"a\0b", b"../x"] {
            assert_eq!(open_tap(bad, 12).err(), Some(TapError::BadName), "{bad:?}");
        }
    }

    #[test]
    fn a_missing_tap_is_refused_not_created() {
        assert_eq!(open_tap(b"smolvm-nonexist", 12).err(), Some(TapError::NoSuchDevice));
        // An interface that is not a TAP (lo): TUNSETIFF refuses it.
        assert!(matches!(open_tap(b"lo", 12), Err(TapError::Attach(_) | TapError::Open(_))));
    }
}
