//! Networking set-up for one run: which backend (from the options and the
//! manifest's `net`/`publish` defaults), starting it (passt or a TAP), and
//! what the guest is told (the runtime config's `ip` and `dns` records).
//! The device itself is `virtio::net`.
//!
//! Precedence: `--smolvm-net`/`SMOLVM_NET` beats the manifest's `net`;
//! run-time publishes replace the manifest's; any publish, and
//! `--smolvm-net-host-loopback`, implies passt; `--smolvm-net=none` turns
//! everything off, the manifest's publishes too.
//! With neither flag nor manifest default there is no network device.

pub mod passt;

use crate::options::Options;
use crate::out::Line;
use crate::sys::cell::TakeOnce;
use crate::virtio::net::guard::GatewayGuard;
use crate::virtio::net::link::{Buffers, Framing, Link, PASST_MTU, VNET_HDR_LEN};
use linker::config::{self, Key};
use rustix::fd::OwnedFd;
use crate::options::net::{self as spec, IpSpec, Ipv4, NetMode, Publish, MAX_PUBLISH};

/// The MTU offered on a TAP (its usual default; the TAP's own MTU is the
/// administrator's business).
pub const TAP_MTU: u16 = 1500;

/// What the run will do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend<'a> {
    Passt,
    Tap { name: &'a [u8], ip: IpSpec },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan<'a> {
    pub backend: Backend<'a>,
    pub publish: heapless::Vec<Publish, MAX_PUBLISH>,
    pub host_loopback: bool,
}

/// Combines the options with the image's defaults. `Err`: a one-line
/// reason for the user. Out of line, as `start`: inlined into
/// `start::main` the two cost 216 B more (docs/size.md).
#[inline(never)]
pub fn plan<'a>(opts: &Options<'a>, defaults: &crate::options::Defaults<'a>) -> Result<Option<Plan<'a>>, &'static str> {
    let publish = if opts.publish.is_empty() { &defaults.publish } else { &opts.publish }.clone();
    let mode = match opts.net {
        // --smolvm-net-host-loopback too: ignored, it would leave the
        // host's services silently unreachable.
        Some(NetMode::None) if !opts.publish.is_empty() || opts.net_host_loopback => {
            return Err("--smolvm-publish and -net-host-loopback need a network, but --smolvm-net=none turns it off");
        }
        Some(m) => m,
        None if !publish.is_empty() || opts.net_host_loopback => NetMode::Passt,
        None => defaults.net.unwrap_or(NetMode::None),
    };
    let backend = match mode {
        NetMode::None => {
            if opts.ip.is_some() {
                return Err("--smolvm-ip needs --smolvm-net=tap:NAME");
            }
            return Ok(None);
        }
        NetMode::Passt => {
            if opts.ip.is_some() {
                return Err("--smolvm-ip is only for --smolvm-net=tap:NAME (with passt the guest is 10.0.2.15/24)");
            }
            Backend::Passt
        }
        NetMode::Tap(name) => {
            if !opts.publish.is_empty() || opts.net_host_loopback {
                return Err("--smolvm-publish and -net-host-loopback work with passt only; with a TAP, reach the guest at its own address");
            }
            let ip = opts.ip.ok_or("--smolvm-net=tap:NAME needs --smolvm-ip=ADDR/PREFIX[@GATEWAY]")?;
            Backend::Tap { name, ip }
        }
    };
    // A TAP ignores the image's publishes (they are passt port forwards).
    let publish = if matches!(backend, Backend::Tap { .. }) { heapless::Vec::new() } else { publish };
    Ok(Some(Plan { backend, publish, host_loopback: opts.net_host_loopback }))
}

/// What the guest is told about its interface (`ip` and `dns` records).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestNet {
    pub addr: Ipv4,
    pub prefix: u8,
    pub gateway: Option<Ipv4>,
    pub mtu: u16,
    pub dns: Option<Ipv4>,
}

impl GuestNet {
    /// Writes the `ip` record (`ADDR/PREFIX`, gateway or empty, MTU) and
    /// the `dns` record, if any.
    pub fn write_records(&self, w: &mut config::Writer<'_>) -> Result<(), config::ConfigError> {
        let mut cidr = Line::bare();
        cidr.ipv4(self.addr);
        cidr.s("/").u(self.prefix.into());
        let mut gw = Line::bare();
        if let Some(g) = self.gateway {
            gw.ipv4(g);
        }
        let mut mtu = Line::bare();
        mtu.u(self.mtu.into());
        w.push(Key::Ip, &[cidr.as_bytes(), gw.as_bytes(), mtu.as_bytes()])?;
        if let Some(d) = self.dns {
            let mut l = Line::bare();
            l.ipv4(d);
            w.push(Key::Dns, &[l.as_bytes()])?;
        }
        Ok(())
    }
}

