//! The guest's network, set up once at start-up with syscalls only (a
//! process spawn costs ~0.6 s in a guest): `lo` up; if the VM has a
//! virtio-net device (`eth0`), its address, link and default route, all
//! from [`pyro_proto::net`]; the sysctls that make a link without carrier
//! fail connections at once; and the resolver file the image's
//! `/etc/resolv.conf` links to.
//!
//! The links, addresses and routes are rtnetlink requests over an
//! `AF_NETLINK` socket, encoded by hand below. The socket is neither bound
//! nor connected: the kernel binds it to a free port id on the first send
//! (`netlink_autobind`), and a send without an address goes to the
//! socket's default destination, port id 0, which is the kernel.
//!
//! Every failure is logged and start-up goes on: a guest without a
//! network still serves its agent over vsock.

use std::io::{ErrorKind, Read, Write};
use std::time::Duration;

use pyro_proto::net::{GATEWAY_IP, GUEST_IP, PREFIX_LEN, RESOLV_CONF};
use socket2::{Domain, Protocol, Socket, Type};

use super::log;

/// Sets up the network; see the module docs. Never fails.
pub fn configure() {
    // With carrier off (network policy "off") a route through eth0 is
    // skipped, so connect() fails with ENETUNREACH instead of hanging.
    for conf in ["all", "default"] {
        let path = format!("/proc/sys/net/ipv4/conf/{conf}/ignore_routes_with_linkdown");
        if let Err(e) = std::fs::write(&path, "1") {
            log(&format!("network: {path}: {e}"));
        }
    }
    if let Err(e) = configure_links() {
        log(&format!("network: {e}"));
    }
    if let Err(e) = write_resolv_conf() {
        log(&format!("network: {RESOLV_CONF}: {e}"));
    }
}

/// The kernel gives the loopback device this index in every namespace
/// (`LOOPBACK_IFINDEX`).
const LOOPBACK_INDEX: u32 = 1;
/// The first virtio-net device; no udev renames it.
const ETH0_INDEX_FILE: &str = "/sys/class/net/eth0/ifindex";
/// How long to wait for the kernel's answer to one request.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// `lo` up; then, if eth0 exists, its address, link and default route.
/// Errors on one step of eth0 are logged and the next is tried.
fn configure_links() -> Result<(), String> {
    let mut nl = Netlink::open().map_err(|e| format!("netlink socket: {e}"))?;
    nl.request(|seq| link_up(seq, LOOPBACK_INDEX))
        .map_err(|e| format!("lo up: {e}"))?;
    let eth0 = match std::fs::read_to_string(ETH0_INDEX_FILE) {
        Ok(s) => s
            .trim()
            .parse::<u32>()
            .map_err(|e| format!("{ETH0_INDEX_FILE}: {s:?}: {e}"))?,
        // No virtio-net device: this VM has no network but loopback.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{ETH0_INDEX_FILE}: {e}")),
    };
    let step = |what: &str, result: std::io::Result<()>| match result {
        Ok(()) => {}
        // Already there (init ran before in this kernel): fine.
        Err(e) if e.raw_os_error() == Some(EEXIST) => {}
        Err(e) => log(&format!("network: eth0 {what}: {e}")),
    };
    let [a, b, c, d] = GUEST_IP;
    step(
        &format!("address {a}.{b}.{c}.{d}/{PREFIX_LEN}"),
        nl.request(|seq| add_address(seq, eth0, GUEST_IP, PREFIX_LEN)),
    );
    step("up", nl.request(|seq| link_up(seq, eth0)));
    step(
        "default route",
        nl.request(|seq| add_default_route(seq, eth0, GATEWAY_IP)),
    );
    Ok(())
}

/// /run/pyro (0755) and the resolver file in it.
fn write_resolv_conf() -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let path = std::path::Path::new(RESOLV_CONF);
    if let Some(dir) = path.parent() {
        match std::fs::DirBuilder::new().mode(0o755).create(dir) {
            Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    }
    std::fs::write(path, resolv_conf())
}

/// The resolver file: the VMM's DNS server on the gateway, and short
/// timeouts (the server answers at once or not at all).
fn resolv_conf() -> String {
    let [a, b, c, d] = GATEWAY_IP;
    format!("nameserver {a}.{b}.{c}.{d}\noptions timeout:2 attempts:2\n")
}

/// An rtnetlink socket and the sequence number of its last request.
struct Netlink {
    socket: Socket,
    seq: u32,
}

const AF_NETLINK: i32 = 16;
const NETLINK_ROUTE: i32 = 0;
const EEXIST: i32 = 17;

impl Netlink {
    fn open() -> std::io::Result<Self> {
        // socket2 sets SOCK_CLOEXEC: the agent's children never see it.
        let socket = Socket::new(
            Domain::from(AF_NETLINK),
            Type::RAW,
            Some(Protocol::from(NETLINK_ROUTE)),
        )?;
        socket.set_read_timeout(Some(ACK_TIMEOUT))?;
        Ok(Self { socket, seq: 0 })
    }

