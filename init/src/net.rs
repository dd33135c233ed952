//! The guest's network: `lo` up in every image, `eth0` configured from the
//! runtime `ip` record (address, prefix, MTU, default route) through the
//! kernel's interface ioctls, and `/etc/hosts` + `/etc/resolv.conf` over the
//! read-only root filesystem.
//!
//! The files are written into the initramfs (a writable tmpfs that the app
//! cannot reach once the root is switched) and bind-mounted over the root
//! filesystem's files after the switch, through `/proc/self/fd/N`. A bind
//! mount needs an existing target: `smolvm build` adds empty
//! `/etc/hosts` and `/etc/resolv.conf` to every rootfs that lacks them, and
//! init creates them (and /etc) when the root is writable. A read-only root
//! without them (an image built by an older smolvm) keeps what it has: init
//! says so in its debug log and the app runs without them.

use crate::out::Line;
use crate::plan::{IpConfig, Ipv4, Plan};
use crate::sys::{self, IfRequest, IFREQ_SIZE, RTENTRY_SIZE};
use crate::Fail;
use alloc::vec::Vec;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

const IFF_UP: u16 = 0x1;
const AF_INET: u16 = 2;
const RTF_UP: u16 = 0x1;
const RTF_GATEWAY: u16 = 0x2;
/// Where the files live in the initramfs (never visible to the app).
const STAGING_DIR: &str = "/smolvm-net";

/// Brings `lo` up and configures `eth0` when the plan has an `ip` record.
/// A kernel built without IPv4 only matters when eth0 is asked for.
pub fn configure(plan: &Plan<'_>) -> Result<(), Fail> {
    let sock = match sys::inet_socket() {
        Ok(sock) => sock,
        Err(e @ (Errno::AFNOSUPPORT | Errno::NOSYS)) if plan.ip.is_none() => {
            Line::new().s("no IPv4 in the kernel (").e(e).s("): lo stays down").debug();
            return Ok(());
        }
        Err(e) => return Err(Fail::new(Line::new().s("cannot open a network socket: ").e(e))),
    };
    // The kernel gives lo 127.0.0.1/8 (and ::1) when it comes up.
    set_up(&sock, b"lo").map_err(|e| failed(b"lo", "bring up", e))?;
    Line::new().s("lo is up").debug();
    if let Some(ip) = plan.ip {
        configure_eth0(&sock, &ip)?;
    }
    Ok(())
}

const ETH0: &[u8] = b"eth0";

fn configure_eth0(sock: &OwnedFd, ip: &IpConfig) -> Result<(), Fail> {
    let sock = sock.as_fd();
    sys::if_ioctl(sock, IfRequest::SetAddr, &mut ifreq_addr(ETH0, ip.addr))
        .map_err(|e| failed(ETH0, "set the address of", e))?;
    sys::if_ioctl(sock, IfRequest::SetNetmask, &mut ifreq_addr(ETH0, netmask(ip.prefix)))
        .map_err(|e| failed(ETH0, "set the netmask of", e))?;
    // `ip.mtu` is at most 65535 (plan.rs).
    let mtu = i32::try_from(ip.mtu).unwrap_or(i32::MAX);
    sys::if_ioctl(sock, IfRequest::SetMtu, &mut ifreq_value(ETH0, &mtu.to_ne_bytes()))
        .map_err(|e| failed(ETH0, "set the MTU of", e))?;
    set_up(&sock, ETH0).map_err(|e| failed(ETH0, "bring up", e))?;
    if let Some(gateway) = ip.gateway {
        sys::add_route(sock, default_route(gateway))
            .map_err(|e| Fail::new(Line::new().s("cannot add the default route via ").b(&dotted(gateway)).s(": ").e(e)))?;
    }
    Line::new().s("eth0 is up: ").b(&dotted(ip.addr)).s("/").n(u64::from(ip.prefix)).s(" mtu ").n(u64::from(ip.mtu)).debug();
    Ok(())
}

fn failed(ifname: &[u8], what: &str, err: Errno) -> Fail {
    let hint = if err == Errno::NODEV { " (no such interface: was the VM started with networking?)" } else { "" };
    Fail::new(Line::new().s("cannot ").s(what).s(" ").b(ifname).s(": ").e(err).s(hint))
}

/// Sets IFF_UP on top of the interface's current flags.
fn set_up(sock: &impl AsFd, ifname: &[u8]) -> Result<(), Errno> {
    let mut ifr = ifreq_value(ifname, &[]);
    sys::if_ioctl(sock.as_fd(), IfRequest::GetFlags, &mut ifr)?;
    let flags = u16::from_ne_bytes([ifr[16], ifr[17]]) | IFF_UP;
    ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
    sys::if_ioctl(sock.as_fd(), IfRequest::SetFlags, &mut ifr)
}

