//! Services in a workspace (`pyro workspace service ...`): long-running
//! commands the guest agent supervises, with readiness probes run in the
//! guest and bounded logs (docs/services.md). Like shells, the host
//! keeps no service state: every call asks the running guest, so a
//! stopped, reset or deleted workspace has no services, and `start` does
//! not bring them back (a started workspace is a fresh boot; its
//! services are the caller's to start, with their probes).
//!
//! Ports a service publishes (`--publish`) live as long as it runs: they
//! are published once it is ready, and unpublished when it is stopped,
//! or at the next service call that finds it ended. Unlike ports from
//! `port publish`, they are not kept in the record for later starts.

use super::handle::WorkspaceHandle;
use super::network::{check_publishable, clash};
use crate::guest::GuestError;
use crate::{Error, Pyro};
use pyro_proto::rpc::{self, Reply, Request};
use pyro_proto::service::{self as wire, Info, Publish};
use pyro_vmm::net::policy::PortMapping;
use serde::Serialize;
use std::time::Duration;

pub use pyro_proto::service::{Probe as ServiceProbe, State as ServiceState};

/// Bound on a service request's reply beyond the waits it asked for
/// (a start spawns a process, ~0.6 s on PVM hosts).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// The agent's own waits after SIGTERM (a failed start) and SIGKILL.
const FAIL_GRACE: Duration = Duration::from_millis(wire::FAIL_GRACE_MS);
const KILL_WAIT: Duration = Duration::from_millis(wire::KILL_WAIT_MS);

/// How to start a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceOptions {
    /// Run as `/bin/sh -c COMMAND` in its own process group.
    pub command: String,
    /// Where it runs, inside /workspace (default /workspace).
    pub cwd: Option<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// `--secret-env`: (secret name, variable) pairs; each variable gets
    /// the secret's value in the service's environment.
    pub secret_env: Vec<(String, String)>,
    /// When it counts as ready; `None`: as soon as it started.
    pub ready: Option<ServiceProbe>,
    /// How long readiness may take; past it the service is failed and
    /// its processes killed.
    pub ready_timeout: Duration,
    /// Guest ports to publish on the host's 127.0.0.1 while it runs.
    pub publish: Vec<PortMapping>,
}

impl ServiceOptions {
    pub fn new(command: impl Into<String>) -> Self {
        ServiceOptions {
            command: command.into(),
            cwd: None,
            env: Vec::new(),
            secret_env: Vec::new(),
            ready: None,
            ready_timeout: Duration::from_secs(wire::DEFAULT_READY_TIMEOUT_S),
            publish: Vec::new(),
        }
    }
}

/// A port published for a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServicePort {
    pub guest_port: u16,
    /// Where it listens (127.0.0.1); null when not published now.
    pub host_port: Option<u16>,
    pub requested_host_port: Option<u16>,
}

/// A service of a workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Service {
    pub workspace_id: String,
    pub name: String,
    /// starting, ready, exited, failed or stopped.
    pub state: ServiceState,
    pub command: String,
    pub cwd: String,
    /// Its main process (and process group) in the guest.
    pub pid: u32,
    pub readiness: Option<ServiceProbe>,
    pub ports: Vec<ServicePort>,
    /// Seconds since the epoch (guest clock).
    pub started_at: u64,
    pub ready_after_ms: Option<u64>,
    pub ended_at: Option<u64>,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
    /// Why it failed or how it was stopped.
    pub reason: Option<String>,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
}

/// What `service logs` returns.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceLogs {
    #[serde(flatten)]
    pub service: Service,
    pub tail_lines: Option<u64>,
    /// UTF-8 (invalid bytes replaced).
    pub stdout: String,
    pub stderr: String,
    /// Bytes of each stream before what is returned: dropped from the
    /// guest's ring (it keeps the last 256 KiB of each) or left out by
    /// `tail_lines`.
    pub stdout_omitted: u64,
    pub stderr_omitted: u64,
}