    /// Sends the message `encode` makes for the next sequence number to
    /// the kernel and waits for its acknowledgement: `Ok` for error 0,
    /// else the errno.
    fn request(&mut self, encode: impl FnOnce(u32) -> Vec<u8>) -> std::io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let msg = encode(seq);
        let sent = (&self.socket).write(&msg)?;
        if sent != msg.len() {
            return Err(std::io::Error::other(format!(
                "sent {sent} of {} bytes",
                msg.len()
            )));
        }
        // An acknowledgement is a header, the error and the request's
        // header (its payload too on error): well under this.
        let mut buf = [0u8; 512];
        // Nothing else is sent to this socket (no multicast groups), but
        // do not trust that forever.
        for _ in 0..8 {
            let n = match (&self.socket).read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(std::io::Error::new(
                        ErrorKind::TimedOut,
                        format!("no answer from the kernel in {ACK_TIMEOUT:?}"),
                    ))
                }
                Err(e) => return Err(e),
            };
            match parse_ack(&buf[..n], seq) {
                Some(0) => return Ok(()),
                Some(errno) => return Err(std::io::Error::from_raw_os_error(errno)),
                None => {}
            }
        }
        Err(std::io::Error::other("no acknowledgement from the kernel"))
    }
}

// Message types, flags and attributes from <linux/netlink.h>,
// <linux/rtnetlink.h>, <linux/if_addr.h> and <linux/if.h>.
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NEW_FLAGS: u16 = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const IFF_UP: u32 = 0x1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;

/// `n` rounded up to netlink's 4-byte alignment.
fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A netlink message: `nlmsghdr` (port id 0: the kernel fills in ours),
/// then `body` (a fixed-size struct whose size is a multiple of 4), then
/// each attribute as an `rtattr` padded to 4 bytes. Host byte order.
fn message(kind: u16, flags: u16, seq: u32, body: &[u8], attrs: &[(u16, &[u8])]) -> Vec<u8> {
    debug_assert_eq!(body.len() % 4, 0);
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&[0; 4]); // nlmsg_len, set below
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
    m.extend_from_slice(body);
    for (kind, data) in attrs {
        let len = 4 + data.len();
        m.extend_from_slice(&(len as u16).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(data);
        m.resize(m.len() + align4(len) - len, 0);
    }
    let len = (m.len() as u32).to_ne_bytes();
    m[..4].copy_from_slice(&len);
    m
}

/// RTM_NEWLINK setting IFF_UP on interface `index`.
fn link_up(seq: u32, index: u32) -> Vec<u8> {
    // struct ifinfomsg: family, pad, type, index, flags, change.
    let mut body = vec![AF_UNSPEC, 0, 0, 0];
    body.extend_from_slice(&index.to_ne_bytes());
    body.extend_from_slice(&IFF_UP.to_ne_bytes());
    body.extend_from_slice(&IFF_UP.to_ne_bytes());
    message(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq, &body, &[])
}

/// RTM_NEWADDR adding `addr/prefix_len` to interface `index`.
fn add_address(seq: u32, index: u32, addr: [u8; 4], prefix_len: u8) -> Vec<u8> {
    // struct ifaddrmsg: family, prefixlen, flags, scope, index.
    let mut body = vec![AF_INET, prefix_len, 0, RT_SCOPE_UNIVERSE];
    body.extend_from_slice(&index.to_ne_bytes());
    let attrs: [(u16, &[u8]); 2] = [(IFA_LOCAL, &addr), (IFA_ADDRESS, &addr)];
    message(RTM_NEWADDR, NEW_FLAGS, seq, &body, &attrs)
}

/// RTM_NEWROUTE adding the default route via `gateway` on interface
/// `index`, in the main table.
fn add_default_route(seq: u32, index: u32, gateway: [u8; 4]) -> Vec<u8> {
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol,
    // scope, type, flags.
    let mut body = vec![
        AF_INET,
        0,
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_BOOT,
        RT_SCOPE_UNIVERSE,
        RTN_UNICAST,
    ];
    body.extend_from_slice(&0u32.to_ne_bytes());
    let oif = index.to_ne_bytes();
    let attrs: [(u16, &[u8]); 2] = [(RTA_GATEWAY, &gateway), (RTA_OIF, &oif)];
    message(RTM_NEWROUTE, NEW_FLAGS, seq, &body, &attrs)
}

