//! How a workspace's network reads: the `port publish|list|unpublish`
//! results, the network lines of `workspace status`, and the refusals
//! `workspace logs` and `run` report. Ports always listen on the host's
//! 127.0.0.1, and the lines say so.

use super::Render;
use pyro_workspace::{Port, PortList, RefusalRecord, RefusalSource, Workspace, WorkspaceState};
use std::io::{self, Write};

/// `workspace port publish|unpublish`: the port, for the workspace the
/// user named.
pub struct PortChanged<'a> {
    pub verb: &'static str,
    pub workspace: &'a str,
    pub port: &'a Port,
}

impl Render for PortChanged<'_> {
    type Json = Port;
    fn json(&self) -> &Port {
        self.port
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{}", port_line(self.port))
    }
    fn summary(&self) -> Option<String> {
        let p = self.port;
        Some(format!(
            "[workspace-port-{}] workspace_id={} guest_port={} host_port={}",
            self.verb,
            self.workspace,
            p.guest_port,
            p.host_port.map_or("none".to_string(), |h| h.to_string())
        ))
    }
}

/// `workspace port list`.
impl Render for PortList {
    type Json = PortList;
    fn json(&self) -> &PortList {
        self
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        for p in &self.ports {
            writeln!(out, "{}", port_line(p))?;
        }
        Ok(())
    }
    fn summary(&self) -> Option<String> {
        Some(format!(
            "[workspace-port-list] workspace_id={} count={}",
            self.workspace_id,
            self.ports.len()
        ))
    }
}

/// `127.0.0.1:54321 -> guest 8000`; while the VM is stopped, the host
/// port asked for (or `any`) and `(stopped)`.
fn port_line(p: &Port) -> String {
    match (p.host_port, p.requested_host_port) {
        (Some(host), _) => format!("{}:{host} -> guest {}", p.host_address, p.guest_port),
        (None, Some(host)) => format!(
            "{}:{host} -> guest {} (stopped)",
            p.host_address, p.guest_port
        ),
        (None, None) => format!("{}:any -> guest {} (stopped)", p.host_address, p.guest_port),
    }
}

/// The network lines of `workspace status`: the rules as stored, the
/// published ports (where they listen while it runs), and, for a running
/// VM, what its policy refused.
pub fn write_network(w: &Workspace, out: &mut dyn Write) -> io::Result<()> {
    let net = &w.record.network;
    let list = |items: Vec<String>| {
        if items.is_empty() {
            "none".to_string()
        } else {
            items.join(", ")
        }
    };
    writeln!(out, "Network policy: {}", net.rules.policy)?;
    let allowed = net.rules.allow.iter().map(ToString::to_string).collect();
    writeln!(out, "Allowed hosts: {}", list(allowed))?;
    let names = net
        .rules
        .add_hosts
        .iter()
        .map(ToString::to_string)
        .collect();
    writeln!(out, "Static hosts: {}", list(names))?;
    let live = w.network_status.as_ref().map_or(&[][..], |s| &s.ports);
    let why = if w.state == WorkspaceState::Running {
        "not bound"
    } else {
        "stopped"
    };
    let ports = net
        .publish
        .iter()
        .map(|m| {
            let bound = live.iter().find(|p| p.guest == m.guest).map(|p| p.host);
            match (bound, m.host) {
                (Some(host), _) => format!("127.0.0.1:{host} -> {}", m.guest),
                (None, Some(host)) => format!("127.0.0.1:{host} -> {} ({why})", m.guest),
                (None, None) => format!("127.0.0.1:any -> {} ({why})", m.guest),
            }
        })
        .collect();
    writeln!(out, "Published ports: {}", list(ports))?;
    if let Some(s) = &w.network_status {
        writeln!(
            out,
            "Refused: {} connections, {} DNS queries",
            s.refused_connections, s.refused_queries
        )?;
    }
    Ok(())
}

/// `dns`, `connect` or `inbound`, as in the JSON.
pub fn source(s: RefusalSource) -> &'static str {
    match s {
        RefusalSource::Dns => "dns",
        RefusalSource::Connect => "connect",
        RefusalSource::Inbound => "inbound",
    }
}

