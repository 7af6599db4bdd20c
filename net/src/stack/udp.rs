//! UDP: DNS queries that wait for a host lookup, and flows relayed to
//! host sockets (one connected host socket per guest port and
//! destination, closed after [`IDLE`] without traffic).

use super::frame;
use super::link::Link;
use crate::dns::Query;
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// A flow with no datagram either way for this long is closed.
pub const IDLE: Duration = Duration::from_secs(60);
/// TTL of the synthetic answers (the guest asks again after it).
pub const DNS_TTL: u32 = 60;
/// Queries that may wait for one name's lookup.
const MAX_WAITERS_PER_NAME: usize = 16;
/// Names that may be waited for at once.
const MAX_WAITING_NAMES: usize = 64;
/// Largest datagram taken from a host socket.
const MAX_DATAGRAM: usize = 65507;

type Waiter = (Query, (Ipv4Addr, u16), (Ipv4Addr, u16));

struct Flow {
    socket: UdpSocket,
    guest_port: u16,
    /// The address and port the guest sent to (what replies come from).
    remote: (Ipv4Addr, u16),
    last: Instant,
}

#[derive(Default)]
pub struct Udp {
    flows: HashMap<Token, Flow>,
    by_key: HashMap<(u16, (Ipv4Addr, u16)), Token>,
    waiting: HashMap<String, Vec<Waiter>>,
}

impl Udp {
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn owns(&self, token: Token) -> bool {
        self.flows.contains_key(&token)
    }

    pub fn has_flow(&self, guest_port: u16, remote: (Ipv4Addr, u16)) -> bool {
        self.by_key.contains_key(&(guest_port, remote))
    }

    pub fn clear(&mut self) {
        self.flows.clear();
        self.by_key.clear();
        self.waiting.clear();
    }

    /// Opens a flow to `addr` and sends its first datagram.
    pub fn open(
        &mut self,
        registry: &Registry,
        token: Token,
        guest_port: u16,
        remote: (Ipv4Addr, u16),
        addr: SocketAddr,
        payload: &[u8],
    ) {
        let any: SocketAddr = if addr.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let Ok(mut socket) = UdpSocket::bind(any) else {
            return;
        };
        if socket.connect(addr).is_err()
            || registry
                .register(&mut socket, token, Interest::READABLE)
                .is_err()
        {
            return;
        }
        let _ = socket.send(payload);
        self.by_key.insert((guest_port, remote), token);
        self.flows.insert(
            token,
            Flow {
                socket,
                guest_port,
                remote,
                last: Instant::now(),
            },
        );
    }

    /// A datagram on an open flow.
    pub fn send(&mut self, guest_port: u16, remote: (Ipv4Addr, u16), payload: &[u8]) {
        let Some(flow) = self
            .by_key
            .get(&(guest_port, remote))
            .and_then(|t| self.flows.get_mut(t))
        else {
            return;
        };
        flow.last = Instant::now();
        // A full host buffer drops the datagram, as a network would.
        let _ = flow.socket.send(payload);
    }

    /// Datagrams the host socket received, as frames for the guest.
    pub fn receive(&mut self, token: Token, link: &mut Link) {
        let Some(flow) = self.flows.get_mut(&token) else {
            return;
        };
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let max_payload = link.max_frame - 14 - 28;
        loop {
            match flow.socket.recv(&mut buf) {
                Ok(n) if n <= max_payload => {
                    flow.last = Instant::now();
                    let f = frame::udp_frame(
                        flow.remote,
                        (Ipv4Addr::from(pyro_proto::net::GUEST_IP), flow.guest_port),
                        &buf[..n],
                    );
                    // Dropped if the guest is not taking frames (UDP).
                    let _ = link.push_to_guest(f);
                }
                Ok(_) => {} // larger than the link carries: dropped
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break, // WouldBlock, or an ICMP error: nothing more
            }
        }
    }

    /// Closes flows idle for [`IDLE`].
    pub fn expire(&mut self, registry: &Registry) {
        let idle: Vec<Token> = self
            .flows
            .iter()
            .filter(|(_, f)| f.last.elapsed() > IDLE)
            .map(|(t, _)| *t)
            .collect();
        for token in idle {
            if let Some(mut flow) = self.flows.remove(&token) {
                let _ = registry.deregister(&mut flow.socket);
                self.by_key.remove(&(flow.guest_port, flow.remote));
            }
        }
    }

    /// Keeps a query until its name's host lookup ends; false if too many
    /// wait already.
    pub fn wait_for_name(
        &mut self,
        q: &Query,
        guest: (Ipv4Addr, u16),
        server: (Ipv4Addr, u16),
    ) -> bool {
        if !self.waiting.contains_key(&q.name) && self.waiting.len() >= MAX_WAITING_NAMES {
            return false;
        }
        let list = self.waiting.entry(q.name.clone()).or_default();
        if list.len() >= MAX_WAITERS_PER_NAME {
            return false;
        }
        list.push((q.clone(), guest, server));
        true
    }

    pub fn take_waiters(&mut self, name: &str) -> Vec<Waiter> {
        self.waiting.remove(name).unwrap_or_default()
    }

    pub fn forget_waiters(&mut self, name: &str) {
        self.waiting.remove(name);
    }
}