/// The errno (0 for success) of the acknowledgement of request `seq` in
/// the datagram `buf`, if it holds one: an NLMSG_ERROR message whose
/// `nlmsgerr.error` is the negated errno.
fn parse_ack(buf: &[u8], seq: u32) -> Option<i32> {
    let u32_at = |b: &[u8], at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let mut rest = buf;
    while rest.len() >= NLMSG_HDRLEN {
        let len = u32_at(rest, 0) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        if kind == NLMSG_ERROR && u32_at(rest, 8) == seq && rest.len() >= NLMSG_HDRLEN + 4 {
            let error = u32_at(rest, NLMSG_HDRLEN) as i32;
            return Some(error.wrapping_neg());
        }
        if len < NLMSG_HDRLEN || align4(len) >= rest.len() {
            return None;
        }
        rest = &rest[align4(len)..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ne16(v: u16) -> [u8; 2] {
        v.to_ne_bytes()
    }
    fn ne32(v: u32) -> [u8; 4] {
        v.to_ne_bytes()
    }

    /// The 16-byte nlmsghdr the encoders should write.
    fn header(len: u32, kind: u16, flags: u16, seq: u32) -> Vec<u8> {
        [
            &ne32(len)[..],
            &ne16(kind),
            &ne16(flags),
            &ne32(seq),
            &ne32(0),
        ]
        .concat()
    }

    #[test]
    fn link_up_layout() {
        let m = link_up(7, 3);
        let want = [
            header(32, 16, 0x1 | 0x4, 7),
            // ifinfomsg: AF_UNSPEC, pad, type 0, index 3, IFF_UP, IFF_UP.
            vec![0, 0, 0, 0],
            ne32(3).to_vec(),
            ne32(1).to_vec(),
            ne32(1).to_vec(),
        ]
        .concat();
        assert_eq!(m, want);
    }

    #[test]
    fn add_address_layout() {
        let m = add_address(2, 5, [10, 0, 2, 15], 24);
        let want = [
            header(40, 20, 0x1 | 0x4 | 0x400 | 0x200, 2),
            // ifaddrmsg: AF_INET, /24, flags 0, scope universe, index 5.
            vec![2, 24, 0, 0],
            ne32(5).to_vec(),
            // IFA_LOCAL, IFA_ADDRESS: 8 bytes each.
            [&ne16(8)[..], &ne16(2), &[10, 0, 2, 15]].concat(),
            [&ne16(8)[..], &ne16(1), &[10, 0, 2, 15]].concat(),
        ]
        .concat();
        assert_eq!(m, want);
    }

    #[test]
    fn add_default_route_layout() {
        let m = add_default_route(3, 5, [10, 0, 2, 2]);
        let want = [
            header(44, 24, 0x1 | 0x4 | 0x400 | 0x200, 3),
            // rtmsg: AF_INET, dst/src len 0, tos 0, table main, proto
            // boot, scope universe, unicast, flags 0.
            vec![2, 0, 0, 0, 254, 3, 0, 1],
            ne32(0).to_vec(),
            // RTA_GATEWAY, RTA_OIF.
            [&ne16(8)[..], &ne16(5), &[10, 0, 2, 2]].concat(),
            [&ne16(8)[..], &ne16(4), &ne32(5)].concat(),
        ]
        .concat();
        assert_eq!(m, want);
    }

    #[test]
    fn attributes_are_padded() {
        let m = message(1, 0, 0, &[], &[(9, &[1, 2, 3]), (8, &[4])]);
        let want = [
            header(32, 1, 0, 0),
            [&ne16(7)[..], &ne16(9), &[1, 2, 3, 0]].concat(),
            [&ne16(5)[..], &ne16(8), &[4, 0, 0, 0]].concat(),
        ]
        .concat();
        assert_eq!(m, want);
    }

    /// An NLMSG_ERROR message answering `seq` with `error`, as the kernel
    /// writes it: header, error, the request's header.
    fn ack(seq: u32, error: i32) -> Vec<u8> {
        [
            header(36, NLMSG_ERROR, 0x100, seq),
            error.to_ne_bytes().to_vec(),
            header(32, RTM_NEWLINK, 5, seq),
        ]
        .concat()
    }

    #[test]
    fn acks() {
        assert_eq!(parse_ack(&ack(4, 0), 4), Some(0));
        assert_eq!(parse_ack(&ack(4, -17), 4), Some(17));
        // Another request's answer, a short datagram, a bad length.
        assert_eq!(parse_ack(&ack(3, 0), 4), None);
        assert_eq!(parse_ack(&ack(4, 0)[..12], 4), None);
        let mut bad = header(3, 3, 0, 4);
        bad.extend_from_slice(&ack(4, 0));
        assert_eq!(parse_ack(&bad, 4), None);
        // After another message in the same datagram.
        let two = [header(16, 3, 0, 1), ack(4, -1)].concat();
        assert_eq!(parse_ack(&two, 4), Some(1));
        assert_eq!(
            resolv_conf(),
            "nameserver 10.0.2.2\noptions timeout:2 attempts:2\n"
        );
    }

    /// A request sent without an address reaches the kernel, whose answer
    /// comes back: adding an address to an interface that does not exist
    /// changes nothing and fails with ENODEV (EPERM when not root).
    #[test]
    fn kernel_answers_unaddressed_requests() {
        const ENODEV: i32 = 19;
        const EPERM: i32 = 1;
        let mut nl = Netlink::open().unwrap();
        for _ in 0..2 {
            let err = nl
                .request(|seq| add_address(seq, i32::MAX as u32, [192, 0, 2, 1], 24))
                .unwrap_err();
            let errno = err.raw_os_error();
            assert!(
                errno == Some(ENODEV) || errno == Some(EPERM),
                "unexpected error: {err}"
            );
        }
        assert_eq!(nl.seq, 2);
    }
}
