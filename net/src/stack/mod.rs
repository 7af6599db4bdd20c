//! The per-VM stack: smoltcp terminates the guest's TCP, the VMM answers
//! its DNS and relays its UDP, and every connection out is re-opened as
//! an ordinary host socket after the VM's rules allowed it.
//!
//! It runs on the VMM's event thread. The device feeds it guest frames
//! ([`Stack::from_guest`]) and drains frames for the guest
//! ([`Stack::to_guest`]); the event thread polls [`Stack::fd`] (one epoll
//! fd for all host sockets, published-port listeners and wake-ups) and
//! calls [`Stack::on_ready`], and arms a timer for
//! [`Stack::next_timeout`] (smoltcp's retransmissions, dial timeouts,
//! idle UDP flows).
//!
//! Addresses: the guest is 10.0.2.15, the stack 10.0.2.2 (gateway and
//! DNS; a connection to it goes to the host's loopback, if allowed).
//! Every allowed name resolves to a synthetic address
//! ([`crate::pool`]); a connection to one is dialed to the name's
//! addresses, so the guest reaches only what it resolved (DNS pinning).

mod control;
mod frame;
mod link;
mod resolver;
mod tcp;
mod udp;

pub use control::{
    NetControl, NetError, NetStatus, PublishedPort, RefusalRecord, RefusalSource, RECENT_REFUSALS,
};
pub use resolver::on_resolver_start;

use crate::policy::{Destination, NetRules, NetworkPolicy, PortMapping};
use crate::pool::SyntheticPool;
use control::{ControlMsg, Shared};
use frame::Kind;
use link::Link;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use pyro_proto::net::{GATEWAY_IP, GATEWAY_MAC, GUEST_IP, MTU, PREFIX_LEN};
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tcp::{Conn, Pending, Tuple};

/// TCP connections (both directions, dials included) and UDP flows one VM
/// may hold at once. A SYN past the cap is refused.
pub const MAX_CONNECTIONS: usize = 256;
/// Names whose host addresses the stack remembers (and synthetic
/// addresses it hands out).
pub const MAX_NAMES: usize = 4096;

const WAKER: Token = Token(0);
/// First local port the stack uses for connections into the guest.
const INBOUND_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;

/// What a VM's network is set up with.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetConfig {
    pub rules: NetRules,
    /// Ports to publish from the start.
    #[serde(default)]
    pub publish: Vec<PortMapping>,
}

pub struct Stack {
    iface: Interface,
    sockets: SocketSet<'static>,
    link: Link,
    poll: Poll,
    events: Events,
    shared: Arc<Shared>,
    control: Receiver<ControlMsg>,
    handle: NetControl,
    conns: HashMap<Token, Conn>,
    pending: HashMap<Token, Pending>,
    by_tuple: HashMap<Tuple, Token>,
    listeners: HashMap<Token, (u16, TcpListener)>,
    udp: udp::Udp,
    pool: SyntheticPool,
    /// Host addresses of names the guest resolved (not --add-host ones).
    names: HashMap<String, Vec<IpAddr>>,
    resolver: resolver::Resolver,
    epoch: Instant,
    /// When the guest's MAC was last put in smoltcp's neighbor cache.
    neighbor_at: Option<Instant>,
    next_token: usize,
    next_inbound_port: u16,
}