/// `<target>: <reason>`, the part every refusal line shares.
pub fn refusal(r: &RefusalRecord) -> String {
    format!("{}: {}", r.target, r.reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(r: &impl Render) -> String {
        let mut out = Vec::new();
        r.human(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn port(host_port: Option<u16>, requested: Option<u16>) -> Port {
        Port {
            guest_port: 8000,
            host_port,
            requested_host_port: requested,
            host_address: "127.0.0.1",
        }
    }

    #[test]
    fn ports_read_as_where_they_listen() {
        let list = PortList {
            workspace_id: "w1".into(),
            ports: vec![
                port(Some(54321), None),
                port(None, Some(8080)),
                port(None, None),
            ],
        };
        assert_eq!(
            render(&list),
            "127.0.0.1:54321 -> guest 8000\n\
             127.0.0.1:8080 -> guest 8000 (stopped)\n\
             127.0.0.1:any -> guest 8000 (stopped)\n"
        );
        assert_eq!(
            list.summary().unwrap(),
            "[workspace-port-list] workspace_id=w1 count=3"
        );
        let published = port(Some(54321), None);
        let changed = PortChanged {
            verb: "publish",
            workspace: "w1",
            port: &published,
        };
        assert_eq!(render(&changed), "127.0.0.1:54321 -> guest 8000\n");
        assert_eq!(
            changed.summary().unwrap(),
            "[workspace-port-publish] workspace_id=w1 guest_port=8000 host_port=54321"
        );
    }

    fn workspace(state: WorkspaceState, status: Option<serde_json::Value>) -> Workspace {
        let record = json!({
            "workspace_id": "w1", "name": null, "labels": {}, "environment": "debian:12",
            "vcpus": 1, "mem_mib": 128, "disk_mib": 4096,
            "created_at": "2026-11-29T00:00:00Z", "created_unix": 0,
            "last_activity_at": "2026-11-29T00:00:00Z", "last_activity_unix": 0,
            "ttl_seconds": null, "expires_unix": null, "command_count": 0,
            "seed_path": null, "seed_entry_count": 0,
            "network": {
                "rules": {
                    "policy": "egress+published-ports",
                    "allow": ["pypi.org", "*.pythonhosted.org:443"],
                    "add_hosts": ["db.internal:10.1.2.3"],
                },
                "publish": [{"host": null, "guest": 8000}, {"host": 8081, "guest": 81}],
            },
        });
        Workspace {
            warnings: Vec::new(),
            record: serde_json::from_value(record).unwrap(),
            state,
            suspended_by: None,
            last_error: None,
            network_status: status.map(|s| serde_json::from_value(s).unwrap()),
        }
    }

    #[test]
    fn status_shows_the_rules_the_ports_and_the_refusals() {
        let status = json!({
            "rules": {"policy": "egress+published-ports"},
            "ports": [{"host": 54321, "guest": 8000}, {"host": 8081, "guest": 81}],
            "connections": 2, "refused_connections": 3, "refused_queries": 1,
            "recent_refusals": [],
        });
        let mut out = Vec::new();
        write_network(&workspace(WorkspaceState::Running, Some(status)), &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Network policy: egress+published-ports\n\
             Allowed hosts: pypi.org, *.pythonhosted.org:443\n\
             Static hosts: db.internal:10.1.2.3\n\
             Published ports: 127.0.0.1:54321 -> 8000, 127.0.0.1:8081 -> 81\n\
             Refused: 3 connections, 1 DNS queries\n"
        );
        let mut out = Vec::new();
        write_network(&workspace(WorkspaceState::Stopped, None), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(
                "Published ports: 127.0.0.1:any -> 8000 (stopped), 127.0.0.1:8081 -> 81 (stopped)\n"
            ),
            "{text}"
        );
        assert!(!text.contains("Refused"), "{text}");
    }

    #[test]
    fn refusals_read_as_in_the_json() {
        for s in [
            RefusalSource::Dns,
            RefusalSource::Connect,
            RefusalSource::Inbound,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), source(s));
        }
        let r = RefusalRecord {
            at_ms: 0,
            source: RefusalSource::Connect,
            target: "10.0.0.5:5432".into(),
            reason: "10.0.0.5 is private".into(),
        };
        assert_eq!(refusal(&r), "10.0.0.5:5432: 10.0.0.5 is private");

        let logs = crate::printer::workspace::Logs {
            workspace: "w1",
            records: &[],
            network_refusals: std::slice::from_ref(&r),
        };
        assert_eq!(
            render(&logs),
            "network refused: connect 10.0.0.5:5432: 10.0.0.5 is private\n"
        );
        assert_eq!(
            logs.summary().unwrap(),
            "[workspace-logs] workspace_id=w1 count=0 network_refusals=1"
        );

        let run = pyro_workspace::RunResult {
            environment: "debian:12".into(),
            command: vec!["curl".into()],
            exit_code: Some(6),
            signal: None,
            timed_out: false,
            stdout: vec![],
            stderr: vec![],
            stdout_truncated: false,
            stderr_truncated: false,
            duration_ms: 1,
            network_refusals: vec![r],
            timings: pyro_workspace::RunTimings::default(),
        };
        assert_eq!(
            run.notes(),
            ["[run] network refused: 10.0.0.5:5432: 10.0.0.5 is private"]
        );
    }
}