/// A `struct ifreq` for `ifname` (< 16 bytes) with `value` at the union.
fn ifreq_value(ifname: &[u8], value: &[u8]) -> [u8; IFREQ_SIZE] {
    let mut ifr = [0u8; IFREQ_SIZE];
    for (dst, &src) in ifr[..15].iter_mut().zip(ifname) {
        *dst = src;
    }
    for (dst, &src) in ifr[16..].iter_mut().zip(value) {
        *dst = src;
    }
    ifr
}

fn ifreq_addr(ifname: &[u8], addr: Ipv4) -> [u8; IFREQ_SIZE] {
    ifreq_value(ifname, &sockaddr_in(addr))
}

/// `struct sockaddr_in`: family (host order), port 0, address, zero pad.
fn sockaddr_in(addr: Ipv4) -> [u8; 16] {
    let mut sa = [0u8; 16];
    sa[..2].copy_from_slice(&AF_INET.to_ne_bytes());
    sa[4..8].copy_from_slice(&addr.0);
    sa
}

fn netmask(prefix: u8) -> Ipv4 {
    let bits = u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0);
    Ipv4(bits.to_be_bytes())
}

/// `struct rtentry` for 0.0.0.0/0 via `gateway` (the kernel finds the
/// device from the gateway's on-link route).
fn default_route(gateway: Ipv4) -> [u8; RTENTRY_SIZE] {
    let mut rt = [0u8; RTENTRY_SIZE];
    rt[8..24].copy_from_slice(&sockaddr_in(Ipv4([0; 4]))); // rt_dst
    rt[24..40].copy_from_slice(&sockaddr_in(gateway)); // rt_gateway
    rt[40..56].copy_from_slice(&sockaddr_in(Ipv4([0; 4]))); // rt_genmask
    rt[56..58].copy_from_slice(&(RTF_UP | RTF_GATEWAY).to_ne_bytes()); // rt_flags
    rt
}

fn dotted(addr: Ipv4) -> Vec<u8> {
    let mut text = Vec::new();
    for (i, octet) in addr.0.iter().enumerate() {
        if i > 0 {
            text.push(b'.');
        }
        if *octet >= 100 {
            text.push(b'0' + octet / 100);
        }
        if *octet >= 10 {
            text.push(b'0' + octet / 10 % 10);
        }
        text.push(b'0' + octet % 10);
    }
    text
}