/// A workspace's services.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceList {
    pub workspace_id: String,
    pub services: Vec<Service>,
}

impl Pyro {
    /// Starts a service in the running workspace and waits until it is
    /// ready (its probe succeeded), failed (the probe timed out: its
    /// processes are killed) or exited. The returned state says which;
    /// only a start the guest refused is an error. Ports in
    /// `opts.publish` are published once it is ready.
    pub fn workspace_service_start(
        &self,
        id: &str,
        name: &str,
        opts: &ServiceOptions,
    ) -> Result<Service, Error> {
        let cwd = opts.cwd.as_deref().unwrap_or(rpc::WORKSPACE);
        let cwd = rpc::workspace_relative(cwd)
            .map(|rel| rpc::workspace_absolute(&rel))
            .map_err(|e| Error::InvalidArgument(format!("cwd: {e}")))?;
        let ready_timeout_ms = opts.ready_timeout.as_millis() as u64;
        let request = wire::StartRequest {
            name: name.into(),
            command: opts.command.clone(),
            cwd,
            env: opts.env.clone(),
            probe: opts.ready.clone(),
            ready_timeout_ms,
            publish: opts
                .publish
                .iter()
                .map(|m| Publish {
                    host: m.host,
                    guest: m.guest,
                })
                .collect(),
        };
        wire::check_start(&request).map_err(Error::InvalidArgument)?;
        if let Some(ServiceProbe::File { path }) = &opts.ready {
            rpc::workspace_relative(path)
                .map_err(|e| Error::InvalidArgument(format!("ready file: {e}")))?;
        }
        let ws = self.workspace(id)?;
        let mut request = request;
        request
            .env
            .extend(super::secrets::resolve_env(&ws, &opts.secret_env)?);
        if !opts.publish.is_empty() {
            check_service_ports(&ws, &opts.publish)?;
        }
        let timeout = REPLY_TIMEOUT + opts.ready_timeout + FAIL_GRACE + KILL_WAIT;
        let info = service_reply(
            ws.call_collect(&Request::ServiceStart(request), &[], 0, timeout)?
                .0,
        )?;
        ws.touch(|_| {})?;
        if info.state == ServiceState::Ready && !info.publish.is_empty() {
            if let Err(e) = publish_all(&ws, &info.publish) {
                let _ = stop_in_guest(&ws, name, wire::DEFAULT_STOP_GRACE_MS);
                return Err(Error::Conflict(format!(
                    "service {name} was ready, but its ports could not be published, so it was stopped: {e}"
                )));
            }
        }
        let live = settle_ports(&ws, std::slice::from_ref(&info));
        service(&ws, info, &live)
    }

    /// One service as it is now.
    pub fn workspace_service_status(&self, id: &str, name: &str) -> Result<Service, Error> {
        check_name(name)?;
        let ws = self.workspace(id)?;
        let request = Request::ServiceStatus { name: name.into() };
        let info = service_reply(ws.call_collect(&request, &[], 0, REPLY_TIMEOUT)?.0)?;
        let live = settle_ports(&ws, std::slice::from_ref(&info));
        service(&ws, info, &live)
    }

