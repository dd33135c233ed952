//! Starting passt (user-mode networking, Debian package `passt`) with one
//! end of a socketpair as its `--fd`, and checking beforehand that every
//! published host port can be bound.
//!
//! Why check ports ourselves: passt fails a `-t`/`-u` it cannot bind with
//! "Failed to bind any port ..., exiting" (exit status 1) during its start,
//! which the stub would only notice later as the stream closing, with no
//! way to name the port. Binding each port once here (TCP with
//! SO_REUSEADDR, as passt's listening sockets do, so a TIME_WAIT leftover
//! is not a false alarm) and closing it gives an exact message before the
//! guest boots. The window between our check and passt's bind is the only
//! race; losing it takes the link down with a message ("the network
//! backend closed the connection").
//!
//! passt dies with the stub: PR_SET_PDEATHSIG(SIGKILL) in the child, and,
//! since passt drops privileges / enters its own user namespace (which
//! clears the death signal in the kernel), its own exit on end-of-stream
//! of `--fd` when the stub's end closes — by any path, SIGKILL included.

use crate::options::net::{Ipv4, Proto, Publish, MAX_PUBLISH};
use crate::sys::spawn::{self as process, CStrVec};
use core::ffi::CStr;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{self, Access, Mode, OFlags};
use rustix::io::Errno;
use rustix::net::{self, AddressFamily, SocketAddrV4, SocketFlags, SocketType};

/// The guest's side of passt's network (fixed, see the net contract).
pub const GUEST_ADDR: Ipv4 = [10, 0, 2, 15];
pub const PREFIX: u8 = 24;
pub const GATEWAY: Ipv4 = [10, 0, 2, 2];
pub const DNS: Ipv4 = [10, 0, 2, 3];
/// Default search path when `PATH` is unset.
const DEFAULT_PATH: &[u8] = b"/usr/bin:/bin";
/// Most arguments: the fixed ones plus two per published port.
const MAX_ARGS: usize = 24 + 2 * MAX_PUBLISH;

/// Why passt could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    /// No executable `passt` in `PATH`.
    NotFound,
    /// A published port cannot be bound (taken, privileged, no such address).
    Port(Publish, Errno),
    /// socketpair, fork, ...: the step and its error.
    Sys(&'static str, Errno),
}

/// NUL-terminated argument strings, stored back to back.
pub struct ArgBuf {
    bytes: [u8; 1024],
    len: usize,
    /// How many arguments `bytes` holds.
    count: usize,
}

impl Default for ArgBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl ArgBuf {
    pub const fn new() -> Self {
        ArgBuf { bytes: [0; 1024], len: 0, count: 0 }
    }

    /// Appends one argument. `None` when full.
    fn push(&mut self, arg: &[u8]) -> Option<()> {
        if self.count == MAX_ARGS {
            return None;
        }
        let end = self.len.checked_add(arg.len())?;
        self.bytes.get_mut(self.len..end)?.copy_from_slice(arg);
        *self.bytes.get_mut(end)? = 0;
        self.len = end + 1; // end < bytes.len()
        self.count += 1;
        Some(())
    }

    fn arg(&mut self, a: &str) -> Option<()> {
        self.push(a.as_bytes())
    }

    /// The arguments as C strings, in order.
    pub fn iter(&self) -> impl Iterator<Item = &CStr> + '_ {
        let used = self.bytes.get(..self.len).unwrap_or_default();
        used.split_inclusive(|&b| b == 0).filter_map(|a| CStr::from_bytes_with_nul(a).ok())
    }
}

/// Whether passt must map the gateway to the host's loopback: asked for,
/// or needed for UDP replies to a published UDP port (the stub's
/// `virtio::net::guard` then keeps the rest of the host's loopback closed).
pub fn maps_gateway(publish: &[Publish], host_loopback: bool) -> bool {
    host_loopback || publish.iter().any(|p| p.proto == Proto::Udp)
}