/// `/etc/hosts`: localhost, and the hostname on eth0's address (or
/// Debian's 127.0.1.1 without eth0). A hostname that is not a plain DNS
/// name is left out (it could break the file's lines).
pub fn hosts_file(hostname: Option<&[u8]>, ip: Option<&IpConfig>) -> Vec<u8> {
    let mut text = Vec::from(*b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let plain = |name: &[u8]| {
        !name.is_empty() && name.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
    };
    if let Some(name) = hostname.filter(|name| plain(name)) {
        text.extend_from_slice(&dotted(ip.map_or(Ipv4([127, 0, 1, 1]), |ip| ip.addr)));
        text.push(b'\t');
        text.extend_from_slice(name);
        text.push(b'\n');
    }
    text
}

/// `/etc/resolv.conf`: one `nameserver` line per `dns` record.
pub fn resolv_conf(servers: &[Ipv4]) -> Vec<u8> {
    let mut text = Vec::new();
    for &server in servers {
        text.extend_from_slice(b"nameserver ");
        text.extend_from_slice(&dotted(server));
        text.push(b'\n');
    }
    text
}

/// The files written before the root switch, held open (`O_PATH`) so they
/// can be bind-mounted after it: (fd, target path in the new root).
pub struct Files(Vec<(OwnedFd, &'static str)>);

impl Files {
    /// Writes /etc/hosts (always) and /etc/resolv.conf (with `dns` records)
    /// into the initramfs. Call before `mounts::switch_root`.
    pub fn prepare(plan: &Plan<'_>) -> Result<Files, Fail> {
        let mut files = Vec::new();
        let mut wanted = Vec::from([("hosts", "/etc/hosts", hosts_file(plan.hostname, plan.ip.as_ref()))]);
        if !plan.dns.is_empty() {
            wanted.push(("resolv.conf", "/etc/resolv.conf", resolv_conf(&plan.dns)));
        }
        let _ = rustix::fs::mkdir(STAGING_DIR, Mode::from_raw_mode(0o755));
        for (name, target, text) in wanted {
            let path = [STAGING_DIR, "/", name].concat();
            let fd = write_file(&path, &text)
                .map_err(|e| Fail::new(Line::new().s("cannot write ").s(&path).s(" in the initramfs: ").e(e)))?;
            files.push((fd, target));
        }
        Ok(Files(files))
    }

    /// Bind-mounts each file over its target in the (new) root. A missing
    /// target (or /proc) is skipped: see the module comment.
    pub fn bind(self) -> Result<(), Fail> {
        for (fd, target) in self.0 {
            let raw = rustix::fd::AsRawFd::as_raw_fd(&fd);
            let mut source = Vec::from(*b"/proc/self/fd/");
            crate::out::push_decimal(&mut source, u64::try_from(raw).unwrap_or(0), 1);
            let source = alloc::ffi::CString::new(source).map_err(|_| Fail::new(Line::new().s("bad fd path")))?;
            let mut bound = rustix::mount::mount_bind(source.as_c_str(), target);
            if bound == Err(Errno::NOENT) && create_target(target).is_ok() {
                bound = rustix::mount::mount_bind(source.as_c_str(), target);
            }
            match bound {
                Ok(()) => Line::new().s("provided ").s(target).debug(),
                Err(Errno::NOENT | Errno::NOTDIR) => {
                    Line::new().s("no ").s(target).s(" (or /proc) in the root filesystem: not provided").debug();
                }
                Err(e) => return Err(Fail::new(Line::new().s("cannot provide ").s(target).s(": ").e(e))),
            }
        }
        Ok(())
    }
}

/// An empty mount target (and /etc), possible when the root is writable.
fn create_target(target: &str) -> Result<(), Errno> {
    let _ = rustix::fs::mkdir("/etc", Mode::from_raw_mode(0o755));
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
    rustix::fs::open(target, flags, Mode::from_raw_mode(0o644)).map(drop)
}

/// Creates `path` with `text` and returns an `O_PATH` descriptor of it.
fn write_file(path: &str, text: &[u8]) -> Result<OwnedFd, Errno> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC;
    let fd = rustix::fs::open(path, flags, Mode::from_raw_mode(0o644))?;
    let mut rest = text;
    while !rest.is_empty() {
        match rustix::io::write(&fd, rest) {
            Ok(0) => return Err(Errno::IO),
            Ok(n) => rest = rest.get(n..).unwrap_or_default(),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    drop(fd);
    rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netmasks() {
        assert_eq!(netmask(24), Ipv4([255, 255, 255, 0]));
        assert_eq!(netmask(32), Ipv4([255; 4]));
        assert_eq!(netmask(1), Ipv4([128, 0, 0, 0]));
        assert_eq!(netmask(17), Ipv4([255, 255, 128, 0]));
    }

    #[test]
    fn ioctl_structs_have_the_kernel_layout() {
        let ifr = ifreq_addr(b"eth0", Ipv4([10, 0, 2, 15]));
        assert_eq!(&ifr[..5], b"eth0\0");
        assert_eq!(&ifr[16..24], &[2, 0, 0, 0, 10, 0, 2, 15]);
        // A too-long name is cut so the NUL at byte 15 stays.
        assert_eq!(ifreq_value(&[b'x'; 20], &[])[15], 0);
        let rt = default_route(Ipv4([10, 0, 2, 2]));
        assert_eq!(&rt[24..32], &[2, 0, 0, 0, 10, 0, 2, 2]);
        assert_eq!(u16::from_ne_bytes([rt[56], rt[57]]), RTF_UP | RTF_GATEWAY);
        assert!(rt[88..96].iter().all(|&b| b == 0), "rt_dev stays null");
    }

    #[test]
    fn files() {
        let ip = IpConfig { addr: Ipv4([10, 0, 2, 15]), prefix: 24, gateway: None, mtu: 1500 };
        let localhost = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";
        assert_eq!(hosts_file(None, Some(&ip)), localhost.as_bytes());
        assert_eq!(hosts_file(Some(b"web-1"), Some(&ip)), [localhost, "10.0.2.15\tweb-1\n"].concat().as_bytes());
        assert_eq!(hosts_file(Some(b"box"), None), [localhost, "127.0.1.1\tbox\n"].concat().as_bytes());
        assert_eq!(hosts_file(Some(b"a\n1.2.3.4 evil"), None), localhost.as_bytes());
        assert_eq!(resolv_conf(&[Ipv4([10, 0, 2, 3]), Ipv4([1, 255, 0, 99])]), b"nameserver 10.0.2.3\nnameserver 1.255.0.99\n");
        assert_eq!(dotted(Ipv4([0, 9, 100, 250])), b"0.9.100.250");
    }
}