/// A started backend: the frame fd, its framing, the MTU to offer, what
/// to tell the guest, and the gateway guard the device must apply.
pub struct Started {
    pub fd: OwnedFd,
    pub framing: Framing,
    pub guest: GuestNet,
    pub guard: Option<GatewayGuard>,
}

/// Starts the backend of `plan`, or exits 125 with a line saying why.
/// `path_var`: the stub's `PATH`; `debug`: passt's messages to stderr.
/// Call before other threads exist (passt is forked).
#[inline(never)]
pub fn start(plan: &Plan<'_>, path_var: Option<&[u8]>, debug: bool) -> Started {
    match plan.backend {
        Backend::Passt => match passt::start(path_var, &plan.publish, plan.host_loopback, debug) {
            Ok(p) => Started {
                fd: p.stream,
                framing: Framing::Stream,
                guest: GuestNet {
                    addr: passt::GUEST_ADDR,
                    prefix: passt::PREFIX,
                    gateway: Some(passt::GATEWAY),
                    mtu: PASST_MTU,
                    dns: Some(passt::DNS),
                },
                guard: (passt::maps_gateway(&plan.publish, plan.host_loopback) && !plan.host_loopback).then(|| GatewayGuard {
                    gateway: passt::GATEWAY,
                    udp_ports: plan.publish.iter().filter(|p| p.proto == spec::Proto::Udp).map(|p| p.guest_port).collect(),
                }),
            },
            Err(passt::StartError::NotFound) => crate::out::fail(
                "--smolvm-net needs passt, which is not installed (Debian/Ubuntu: apt install passt; looked in $PATH)",
            ),
            Err(passt::StartError::Port(p, e)) => {
                let mut l = Line::new();
                l.s("cannot publish port ");
                l.ipv4(p.host_ip);
                l.s(":").u(p.host_port.into()).s(if p.proto == spec::Proto::Udp { "/udp" } else { "/tcp" }).s(": ");
                match e {
                    rustix::io::Errno::ADDRINUSE => l.s("the port is already taken"),
                    rustix::io::Errno::ACCESS | rustix::io::Errno::PERM => l.s("permission denied (ports below 1024 need privileges)"),
                    rustix::io::Errno::ADDRNOTAVAIL => l.s("no such address on this host"),
                    e => l.s("cannot bind it (").errno(e).s(")"),
                };
                l.fail()
            }
            Err(passt::StartError::Sys(what, e)) => Line::new().s("cannot start passt: ").s(what).errno(e).s(")").fail(),
        },
        Backend::Tap { name, ip } => {
            use crate::sys::net::TapError;
            let fd = crate::sys::net::open_tap(name, VNET_HDR_LEN).unwrap_or_else(|e| {
                let mut l = Line::new();
                l.s("cannot attach TAP device ").b(name).s(": ");
                match e {
                    TapError::BadName => l.s("not a valid interface name"),
                    TapError::NoSuchDevice => {
                        l.s("no such device (create it with: ip tuntap add ").b(name).s(" mode tap user $USER)")
                    }
                    TapError::Open(_) => l.s("cannot open /dev/net/tun (is the tun module loaded?)"),
                    TapError::Attach(rustix::io::Errno::PERM | rustix::io::Errno::ACCESS) => {
                        l.s("no such TAP or not yours (create it with: ip tuntap add ").b(name).s(" mode tap user $USER)")
                    }
                    TapError::Attach(rustix::io::Errno::BUSY) => l.s("in use by another program"),
                    TapError::Attach(rustix::io::Errno::INVAL) => l.s("not a TAP device, or one without vnet headers"),
                    TapError::Attach(e) | TapError::HeaderSize(e) => l.s("failed (").errno(e).s(")"),
                };
                l.fail()
            });
            Started {
                fd,
                framing: Framing::Tap,
                guest: GuestNet { addr: ip.addr, prefix: ip.prefix, gateway: ip.gateway, mtu: TAP_MTU, dns: None },
                guard: None,
            }
        }
    }
}

/// The link buffers (in .bss: free until the network is used).
static BUFFERS: TakeOnce<Buffers> = TakeOnce::new(Buffers::new());