/// passt's command line: stream on fd 3, foreground, quiet, IPv4 only,
/// the fixed addressing, DNS forwarding, the MTU, `--no-map-gw` unless
/// [`maps_gateway`], and one `-t`/`-u` per published port
/// (`HOST_IP/HOST_PORT:GUEST_PORT`).
pub fn args(publish: &[Publish], host_loopback: bool) -> Option<ArgBuf> {
    let mut a = ArgBuf::new();
    for s in FIXED_ARGS.split(|&b| b == 0) {
        a.push(s)?;
    }
    if !maps_gateway(publish, host_loopback) {
        a.arg("--no-map-gw")?;
    }
    for p in publish {
        a.arg(if p.proto == Proto::Udp { "-u" } else { "-t" })?;
        let mut l = crate::out::Line::bare();
        l.ipv4(p.host_ip);
        l.s("/").u(p.host_port.into()).s(":").u(p.guest_port.into());
        a.push(l.as_bytes())?;
    }
    Some(a)
}

/// passt's fixed arguments: the addresses are [`GUEST_ADDR`]/[`PREFIX`],
/// [`GATEWAY`] and [`DNS`] (a unit test checks they agree), the MTU is
/// `link::PASST_MTU`. NUL-separated: one string costs the stub less
/// than a table of them.
const FIXED_ARGS: &[u8] = b"passt\0--fd\x003\0--foreground\0--quiet\0-4\0-a\x0010.0.2.15\0-n\x0024\0-g\x0010.0.2.2\0\
--dns-forward\x0010.0.2.3\0-m\x0065520";

/// Binds each published port once (and lets go), so a taken port is named
/// before passt starts. A host port given twice (for one protocol, on any
/// addresses) counts as taken: passt would refuse it ("Overlapping port
/// specifier") and exit, a dead link the stub would only see later.
pub fn check_ports(publish: &[Publish]) -> Result<(), StartError> {
    let mut earlier = publish;
    while let Some((p, rest)) = earlier.split_last() {
        if rest.iter().any(|q| q.host_port == p.host_port && q.proto == p.proto) {
            return Err(StartError::Port(*p, Errno::ADDRINUSE));
        }
        earlier = rest;
    }
    for p in publish {
        let ty = if p.proto == Proto::Udp { SocketType::DGRAM } else { SocketType::STREAM };
        let s = net::socket_with(AddressFamily::INET, ty, SocketFlags::CLOEXEC, None).map_err(|e| StartError::Sys("socket", e))?;
        if p.proto == Proto::Tcp {
            net::sockopt::set_socket_reuseaddr(&s, true).map_err(|e| StartError::Sys("setsockopt", e))?;
        }
        let [a, b, c, d] = p.host_ip;
        let addr = SocketAddrV4::new(core::net::Ipv4Addr::new(a, b, c, d), p.host_port);
        net::bind(&s, &addr).map_err(|e| StartError::Port(*p, e))?;
    }
    Ok(())
}

/// `dir/passt` for the first `dir` of `path` (a `PATH` value) where it is
/// executable, written NUL-terminated into `buf`.
pub fn find<'b>(path: Option<&[u8]>, buf: &'b mut [u8; 4096]) -> Option<&'b CStr> {
    let path = path.filter(|p| !p.is_empty()).unwrap_or(DEFAULT_PATH);
    for dir in path.split(|&b| b == b':') {
        // POSIX: an empty entry is the current directory.
        let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
        let n = dir.len() + b"/passt\0".len();
        let Some(dst) = buf.get_mut(..n) else { continue };
        let (d, rest) = dst.split_at_mut(dir.len());
        d.copy_from_slice(dir);
        rest.copy_from_slice(b"/passt\0");
        let ok = CStr::from_bytes_with_nul(dst).ok().is_some_and(|c| {
            fs::access(c, Access::EXEC_OK).is_ok()
                && fs::stat(c).is_ok_and(|st| fs::FileType::from_raw_mode(st.st_mode) == fs::FileType::RegularFile)
        });
        if ok {
            return buf.get(..n).and_then(|b| CStr::from_bytes_with_nul(b).ok());
        }
    }
    None
}

/// A running passt: the stub's end of the stream (non-blocking) and the pid.
pub struct Passt {
    pub stream: OwnedFd,
    pub pid: i32,
}

