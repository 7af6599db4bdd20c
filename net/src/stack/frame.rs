//! Reading the guest's frames just enough to route them (which are UDP,
//! which open a TCP connection), and building the UDP frames the stack
//! answers with. Every length is checked: frames are untrusted.

use pyro_proto::net::{GATEWAY_MAC, GUEST_MAC};
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket,
};
use std::net::Ipv4Addr;

/// What a guest frame is, as far as routing it goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    /// A UDP datagram (unfragmented).
    Udp {
        src: (Ipv4Addr, u16),
        dst: (Ipv4Addr, u16),
        payload: &'a [u8],
    },
    /// A TCP SYN without ACK: the guest opens a connection.
    TcpSyn {
        src: (Ipv4Addr, u16),
        dst: (Ipv4Addr, u16),
    },
    /// Everything else smoltcp handles or drops (ARP, TCP segments of
    /// open connections, malformed frames).
    Other,
    /// Not worth passing on (IPv4 fragments: the guest's MTU is the
    /// link's, so it has no reason to fragment).
    Drop,
}

pub fn classify(frame: &[u8]) -> Kind<'_> {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return Kind::Drop;
    };
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return Kind::Other;
    }
    let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
        return Kind::Drop;
    };
    if ip.more_frags() || ip.frag_offset() != 0 {
        return Kind::Drop;
    }
    let (src_ip, dst_ip) = (ip.src_addr(), ip.dst_addr());
    match ip.next_header() {
        IpProtocol::Udp => {
            let Ok(udp) = UdpPacket::new_checked(ip.payload()) else {
                return Kind::Drop;
            };
            // UdpPacket::new_checked bounds the length field by the buffer.
            let len = usize::from(udp.len()).saturating_sub(8);
            let payload = &ip.payload()[8..8 + len];
            Kind::Udp {
                src: (src_ip, udp.src_port()),
                dst: (dst_ip, udp.dst_port()),
                payload,
            }
        }
        IpProtocol::Tcp => match TcpPacket::new_checked(ip.payload()) {
            Ok(tcp) if tcp.syn() && !tcp.ack() && !tcp.rst() => Kind::TcpSyn {
                src: (src_ip, tcp.src_port()),
                dst: (dst_ip, tcp.dst_port()),
            },
            Ok(_) => Kind::Other,
            Err(_) => Kind::Drop,
        },
        _ => Kind::Other,
    }
}

/// An Ethernet frame from the gateway to the guest carrying one UDP
/// datagram `src` → `dst`. The UDP checksum is left 0 ("none", allowed
/// on IPv4); the guest is told frames need no checking anyway.
pub fn udp_frame(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let ip_len = 20 + udp_len;
    let mut f = Vec::with_capacity(14 + ip_len);
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&GATEWAY_MAC);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let ip_start = f.len();
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&(ip_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0]); // id 0, don't fragment
    f.extend_from_slice(&[64, 17, 0, 0]); // ttl, UDP, checksum below
    f.extend_from_slice(&src.0.octets());
    f.extend_from_slice(&dst.0.octets());
    let sum = checksum(&f[ip_start..ip_start + 20]);
    f[ip_start + 10..ip_start + 12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&src.1.to_be_bytes());
    f.extend_from_slice(&dst.1.to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// An ARP request from the guest for the gateway's address: what
/// smoltcp learns the guest's MAC from.
pub fn arp_request_from_guest() -> Vec<u8> {
    use pyro_proto::net::{GATEWAY_IP, GUEST_IP};
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]); // Ethernet/IPv4, request
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&GUEST_IP);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&GATEWAY_IP);
    f
}

/// The Internet checksum (RFC 1071) of `bytes`.
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_udp_frame_classifies_back() {
        let f = udp_frame(
            (Ipv4Addr::new(10, 0, 2, 2), 53),
            (Ipv4Addr::new(10, 0, 2, 15), 40000),
            b"hello",
        );
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(
            classify(&f),
            Kind::Udp {
                src: (Ipv4Addr::new(10, 0, 2, 2), 53),
                dst: (Ipv4Addr::new(10, 0, 2, 15), 40000),
                payload: b"hello",
            }
        );
    }

    #[test]
    fn every_truncation_of_a_frame_is_safe() {
        let f = udp_frame(
            (Ipv4Addr::new(10, 0, 2, 15), 1),
            (Ipv4Addr::new(10, 0, 2, 2), 53),
            &[7u8; 40],
        );
        for n in 0..f.len() {
            let k = classify(&f[..n]);
            assert!(matches!(k, Kind::Drop | Kind::Other), "{n}: {k:?}");
        }
    }

    #[test]
    fn a_udp_length_past_the_packet_is_dropped() {
        let mut f = udp_frame(
            (Ipv4Addr::new(10, 0, 2, 15), 1),
            (Ipv4Addr::new(10, 0, 2, 2), 53),
            &[7u8; 4],
        );
        let at = 14 + 20 + 4;
        f[at..at + 2].copy_from_slice(&500u16.to_be_bytes());
        assert_eq!(classify(&f), Kind::Drop);
    }

    #[test]
    fn fragments_are_dropped() {
        let mut f = udp_frame(
            (Ipv4Addr::new(10, 0, 2, 15), 1),
            (Ipv4Addr::new(10, 0, 2, 2), 53),
            &[7u8; 4],
        );
        f[14 + 6] = 0x20; // more fragments
        assert_eq!(classify(&f), Kind::Drop);
    }
}