    /// A service's output so far: the last `tail_lines` lines of each
    /// stream if given, else all the guest keeps (256 KiB per stream).
    /// Reading logs changes nothing: ports stay, activity is not marked.
    pub fn workspace_service_logs(
        &self,
        id: &str,
        name: &str,
        tail_lines: Option<u64>,
    ) -> Result<ServiceLogs, Error> {
        check_name(name)?;
        wire::check_tail_lines(tail_lines).map_err(Error::InvalidArgument)?;
        let ws = self.workspace(id)?;
        let request = Request::ServiceLogs {
            name: name.into(),
            tail_lines,
        };
        let (reply, bytes) = ws.call_collect(&request, &[], 2 * wire::LOG_BYTES, REPLY_TIMEOUT)?;
        let Reply::ServiceLogs(r) = reply else {
            return Err(unexpected(reply));
        };
        let split = usize::try_from(r.stdout_len)
            .ok()
            .filter(|&n| n <= bytes.len())
            .ok_or_else(|| {
                Error::from(GuestError::Protocol(format!(
                    "service logs: stdout of {} bytes in {} bytes of output",
                    r.stdout_len,
                    bytes.len()
                )))
            })?;
        let (stdout, stderr) = bytes.split_at(split);
        let redactor = ws.redactor()?;
        let live = settle_ports(&ws, std::slice::from_ref(&r.service));
        Ok(ServiceLogs {
            service: service(&ws, r.service, &live)?,
            tail_lines,
            stdout: redactor.redact(&String::from_utf8_lossy(stdout)),
            stderr: redactor.redact(&String::from_utf8_lossy(stderr)),
            stdout_omitted: r.stdout_omitted,
            stderr_omitted: r.stderr_omitted,
        })
    }

    /// Stops a service: SIGTERM to its process group, SIGKILL after
    /// `grace` (default 5 s); returns once its main process is gone, and
    /// its published ports with it. Stopping an ended service is not an
    /// error (it reports how it ended).
    pub fn workspace_service_stop(
        &self,
        id: &str,
        name: &str,
        grace: Option<Duration>,
    ) -> Result<Service, Error> {
        check_name(name)?;
        let grace_ms = grace.map_or(wire::DEFAULT_STOP_GRACE_MS, |g| g.as_millis() as u64);
        wire::check_grace_ms(grace_ms).map_err(Error::InvalidArgument)?;
        let ws = self.workspace(id)?;
        let info = stop_in_guest(&ws, name, grace_ms)?;
        let live = settle_ports(&ws, std::slice::from_ref(&info));
        ws.touch(|_| {})?;
        service(&ws, info, &live)
    }

