//! Names the guest asks for, resolved through the host's resolver
//! (`getaddrinfo`, so /etc/hosts and the host's DNS set-up apply) on a
//! thread of its own: a slow lookup never stalls the VM's packets.

use std::collections::HashSet;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::{Arc, OnceLock};

/// What a lookup thread runs first (the VMM confines it there).
static ON_START: OnceLock<fn()> = OnceLock::new();

/// Sets what every lookup thread runs first, once per process: the VMM
/// gives it its sandbox (`pyro_vmm::sandbox`, which this crate cannot
/// name: the VMM depends on it). Later calls keep the first.
pub fn on_resolver_start(hook: fn()) {
    let _ = ON_START.set(hook);
}

/// Lookups in flight at once; more are answered SERVFAIL.
pub const MAX_IN_FLIGHT: usize = 64;

pub struct Resolver {
    jobs: Sender<String>,
    results: Receiver<(String, Result<Vec<IpAddr>, String>)>,
    in_flight: HashSet<String>,
}

impl Resolver {
    /// Starts the lookup thread; it wakes the stack through `waker` when
    /// an answer is ready, and ends when the resolver is dropped.
    pub fn start(waker: Arc<mio::Waker>) -> std::io::Result<Self> {
        let (jobs, job_rx) = channel::<String>();
        let (result_tx, results) = channel();
        std::thread::Builder::new()
            .name("vmm-resolver".into())
            .spawn(move || {
                if let Some(hook) = ON_START.get() {
                    hook();
                }
                for name in job_rx {
                    let answer = lookup(&name);
                    if result_tx.send((name, answer)).is_err() {
                        break;
                    }
                    let _ = waker.wake();
                }
            })?;
        Ok(Self {
            jobs,
            results,
            in_flight: HashSet::new(),
        })
    }

    /// Asks for `name`; false when too many lookups are in flight.
    /// A name already in flight is not asked twice.
    pub fn submit(&mut self, name: &str) -> bool {
        if self.in_flight.contains(name) {
            return true;
        }
        if self.in_flight.len() >= MAX_IN_FLIGHT || self.jobs.send(name.to_string()).is_err() {
            return false;
        }
        self.in_flight.insert(name.to_string());
        true
    }

    /// A finished lookup, if any.
    pub fn next_result(&mut self) -> Option<(String, Result<Vec<IpAddr>, String>)> {
        match self.results.try_recv() {
            Ok((name, answer)) => {
                self.in_flight.remove(&name);
                Some((name, answer))
            }
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => None,
        }
    }
}

fn lookup(name: &str) -> Result<Vec<IpAddr>, String> {
    let mut ips: Vec<IpAddr> = (name, 0u16)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .map(|a| a.ip())
        .collect();
    ips.dedup();
    // IPv4 first: the guest's side is IPv4, and most hosts reach more
    // over it.
    ips.sort_by_key(|ip| ip.is_ipv6());
    if ips.is_empty() {
        return Err("no addresses".into());
    }
    Ok(ips)
}
