//! Workspace lifecycle and commands: create, list, update, status, logs,
//! stop, start, delete, exec.

use super::secrets::{secret_env, SecretParam};
use super::{
    check_limit, check_vm_size, default_environment, default_idle_suspend_seconds, default_mem_mib,
    default_timeout_seconds, default_vcpus, network, CommandLine, WorkspaceRef,
};
use crate::call::{listing, Job};
use crate::server::PyroServer;
use pyro_vmm::limits::{DISK_MIB, MEM_MIB, TIMEOUT_SECONDS, TTL_SECONDS, VCPUS};
use pyro_workspace::{
    CommandRecord, CreateOptions, Error, ExecOptions, NetConfig, PortMapping, UpdateOptions,
};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

fn default_disk_mib() -> u64 {
    DISK_MIB.default
}

fn default_system_disk_mib() -> u64 {
    pyro_workspace::DEFAULT_SYSTEM_DISK_MIB
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateParams {
    /// Environment: "debian:12" (bash, coreutils, git, ca-certificates),
    /// "debian:12-base" (bash, coreutils) or "debian:12-build" (git, gcc,
    /// make, cmake, python3 with pip and venv, pkg-config), or a custom
    /// environment the user built on the host (`pyro env list`).
    #[serde(default = "default_environment")]
    pub environment: String,
    /// Initial content of /workspace: a directory, .tar, .tar.gz or .tgz
    /// on the machine running this server (absolute path). Without it,
    /// /workspace starts empty. This is the `baseline` that workspace_diff
    /// compares against and workspace_reset restores.
    #[serde(default)]
    pub seed_path: Option<PathBuf>,
    /// A name, unique among workspaces, usable instead of the id:
    /// [A-Za-z0-9][A-Za-z0-9._-]{0,63}, and not 12 hex digits (the form
    /// of ids).
    #[serde(default)]
    pub name: Option<String>,
    /// Labels, e.g. {"task": "fix-login"}; keys match
    /// [A-Za-z0-9][A-Za-z0-9._-]{0,63}.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Stop and remove the workspace this many seconds after it is created
    /// (at least 1). Without it, it stays until workspace_delete.
    #[serde(default)]
    #[schemars(range(min = TTL_SECONDS.min))]
    pub ttl_seconds: Option<u64>,
    /// Suspend the VM (memory kept on disk, no CPU used) after this many
    /// seconds without activity: no exec, file, shell or service call,
    /// no open connection. The next call resumes it, its processes
    /// still running. 0: never. Default 900. Never for a workspace with
    /// secrets.
    #[serde(default = "default_idle_suspend_seconds")]
    pub idle_suspend_seconds: u64,
    /// Suspend on idle even while a service runs (by default a running
    /// service keeps the workspace awake).
    #[serde(default)]
    pub idle_suspend_services: bool,
    /// vCPUs, 1 to 32. More than 1 boots the SMP guest kernel, built
    /// once on first use (minutes).
    #[serde(default = "default_vcpus")]
    #[schemars(range(min = VCPUS.min, max = VCPUS.max))]
    pub vcpus: u8,
    /// Guest memory in MiB, 64 to 65536.
    #[serde(default = "default_mem_mib")]
    #[schemars(range(min = MEM_MIB.min, max = MEM_MIB.max))]
    pub mem_mib: u32,
    /// Size of the /workspace disk in MiB, 64 to 1048576 (sparse: only
    /// what is used takes host space).
    #[serde(default = "default_disk_mib")]
    #[schemars(range(min = DISK_MIB.min, max = DISK_MIB.max))]
    pub disk_mib: u64,
    /// Size of the system disk in MiB (default 4096, sparse): everything
    /// written outside /workspace (apt-get install, pip install, /etc,
    /// /root) persists there, and snapshots and resets cover it.
    #[serde(default = "default_system_disk_mib")]
    #[schemars(range(min = DISK_MIB.min, max = DISK_MIB.max))]
    pub system_disk_mib: u64,
    /// Network access: "off" (the default: no network at all), "egress"
    /// (outbound connections), "egress+published-ports"
    /// (outbound, and the ports in publish), "published-ports" (only
    /// inbound, on published ports). Without it, publish implies
    /// "egress+published-ports" and allow_hosts alone "egress".
    /// workspace_update changes it later.
    #[serde(default)]
    #[schemars(schema_with = "network::policy_schema")]
    pub network_policy: Option<String>,
    /// Only these destinations are reachable (and, for names, resolve):
    /// domains ("pypi.org", "*.pythonhosted.org" for its subdomains), IPs
    /// or CIDRs, each with an optional ":PORT" ("github.com:443"). Without
    /// it every public destination is. Loopback and private ranges
    /// (127.0.0.0/8, 10.0.0.0/8, 192.168.0.0/16, ...) are refused unless
    /// listed here by address.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// Static DNS answers "NAME:IP", like /etc/hosts lines (e.g.
    /// "db.internal:10.1.2.3"). A name mapped to a loopback or private
    /// address ("NAME:127.0.0.1" is the host's loopback) is reachable only
    /// if the name is also in allow_hosts, as is every name when
    /// allow_hosts is given.
    #[serde(default)]
    pub add_hosts: Vec<String>,
    /// Guest ports to publish on the host's 127.0.0.1 (never on other
    /// addresses) at every start: "GUEST" (e.g. "8000": the host picks a
    /// free port, see workspace_status or workspace_port_list),
    /// "HOST:GUEST" (e.g. "8080:8000") or "127.0.0.1:HOST:GUEST".
    #[serde(default)]
    pub publish: Vec<String>,
    /// Secrets: [{"name": "API_TOKEN", "value": "..."}] or [{"name":
    /// "API_TOKEN", "file_path": "/host/path"}]. Kept 0600 on the host
    /// and in /run/pyro-secrets/NAME in the guest (memory only), given to
    /// a command with secret_env, and replaced by [REDACTED] in every
    /// output. Results list their names only.
    #[serde(default)]
    pub secrets: Vec<SecretParam>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StopParams {
    /// The workspace: its id or unique name.
    pub workspace_id: String,
    /// Keep the VM's memory, so workspace_start resumes this machine
    /// (processes included) instead of starting a fresh one.
    #[serde(default)]
    pub keep_memory: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForkParams {
    /// The workspace to copy: its id or unique name. Running or
    /// suspended: its processes are copied too; stopped: the children
    /// start afresh from its disks.
    pub workspace_id: String,
    /// How many children (1 to 16).
    #[serde(default = "one")]
    pub count: u32,
    /// The child's name; with count > 1, NAME-1 to NAME-N.
    #[serde(default)]
    pub name: Option<String>,
    /// Labels set on every child, over the source's.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateParams {
    /// The workspace: its id or unique name.
    pub workspace_id: String,
    /// A new unique name: [A-Za-z0-9][A-Za-z0-9._-]{0,63}, and not 12 hex
    /// digits (the form of ids).
    #[serde(default)]
    pub name: Option<String>,
    /// Remove the name (not together with `name`).
    #[serde(default)]
    pub clear_name: bool,
    /// Labels to set (others are kept), e.g. {"status": "fixed"}.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Label keys to remove.
    #[serde(default)]
    pub clear_labels: Vec<String>,
    /// A new network policy: "off" (no network), "egress" (outbound
    /// connections), "egress+published-ports" (outbound, and published
    /// ports), "published-ports" (only inbound, on published ports). A
    /// running VM applies it to new connections. A policy without
    /// published ports is refused while ports are published
    /// (workspace_port_unpublish them first). Absent: unchanged (giving
    /// allow_hosts does not change the policy).
    #[serde(default)]
    #[schemars(schema_with = "network::policy_schema")]
    pub network_policy: Option<String>,
    /// A new allowlist, replacing the whole old one ([] removes it:
    /// every public destination is then reachable). Entries: domains
    /// ("pypi.org", "*.example.com"), IPs or CIDRs, each with an optional
    /// ":PORT". Names resolve only if allowed; loopback and private
    /// ranges need an entry by address. Absent: unchanged.
    #[serde(default)]
    pub allow_hosts: Option<Vec<String>>,
    /// New static DNS answers "NAME:IP", replacing all the old ones ([]
    /// removes them). Absent: unchanged.
    #[serde(default)]
    pub add_hosts: Option<Vec<String>>,
    /// A new idle time before the VM is suspended (0: never); a running
    /// VM takes it at once. Absent: unchanged.
    #[serde(default)]
    pub idle_suspend_seconds: Option<u64>,
    /// Whether to suspend on idle while a service runs. Absent:
    /// unchanged.
    #[serde(default)]
    pub idle_suspend_services: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecParams {
    /// The workspace: its id or unique name.
    pub workspace_id: String,
    /// What to run, in /workspace. A string runs with `/bin/sh -c` (e.g.
    /// "./check.sh && git status --short"); an array runs directly as
    /// argv (e.g. ["python3", "test.py"]).
    pub command: CommandLine,
    /// Kill the command (its whole process group) after this many seconds,
    /// 1 to 86400. The result then has timed_out=true.
    #[serde(default = "default_timeout_seconds")]
    #[schemars(range(min = TIMEOUT_SECONDS.min, max = TIMEOUT_SECONDS.max))]
    pub timeout_seconds: u64,
    /// Secrets for this command's environment: {"SECRET_NAME": "VAR"}
    /// ("" for the secret's own name). Their values are replaced by
    /// [REDACTED] in the output.
    #[serde(default)]
    pub secret_env: BTreeMap<String, String>,
    /// Return after this many seconds (1 to 86400) even if the command
    /// still runs, with {state: "running", sequence}: it runs on (until
    /// timeout_seconds), and workspace_logs has its output and exit code
    /// once it ends. For commands that may outlive the host's tool-call
    /// limit. Absent: wait for the end.
    #[serde(default)]
    #[schemars(range(min = 1, max = 86400))]
    pub wait_seconds: Option<u64>,
}

/// What workspace_exec returns: the command's record, or, past
/// `wait_seconds`, where to find it later.
#[derive(Serialize)]
#[serde(untagged)]
enum ExecOutcome {
    Done(Box<CommandRecord>),
    Running(RunningExec),
}

#[derive(Serialize)]
struct RunningExec {
    workspace_id: String,
    sequence: u64,
    state: &'static str,
    waited_seconds: u64,
    hint: String,
}

/// What the exec's thread tells the call waiting for it.
enum ExecEvent {
    Started(u64),
    Done(Result<CommandRecord, Error>),
}

/// Runs the exec on a thread of its own and waits `wait` for it: its
/// record if it ends in time, else where to find it (it runs on,
/// counted in flight, cancelled if the session ends). Cancelling the
/// call while it waits kills the command, as a plain exec's does.
fn exec_waiting(
    job: &Job,
    id: String,
    opts: ExecOptions,
    wait: Duration,
) -> Result<ExecOutcome, Error> {
    let detached = job.detach();
    let stopper = detached.stopper();
    let (tx, rx) = std::sync::mpsc::channel();
    let pyro = job.pyro.clone();
    let thread_id = id.clone();
    let started_tx = tx.clone();
    // The thread owns the in-flight count: it ends with the command.
    let worker = std::thread::Builder::new()
        .name("mcp-exec".into())
        .spawn(move || {
            let done = pyro.workspace_exec_observed(
                &thread_id,
                &opts,
                detached.cancel(),
                |seq| {
                    let _ = started_tx.send(ExecEvent::Started(seq));
                },
                |_, _| {},
            );
            let _ = tx.send(ExecEvent::Done(done));
        })
        .map_err(|e| Error::Io(format!("cannot start the exec's thread: {e}")))?;
    let deadline = std::time::Instant::now() + wait;
    let mut sequence = None;
    loop {
        if job.cancelled() {
            stopper.stop();
        }
        let slice = Duration::from_millis(100);
        match rx.recv_timeout(slice) {
            Ok(ExecEvent::Started(seq)) => sequence = Some(seq),
            Ok(ExecEvent::Done(done)) => {
                let _ = worker.join();
                return done.map(|r| ExecOutcome::Done(Box::new(r)));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Error::Io("the exec's thread ended without a result".into()));
            }
        }
        // Past the wait, once it has a number (it gets one as soon as
        // the agent answers, before the command runs).
        if let (Some(sequence), true) = (sequence, std::time::Instant::now() >= deadline) {
            // Left running: the thread ends with the command.
            drop(worker);
            return Ok(ExecOutcome::Running(RunningExec {
                hint: format!(
                    "command #{sequence} still runs; workspace_logs lists it (output, exit_code) \
                     once it ends"
                ),
                workspace_id: id,
                sequence,
                state: "running",
                waited_seconds: wait.as_secs(),
            }));
        }
    }
}

#[tool_router(router = workspace_tools, vis = "pub(crate)")]
impl PyroServer {
    /// Create a persistent workspace: a Linux microVM with a writable
    /// /workspace disk that stays up across calls, seeded from a host
    /// directory or tar (seed_path). Use the returned workspace_id with
    /// workspace_exec, workspace_file_read/_write, workspace_patch_apply,
    /// workspace_diff and the other workspace tools; delete it with
    /// workspace_delete when done. No network unless network_policy,
    /// allow_hosts or publish asks for it (published ports listen on the
    /// host's 127.0.0.1 only). Boots in seconds (the first use of an
    /// environment builds it: minutes; progress is reported). Result: the
    /// workspace {workspace_id, name, labels, environment, state,
    /// created_at, last_activity_at, command_count, network: {rules:
    /// {policy, allow, add_hosts}, publish}, ...}.
    #[tool(annotations(destructive_hint = false, open_world_hint = false))]
    async fn workspace_create(
        &self,
        Parameters(p): Parameters<CreateParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("workspace_create", ctx, move |job| {
            check_vm_size(p.vcpus, p.mem_mib)?;
            let publish: Vec<PortMapping> = network::parse_all("publish", &p.publish)?;
            let rules = network::new_rules(
                p.network_policy.as_deref(),
                &p.allow_hosts,
                &p.add_hosts,
                !publish.is_empty(),
            )?;
            let opts = CreateOptions {
                environment: p.environment,
                name: p.name,
                labels: p.labels,
                seed_path: p.seed_path,
                vcpus: p.vcpus,
                mem_mib: p.mem_mib,
                ttl_seconds: p.ttl_seconds,
                disk_mib: p.disk_mib,
                system_disk_mib: p.system_disk_mib,
                cold: false,
                network: NetConfig { rules, publish },
                secrets: p
                    .secrets
                    .iter()
                    .map(SecretParam::secret)
                    .collect::<Result<_, _>>()?,
                idle_suspend_seconds: p.idle_suspend_seconds,
                idle_suspend_services: p.idle_suspend_services,
            };
            let w = job.pyro.workspace_create(&opts, job.progress())?;
            if job.cancelled() {
                // Nobody will learn its id: do not leave it running.
                let id = w.record.workspace_id;
                let deleted = job.pyro.workspace_delete(&id);
                eprintln!(
                    "[mcp] workspace_create: the request was cancelled; deleting workspace {id} \
                     again: {}",
                    deleted.map_or_else(|e| e.to_string(), |_| "done".into())
                );
                return Err(Error::Conflict(format!(
                    "the request was cancelled; workspace {id} it created was deleted again"
                )));
            }
            Ok(w)
        })
        .await
    }

    /// List workspaces, most recent activity first. Result: {count,
    /// workspaces: [{workspace_id, name, labels, environment, state
    /// (running|stopped|suspended), suspended_by (idle|request, when
    /// suspended), last_activity_at, command_count, ...}]}.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn workspace_list(&self, ctx: RequestContext<RoleServer>) -> CallToolResult {
        self.call("workspace_list", ctx, |job| {
            Ok(listing("workspaces", &job.pyro.workspace_list(), &[]))
        })
        .await
    }

    /// Rename a workspace, change its labels, its network rules (policy,
    /// allowlist, static names; a running VM applies them to new
    /// connections, and they are kept for later starts), or when it is
    /// suspended on idle. Result: the workspace.
    #[tool(annotations(destructive_hint = false, open_world_hint = false))]
    async fn workspace_update(
        &self,
        Parameters(p): Parameters<UpdateParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("workspace_update", ctx, move |job| {
            if p.name.is_some() && p.clear_name {
                return Err(Error::InvalidArgument(
                    "give either name or clear_name, not both".into(),
                ));
            }
            let opts = UpdateOptions {
                name: p.name,
                clear_name: p.clear_name,
                set_labels: p.labels,
                clear_labels: p.clear_labels,
                network_policy: network::policy(p.network_policy.as_deref())?,
                allow_hosts: p
                    .allow_hosts
                    .map(|a| network::parse_all("allow_hosts", &a))
                    .transpose()?,
                add_hosts: p
                    .add_hosts
                    .map(|a| network::parse_all("add_hosts", &a))
                    .transpose()?,
                idle_suspend_seconds: p.idle_suspend_seconds,
                idle_suspend_services: p.idle_suspend_services,
            };
            job.pyro.workspace_update(&p.workspace_id, &opts)
        })
        .await
    }

    /// One workspace: its record, state (running|stopped|suspended; a
    /// workspace suspended_by idle resumes on the next call), if it
    /// stopped without being asked to, last_error, and its network: the rules and
    /// ports kept (network) and, while it runs, network_status {ports
    /// (host port on 127.0.0.1 for each guest port), connections,
    /// refused_connections, refused_queries, recent_refusals}.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn workspace_status(
        &self,
        Parameters(p): Parameters<WorkspaceRef>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("workspace_status", ctx, move |job| {
            job.pyro.workspace_status(&p.workspace_id)
        })
        .await
    }

    /// The commands run with workspace_exec, oldest first, with exit codes
    /// and output (up to 1 MiB per stream kept); status is "running",
    /// "finished", "interrupted" (its caller or the VM died while it ran)
    /// or "not_started". Also the connections and
    /// DNS queries the network policy refused lately while it runs (why a
    /// download failed). Result: {workspace_id, count, entries:
    /// [{sequence, status, command, started_at, exit_code, timed_out,
    /// duration_ms, stdout, stderr, ...}], network_refusals: [{source (dns|connect|
    /// inbound), target, reason, at_ms}]}.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn workspace_logs(
        &self,
        Parameters(p): Parameters<WorkspaceRef>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("workspace_logs", ctx, move |job| {
            let entries = job.pyro.workspace_logs(&p.workspace_id)?;
            let id = job
                .pyro
                .workspace_status(&p.workspace_id)?
                .record
                .workspace_id;
            let refusals = job.pyro.workspace_network_refusals(&id)?;
            let mut doc = listing("entries", &entries, &[("workspace_id", &id)]);
            doc["network_refusals"] = serde_json::to_value(refusals)
                .map_err(|e| Error::Io(format!("cannot encode the refusals: {e}")))?;
            Ok(doc)
        })
        .await
    }

    /// Stop a workspace's VM. /workspace stays on its disk;
    /// workspace_start boots it again. With keep_memory the VM's memory
    /// is kept too (state "suspended"), and workspace_start resumes the
    /// same machine, running processes included. Result: the workspace,
    /// with `warnings` if /workspace could not be flushed before the VM
    /// stopped (a guest that did not answer).
    #[tool(annotations(destructive_hint = false, open_world_hint = false))]
    async fn workspace_stop(
        &self,
        Parameters(p): Parameters<StopParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("workspace_stop", ctx, move |job| {
            if p.keep_memory {
                job.pyro.workspace_suspend(&p.workspace_id)
            } else {
                job.pyro.workspace_stop(&p.workspace_id)
            }
        })
        .await
    }

    /// Start a stopped workspace again with /workspace as it was, or
    /// resume a suspended one (workspace_stop with keep_memory); a no-op
    /// if it runs. About a second; progress is reported. Result: the
    /// workspace.
    #[tool(annotations(destructive_hint = false, open_world_hint = false))]
    async fn workspace_start(
        &self,
        Parameters(p): Parameters<WorkspaceRef>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("workspace_start", ctx, move |job| {
            job.pyro.workspace_start(&p.workspace_id, job.progress())
        })
        .await
    }

    /// Copy a workspace into `count` new running workspaces, each
    /// holding its state at one instant: memory and running processes
    /// (shells, services, background jobs), /workspace and everything
    /// installed outside it, checkpoints, secrets, labels. Use it to try
    /// several approaches from one prepared state. The source is paused
    /// only briefly and runs on; children are independent (deleting the
    /// source does not affect them), each with its own hostname and
    /// random state. Published ports are not copied: publish them again
    /// in a child. About a second per child; progress is reported.
    /// Result: {source_id, source_state, source_paused_ms, duration_ms,
    /// children: [workspace...]}.
    #[tool(annotations(destructive_hint = false, open_world_hint = false))]
    async fn workspace_fork(
        &self,
        Parameters(p): Parameters<ForkParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("workspace_fork", ctx, move |job| {
            let opts = pyro_workspace::ForkOptions {
                count: p.count,
                name: p.name,
                labels: p.labels,
            };
            job.pyro
                .workspace_fork(&p.workspace_id, &opts, job.progress())
        })
        .await
    }

    /// Stop a workspace and remove it with everything in it (disk,
    /// snapshots, history). Export what you need first. Result:
    /// {workspace_id, deleted}.
    #[tool(annotations(destructive_hint = true, open_world_hint = false))]
    async fn workspace_delete(
        &self,
        Parameters(p): Parameters<WorkspaceRef>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("workspace_delete", ctx, move |job| {
            job.pyro.workspace_delete(&p.workspace_id)
        })
        .await
    }

    /// Run a command in /workspace of a running workspace and return its
    /// output and exit code; it is recorded in workspace_logs. A non-zero
    /// exit_code is a normal result (e.g. a failing test), not a tool
    /// error. Several may run at once. Cancelling the request kills the
    /// command (its whole process group). With wait_seconds, a command
    /// still running then is left running and the call returns
    /// {workspace_id, sequence, state: "running", hint}; workspace_logs
    /// has its record once it ends (use this for commands that may take
    /// longer than your tool-call limit). Result: {workspace_id,
    /// sequence, command, exit_code, signal, timed_out, stdout, stderr,
    /// duration_ms, ...}.
    #[tool(annotations(destructive_hint = true, open_world_hint = false))]
    async fn workspace_exec(
        &self,
        Parameters(p): Parameters<ExecParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("workspace_exec", ctx, move |job| {
            check_limit(TIMEOUT_SECONDS, p.timeout_seconds)?;
            let argv = p.command.argv();
            // The command line may spell a secret out.
            let shown = job
                .pyro
                .workspace_redact(&p.workspace_id, &format!("{argv:?}"))?;
            job.say(format!("[exec] {shown}"));
            let opts = ExecOptions {
                secret_env: secret_env(&p.secret_env)?,
                ..ExecOptions::new(&argv, Duration::from_secs(p.timeout_seconds))
            };
            match p.wait_seconds {
                None => job
                    .pyro
                    .workspace_exec_with(&p.workspace_id, &opts, job.cancel(), |_, _| {})
                    .map(|r| ExecOutcome::Done(Box::new(r))),
                Some(wait) => {
                    super::check_range("wait_seconds", wait, 1, TIMEOUT_SECONDS.max)?;
                    exec_waiting(job, p.workspace_id, opts, Duration::from_secs(wait))
                }
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// workspace_update: an absent list leaves the old one, `[]` clears
    /// it, and a list replaces it.
    #[test]
    fn update_lists_replace_clear_or_keep() {
        let p: UpdateParams = serde_json::from_value(serde_json::json!({
            "workspace_id": "w",
            "network_policy": "egress",
            "allow_hosts": [],
            "add_hosts": ["db.internal:10.1.2.3"],
        }))
        .unwrap();
        assert_eq!(p.network_policy.as_deref(), Some("egress"));
        assert_eq!(p.allow_hosts, Some(vec![]));
        assert_eq!(p.add_hosts.as_ref().map(Vec::len), Some(1));
        let p: UpdateParams = serde_json::from_value(serde_json::json!({
            "workspace_id": "w", "network_policy": null,
        }))
        .unwrap();
        assert_eq!(
            (p.network_policy, p.allow_hosts, p.add_hosts),
            (None, None, None)
        );
    }

    #[test]
    fn create_takes_the_network_and_refuses_misspellings() {
        let p: CreateParams = serde_json::from_value(serde_json::json!({
            "allow_hosts": ["pypi.org"], "publish": ["8080:8000", "9000"],
        }))
        .unwrap();
        assert_eq!(p.publish, ["8080:8000", "9000"]);
        assert!(p.network_policy.is_none());
        let e = serde_json::from_value::<CreateParams>(serde_json::json!({"allow_host": ["x"]}))
            .unwrap_err();
        assert!(e.to_string().contains("unknown field `allow_host`"), "{e}");
    }
}
