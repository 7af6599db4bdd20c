//! The arguments of `pyro workspace <verb>`; `crate::workspace` runs
//! them. `--json` is the global flag of [`super::Cli`].

use super::network::{NetworkArgs, NetworkUpdateArgs};
use super::shape::{self, CommandArgs, VmShape};
use clap::{Args, Subcommand};
use pyro_vmm::limits::DISK_MIB;
use pyro_workspace::{PortMapping, DEFAULT_FILE_READ_BYTES, MAX_FILE_READ_BYTES};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum WorkspaceCommand {
    /// Create a workspace (a VM with a persistent /workspace) and start it.
    Create(CreateArgs),
    /// List workspaces, newest activity first.
    List,
    /// Change a workspace's name, labels or network rules.
    Update(UpdateArgs),
    /// Show one workspace.
    Status(IdArgs),
    /// Show the commands run in a workspace, with their output.
    Logs(IdArgs),
    /// Stop the VM; /workspace stays on its disk.
    Stop(StopArgs),
    /// Boot a stopped workspace again (or resume a suspended one).
    Start(IdArgs),
    /// Stop and remove a workspace and everything in it.
    Delete(IdArgs),
    /// Copy a workspace into new ones at one instant: memory and running
    /// processes (shells, services), /workspace and the system, its
    /// checkpoints, secrets and labels. The source is paused only for
    /// its snapshot and runs on; the children do not depend on it.
    /// Published ports are not copied.
    Fork(ForkArgs),
    /// Run a command in /workspace: `pyro workspace exec ID -- CMD ARGS...`.
    Exec(ExecArgs),
    /// Copy host files into the workspace.
    #[command(subcommand)]
    Sync(SyncCommand),
    /// List, read and write files in /workspace.
    #[command(subcommand)]
    File(FileCommand),
    /// Apply a unified diff (as `git diff` prints it) to /workspace.
    #[command(subcommand)]
    Patch(PatchCommand),
    /// Show what changed in /workspace since create: a summary and a
    /// patch `git apply` accepts.
    Diff(IdArgs),
    /// Copy a file or directory out of /workspace to the host.
    Export(ExportArgs),
    /// Checkpoints of /workspace.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Restore /workspace exactly to a snapshot (default: baseline).
    Reset(ResetArgs),
    /// Guest ports reachable on the host's 127.0.0.1 (never on other
    /// addresses).
    #[command(subcommand)]
    Port(PortCommand),
    /// Persistent shells on a pseudo-terminal: open, write, read (also
    /// as plain screen text), signal, close; they outlive this command.
    #[command(subcommand)]
    Shell(super::shell::ShellCommand),
    /// Supervised commands: start (waiting for a readiness probe), list,
    /// status, logs, stop; ports published while they run.
    #[command(subcommand)]
    Service(super::service::ServiceCommand),
    /// A stopped workspace's /workspace disk, read on the host without
    /// starting it: list, read, export the ext4 image.
    #[command(subcommand)]
    Disk(DiskCommand),
    /// Secrets: set (or rotate) and unset; see also --secret on create
    /// and --secret-env on exec, shell open and service start.
    #[command(subcommand)]
    Secret(super::secret::SecretCommand),
}

#[derive(Args)]
pub struct IdArgs {
    /// Workspace id (or its unique name).
    pub id: String,
}

#[derive(Args)]
pub struct StopArgs {
    /// Workspace id (or its unique name).
    pub id: String,
    /// Keep the VM's memory on disk (about the guest memory in use):
    /// the next `start` resumes the same machine, running processes
    /// included, instead of starting a fresh one.
    #[arg(long)]
    pub keep_memory: bool,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("label {s:?} must be KEY=VALUE"))
}

