//! Service tools (workspace-full): `service_start`, `_list`, `_status`,
//! `_logs`, `_stop`, as the CLI and SDK have them: supervised commands
//! in a running workspace, with readiness probes run in the guest and
//! bounded logs (docs/services.md).

use crate::server::PyroServer;
use pyro_workspace::service_limits::{
    one_probe, DEFAULT_READY_TIMEOUT_S, MAX_READY_TIMEOUT_S, MAX_STOP_GRACE_MS, MAX_TAIL_LINES,
};
use pyro_workspace::{Error, ServiceOptions};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

fn default_ready_timeout() -> u64 {
    DEFAULT_READY_TIMEOUT_S
}
fn default_grace() -> u64 {
    5
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceStartParams {
    /// The workspace: its id or unique name. It must be running.
    pub workspace_id: String,
    /// The service's name, 1-64 of [A-Za-z0-9._-] starting with a letter
    /// or digit (e.g. "app", "db"). A name of an ended service is reused.
    pub service_name: String,
    /// The command line, run with /bin/sh -c in its own process group
    /// (e.g. "python3 -m http.server 8000"). Run it in the foreground:
    /// a command that daemonizes looks exited.
    pub command: String,
    /// Directory it runs in, inside /workspace (default "/workspace").
    #[serde(default)]
    pub cwd: Option<String>,
    /// Extra environment variables, {"NAME": "value"}.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Secrets for its environment: {"SECRET_NAME": "VAR"} ("" for the
    /// secret's own name; see workspace_secret_set). Their values are
    /// replaced by [REDACTED] in its output.
    #[serde(default)]
    pub secret_env: BTreeMap<String, String>,
    /// Ready once this path exists (inside /workspace; relative paths
    /// resolve under it). At most one ready_* is allowed; with none, the
    /// service is ready once started.
    #[serde(default)]
    pub ready_file: Option<String>,
    /// Ready once a TCP connection to "HOST:PORT" in the guest succeeds
    /// ("8000" alone means 127.0.0.1:8000).
    #[serde(default)]
    pub ready_tcp: Option<String>,
    /// Ready once an HTTP GET of this http:// URL in the guest answers
    /// with a status below 400 (e.g. "http://127.0.0.1:8000/health").
    #[serde(default)]
    pub ready_http: Option<String>,
    /// Ready once this shell command exits 0 (tried every 0.5 s).
    #[serde(default)]
    pub ready_command: Option<String>,
    /// Seconds readiness may take (1 to 3600, default 30); then the
    /// service is failed and its processes killed.
    #[serde(default = "default_ready_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub ready_timeout_seconds: u64,
    /// Guest ports to publish on the host's 127.0.0.1 while the service
    /// runs: "GUEST" (the host picks a free port), "HOST:GUEST" or
    /// "127.0.0.1:HOST:GUEST". Needs network_policy
    /// "egress+published-ports" or "published-ports".
    #[serde(default)]
    pub publish: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceRef {
    /// The workspace: its id or unique name.
    pub workspace_id: String,
    /// The service's name, as given to service_start.
    pub service_name: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceLogsParams {
    /// The workspace: its id or unique name.
    pub workspace_id: String,
    /// The service's name, as given to service_start.
    pub service_name: String,
    /// Only the last N lines of each stream (1 to 100000); absent: all
    /// that is kept (the last 256 KiB of each).
    #[serde(default)]
    #[schemars(range(min = 1, max = 100000))]
    pub tail_lines: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceStopParams {
    /// The workspace: its id or unique name.
    pub workspace_id: String,
    /// The service's name, as given to service_start.
    pub service_name: String,
    /// Seconds between SIGTERM and SIGKILL, 0 to 60 (default 5).
    #[serde(default = "default_grace")]
    #[schemars(range(min = 0, max = 60))]
    pub grace_seconds: u64,
}

#[tool_router(router = service_tools, vis = "pub(crate)")]
impl PyroServer {
    /// Start a long-running process in a running workspace (a dev
    /// server, a database, a watcher) and wait until it is ready: the
    /// ready_* probe succeeded (or at once without one). The call
    /// returns when it is ready, failed (probe timed out: its processes
    /// were killed) or exited early; check `state` ("ready", "failed",
    /// "exited") and, if not ready, `reason` and service_logs. Result:
    /// {workspace_id, name, state, command, cwd, pid, readiness, ports:
    /// [{guest_port, host_port}], ready_after_ms, exit_code, reason, ...}.
    #[tool(annotations(destructive_hint = false, open_world_hint = false))]
    async fn service_start(
        &self,
        Parameters(p): Parameters<ServiceStartParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("service_start", ctx, move |job| {
            super::check_range(
                "ready_timeout_seconds",
                p.ready_timeout_seconds,
                1,
                MAX_READY_TIMEOUT_S,
            )?;
            let ready = one_probe(
                p.ready_file.as_deref(),
                p.ready_tcp.as_deref(),
                p.ready_http.as_deref(),
                p.ready_command.as_deref(),
            )
            .map_err(Error::InvalidArgument)?;
            let publish = super::network::parse_all("publish", &p.publish)?;
            let opts = ServiceOptions {
                command: p.command,
                cwd: p.cwd,
                env: p.env.into_iter().collect(),
                secret_env: super::secrets::secret_env(&p.secret_env)?,
                ready,
                ready_timeout: Duration::from_secs(p.ready_timeout_seconds),
                publish,
            };
            job.pyro
                .workspace_service_start(&p.workspace_id, &p.service_name, &opts)
        })
        .await
    }

    /// The services of a workspace in start order, running and ended
    /// (a stopped workspace has none). Result: {workspace_id, services:
    /// [the service as service_start returns it]}.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn service_list(
        &self,
        Parameters(p): Parameters<super::WorkspaceRef>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("service_list", ctx, move |job| {
            job.pyro.workspace_service_list(&p.workspace_id)
        })
        .await
    }

    /// One service as it is now: state ("starting", "ready", "exited",
    /// "failed", "stopped"), exit_code, reason, published ports. Result:
    /// the service as service_start returns it.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn service_status(
        &self,
        Parameters(p): Parameters<ServiceRef>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("service_status", ctx, move |job| {
            job.pyro
                .workspace_service_status(&p.workspace_id, &p.service_name)
        })
        .await
    }

    /// A service's output: stdout and stderr as it wrote them (the last
    /// 256 KiB of each, or the last tail_lines lines). Reading logs
    /// changes nothing. Result: the service, plus {stdout, stderr,
    /// stdout_omitted, stderr_omitted (bytes before what is returned)}.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn service_logs(
        &self,
        Parameters(p): Parameters<ServiceLogsParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("service_logs", ctx, move |job| {
            if let Some(n) = p.tail_lines {
                super::check_range("tail_lines", n, 1, MAX_TAIL_LINES)?;
            }
            job.pyro
                .workspace_service_logs(&p.workspace_id, &p.service_name, p.tail_lines)
        })
        .await
    }

    /// Stop a service: SIGTERM to all its processes, SIGKILL after
    /// grace_seconds; returns once it is gone, its published ports
    /// closed. Stopping an ended service just reports it. Result: the
    /// service (state "stopped", or how it had ended).
    #[tool(annotations(destructive_hint = true, open_world_hint = false))]
    async fn service_stop(
        &self,
        Parameters(p): Parameters<ServiceStopParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("service_stop", ctx, move |job| {
            super::check_range(
                "grace_seconds",
                p.grace_seconds,
                0,
                MAX_STOP_GRACE_MS / 1000,
            )?;
            job.pyro.workspace_service_stop(
                &p.workspace_id,
                &p.service_name,
                Some(Duration::from_secs(p.grace_seconds)),
            )
        })
        .await
    }
}