impl Stack {
    /// A stack for one VM, with `config`'s ports published (an error if
    /// one cannot be bound).
    pub fn new(config: &NetConfig) -> Result<Stack, NetError> {
        let io = |e: std::io::Error| NetError::Bind {
            port: 0,
            detail: e.to_string(),
        };
        let poll = Poll::new().map_err(io)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(io)?);
        let mut link = Link::new(usize::from(MTU));
        let mut iface_config = Config::new(HardwareAddress::Ethernet(EthernetAddress(GATEWAY_MAC)));
        iface_config.random_seed = seed();
        let epoch = Instant::now();
        let mut iface = Interface::new(iface_config, &mut link, smoltcp::time::Instant::ZERO);
        let gateway = Ipv4Address::from(GATEWAY_IP);
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(gateway), PREFIX_LEN));
        });
        // Any destination is "ours" (AnyIP through a default route via
        // our own address): smoltcp accepts the guest's packets to every
        // address and answers as that address.
        iface.set_any_ip(true);
        let _ = iface.routes_mut().add_default_ipv4_route(gateway);
        let shared = Arc::new(Shared::new(config.rules.clone()));
        let (tx, control) = channel();
        let handle = NetControl {
            shared: shared.clone(),
            tx,
            waker: waker.clone(),
        };
        let resolver = resolver::Resolver::start(waker).map_err(io)?;
        let mut stack = Stack {
            iface,
            sockets: SocketSet::new(Vec::new()),
            link,
            poll,
            events: Events::with_capacity(256),
            shared,
            control,
            handle,
            conns: HashMap::new(),
            pending: HashMap::new(),
            by_tuple: HashMap::new(),
            listeners: HashMap::new(),
            udp: udp::Udp::default(),
            pool: SyntheticPool::new(MAX_NAMES),
            names: HashMap::new(),
            resolver,
            epoch,
            neighbor_at: None,
            next_token: 1,
            next_inbound_port: *INBOUND_PORTS.start(),
        };
        for mapping in &config.publish {
            stack.handle.publish(*mapping)?;
        }
        stack.apply_control();
        Ok(stack)
    }

    /// The handle the VMM's control side uses.
    pub fn control(&self) -> NetControl {
        self.handle.clone()
    }

    /// The fd to poll for readability: any host socket, listener or
    /// wake-up that needs [`Stack::on_ready`].
    pub fn fd(&self) -> RawFd {
        self.poll.as_raw_fd()
    }

    /// Whether the guest's link is up: not under policy `off`.
    pub fn link_up(&self) -> bool {
        self.shared.policy() != NetworkPolicy::Off
    }

    /// A frame from the guest (without the virtio header); kept, not
    /// copied, when smoltcp or a held SYN needs it.
    pub fn from_guest(&mut self, frame: Vec<u8>) {
        self.know_the_guest();
        // Under policy `off` the link is down as well; what the guest
        // still sends is refused like any other disallowed traffic.
        let syn = match frame::classify(&frame) {
            Kind::Drop => return,
            Kind::Other => None,
            Kind::Udp { src, dst, payload } => return self.on_udp(src, dst, payload),
            Kind::TcpSyn { src, dst } => Some((src, dst)),
        };
        match syn {
            Some((src, dst)) => self.on_syn(frame, src, dst),
            None => {
                self.link.push_from_guest(frame);
            }
        }
    }

    /// The next frame for the guest, if any.
    pub fn to_guest(&mut self) -> Option<Vec<u8>> {
        self.link.to_guest.pop_front()
    }

    /// Puts back a frame the guest had no buffer for.
    pub fn unpop_to_guest(&mut self, frame: Vec<u8>) {
        self.link.to_guest.push_front(frame);
    }

    pub fn has_to_guest(&self) -> bool {
        !self.link.to_guest.is_empty()
    }

    /// Handles whatever is ready on [`Stack::fd`] (never blocks).
    pub fn on_ready(&mut self) {
        if self
            .poll
            .poll(&mut self.events, Some(Duration::ZERO))
            .is_err()
        {
            return;
        }
        let ready: Vec<(Token, bool, bool)> = self
            .events
            .iter()
            .map(|e| {
                (
                    e.token(),
                    e.is_readable() || e.is_read_closed() || e.is_error(),
                    e.is_writable() || e.is_write_closed() || e.is_error(),
                )
            })
            .collect();
        for (token, readable, writable) in ready {
            if token == WAKER {
                self.apply_control();
                self.take_resolved();
            } else if let Some(c) = self.conns.get_mut(&token) {
                c.readable |= readable;
                c.writable |= writable;
            } else if self.pending.contains_key(&token) {
                self.dial_progress(token);
            } else if self.listeners.contains_key(&token) {
                self.accept(token);
            } else if self.udp.owns(token) {
                self.udp.receive(token, &mut self.link);
            }
        }
    }

    /// Runs the stack until nothing moves: guest frames through smoltcp,
    /// bytes between sockets, timers.
    pub fn run(&mut self) {
        self.expire();
        self.know_the_guest();
        for _ in 0..64 {
            let now = self.now();
            self.iface.poll(now, &mut self.link, &mut self.sockets);
            let moved = tcp::relay(&mut self.conns, &mut self.sockets);
            if !moved && self.link.from_guest.is_empty() {
                break;
            }
        }
        self.by_tuple
            .retain(|_, token| self.conns.contains_key(token) || self.pending.contains_key(token));
        self.shared.connections.store(
            (self.conns.len() + self.pending.len() + self.udp.len()) as u64,
            Ordering::Relaxed,
        );
    }

    /// How long until [`Stack::run`] has timed work (None: nothing timed).
    pub fn next_timeout(&mut self) -> Option<Duration> {
        let now = self.now();
        let smol = self
            .iface
            .poll_delay(now, &self.sockets)
            .map(|d| Duration::from_micros(d.total_micros()));
        let dial = (!self.pending.is_empty()).then_some(Duration::from_secs(1));
        let udp = (self.udp.len() > 0).then_some(udp::IDLE / 2);
        [smol, dial, udp].into_iter().flatten().min()
    }

    /// The guest reset its device: every connection goes.
    pub fn reset(&mut self) {
        for (_, c) in self.conns.drain() {
            self.sockets.remove(c.handle);
        }
        self.pending.clear();
        self.by_tuple.clear();
        self.udp.clear();
        self.link.from_guest.clear();
        self.link.to_guest.clear();
    }

    /// Keeps the guest's MAC in smoltcp's neighbor cache, so a reply is
    /// never dropped for an ARP round trip (which would cost the guest a
    /// SYN retransmission, a second). Every address is on one link with
    /// one MAC, so an ARP request "from" the guest, fed in before the
    /// entry can expire, is all it takes.
    fn know_the_guest(&mut self) {
        if self
            .neighbor_at
            .is_some_and(|at| at.elapsed() < Duration::from_secs(20))
        {
            return;
        }
        self.neighbor_at = Some(Instant::now());
        self.link.push_from_guest(frame::arp_request_from_guest());
    }

    fn now(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    fn token(&mut self) -> Token {
        self.next_token = self.next_token.wrapping_add(1).max(1);
        Token(self.next_token)
    }

    fn refuse(&self, source: RefusalSource, target: String, reason: String) {
        self.shared.refuse(source, target, reason);
    }

    /// Whether the VM holds [`MAX_CONNECTIONS`] already; if so the new
    /// one to `target` is refused (and recorded).
    fn at_cap(&self, source: RefusalSource, target: &str) -> bool {
        let open = self.conns.len() + self.pending.len() + self.udp.len();
        if open < MAX_CONNECTIONS {
            return false;
        }
        self.refuse(
            source,
            target.to_string(),
            format!("this VM already has {MAX_CONNECTIONS} open connections"),
        );
        true
    }

    // --- TCP -------------------------------------------------------------

    fn on_syn(&mut self, frame: Vec<u8>, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) {
        let tuple = Tuple {
            guest_port: src.1,
            remote: dst,
        };
        match self.by_tuple.get(&tuple) {
            // A retransmitted SYN while we dial: the answer is coming.
            Some(t) if self.pending.contains_key(t) => return,
            Some(_) => {
                self.link.push_from_guest(frame);
                return;
            }
            None => {}
        }
        let target = format!("{}:{}", dst.0, dst.1);
        if self.at_cap(RefusalSource::Connect, &target) {
            return self.reset_syn(frame);
        }
        let addr = match self.destination(dst) {
            Ok(addr) => addr,
            Err(reason) => {
                self.refuse(RefusalSource::Connect, target, reason);
                return self.reset_syn(frame);
            }
        };
        let token = self.token();
        let mut host = match TcpStream::connect(addr) {
            Ok(host) => host,
            Err(_) => return self.reset_syn(frame),
        };
        if self
            .poll
            .registry()
            .register(&mut host, token, Interest::READABLE | Interest::WRITABLE)
            .is_err()
        {
            return self.reset_syn(frame);
        }
        self.by_tuple.insert(tuple, token);
        self.pending.insert(
            token,
            Pending {
                host,
                tuple,
                syn: frame,
                started: Instant::now(),
            },
        );
    }

    /// Passes a SYN to smoltcp with no socket for it: it answers RST, so
    /// the guest's connect fails at once ("connection refused").
    fn reset_syn(&mut self, frame: Vec<u8>) {
        self.link.push_from_guest(frame);
    }

    fn dial_progress(&mut self, token: Token) {
        let Some(p) = self.pending.get(&token) else {
            return;
        };
        let failed = matches!(p.host.take_error(), Ok(Some(_)) | Err(_));
        let connected = !failed && p.host.peer_addr().is_ok();
        if !failed && !connected {
            return; // still dialing
        }
        let Some(mut p) = self.pending.remove(&token) else {
            return;
        };
        if failed {
            let _ = self.poll.registry().deregister(&mut p.host);
            self.by_tuple.remove(&p.tuple);
            return self.reset_syn(p.syn);
        }
        let _ = p.host.set_nodelay(true);
        let mut sock = tcp::socket();
        let (ip, port) = p.tuple.remote;
        if sock.listen((IpAddress::Ipv4(ip), port)).is_err() {
            self.by_tuple.remove(&p.tuple);
            return self.reset_syn(p.syn);
        }
        let handle = self.sockets.add(sock);
        self.conns.insert(
            token,
            Conn {
                handle,
                host: p.host,
                tuple: p.tuple,
                readable: true,
                writable: true,
                host_eof: false,
                host_shut: false,
            },
        );
        self.link.push_from_guest(p.syn);
    }

    /// Where a guest connection to `dst` goes on the host, if the rules
    /// allow it; else why not.
    fn destination(&mut self, dst: (Ipv4Addr, u16)) -> Result<SocketAddr, String> {
        let rules = self.shared.rules();
        let (ip, port) = dst;
        if Ipv4Addr::from(GATEWAY_IP) == ip {
            // The gateway stands for the host's loopback.
            let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
            let d = Destination {
                name: None,
                ip,
                port,
                from_static: false,
            };
            rules.check_connect(&d).map_err(|r| r.to_string())?;
            return Ok(SocketAddr::new(ip, port));
        }
        if !SyntheticPool::contains(ip) {
            let d = Destination {
                name: None,
                ip: IpAddr::V4(ip),
                port,
                from_static: false,
            };
            rules.check_connect(&d).map_err(|r| r.to_string())?;
            return Ok(SocketAddr::new(IpAddr::V4(ip), port));
        }
        let Some(name) = self.pool.name_of(ip).map(str::to_string) else {
            return Err(format!(
                "{ip} is no longer bound to a name; resolve the name again"
            ));
        };
        let (ips, from_static) = match rules.static_answer(&name) {
            Some(ip) => (vec![ip], true),
            None => match self.names.get(&name) {
                Some(ips) => (ips.clone(), false),
                None => return Err(format!("{name} has no addresses; resolve it again")),
            },
        };
        let mut last = format!("{name} has no addresses");
        for ip in ips {
            let d = Destination {
                name: Some(&name),
                ip,
                port,
                from_static,
            };
            match rules.check_connect(&d) {
                Ok(()) => return Ok(SocketAddr::new(ip, port)),
                Err(r) => last = format!("{name}: {r}"),
            }
        }
        Err(last)
    }

    // --- published ports ---------------------------------------------------

    fn apply_control(&mut self) {
        while let Ok(msg) = self.control.try_recv() {
            match msg {
                ControlMsg::Listen { guest, listener } => {
                    let token = self.token();
                    let mut listener = TcpListener::from_std(listener);
                    if self
                        .poll
                        .registry()
                        .register(&mut listener, token, Interest::READABLE)
                        .is_ok()
                    {
                        self.listeners.insert(token, (guest, listener));
                    }
                }
                ControlMsg::Unlisten { guest, closed } => {
                    self.listeners.retain(|_, (g, _)| *g != guest);
                    let _ = closed.send(());
                }
            }
        }
    }

    fn accept(&mut self, token: Token) {
        loop {
            let Some((guest_port, listener)) = self.listeners.get(&token) else {
                return;
            };
            let guest_port = *guest_port;
            let Ok((mut host, peer)) = listener.accept() else {
                return; // WouldBlock (or a failed accept): wait for the next
            };
            let target = format!("127.0.0.1:{} -> guest port {guest_port}", peer.port());
            let policy = self.shared.policy();
            if !policy.published_ports() {
                self.refuse(
                    RefusalSource::Inbound,
                    target,
                    format!("policy {} publishes no ports", policy.as_str()),
                );
                continue;
            }
            if self.at_cap(RefusalSource::Inbound, &target) {
                continue;
            }
            let local_port = self.inbound_port();
            let mut sock = tcp::socket();
            let remote = (IpAddress::Ipv4(Ipv4Addr::from(GUEST_IP)), guest_port);
            let local = (IpAddress::Ipv4(Ipv4Addr::from(GATEWAY_IP)), local_port);
            if sock.connect(self.iface.context(), remote, local).is_err() {
                continue;
            }
            let conn_token = self.token();
            if self
                .poll
                .registry()
                .register(
                    &mut host,
                    conn_token,
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                continue;
            }
            let _ = host.set_nodelay(true);
            let handle = self.sockets.add(sock);
            self.conns.insert(
                conn_token,
                Conn {
                    handle,
                    host,
                    tuple: Tuple {
                        guest_port,
                        remote: (Ipv4Addr::from(GATEWAY_IP), local_port),
                    },
                    readable: true,
                    writable: true,
                    host_eof: false,
                    host_shut: false,
                },
            );
        }
    }

    /// A local port for a connection into the guest, not in use by one.
    fn inbound_port(&mut self) -> u16 {
        let in_use: std::collections::HashSet<u16> = self
            .conns
            .values()
            .filter(|c| c.tuple.remote.0 == Ipv4Addr::from(GATEWAY_IP))
            .map(|c| c.tuple.remote.1)
            .collect();
        loop {
            let port = self.next_inbound_port;
            self.next_inbound_port = if port == *INBOUND_PORTS.end() {
                *INBOUND_PORTS.start()
            } else {
                port + 1
            };
            if !in_use.contains(&port) {
                return port;
            }
        }
    }

    // --- UDP and DNS -------------------------------------------------------

    fn on_udp(&mut self, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) {
        if dst == (Ipv4Addr::from(GATEWAY_IP), 53) {
            return self.on_dns(src, dst, payload);
        }
        if self.udp.has_flow(src.1, dst) {
            return self.udp.send(src.1, dst, payload);
        }
        let target = format!("udp {}:{}", dst.0, dst.1);
        if self.at_cap(RefusalSource::Connect, &target) {
            return;
        }
        match self.destination(dst) {
            Ok(addr) => {
                let token = self.token();
                self.udp
                    .open(self.poll.registry(), token, src.1, dst, addr, payload);
            }
            Err(reason) => self.refuse(RefusalSource::Connect, target, reason),
        }
    }

    fn on_dns(&mut self, src: (Ipv4Addr, u16), server: (Ipv4Addr, u16), msg: &[u8]) {
        use crate::dns::{self, DnsError, Rcode};
        let reply = |stack: &mut Stack, bytes: Vec<u8>| {
            stack
                .link
                .push_to_guest(frame::udp_frame(server, src, &bytes));
        };
        let q = match dns::parse_query(msg) {
            Ok(q) => q,
            Err(e) => {
                let rcode = match e {
                    DnsError::NotImplemented => Rcode::NotImp,
                    _ => Rcode::FormErr,
                };
                if let Some(bytes) = dns::error_for_raw(msg, rcode) {
                    reply(self, bytes);
                }
                return;
            }
        };
        let rules = self.shared.rules();
        if let Err(refusal) = rules.check_name(&q.name) {
            self.refuse(RefusalSource::Dns, q.name.clone(), refusal.to_string());
            return reply(self, dns::error(&q, Rcode::NxDomain));
        }
        if q.qclass != dns::CLASS_IN {
            return reply(self, dns::error(&q, Rcode::NotImp));
        }
        if q.qtype != dns::TYPE_A {
            // Allowed, but the guest's network is IPv4: no data.
            return reply(self, dns::answer(&q, &[], 0));
        }
        if rules.static_answer(&q.name).is_some() || self.names.contains_key(&q.name) {
            let addr = self.pool.addr_for(&q.name);
            return reply(self, dns::answer(&q, &[addr], udp::DNS_TTL));
        }
        if !self.udp.wait_for_name(&q, src, server) || !self.resolver.submit(&q.name) {
            self.udp.forget_waiters(&q.name);
            reply(self, dns::error(&q, Rcode::ServFail));
        }
    }

    /// Answers the queries that waited for host lookups now finished.
    fn take_resolved(&mut self) {
        use crate::dns::{self, Rcode};
        while let Some((name, answer)) = self.resolver.next_result() {
            let waiters = self.udp.take_waiters(&name);
            let bytes_for = |stack: &mut Stack, q: &dns::Query| match &answer {
                Ok(_) => {
                    let addr = stack.pool.addr_for(&name);
                    dns::answer(q, &[addr], udp::DNS_TTL)
                }
                Err(_) => dns::error(q, Rcode::NxDomain),
            };
            if let Ok(ips) = &answer {
                if self.names.len() >= MAX_NAMES {
                    self.names.clear();
                }
                self.names.insert(name.clone(), ips.clone());
            }
            for (q, guest, server) in waiters {
                let bytes = bytes_for(self, &q);
                self.link
                    .push_to_guest(frame::udp_frame(server, guest, &bytes));
            }
        }
    }

    /// Timed work: dials that took too long, idle UDP flows.
    fn expire(&mut self) {
        let late: Vec<Token> = self
            .pending
            .iter()
            .filter(|(_, p)| p.started.elapsed() > tcp::DIAL_TIMEOUT)
            .map(|(t, _)| *t)
            .collect();
        for token in late {
            if let Some(mut p) = self.pending.remove(&token) {
                let _ = self.poll.registry().deregister(&mut p.host);
                self.by_tuple.remove(&p.tuple);
                self.reset_syn(p.syn);
            }
        }
        self.udp.expire(self.poll.registry());
    }
}

/// A seed for smoltcp's initial sequence numbers and ports: different
/// in every VMM process.
fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (u64::from(std::process::id()) << 32)
}

#[cfg(test)]
mod tests;