#[derive(Args)]
pub struct CreateArgs {
    /// Environment (see `pyro env list`).
    #[arg(default_value = pyro_workspace::DEFAULT_ENV)]
    pub env: String,
    /// A name, unique among workspaces: [A-Za-z0-9][A-Za-z0-9._-]{0,63},
    /// and not 12 hex digits (the form of ids).
    #[arg(long)]
    pub name: Option<String>,
    /// A label KEY=VALUE (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Initial /workspace content: a directory, .tar, .tar.gz or .tgz.
    #[arg(long)]
    pub seed_path: Option<PathBuf>,
    #[command(flatten)]
    pub shape: VmShape,
    #[arg(long, value_parser = shape::ttl_seconds(), help = shape::ttl_seconds_help())]
    pub ttl_seconds: Option<u64>,
    #[arg(
        long,
        default_value_t = DISK_MIB.default,
        value_parser = shape::disk_mib(),
        help = shape::disk_mib_help()
    )]
    pub disk_mib: u64,
    /// Size in MiB of the system disk, which holds everything written
    /// outside /workspace (apt, pip, /etc, /root), sparse like the
    /// workspace disk.
    #[arg(
        long,
        default_value_t = pyro_workspace::DEFAULT_SYSTEM_DISK_MIB,
        value_parser = shape::disk_mib()
    )]
    pub system_disk_mib: u64,
    /// Boot the VM instead of restoring the environment's warm snapshot.
    #[arg(long)]
    pub cold: bool,
    #[command(flatten)]
    pub network: NetworkArgs,
    /// Publish a guest port on the host's 127.0.0.1 (repeatable):
    /// `GUEST` (any free host port), `HOST:GUEST` or
    /// `127.0.0.1:HOST:GUEST`; other addresses are refused. Kept for
    /// every start. Without --network-policy it implies
    /// egress+published-ports.
    #[arg(long, value_name = "[HOST:]GUEST")]
    pub publish: Vec<PortMapping>,
    #[command(flatten)]
    pub secrets: super::secret::CreateSecretArgs,
    /// Suspend the VM after this many seconds without activity (no exec,
    /// file, shell or service call, no open connection): its memory is
    /// kept on disk and it uses no CPU; the next call resumes it, its
    /// processes still running. 0: never. Never for a workspace with
    /// secrets.
    #[arg(long, value_name = "SECONDS", default_value_t = pyro_workspace::DEFAULT_IDLE_SUSPEND_SECONDS)]
    pub idle_suspend_seconds: u64,
    /// Suspend on idle even while a service runs (by default a running
    /// service keeps the workspace awake).
    #[arg(long)]
    pub idle_suspend_services: bool,
    /// Print only the new workspace's id.
    #[arg(long, conflicts_with = "json")]
    pub id_only: bool,
}

#[derive(Args)]
pub struct ForkArgs {
    /// The workspace to copy: running, suspended (its kept memory) or
    /// stopped (its children start afresh from its disks).
    pub id: String,
    /// How many children.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(pyro_workspace::MAX_FORK_COUNT)))]
    pub count: u32,
    /// The child's name (the rule of `create --name`); with --count N,
    /// NAME-1 to NAME-N.
    #[arg(long)]
    pub name: Option<String>,
    /// A label KEY=VALUE set on every child, over the source's
    /// (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Print only the children's ids, one per line.
    #[arg(long, conflicts_with = "json")]
    pub id_only: bool,
}

#[derive(Args)]
pub struct UpdateArgs {
    pub id: String,
    /// A new unique name: the rule of `create --name`.
    #[arg(long, conflicts_with = "clear_name")]
    pub name: Option<String>,
    #[arg(long)]
    pub clear_name: bool,
    /// Set a label KEY=VALUE (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Remove a label (repeatable).
    #[arg(long = "clear-label")]
    pub clear_labels: Vec<String>,
    #[command(flatten)]
    pub network: NetworkUpdateArgs,
    /// A new idle time before the VM is suspended (0: never); a running
    /// VM takes it at once.
    #[arg(long, value_name = "SECONDS")]
    pub idle_suspend_seconds: Option<u64>,
    /// Whether to suspend on idle while a service runs.
    #[arg(long, value_name = "BOOL")]
    pub idle_suspend_services: Option<bool>,
}

#[derive(Args)]
pub struct ExecArgs {
    pub id: String,
    #[command(flatten)]
    pub secret_env: super::secret::SecretEnvArgs,
    #[command(flatten)]
    pub cmd: CommandArgs,
}

#[derive(Subcommand)]
pub enum SyncCommand {
    /// Copy a host directory or tar (.tar, .tar.gz, .tgz) into /workspace,
    /// all or nothing.
    Push(SyncPushArgs),
}

#[derive(Args)]
pub struct SyncPushArgs {
    pub id: String,
    pub source: PathBuf,
    /// Where in the workspace (default /workspace).
    #[arg(long, default_value = "/workspace")]
    pub dest: String,
}