    /// The workspace's services in start order; none while it is stopped.
    pub fn workspace_service_list(&self, id: &str) -> Result<ServiceList, Error> {
        let ws = self.workspace(id)?;
        let services = if ws.running()? {
            let infos = list_in_guest(&ws)?;
            let live = settle_ports(&ws, &infos);
            infos
                .into_iter()
                .map(|i| service(&ws, i, &live))
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        Ok(ServiceList {
            workspace_id: ws.id.clone(),
            services,
        })
    }
}

/// Stops every running service of a workspace about to stop (TERM, and
/// KILL after the default grace), so they can finish writing; errors are
/// ignored: the VM goes away next in any case.
pub(super) fn stop_all(ws: &WorkspaceHandle) {
    let Ok(infos) = list_in_guest(ws) else {
        return;
    };
    for info in infos.iter().filter(|i| i.state.running()) {
        let _ = stop_in_guest(ws, &info.name, wire::DEFAULT_STOP_GRACE_MS);
    }
}

/// Ports for a new service: publishable under the workspace's policy,
/// and clear of the record's ports and every port published now.
fn check_service_ports(ws: &WorkspaceHandle, ports: &[PortMapping]) -> Result<(), Error> {
    let record = ws.record()?;
    let mut taken: Vec<PortMapping> = record.network.publish.clone();
    taken.extend(live_ports(ws).iter().map(|&(host, guest)| PortMapping {
        host: Some(host),
        guest,
    }));
    for (i, mapping) in ports.iter().enumerate() {
        check_publishable(&record, *mapping)?;
        let mut others = taken.clone();
        others.extend_from_slice(&ports[..i]);
        if let Some(why) = clash(&others, *mapping) {
            return Err(Error::Conflict(why));
        }
    }
    Ok(())
}

fn list_in_guest(ws: &WorkspaceHandle) -> Result<Vec<Info>, Error> {
    match ws
        .call_collect(&Request::ServiceList, &[], 0, REPLY_TIMEOUT)?
        .0
    {
        Reply::Services { services } => Ok(services),
        other => Err(unexpected(other)),
    }
}

fn stop_in_guest(ws: &WorkspaceHandle, name: &str, grace_ms: u64) -> Result<Info, Error> {
    let request = Request::ServiceStop {
        name: name.into(),
        grace_ms,
    };
    let timeout = REPLY_TIMEOUT + Duration::from_millis(grace_ms) + KILL_WAIT;
    service_reply(ws.call_collect(&request, &[], 0, timeout)?.0)
}

/// Publishes a service's ports, all or none (those published before a
/// failure are unpublished again).
fn publish_all(ws: &WorkspaceHandle, ports: &[Publish]) -> Result<(), Error> {
    let vm = ws.vm();
    for (i, p) in ports.iter().enumerate() {
        let mapping = PortMapping {
            host: p.host,
            guest: p.guest,
        };
        if let Err(e) = vm.port_publish(mapping) {
            for done in &ports[..i] {
                let _ = vm.port_unpublish(done.guest);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// The ports published now (host, guest), after unpublishing those of
/// the services in `infos` that have ended. The VMM is not asked when
/// none of them has ports. (A port the record keeps is never a
/// service's: see `check_service_ports`.)
fn settle_ports(ws: &WorkspaceHandle, infos: &[Info]) -> Vec<(u16, u16)> {
    if infos.iter().all(|i| i.publish.is_empty()) {
        return Vec::new();
    }
    let mut live = live_ports(ws);
    let vm = ws.vm();
    for info in infos.iter().filter(|i| !i.state.running()) {
        for p in &info.publish {
            if live.iter().any(|&(_, guest)| guest == p.guest) {
                let _ = vm.port_unpublish(p.guest);
                live.retain(|&(_, guest)| guest != p.guest);
            }
        }
    }
    live
}

/// Ports published now: (host, guest).
fn live_ports(ws: &WorkspaceHandle) -> Vec<(u16, u16)> {
    ws.vm()
        .net_status()
        .map(|s| s.ports.iter().map(|p| (p.host, p.guest)).collect())
        .unwrap_or_default()
}

fn service_reply(reply: Reply) -> Result<Info, Error> {
    match reply {
        Reply::Service(info) => Ok(*info),
        other => Err(unexpected(other)),
    }
}

fn unexpected(reply: Reply) -> Error {
    GuestError::Protocol(format!("{reply:?}")).into()
}

fn service(ws: &WorkspaceHandle, info: Info, live: &[(u16, u16)]) -> Result<Service, Error> {
    // A command, probe or reason may spell a secret's value out.
    let r = ws.redactor()?;
    let readiness = info.probe.map(|p| match p {
        ServiceProbe::File { path } => ServiceProbe::File {
            path: r.redact(&path),
        },
        ServiceProbe::Http { url } => ServiceProbe::Http {
            url: r.redact(&url),
        },
        ServiceProbe::Command { command } => ServiceProbe::Command {
            command: r.redact(&command),
        },
        tcp @ ServiceProbe::Tcp { .. } => tcp,
    });
    let ports = info
        .publish
        .iter()
        .map(|p| ServicePort {
            guest_port: p.guest,
            host_port: info
                .state
                .running()
                .then(|| live.iter().find(|l| l.1 == p.guest).map(|l| l.0))
                .flatten(),
            requested_host_port: p.host,
        })
        .collect();
    Ok(Service {
        workspace_id: ws.id.clone(),
        name: info.name,
        state: info.state,
        command: r.redact(&info.command),
        cwd: info.cwd,
        pid: info.pid,
        readiness,
        ports,
        started_at: info.started_at,
        ready_after_ms: info.ready_after_ms,
        ended_at: info.ended_at,
        exit_code: info.exit_code,
        exit_signal: info.exit_signal,
        reason: info.reason.map(|why| r.redact(&why)),
        stdout_bytes: info.stdout_bytes,
        stderr_bytes: info.stderr_bytes,
    })
}

fn check_name(name: &str) -> Result<(), Error> {
    wire::check_name(name).map_err(Error::InvalidArgument)
}