/// Checks the ports, finds passt, and starts it. `show_stderr`: passt's
/// messages go to the stub's stderr (`SMOLVM_LOG=debug`), else nowhere.
/// Call before other threads exist (fork copies only this one).
pub fn start(path_var: Option<&[u8]>, publish: &[Publish], host_loopback: bool, show_stderr: bool) -> Result<Passt, StartError> {
    check_ports(publish)?;
    let mut path_buf = [0u8; 4096];
    let exe = find(path_var, &mut path_buf).ok_or(StartError::NotFound)?;
    let argv_strings = args(publish, host_loopback).ok_or(StartError::Sys("arguments", Errno::TOOBIG))?;
    let mut argv: CStrVec<'_, { MAX_ARGS + 1 }> = CStrVec::new();
    for a in argv_strings.iter() {
        if !argv.push(a) {
            return Err(StartError::Sys("arguments", Errno::TOOBIG));
        }
    }
    let envp: CStrVec<'_, 1> = CStrVec::new();
    let (ours, theirs) = net::socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None)
        .map_err(|e| StartError::Sys("socketpair", e))?;
    // Above the fds the child rewires (0..=3), so no dup3 clobbers another.
    let theirs = rustix::io::fcntl_dupfd_cloexec(&theirs, 10).map_err(|e| StartError::Sys("fcntl", e))?;
    let null = fs::open(c"/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()).map_err(|e| StartError::Sys("open /dev/null", e))?;
    let null = rustix::io::fcntl_dupfd_cloexec(&null, 10).map_err(|e| StartError::Sys("fcntl", e))?;
    let stderr = if show_stderr { crate::out::stderr() } else { null.as_fd() };
    // passt's stdin, stdout, stderr, and the stream as fd 3 (its `--fd 3`).
    let pid = process::spawn(exe, &argv, &envp, &[null.as_fd(), null.as_fd(), stderr, theirs.as_fd()])
        .map_err(|e| StartError::Sys("fork", e))?;
    drop(theirs);
    rustix::fs::fcntl_setfl(&ours, OFlags::NONBLOCK).map_err(|e| StartError::Sys("fcntl", e))?;
    Ok(Passt { stream: ours, pid })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::net::LOCALHOST;

    fn strings(a: &ArgBuf) -> Vec<String> {
        a.iter().map(|c| c.to_str().expect("ascii").to_string()).collect()
    }

    #[test]
    fn fixed_arguments_match_the_constants() {
        let ip = |v: Ipv4| v.map(|o| o.to_string()).join(".");
        let fixed: Vec<String> = FIXED_ARGS.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        assert_eq!(fixed.len(), 16);
        assert_eq!(fixed[7], ip(GUEST_ADDR));
        assert_eq!(fixed[9], PREFIX.to_string());
        assert_eq!(fixed[11], ip(GATEWAY));
        assert_eq!(fixed[13], ip(DNS));
        assert_eq!(fixed[15], crate::virtio::net::link::PASST_MTU.to_string());
    }

    #[test]
    fn command_line() {
        let p = [
            Publish { host_ip: LOCALHOST, host_port: 8080, guest_port: 80, proto: Proto::Tcp },
            Publish { host_ip: [0, 0, 0, 0], host_port: 5353, guest_port: 53, proto: Proto::Udp },
        ];
        let a = args(&p, false).expect("fits");
        assert_eq!(
            strings(&a).join(" "),
            "passt --fd 3 --foreground --quiet -4 -a 10.0.2.15 -n 24 -g 10.0.2.2 --dns-forward 10.0.2.3 -m 65520 \
             -t 127.0.0.1/8080:80 -u 0.0.0.0/5353:53"
        );
        // TCP only: passt itself keeps the host's loopback closed.
        assert!(strings(&args(&p[..1], false).expect("fits")).contains(&"--no-map-gw".to_string()));
        assert!(!strings(&args(&[], true).expect("fits")).contains(&"--no-map-gw".to_string()));
        // The most ports the options allow fit.
        let many = [p[1]; super::MAX_PUBLISH];
        assert_eq!(args(&many, false).expect("fits").iter().count(), 16 + 2 * 16);
    }

    #[test]
    fn a_taken_port_is_named() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let p = Publish { host_ip: LOCALHOST, host_port: port, guest_port: 80, proto: Proto::Tcp };
        assert_eq!(check_ports(&[p]), Err(StartError::Port(p, Errno::ADDRINUSE)));
        drop(l);
        assert_eq!(check_ports(&[p]), Ok(()));
        let u = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = u.local_addr().expect("addr").port();
        let p = Publish { host_ip: LOCALHOST, host_port: port, guest_port: 53, proto: Proto::Udp };
        assert_eq!(check_ports(&[p]), Err(StartError::Port(p, Errno::ADDRINUSE)));
        let p = Publish { host_ip: [192, 0, 2, 1], host_port: 1234, guest_port: 1, proto: Proto::Tcp };
        assert_eq!(check_ports(&[p]), Err(StartError::Port(p, Errno::ADDRNOTAVAIL)));
        // One host port twice for one protocol, on any addresses: passt
        // would exit ("Overlapping port specifier"); TCP and UDP may share it.
        let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let tcp = Publish { host_ip: LOCALHOST, host_port: free, guest_port: 80, proto: Proto::Tcp };
        let other_ip = Publish { host_ip: [127, 0, 0, 2], guest_port: 81, ..tcp };
        assert_eq!(check_ports(&[tcp, other_ip]), Err(StartError::Port(other_ip, Errno::ADDRINUSE)));
        assert_eq!(check_ports(&[tcp, tcp]), Err(StartError::Port(tcp, Errno::ADDRINUSE)));
        assert_eq!(check_ports(&[tcp, Publish { proto: Proto::Udp, ..tcp }]), Ok(()));
    }

    #[test]
    fn finds_passt_along_path() {
        let dir = std::env::temp_dir().join(format!("smolvm-passt-find-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut buf = [0u8; 4096];
        let d = dir.as_os_str().as_encoded_bytes();
        assert!(find(Some(d), &mut buf).is_none());
        let exe = dir.join("passt");
        std::fs::write(&exe, "#!/bin/sh\n").expect("write");
        assert!(find(Some(d), &mut buf).is_none(), "not executable");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut path = b"/nonexistent::".to_vec();
        path.extend_from_slice(d);
        let found = find(Some(&path), &mut buf).expect("found").to_bytes().to_vec();
        assert_eq!(found, exe.as_os_str().as_encoded_bytes());
        std::fs::remove_dir_all(&dir).expect("rm");
    }

    /// The real passt (skipped if not installed): it answers an ARP request
    /// for the gateway over the stream, and exits when our end closes.
    #[test]
    fn real_passt_answers_arp_and_dies_with_the_stream() {
        let path = std::env::var("PATH").unwrap_or_default();
        let mut buf = [0u8; 4096];
        if find(Some(path.as_bytes()), &mut buf).is_none() {
            eprintln!("skipped: passt not installed");
            return;
        }
        let p = start(Some(path.as_bytes()), &[], false, false).expect("passt starts");
        let mac = crate::virtio::net::MAC;
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&mac);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&mac);
        f.extend_from_slice(&GUEST_ADDR);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&GATEWAY);
        let mut wire = (f.len() as u32).to_be_bytes().to_vec();
        wire.extend_from_slice(&f);
        crate::hostio::write_all(p.stream.as_fd(), crate::sys::io::IoBuf::from(&wire[..])).expect("send");
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        // Frames until an ARP reply (passt may send others first).
        let reply = loop {
            assert!(std::time::Instant::now() < deadline, "no ARP reply from passt");
            let mut fds = [rustix::event::PollFd::new(&p.stream, rustix::event::PollFlags::IN)];
            let _ = rustix::event::poll(&mut fds, Some(&rustix::time::Timespec { tv_sec: 0, tv_nsec: 100_000_000 }));
            let mut b = [0u8; 4096];
            match rustix::io::read(&p.stream, &mut b) {
                Ok(0) => panic!("passt closed the stream"),
                Ok(n) => got.extend_from_slice(&b[..n]),
                Err(_) => {}
            }
            if let Some(r) = arp_reply(&mut got) {
                break r;
            }
        };
        assert_eq!(&reply[0..6], &mac, "to our MAC");
        assert_eq!(&reply[28..32], &GATEWAY, "the gateway's address");
        let status = format!("/proc/{}/stat", p.pid);
        drop(p.stream);
        for _ in 0..100 {
            let st = std::fs::read_to_string(&status).unwrap_or_default();
            if st.is_empty() || st.contains(") Z ") {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("passt still running after its stream closed");
    }

    /// Pops complete frames off `got` until an ARP reply.
    fn arp_reply(got: &mut Vec<u8>) -> Option<Vec<u8>> {
        while got.len() >= 4 {
            let len = u32::from_be_bytes([got[0], got[1], got[2], got[3]]) as usize;
            if got.len() < 4 + len {
                return None;
            }
            let frame: Vec<u8> = got.drain(..4 + len).skip(4).collect();
            if frame.len() >= 42 && frame[12..14] == [0x08, 0x06] && frame[20..22] == [0, 2] {
                return Some(frame);
            }
        }
        None
    }
}
