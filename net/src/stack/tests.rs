//! The stack driven with hand-built guest frames, against real host
//! sockets on 127.0.0.1: DNS answers and refusals, dials allowed and
//! refused, the connection cap, bounded queues, published ports.

use super::*;
use crate::policy::{AddHost, HostPattern};
use smoltcp::wire::{EthernetFrame, Ipv4Packet, TcpPacket, UdpPacket};
use std::net::TcpListener as StdListener;

const GUEST: [u8; 4] = GUEST_IP;

fn rules(policy: NetworkPolicy, allow: &[&str], add: &[&str]) -> NetConfig {
    NetConfig {
        rules: NetRules {
            policy,
            allow: allow
                .iter()
                .map(|a| a.parse::<HostPattern>().unwrap())
                .collect(),
            add_hosts: add.iter().map(|a| a.parse::<AddHost>().unwrap()).collect(),
        },
        publish: Vec::new(),
    }
}

/// Ethernet + IPv4 header (checksum left 0: the stack does not verify).
fn ip_frame(dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&GATEWAY_MAC);
    f.extend_from_slice(&pyro_proto::net::GUEST_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
    f.extend_from_slice(&GUEST);
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(payload);
    f
}

fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

fn udp_frame_to(dst: (Ipv4Addr, u16), src_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&src_port.to_be_bytes());
    u.extend_from_slice(&dst.1.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    ip_frame(dst.0, 17, &u)
}

fn syn(dst: (Ipv4Addr, u16), src_port: u16) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&src_port.to_be_bytes());
    t.extend_from_slice(&dst.1.to_be_bytes());
    t.extend_from_slice(&1000u32.to_be_bytes()); // seq
    t.extend_from_slice(&0u32.to_be_bytes()); // ack
    t.extend_from_slice(&[0x50, 0x02]); // data offset 5, SYN
    t.extend_from_slice(&65535u16.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]);
    ip_frame(dst.0, 6, &t)
}

fn gateway() -> Ipv4Addr {
    Ipv4Addr::from(GATEWAY_IP)
}

/// Runs the stack until `done` holds or 5 s pass.
fn settle(stack: &mut Stack, mut done: impl FnMut(&mut Stack) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        stack.on_ready();
        stack.run();
        if done(stack) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

fn frames(stack: &mut Stack) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| stack.to_guest()).collect()
}

/// The UDP frames among `frames` (leaving out smoltcp's ARP replies).
fn udp_frames(frames: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    frames
        .into_iter()
        .filter(|f| matches!(frame::classify(f), Kind::Udp { .. }))
        .collect()
}

/// The DNS rcode and first A record of a reply frame.
fn dns_reply(frame: &[u8]) -> (u8, Option<Ipv4Addr>) {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!(udp.src_port(), 53);
    let m = udp.payload();
    let rcode = m[3] & 0x0f;
    let answers = u16::from_be_bytes([m[6], m[7]]);
    let a = (answers > 0).then(|| {
        let rdata = &m[m.len() - 4..];
        Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3])
    });
    (rcode, a)
}

fn tcp_flags(frame: &[u8]) -> Option<(bool, bool)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    Some((tcp.syn(), tcp.rst()))
}

#[test]
fn an_allowed_static_name_resolves_to_a_synthetic_address() {
    let mut s = Stack::new(&rules(
        NetworkPolicy::Egress,
        &["api.test"],
        &["api.test:127.0.0.1"],
    ))
    .unwrap();
    s.from_guest(udp_frame_to(
        (gateway(), 53),
        40000,
        &dns_query(7, "api.test"),
    ));
    s.run();
    let out = udp_frames(frames(&mut s));
    assert_eq!(out.len(), 1);
    let (rcode, a) = dns_reply(&out[0]);
    assert_eq!(rcode, 0);
    assert!(SyntheticPool::contains(a.unwrap()), "{a:?}");
}

#[test]
fn a_name_off_the_allowlist_gets_nxdomain_and_is_counted() {
    let mut s = Stack::new(&rules(NetworkPolicy::Egress, &["api.test"], &[])).unwrap();
    s.from_guest(udp_frame_to(
        (gateway(), 53),
        40000,
        &dns_query(7, "evil.test"),
    ));
    s.run();
    let out = udp_frames(frames(&mut s));
    assert_eq!(dns_reply(&out[0]), (3, None));
    let status = s.control().status();
    assert_eq!(status.refused_queries, 1);
    assert_eq!(status.recent_refusals[0].target, "evil.test");
}

#[test]
fn a_connection_to_an_allowed_host_port_is_dialed_and_carries_bytes() {
    let host = StdListener::bind("127.0.0.1:0").unwrap();
    let port = host.local_addr().unwrap().port();
    let allow = format!("127.0.0.1:{port}");
    let mut s = Stack::new(&rules(NetworkPolicy::Egress, &[&allow], &[])).unwrap();
    s.from_guest(syn((gateway(), port), 40001));
    let mut syn_ack = false;
    assert!(settle(&mut s, |s| {
        syn_ack |= frames(s)
            .iter()
            .any(|f| tcp_flags(f) == Some((true, false)));
        syn_ack
    }));
    host.set_nonblocking(true).unwrap();
    assert!(host.accept().is_ok(), "the VMM dialed the host");
}

