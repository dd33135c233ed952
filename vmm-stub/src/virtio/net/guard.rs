//! The host's loopback stays closed to the guest while UDP replies still
//! work. The packaged passt (Debian's 2023-03 build) maps UDP replies to
//! a loopback client (a published `/udp` port used through 127.0.0.1) back
//! to that client only through its gateway mapping, which `--no-map-gw`
//! turns off, and that mapping also lets the guest reach every service on
//! the host's 127.0.0.1. So with a published UDP port and no
//! `--smolvm-net-host-loopback`, the stub runs passt with the mapping on
//! and drops, itself, the guest frames that would use it for more than
//! replies: a TCP connection attempt (SYN without ACK) to the gateway, UDP
//! to the gateway from any port but a published one, and IPv4 fragments
//! to the gateway (their ports cannot be checked). Everything else passes.

/// What the guest may send to the gateway address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayGuard {
    pub gateway: [u8; 4],
    /// Guest UDP ports published to the host: their replies may go out.
    pub udp_ports: heapless::Vec<u16, { crate::network::spec::MAX_PUBLISH }>,
}

const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const TCP: u8 = 6;
const UDP: u8 = 17;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

impl GatewayGuard {
    /// Whether the Ethernet frame `f` may go to the backend.
    pub fn allows(&self, f: &[u8]) -> bool {
        let Some((eth, ip)) = f.split_at_checked(14) else { return true };
        if eth.get(12..14) != Some(&ETHERTYPE_IPV4[..]) {
            return true; // ARP and the rest: passt answers them itself
        }
        if ip.get(16..20) != Some(&self.gateway[..]) {
            return true;
        }
        // To the gateway: only what can be checked, and only replies.
        let Some(&vihl) = ip.first() else { return false };
        let ihl = usize::from(vihl & 0x0f) * 4;
        let (Some(&proto), Some(frag)) = (ip.get(9), ip.get(6..8)) else { return false };
        let fragmented = frag.first().is_some_and(|&b| b & 0x3f != 0) || frag.get(1).is_some_and(|&b| b != 0);
        let l4 = ip.get(ihl..).filter(|_| ihl >= 20 && !fragmented);
        match (proto, l4) {
            (TCP, Some(t)) => t.get(13).is_some_and(|&flags| flags & TCP_SYN == 0 || flags & TCP_ACK != 0),
            (UDP, Some(u)) => u.first_chunk::<2>().is_some_and(|p| self.udp_ports.contains(&u16::from_be_bytes(*p))),
            (TCP | UDP, None) => false,
            _ => true, // ICMP echo of the gateway
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: [u8; 4] = [10, 0, 2, 2];

    fn guard() -> GatewayGuard {
        let mut udp_ports = heapless::Vec::new();
        udp_ports.push(8080).expect("room");
        GatewayGuard { gateway: GW, udp_ports }
    }

    /// An IPv4 frame to `dst`: protocol, L4 header bytes.
    fn frame(dst: [u8; 4], proto: u8, frag: [u8; 2], l4: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ETHERTYPE_IPV4);
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, frag[0], frag[1], 64, proto, 0, 0, 10, 0, 2, 15];
        ip.extend_from_slice(&dst);
        f.extend(ip);
        f.extend_from_slice(l4);
        f
    }

    fn tcp(flags: u8) -> Vec<u8> {
        let mut t = vec![0u8; 20];
        t[13] = flags;
        t
    }

    fn udp(src: u16) -> Vec<u8> {
        let mut u = src.to_be_bytes().to_vec();
        u.extend_from_slice(&[0, 53, 0, 8, 0, 0]);
        u
    }

    #[test]
    fn connections_to_the_gateway_are_dropped_replies_pass() {
        let g = guard();
        assert!(!g.allows(&frame(GW, TCP, [0, 0], &tcp(TCP_SYN))), "a new connection to the host's loopback");
        assert!(g.allows(&frame(GW, TCP, [0, 0], &tcp(TCP_SYN | TCP_ACK))), "accepting a published connection");
        assert!(g.allows(&frame(GW, TCP, [0, 0], &tcp(TCP_ACK))));
        assert!(g.allows(&frame(GW, UDP, [0, 0], &udp(8080))), "a reply from the published UDP port");
        assert!(!g.allows(&frame(GW, UDP, [0, 0], &udp(5353))), "UDP from another port");
        assert!(!g.allows(&frame(GW, UDP, [0x20, 0], &udp(8080))), "a first fragment (MF)");
        assert!(!g.allows(&frame(GW, UDP, [0, 8], &udp(8080))), "a later fragment");
        assert!(!g.allows(&frame(GW, TCP, [0, 0], &[0; 5])), "a truncated TCP header");
        assert!(g.allows(&frame(GW, 1, [0, 0], &[8, 0, 0, 0])), "ping the gateway");
    }

    #[test]
    fn other_destinations_and_non_ipv4_pass() {
        let g = guard();
        assert!(g.allows(&frame([1, 1, 1, 1], TCP, [0, 0], &tcp(TCP_SYN))));
        assert!(g.allows(&frame([10, 0, 2, 3], UDP, [0, 0], &udp(40000))), "DNS through passt");
        let mut arp = frame(GW, 0, [0, 0], &[]);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(g.allows(&arp));
        assert!(g.allows(&[0u8; 10]), "a runt is the link's business");
        // A header length below 20 to the gateway cannot be checked.
        let mut bad = frame(GW, UDP, [0, 0], &udp(8080));
        bad[14] = 0x44;
        assert!(!g.allows(&bad));
    }
}
