//! A workspace's network beyond create and update: published ports
//! (`port publish|list|unpublish`) and the refusals `logs` shows. Ports
//! are kept in the record, so they come back on every start; the VMM
//! binds them on 127.0.0.1 only, and they go away with it (stop, delete,
//! TTL).

use super::records::WorkspaceRecord;
use super::store::write_json;
use crate::detached::VmState;
use crate::{Error, Pyro};
use pyro_vmm::net::policy::PortMapping;
use pyro_vmm::net::stack::{PublishedPort, RefusalRecord};
use serde::Serialize;

/// One published port of a workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Port {
    pub guest_port: u16,
    /// Where it listens now (127.0.0.1); null while the VM is stopped.
    pub host_port: Option<u16>,
    /// The host port asked for (null: an ephemeral one at each start).
    pub requested_host_port: Option<u16>,
    pub host_address: &'static str,
}

/// A workspace's published ports.
#[derive(Debug, Clone, Serialize)]
pub struct PortList {
    pub workspace_id: String,
    pub ports: Vec<Port>,
}

impl Pyro {
    /// Publishes guest port `mapping.guest` on the host's 127.0.0.1 (at
    /// `mapping.host`, or an ephemeral port) for the running workspace,
    /// and keeps it for its next starts. The workspace's policy must
    /// publish ports (`egress+published-ports` or `published-ports`).
    pub fn workspace_port_publish(&self, id: &str, mapping: PortMapping) -> Result<Port, Error> {
        let ws = self.workspace_locked(id)?;
        let mut record = ws.record()?;
        check_publishable(&record, mapping)?;
        if !ws.running()? {
            return Err(Error::Conflict(format!(
                "workspace {id} is stopped: start it with `pyro workspace start {id}`, then publish"
            )));
        }
        let vm = ws.vm();
        let published = vm.port_publish(mapping)?;
        record.network.publish.push(mapping);
        record.mark_activity();
        if let Err(e) = write_json(&ws.dir.record(), &record) {
            let _ = vm.port_unpublish(mapping.guest);
            return Err(e);
        }
        Ok(port(mapping, Some(published)))
    }

    /// The workspace's published ports, with the host ports they listen
    /// on while it runs.
    pub fn workspace_port_list(&self, id: &str) -> Result<PortList, Error> {
        let ws = self.workspace(id)?;
        let record = ws.record()?;
        let live = ws.vm().net_status().map(|s| s.ports).unwrap_or_default();
        let ports = record
            .network
            .publish
            .iter()
            .map(|m| port(*m, live.iter().find(|p| p.guest == m.guest).copied()))
            .collect();
        Ok(PortList {
            workspace_id: record.workspace_id,
            ports,
        })
    }

    /// Stops publishing guest port `guest` (now, and on later starts).
    /// Connections already open stay until they close.
    pub fn workspace_port_unpublish(&self, id: &str, guest: u16) -> Result<Port, Error> {
        let ws = self.workspace_locked(id)?;
        let mut record = ws.record()?;
        let Some(at) = record.network.publish.iter().position(|m| m.guest == guest) else {
            return Err(Error::NotFound(format!(
                "guest port {guest} is not published in workspace {id}: see `pyro workspace port list {id}`"
            )));
        };
        let mapping = record.network.publish.remove(at);
        let vm = ws.vm();
        let was = match vm.state() {
            VmState::Running { .. } => Some(vm.port_unpublish(guest)?),
            VmState::Stopped { .. } => None,
        };
        record.mark_activity();
        write_json(&ws.dir.record(), &record)?;
        Ok(port(mapping, was))
    }

    /// The running workspace's last network refusals (connections and
    /// DNS queries its policy refused), oldest first; empty when stopped.
    pub fn workspace_network_refusals(&self, id: &str) -> Result<Vec<RefusalRecord>, Error> {
        let vm = self.workspace(id)?.vm();
        Ok(vm
            .net_status()
            .map(|s| s.recent_refusals)
            .unwrap_or_default())
    }
}

/// Checks a new mapping against the workspace's policy and its other
/// ports, before anything is bound.
pub(super) fn check_publishable(
    record: &WorkspaceRecord,
    mapping: PortMapping,
) -> Result<(), Error> {
    let policy = record.network.rules.policy;
    if !policy.published_ports() {
        return Err(Error::Conflict(format!(
            "workspace {} has network policy {policy}, which publishes no ports: \
             `pyro workspace update {} --network-policy egress+published-ports` first",
            record.workspace_id, record.workspace_id
        )));
    }
    match clash(&record.network.publish, mapping) {
        Some(why) => Err(Error::Conflict(why)),
        None => Ok(()),
    }
}

/// Why `mapping` cannot be published beside `published` (the same guest
/// port, or the same host port asked for), if it cannot.
pub(super) fn clash(published: &[PortMapping], mapping: PortMapping) -> Option<String> {
    if published.iter().any(|m| m.guest == mapping.guest) {
        return Some(format!("guest port {} is already published", mapping.guest));
    }
    let host = mapping.host?;
    published
        .iter()
        .any(|m| m.host == Some(host))
        .then(|| format!("host port {host} is already used by another published port"))
}

fn port(mapping: PortMapping, live: Option<PublishedPort>) -> Port {
    Port {
        guest_port: mapping.guest,
        host_port: live.map(|p| p.host),
        requested_host_port: mapping.host,
        host_address: "127.0.0.1",
    }
}
