//! The network options as typed values: `--smolvm-net=passt|tap:NAME|none`,
//! `--smolvm-publish=[HOST_IP:]HOST_PORT:GUEST_PORT[/udp]` and
//! `--smolvm-ip=ADDR/PREFIX[@GATEWAY]`. Parsing only; nothing is opened.

pub use linker::abi::MAX_PUBLISH;

/// An IPv4 address.
pub type Ipv4 = [u8; 4];

/// Where published ports listen unless the user names an address: only
/// this host can connect (Docker's 0.0.0.0 default exposes a port to the
/// whole network, often past the host's firewall).
pub const LOCALHOST: Ipv4 = [127, 0, 0, 1];

/// `--smolvm-net`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetMode<'a> {
    /// No network device.
    None,
    /// virtio-net + passt (user-mode, no privileges).
    Passt,
    /// virtio-net on an existing TAP device with this name.
    Tap(&'a [u8]),
}

impl<'a> NetMode<'a> {
    /// `passt`, `1` (the environment variable's on), `tap:NAME`, `none`.
    pub fn parse(v: &'a [u8]) -> Option<NetMode<'a>> {
        match v {
            b"passt" | b"1" => Some(NetMode::Passt),
            b"none" | b"0" => Some(NetMode::None),
            _ => {
                let name = v.strip_prefix(b"tap:")?;
                let ok = !name.is_empty() && name.len() < crate::sys::net::IFNAMSIZ
                    && name.iter().all(|&b| b.is_ascii_graphic() && b != b'/' && b != b':');
                ok.then_some(NetMode::Tap(name))
            }
        }
    }
}

/// TCP or UDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// One published port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Publish {
    pub host_ip: Ipv4,
    pub host_port: u16,
    pub guest_port: u16,
    pub proto: Proto,
}

impl Publish {
    pub fn parse(v: &[u8]) -> Option<Publish> {
        let (ports, proto) = match v.strip_suffix(b"/udp") {
            Some(p) => (p, Proto::Udp),
            None => (v.strip_suffix(b"/tcp").unwrap_or(v), Proto::Tcp),
        };
        let mut parts = ports.rsplitn(3, |&b| b == b':');
        let guest_port = parse_port(parts.next()?)?;
        let host_port = parse_port(parts.next()?)?;
        let host_ip = match parts.next() {
            Some(ip) => parse_ipv4(ip)?,
            None => LOCALHOST,
        };
        Some(Publish { host_ip, host_port, guest_port, proto })
    }
}

/// `--smolvm-ip`: the guest's address with a TAP backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpSpec {
    pub addr: Ipv4,
    pub prefix: u8,
    pub gateway: Option<Ipv4>,
}

impl IpSpec {
    pub fn parse(v: &[u8]) -> Option<IpSpec> {
        let (cidr, gateway) = match v.iter().position(|&b| b == b'@') {
            Some(i) => (v.get(..i)?, Some(parse_ipv4(v.get(i.wrapping_add(1)..)?)?)),
            None => (v, None),
        };
        let i = cidr.iter().position(|&b| b == b'/')?;
        let addr = parse_ipv4(cidr.get(..i)?)?;
        let prefix = parse_dec(cidr.get(i.wrapping_add(1)..)?, 32)?;
        let prefix = u8::try_from(prefix).ok().filter(|p| (1..=32).contains(p))?;
        Some(IpSpec { addr, prefix, gateway })
    }
}

/// A decimal number `<= max` (no sign, no leading `+`, at most 5 digits).
fn parse_dec(s: &[u8], max: u32) -> Option<u32> {
    if s.is_empty() || s.len() > 5 {
        return None;
    }
    let mut v: u32 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(b - b'0');
    }
    (v <= max).then_some(v)
}

fn parse_port(s: &[u8]) -> Option<u16> {
    parse_dec(s, 65535).and_then(|p| u16::try_from(p).ok()).filter(|&p| p != 0)
}

/// Dotted-quad IPv4 (`a.b.c.d`, each 0..=255).
pub fn parse_ipv4(s: &[u8]) -> Option<Ipv4> {
    let mut out = [0u8; 4];
    let mut parts = s.split(|&b| b == b'.');
    for o in &mut out {
        let p = parts.next()?;
        if p.len() > 3 {
            return None;
        }
        *o = u8::try_from(parse_dec(p, 255)?).ok()?;
    }
    parts.next().is_none().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_modes() {
        assert_eq!(NetMode::parse(b"passt"), Some(NetMode::Passt));
        assert_eq!(NetMode::parse(b"1"), Some(NetMode::Passt));
        assert_eq!(NetMode::parse(b"none"), Some(NetMode::None));
        assert_eq!(NetMode::parse(b"tap:tap0"), Some(NetMode::Tap(b"tap0")));
        for bad in [&b""[..], b"tap:", b"tap:0123456789abcdef", b"tap:a/b", b"tap:a b", b"slirp", b"TAP:x"] {
            assert_eq!(NetMode::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn publish_specs() {
        let p = |host_ip, host_port, guest_port, proto| Some(Publish { host_ip, host_port, guest_port, proto });
        assert_eq!(Publish::parse(b"8080:80"), p(LOCALHOST, 8080, 80, Proto::Tcp));
        assert_eq!(Publish::parse(b"0.0.0.0:53:5353/udp"), p([0, 0, 0, 0], 53, 5353, Proto::Udp));
        assert_eq!(Publish::parse(b"192.168.1.2:1:65535/tcp"), p([192, 168, 1, 2], 1, 65535, Proto::Tcp));
        for bad in [
            &b""[..], b"80", b":80", b"80:", b"0:80", b"80:0", b"65536:80", b"8080:80/sctp", b"1.2.3:80:80",
            b"1.2.3.256:80:80", b"::1:80:80", b"a:b:c:d", b"+80:80", b"80:80/udp/udp", b"1.2.3.4.5:1:1", b"0080000:1",
        ] {
            assert_eq!(Publish::parse(bad), None, "{:?}", core::str::from_utf8(bad));
        }
    }

    #[test]
    fn ip_specs() {
        assert_eq!(IpSpec::parse(b"10.0.0.2/24"), Some(IpSpec { addr: [10, 0, 0, 2], prefix: 24, gateway: None }));
        assert_eq!(
            IpSpec::parse(b"192.168.7.5/16@192.168.0.1"),
            Some(IpSpec { addr: [192, 168, 7, 5], prefix: 16, gateway: Some([192, 168, 0, 1]) })
        );
        for bad in [&b"10.0.0.2"[..], b"10.0.0.2/0", b"10.0.0.2/33", b"10.0.0.2/24@", b"10.0.0/24", b"/24", b"10.0.0.2/24@x"] {
            assert_eq!(IpSpec::parse(bad), None, "{bad:?}");
        }
    }
}