/// The link of a started backend (once per process).
pub fn link(fd: OwnedFd, framing: Framing) -> Link<'static> {
    let bufs = BUFFERS.take().unwrap_or_else(|| crate::out::fail("network set up twice"));
    Link::new(fd, framing, bufs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Defaults;

    fn opts<'a>(args: &[&'a [u8]]) -> Options<'a> {
        Options::parse(args.iter().copied(), core::iter::empty()).expect("valid")
    }

    fn manifest(records: &[(Key, &[&[u8]])]) -> Vec<u8> {
        let mut buf = vec![0u8; 1024];
        let mut w = config::Writer::new(&mut buf).expect("writer");
        for (k, fields) in records {
            w.push(*k, fields).expect("fits");
        }
        let n = w.len();
        buf.truncate(n);
        buf
    }

    #[test]
    fn no_flag_and_no_default_means_no_device() {
        let m = manifest(&[(Key::Entry, &[b"/app"])]);
        assert_eq!(plan(&opts(&[]), &Defaults::of(&m)), Ok(None));
    }

    #[test]
    fn manifest_defaults_and_overrides() {
        let m = manifest(&[(Key::Net, &[b"passt"]), (Key::Publish, &[b"8080:80"])]);
        let p = plan(&opts(&[]), &Defaults::of(&m)).expect("ok").expect("on");
        assert_eq!(p.backend, Backend::Passt);
        assert_eq!(p.publish.iter().map(|p| p.host_port).collect::<Vec<_>>(), [8080]);
        // Run-time publishes replace the image's.
        let p = plan(&opts(&[b"--smolvm-publish=9090:90"]), &Defaults::of(&m)).expect("ok").expect("on");
        assert_eq!(p.publish.iter().map(|p| p.host_port).collect::<Vec<_>>(), [9090]);
        // none turns it all off.
        assert_eq!(plan(&opts(&[b"--smolvm-net=none"]), &Defaults::of(&m)), Ok(None));
        // A publish record alone implies passt.
        let m = manifest(&[(Key::Publish, &[b"1.2.3.4:53:53/udp"])]);
        assert_eq!(plan(&opts(&[]), &Defaults::of(&m)).expect("ok").map(|p| p.backend), Some(Backend::Passt));
    }

    #[test]
    fn contradictions_are_refused() {
        let m = manifest(&[]);
        assert!(plan(&opts(&[b"--smolvm-net=none", b"--smolvm-publish=1:1"]), &Defaults::of(&m)).is_err());
        assert!(plan(&opts(&[b"--smolvm-net=tap:t0"]), &Defaults::of(&m)).is_err(), "tap needs an address");
        assert!(plan(&opts(&[b"--smolvm-net=tap:t0", b"--smolvm-ip=10.0.0.2/24", b"--smolvm-publish=1:1"]), &Defaults::of(&m)).is_err());
        assert!(plan(&opts(&[b"--smolvm-net", b"--smolvm-ip=10.0.0.2/24"]), &Defaults::of(&m)).is_err());
        // The host's loopback is reached through passt (at its gateway).
        assert!(plan(&opts(&[b"--smolvm-net=none", b"--smolvm-net-host-loopback"]), &Defaults::of(&m)).is_err());
        let tap = opts(&[b"--smolvm-net=tap:t0", b"--smolvm-ip=10.0.0.2/24", b"--smolvm-net-host-loopback"]);
        assert!(plan(&tap, &Defaults::of(&m)).is_err());
        let p = plan(&opts(&[b"--smolvm-net-host-loopback"]), &Defaults::of(&m)).expect("ok").expect("implies passt");
        assert_eq!((p.backend, p.host_loopback), (Backend::Passt, true));
        let p = plan(&opts(&[b"--smolvm-net=tap:t0", b"--smolvm-ip=10.0.0.2/24@10.0.0.1"]), &Defaults::of(&m)).expect("ok").expect("on");
        assert_eq!(p.backend, Backend::Tap { name: b"t0", ip: IpSpec { addr: [10, 0, 0, 2], prefix: 24, gateway: Some([10, 0, 0, 1]) } });
    }

    #[test]
    fn runtime_records() {
        let mut buf = [0u8; 256];
        let mut w = config::Writer::new(&mut buf).expect("writer");
        let g = GuestNet { addr: [10, 0, 2, 15], prefix: 24, gateway: Some([10, 0, 2, 2]), mtu: 65520, dns: Some([10, 0, 2, 3]) };
        g.write_records(&mut w).expect("fits");
        let g = GuestNet { addr: [192, 168, 9, 2], prefix: 16, gateway: None, mtu: 1500, dns: None };
        g.write_records(&mut w).expect("fits");
        let n = w.len();
        let recs: Vec<(Key, Vec<Vec<u8>>)> = config::parse(&buf[..n])
            .expect("parse")
            .map(|r| {
                let r = r.expect("record");
                (r.key, (0..r.key.arity()).map(|i| r.field(i).to_vec()).collect())
            })
            .collect();
        let f = |s: &[&str]| s.iter().map(|x| x.as_bytes().to_vec()).collect::<Vec<_>>();
        assert_eq!(recs, [
            (Key::Ip, f(&["10.0.2.15/24", "10.0.2.2", "65520"])),
            (Key::Dns, f(&["10.0.2.3"])),
            (Key::Ip, f(&["192.168.9.2/16", "", "1500"])),
        ]);
    }
}
