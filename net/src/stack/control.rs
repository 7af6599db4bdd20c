//! What the outside sees of a VM's stack while it runs: its rules (which
//! `workspace update` changes), published ports, and refusal counts and
//! the last refusals (for `status` and `logs`). [`NetControl`] is the
//! handle the VMM's control thread holds; the stack itself runs on the
//! event thread and picks changes up when woken.

use crate::policy::{NetRules, NetworkPolicy, PortMapping};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// How many refusals `status` keeps (the newest).
pub const RECENT_REFUSALS: usize = 20;

/// A guest port reachable from the host on 127.0.0.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    /// The host port on 127.0.0.1.
    pub host: u16,
    /// The guest's port.
    pub guest: u16,
}

/// What was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalSource {
    /// A DNS query answered NXDOMAIN by policy.
    Dns,
    /// An outbound connection or UDP flow from the guest.
    Connect,
    /// An inbound connection to a published port.
    Inbound,
}

/// One refusal, as `status` and `logs` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalRecord {
    /// Unix time in milliseconds.
    pub at_ms: u64,
    pub source: RefusalSource,
    /// The name or `address:port` the guest asked for.
    pub target: String,
    pub reason: String,
}

/// A running VM's network, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetStatus {
    pub rules: NetRules,
    pub ports: Vec<PublishedPort>,
    /// Open TCP connections (both directions) and UDP flows.
    pub connections: u64,
    pub refused_connections: u64,
    pub refused_queries: u64,
    /// The newest last.
    pub recent_refusals: Vec<RefusalRecord>,
}

/// Why a network change was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetError {
    #[error("policy {0} publishes no ports; use --network-policy egress+published-ports or published-ports")]
    NoPublishedPorts(&'static str),
    #[error("guest port {0} is already published")]
    AlreadyPublished(u16),
    #[error("guest port {0} is not published")]
    NotPublished(u16),
    #[error("cannot listen on 127.0.0.1:{port}: {detail}")]
    Bind { port: u16, detail: String },
    #[error(
        "{0} port(s) are published; unpublish them first, or keep a policy with published ports"
    )]
    PortsStillPublished(usize),
    #[error("the VM's network has stopped")]
    Stopped,
}

/// Messages from the control side to the stack.
pub(crate) enum ControlMsg {
    Listen {
        guest: u16,
        listener: TcpListener,
    },
    /// Stop listening for `guest`; `closed` hears once the listener is
    /// closed (or is dropped unanswered if the stack ends first).
    Unlisten {
        guest: u16,
        closed: std::sync::mpsc::Sender<()>,
    },
}

/// How long [`NetControl::unpublish`] waits for the stack to close the
/// port's listener.
const UNLISTEN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// State shared between the stack and its [`NetControl`] handles.
pub(crate) struct Shared {
    pub rules: RwLock<NetRules>,
    pub ports: Mutex<Vec<PublishedPort>>,
    pub connections: AtomicU64,
    pub refused_connections: AtomicU64,
    pub refused_queries: AtomicU64,
    pub recent: Mutex<VecDeque<RefusalRecord>>,
}

impl Shared {
    pub fn new(rules: NetRules) -> Self {
        Self {
            rules: RwLock::new(rules),
            ports: Mutex::default(),
            connections: AtomicU64::new(0),
            refused_connections: AtomicU64::new(0),
            refused_queries: AtomicU64::new(0),
            recent: Mutex::default(),
        }
    }