#[test]
fn loopback_without_an_explicit_allow_is_refused_with_rst() {
    let host = StdListener::bind("127.0.0.1:0").unwrap();
    let port = host.local_addr().unwrap().port();
    let mut s = Stack::new(&rules(NetworkPolicy::Egress, &[], &[])).unwrap();
    s.from_guest(syn((gateway(), port), 40002));
    s.run();
    let out = frames(&mut s);
    assert!(out.iter().any(|f| tcp_flags(f) == Some((false, true))));
    host.set_nonblocking(true).unwrap();
    assert!(host.accept().is_err(), "nothing reached the host");
    let status = s.control().status();
    assert_eq!(status.refused_connections, 1);
    assert!(status.recent_refusals[0].reason.contains("127.0.0.1"));
}

#[test]
fn policy_off_refuses_everything() {
    let mut s = Stack::new(&rules(NetworkPolicy::Off, &[], &[])).unwrap();
    assert!(!s.link_up());
    s.from_guest(syn((Ipv4Addr::new(192, 0, 2, 1), 80), 40003));
    s.from_guest(udp_frame_to(
        (gateway(), 53),
        40000,
        &dns_query(1, "example.com"),
    ));
    s.run();
    let out = frames(&mut s);
    assert!(out.iter().any(|f| tcp_flags(f) == Some((false, true))));
    let status = s.control().status();
    assert_eq!((status.refused_connections, status.refused_queries), (1, 1));
}

#[test]
fn syns_past_the_cap_are_refused_and_state_stays_bounded() {
    let host = StdListener::bind("127.0.0.1:0").unwrap();
    let port = host.local_addr().unwrap().port();
    let allow = format!("127.0.0.1:{port}");
    let mut s = Stack::new(&rules(NetworkPolicy::Egress, &[&allow], &[])).unwrap();
    for i in 0..(MAX_CONNECTIONS as u16 + 50) {
        s.from_guest(syn((gateway(), port), 20000 + i));
        s.run();
    }
    assert!(s.conns.len() + s.pending.len() <= MAX_CONNECTIONS);
    assert!(s.control().status().refused_connections >= 50);
    assert!(s.link.to_guest.len() <= link::MAX_TO_GUEST);
}

#[test]
fn a_guest_that_takes_no_frames_cannot_grow_the_queue() {
    let mut s = Stack::new(&rules(
        NetworkPolicy::Egress,
        &["*.test"],
        &["a.test:10.9.9.9"],
    ))
    .unwrap();
    for i in 0..3000u16 {
        s.from_guest(udp_frame_to(
            (gateway(), 53),
            1000 + i,
            &dns_query(i, "a.test"),
        ));
        s.run();
    }
    assert_eq!(s.link.to_guest.len(), link::MAX_TO_GUEST);
    let _ = udp_frames(frames(&mut s));
}

#[test]
fn hostile_frames_never_panic() {
    let mut s = Stack::new(&rules(NetworkPolicy::Egress, &[], &[])).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let good = syn((Ipv4Addr::new(192, 0, 2, 1), 80), 1);
    for n in 0..4000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut f = good.clone();
        // Damage a few bytes past the Ethernet header, and the length.
        for k in 0..4 {
            let at = 14 + ((x >> (k * 8)) as usize % (f.len() - 14));
            f[at] = (x >> (k * 5)) as u8;
        }
        f.truncate(n % f.len() + 1);
        s.from_guest(f);
        s.run();
        let _ = frames(&mut s);
    }
    // Still answers.
    s.from_guest(udp_frame_to((gateway(), 53), 1, &[0u8; 3]));
    s.run();
}

#[test]
fn a_published_port_forwards_a_host_connection_into_the_guest() {
    let mut s = Stack::new(&rules(NetworkPolicy::EgressPublishedPorts, &[], &[])).unwrap();
    let published = s
        .control()
        .publish(PortMapping {
            host: None,
            guest: 8000,
        })
        .unwrap();
    s.on_ready();
    let _client = std::net::TcpStream::connect(("127.0.0.1", published.host)).unwrap();
    let mut syn_to_guest = false;
    assert!(settle(&mut s, |s| {
        syn_to_guest |= frames(s).iter().any(|f| {
            let Ok(eth) = EthernetFrame::new_checked(&f[..]) else {
                return false;
            };
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
                return false;
            };
            let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
                return false;
            };
            tcp.syn() && tcp.dst_port() == 8000 && ip.dst_addr() == Ipv4Addr::from(GUEST_IP)
        });
        syn_to_guest
    }));
    assert_eq!(s.control().status().ports, vec![published]);
    // Unpublish returns once the stack closed the listener: the port is
    // shut when the caller hears back.
    let control = s.control();
    let unpublish = std::thread::spawn(move || control.unpublish(8000).unwrap());
    while !unpublish.is_finished() {
        s.on_ready();
        std::thread::sleep(Duration::from_millis(5));
    }
    unpublish.join().unwrap();
    assert!(std::net::TcpStream::connect(("127.0.0.1", published.host)).is_err());
}

#[test]
fn publishing_needs_a_policy_with_published_ports() {
    let s = Stack::new(&rules(NetworkPolicy::Egress, &[], &[])).unwrap();
    let err = s
        .control()
        .publish(PortMapping {
            host: None,
            guest: 80,
        })
        .unwrap_err();
    assert!(err.to_string().contains("publishes no ports"), "{err}");
}