#[derive(Subcommand)]
pub enum FileCommand {
    /// List a directory (or show a file).
    List(FileListArgs),
    /// Print a file.
    Read(FileReadArgs),
    /// Write a file atomically (parents created, mode kept).
    Write(FileWriteArgs),
}

#[derive(Args)]
pub struct FileListArgs {
    pub id: String,
    #[arg(default_value = "/workspace")]
    pub path: String,
    #[arg(long)]
    pub recursive: bool,
}

#[derive(Args)]
pub struct FileReadArgs {
    pub id: String,
    pub path: String,
    /// Read at most this many bytes (1..=1048576).
    #[arg(
        long,
        default_value_t = DEFAULT_FILE_READ_BYTES,
        value_parser = shape::number::<u64>(1, MAX_FILE_READ_BYTES)
    )]
    pub max_bytes: u64,
    /// Print only the content, byte for byte.
    #[arg(long, conflicts_with = "json")]
    pub content_only: bool,
}

#[derive(Args)]
pub struct FileWriteArgs {
    pub id: String,
    pub path: String,
    /// The content (it may start with `-`).
    #[arg(
        long,
        allow_hyphen_values = true,
        conflicts_with = "text_file",
        required_unless_present = "text_file"
    )]
    pub text: Option<String>,
    /// Take the content from this host file.
    #[arg(long)]
    pub text_file: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum PatchCommand {
    /// Apply a patch, all or nothing; exact context required.
    Apply(PatchApplyArgs),
}

#[derive(Args)]
pub struct PatchApplyArgs {
    pub id: String,
    /// The patch text (it may start with `---`).
    #[arg(
        long,
        allow_hyphen_values = true,
        conflicts_with = "patch_file",
        required_unless_present = "patch_file"
    )]
    pub patch: Option<String>,
    /// Take the patch from this host file (`-` for stdin).
    #[arg(long)]
    pub patch_file: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum DiskCommand {
    /// List a directory (or show a file) of a stopped workspace's disk.
    List(FileListArgs),
    /// Print a file of a stopped workspace's disk.
    Read(FileReadArgs),
    /// Copy a stopped workspace's /workspace disk image (ext4, sparse)
    /// to a host file.
    Export(DiskExportArgs),
}

#[derive(Args)]
pub struct DiskExportArgs {
    pub id: String,
    /// Host path to create (must not exist).
    #[arg(long)]
    pub output: PathBuf,
}

#[derive(Args)]
pub struct ExportArgs {
    pub id: String,
    /// The workspace path to copy out.
    pub path: String,
    /// Host path to create (must not exist).
    #[arg(long)]
    pub output: PathBuf,
}

#[derive(Subcommand)]
pub enum SnapshotCommand {
    /// Checkpoint /workspace as it is now.
    Create(SnapshotArgs),
    /// List snapshots (baseline first).
    List(IdArgs),
    /// Delete a named snapshot.
    Delete(SnapshotArgs),
}

#[derive(Args)]
pub struct SnapshotArgs {
    pub id: String,
    pub name: String,
}

#[derive(Args)]
pub struct ResetArgs {
    pub id: String,
    #[arg(long, default_value = "baseline")]
    pub snapshot: String,
}

#[derive(Subcommand)]
pub enum PortCommand {
    /// Publish a guest port on the host's 127.0.0.1 now and at every
    /// start; the workspace must be running, with policy
    /// egress+published-ports or published-ports.
    Publish(PortPublishArgs),
    /// List the published ports and where they listen.
    List(IdArgs),
    /// Stop publishing a guest port (open connections stay until they
    /// close).
    Unpublish(PortUnpublishArgs),
}

#[derive(Args)]
pub struct PortPublishArgs {
    pub id: String,
    /// `GUEST` (any free host port), `HOST:GUEST` or
    /// `127.0.0.1:HOST:GUEST`; other addresses are refused.
    #[arg(value_name = "[HOST:]GUEST")]
    pub port: PortMapping,
}

#[derive(Args)]
pub struct PortUnpublishArgs {
    pub id: String,
    /// The guest port, as `port list` shows it.
    #[arg(value_parser = shape::number::<u16>(1, u16::MAX.into()))]
    pub guest_port: u16,
}