    pub fn rules(&self) -> NetRules {
        self.rules.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The policy alone (no copy of the lists): what the device checks
    /// after every event.
    pub fn policy(&self) -> NetworkPolicy {
        self.rules.read().unwrap_or_else(|p| p.into_inner()).policy
    }

    pub fn refuse(&self, source: RefusalSource, target: String, reason: String) {
        let counter = match source {
            RefusalSource::Dns => &self.refused_queries,
            RefusalSource::Connect | RefusalSource::Inbound => &self.refused_connections,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= RECENT_REFUSALS {
            recent.pop_front();
        }
        recent.push_back(RefusalRecord {
            at_ms,
            source,
            target,
            reason,
        });
    }
}

/// The control side of one VM's stack: safe to use from any thread.
#[derive(Clone)]
pub struct NetControl {
    pub(crate) shared: Arc<Shared>,
    pub(crate) tx: Sender<ControlMsg>,
    pub(crate) waker: Arc<mio::Waker>,
}

impl NetControl {
    /// The network as it is now.
    /// Open TCP connections (both directions) and UDP flows, as
    /// [`NetControl::status`] counts them, without copying the rest.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    pub fn status(&self) -> NetStatus {
        let s = &self.shared;
        NetStatus {
            rules: s.rules(),
            ports: s.ports.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            connections: s.connections.load(Ordering::Relaxed),
            refused_connections: s.refused_connections.load(Ordering::Relaxed),
            refused_queries: s.refused_queries.load(Ordering::Relaxed),
            recent_refusals: s
                .recent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned()
                .collect(),
        }
    }

    /// Replaces the rules; they apply to new connections and queries
    /// (open connections stay). The link goes down under `off` and up
    /// otherwise.
    pub fn update(&self, rules: NetRules) -> Result<(), NetError> {
        let published = self
            .shared
            .ports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        if published > 0 && !rules.policy.published_ports() {
            return Err(NetError::PortsStillPublished(published));
        }
        *self.shared.rules.write().unwrap_or_else(|p| p.into_inner()) = rules;
        let _ = self.waker.wake();
        Ok(())
    }

    /// Listens on 127.0.0.1 (the mapping's host port, or an ephemeral
    /// one) and forwards each connection to the guest's port.
    pub fn publish(&self, mapping: PortMapping) -> Result<PublishedPort, NetError> {
        let policy = self.shared.policy();
        if !policy.published_ports() {
            return Err(NetError::NoPublishedPorts(policy.as_str()));
        }
        let mut ports = self.shared.ports.lock().unwrap_or_else(|p| p.into_inner());
        if ports.iter().any(|p| p.guest == mapping.guest) {
            return Err(NetError::AlreadyPublished(mapping.guest));
        }
        let (listener, port) = bind(mapping.host.unwrap_or(0))?;
        let published = PublishedPort {
            host: port,
            guest: mapping.guest,
        };
        self.tx
            .send(ControlMsg::Listen {
                guest: mapping.guest,
                listener,
            })
            .map_err(|_| NetError::Stopped)?;
        ports.push(published);
        let _ = self.waker.wake();
        Ok(published)
    }

    /// Stops forwarding the guest's port; open connections stay.
    pub fn unpublish(&self, guest: u16) -> Result<PublishedPort, NetError> {
        let mut ports = self.shared.ports.lock().unwrap_or_else(|p| p.into_inner());
        let Some(at) = ports.iter().position(|p| p.guest == guest) else {
            return Err(NetError::NotPublished(guest));
        };
        let (closed, is_closed) = std::sync::mpsc::channel();
        let _ = self.tx.send(ControlMsg::Unlisten { guest, closed });
        let _ = self.waker.wake();
        let removed = ports.remove(at);
        drop(ports);
        // The listener lives on the stack's thread: wait until it is
        // closed, so a caller told "unpublished" finds the port shut (a
        // stack too busy to answer in time closes it soon after).
        let _ = is_closed.recv_timeout(UNLISTEN_WAIT);
        Ok(removed)
    }
}

/// A non-blocking listener on 127.0.0.1:`port` (0: ephemeral), and the
/// port it got. Only loopback: a published port is never on a LAN.
pub(crate) fn bind(port: u16) -> Result<(TcpListener, u16), NetError> {
    let err = |e: std::io::Error| NetError::Bind {
        port,
        detail: e.to_string(),
    };
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    let port = listener.local_addr().map_err(err)?.port();
    Ok((listener, port))
}
