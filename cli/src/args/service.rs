//! The arguments of `pyro workspace service <verb>`: supervised
//! commands in a running workspace, with readiness probes and logs
//! (docs/services.md).

use clap::{ArgGroup, Args, Subcommand};
use pyro_workspace::service_limits::{
    DEFAULT_READY_TIMEOUT_S, MAX_READY_TIMEOUT_S, MAX_STOP_GRACE_MS, MAX_TAIL_LINES,
};
use pyro_workspace::PortMapping;

#[derive(Subcommand)]
pub enum ServiceCommand {
    /// Start a service (`/bin/sh -c COMMAND` in its own process group)
    /// and wait until it is ready, failed or exited; exits 1 unless it
    /// is ready.
    Start(Box<ServiceStartArgs>),
    /// List a workspace's services (none while it is stopped).
    List(super::workspace::IdArgs),
    /// One service's state, exit status and ports.
    Status(ServiceRefArgs),
    /// A service's stdout and stderr (the last 256 KiB of each).
    Logs(ServiceLogsArgs),
    /// Stop a service: SIGTERM to its process group, SIGKILL after the
    /// grace period; its published ports close with it.
    Stop(ServiceStopArgs),
}

#[derive(Args)]
#[command(group(ArgGroup::new("ready").args(["ready_file", "ready_tcp", "ready_http", "ready_command"])))]
pub struct ServiceStartArgs {
    /// Workspace id (or its unique name).
    pub id: String,
    /// The service's name: 1-64 of [A-Za-z0-9._-], starting with a letter
    /// or digit. A name in use by an ended service is reused.
    pub name: String,
    /// Ready once this path exists (inside /workspace; relative paths
    /// resolve under it).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<String>,
    /// Ready once a TCP connection to HOST:PORT in the guest succeeds
    /// (`PORT` alone: 127.0.0.1).
    #[arg(long, value_name = "HOST:PORT")]
    pub ready_tcp: Option<String>,
    /// Ready once an HTTP GET of URL (http:// in the guest) answers with
    /// a status below 400.
    #[arg(long, value_name = "URL")]
    pub ready_http: Option<String>,
    /// Ready once `/bin/sh -c COMMAND` exits 0 (tried every 0.5 s).
    #[arg(long, value_name = "COMMAND")]
    pub ready_command: Option<String>,
    /// How long readiness may take; then the service is failed and its
    /// processes killed. Without a probe it is ready once started.
    #[arg(
        long,
        value_name = "S",
        default_value_t = DEFAULT_READY_TIMEOUT_S,
        value_parser = super::shape::number::<u64>(1, MAX_READY_TIMEOUT_S)
    )]
    pub ready_timeout_seconds: u64,
    /// Where it runs, inside /workspace.
    #[arg(long, default_value = "/workspace")]
    pub cwd: String,
    /// An environment variable for it, NAME=VALUE (repeatable).
    #[arg(long, value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    #[command(flatten)]
    pub secret_env: super::secret::SecretEnvArgs,
    /// Publish a guest port on the host's 127.0.0.1 while the service
    /// runs (repeatable): `GUEST`, `HOST:GUEST` or `127.0.0.1:HOST:GUEST`.
    /// Needs network policy egress+published-ports or published-ports.
    #[arg(long, value_name = "[HOST:]GUEST")]
    pub publish: Vec<PortMapping>,
    /// The command, after `--`.
    #[arg(last = true, required = true, num_args = 1..)]
    pub command: Vec<String>,
}

#[derive(Args)]
pub struct ServiceRefArgs {
    /// Workspace id (or its unique name).
    pub id: String,
    /// The service's name.
    pub name: String,
}

#[derive(Args)]
pub struct ServiceLogsArgs {
    /// Workspace id (or its unique name).
    pub id: String,
    /// The service's name.
    pub name: String,
    /// Only the last N lines of each stream.
    #[arg(
        long,
        value_name = "N",
        value_parser = super::shape::number::<u64>(1, MAX_TAIL_LINES)
    )]
    pub tail_lines: Option<u64>,
}

#[derive(Args)]
pub struct ServiceStopArgs {
    /// Workspace id (or its unique name).
    pub id: String,
    /// The service's name.
    pub name: String,
    /// Seconds between SIGTERM and SIGKILL.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 5,
        value_parser = super::shape::number::<u64>(0, MAX_STOP_GRACE_MS / 1000)
    )]
    pub grace_seconds: u64,
}
