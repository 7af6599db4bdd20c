//! What the workspace verbs store and return: the record kept in
//! `workspace.json`, the history and checkpoint records, each verb's
//! options and result, and the states they report (typed here, spelled
//! in JSON and human output as the snake_case words they always were).

use pyro_proto::rpc::{self, FileInfo, PatchEntry, PatchSummary, UploadResult};
use pyro_vmm::net::policy::{AddHost, HostPattern, NetworkPolicy};
use pyro_vmm::net::stack::NetStatus;
use pyro_vmm::NetConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::host_read::ServedBy;
use super::store::{now_unix, rfc3339};

/// An enum of words: each variant's word is written once, here, and
/// serde, [`as_str`](WorkspaceState::as_str) and `Display` all give it,
/// so JSON and human output cannot disagree.
macro_rules! words {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $word:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize,
        )]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $word)] $variant,)+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(super) use words;

words! {
    /// What a workspace's VM is doing.
    pub enum WorkspaceState {
        Running = "running",
        Stopped = "stopped",
        /// Stopped with its memory kept (`stop --keep-memory`); `start`
        /// resumes it.
        Suspended = "suspended",
    }
}

words! {
    /// Who suspended a workspace.
    pub enum SuspendedBy {
        /// Its VMM, after `idle_suspend_seconds` without activity: the
        /// next call resumes it.
        Idle = "idle",
        /// `stop --keep-memory`: `start` resumes it.
        Request = "request",
    }
}

words! {
    /// How a workspace's VM last started.
    pub enum StartKind {
        /// Restored from the environment's agent-ready snapshot.
        Warm = "warm",
        /// Booted.
        Cold = "cold",
        /// Its own memory, kept by `stop --keep-memory`.
        Resumed = "resumed",
        /// The memory of the workspace it was forked from, at the fork.
        Forked = "forked",
    }
}

words! {
    /// Which checkpoint of /workspace.
    pub enum CheckpointKind {
        /// Taken at create, before the first boot; immutable.
        Baseline = "baseline",
        /// Taken on request (`snapshot create`).
        Named = "named",
    }
}

words! {
    /// Where a secret's value came from (`--secret` or `--secret-file`).
    pub enum SecretSource {
        Literal = "literal",
        File = "file",
    }
}

/// A secret as a workspace reports it: its name and where its value came
/// from, never the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    pub name: String,
    pub source_kind: SecretSource,
}

#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub environment: String,
    pub name: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// A host directory, or a `.tar` / `.tar.gz` / `.tgz` file.
    pub seed_path: Option<PathBuf>,
    /// vCPUs ([`pyro_vmm::limits::VCPUS`]). More than one boots the SMP
    /// guest kernel, built on first use (minutes, reported to the
    /// progress), with warm snapshots of its own.
    pub vcpus: u8,
    pub mem_mib: u32,
    pub ttl_seconds: Option<u64>,
    pub disk_mib: u64,
    /// Size of the system disk: what is written outside /workspace
    /// (packages, /etc, /root) goes there (sparse).
    pub system_disk_mib: u64,
    /// Boot the VM instead of restoring the environment's warm snapshot.
    pub cold: bool,
    /// Network policy, allowlist, static names and ports to publish
    /// (policy `off` by default).
    pub network: NetConfig,
    /// Secrets the workspace starts with (docs/secrets.md).
    pub secrets: Vec<(crate::secrets::Secret, SecretSource)>,
    /// Suspend the VM after this long without activity (0: never); see
    /// [`WorkspaceRecord::idle_suspend_seconds`].
    pub idle_suspend_seconds: u64,
    /// Suspend on idle even while a service runs.
    pub idle_suspend_services: bool,
}

impl Default for CreateOptions {
    fn default() -> Self {
        Self {
            environment: pyro_images::DEFAULT_ENV.into(),
            name: None,
            labels: BTreeMap::new(),
            seed_path: None,
            vcpus: 1,
            mem_mib: pyro_vmm::VmConfig::DEFAULT_MEM_MIB,
            ttl_seconds: None,
            disk_mib: super::DEFAULT_DISK_MIB,
            system_disk_mib: super::DEFAULT_SYSTEM_DISK_MIB,
            cold: false,
            network: NetConfig::default(),
            secrets: Vec::new(),
            idle_suspend_seconds: super::DEFAULT_IDLE_SUSPEND_SECONDS,
            idle_suspend_services: false,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct UpdateOptions {
    pub name: Option<String>,
    pub clear_name: bool,
    pub set_labels: BTreeMap<String, String>,
    pub clear_labels: Vec<String>,
    /// A new network policy (a running VM applies it to new connections).
    pub network_policy: Option<NetworkPolicy>,
    /// A new allowlist, replacing the old one (empty: no allowlist).
    pub allow_hosts: Option<Vec<HostPattern>>,
    /// New static names, replacing the old ones.
    pub add_hosts: Option<Vec<AddHost>>,
    /// A new idle time before suspend (0: never); a running VM takes it
    /// at once, idle time counted afresh.
    pub idle_suspend_seconds: Option<u64>,
    /// Whether to suspend on idle while services run.
    pub idle_suspend_services: Option<bool>,
}

impl UpdateOptions {
    /// Whether the update touches the network.
    pub fn changes_network(&self) -> bool {
        self.network_policy.is_some() || self.allow_hosts.is_some() || self.add_hosts.is_some()
    }

    /// Whether the update touches when the VM is suspended on idle.
    pub fn changes_idle(&self) -> bool {
        self.idle_suspend_seconds.is_some() || self.idle_suspend_services.is_some()
    }
}

/// What is stored about a workspace (`workspace.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkspaceRecord {
    pub workspace_id: String,
    pub name: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub environment: String,
    pub vcpus: u8,
    pub mem_mib: u32,
    pub disk_mib: u64,
    /// The system disk's size (workspaces made before it: the default).
    #[serde(default = "default_system_disk_mib")]
    pub system_disk_mib: u64,
    pub created_at: String,
    pub created_unix: u64,
    pub last_activity_at: String,
    pub last_activity_unix: u64,
    pub ttl_seconds: Option<u64>,
    pub expires_unix: Option<u64>,
    pub command_count: u64,
    /// Resets so far, and when the last one was (RFC 3339).
    #[serde(default)]
    pub reset_count: u64,
    #[serde(default)]
    pub last_reset_at: Option<String>,
    pub seed_path: Option<PathBuf>,
    pub seed_entry_count: u64,
    /// How the VM last started.
    #[serde(default)]
    pub last_start: Option<StartKind>,
    /// VMM start to agent ready (disk mounted), for that start.
    #[serde(default)]
    pub last_start_ms: Option<u64>,
    /// The network: policy, allowlist, static names, and the ports to
    /// publish whenever the VM starts.
    #[serde(default)]
    pub network: NetConfig,
    /// Its secrets' names, sorted (values live in `secrets/`, 0600).
    #[serde(default)]
    pub secrets: Vec<SecretInfo>,
    /// Its VM is suspended (its memory kept, as `stop --keep-memory`
    /// does) after this many seconds without activity: no exec, file,
    /// shell or service call, no open connection. 0: never. The next
    /// call resumes it. A workspace with secrets is never suspended
    /// (kept memory would hold their values on disk). Workspaces made
    /// before this existed: 0.
    #[serde(default)]
    pub idle_suspend_seconds: u64,
    /// Suspend on idle even while a service runs (by default a running
    /// service keeps it awake).
    #[serde(default)]
    pub idle_suspend_services: bool,
    /// The workspace this one is a fork of (`workspace fork`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<String>,
}

fn default_system_disk_mib() -> u64 {
    super::DEFAULT_SYSTEM_DISK_MIB
}

impl WorkspaceRecord {
    pub(super) fn mark_activity(&mut self) {
        let now = now_unix();
        self.last_activity_unix = now;
        self.last_activity_at = rfc3339(now);
    }
}

/// A workspace as reported: the record plus what its VM is doing.
#[derive(Debug, Clone, Serialize)]
pub struct Workspace {
    #[serde(flatten)]
    pub record: WorkspaceRecord,
    pub state: WorkspaceState,
    /// Who suspended it, when it is suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_by: Option<SuspendedBy>,
    /// Why it is stopped, when it did not stop on request.
    pub last_error: Option<String>,
    /// The running VM's network (ports as bound, refusal counts and the
    /// last refusals); `status` fills it, null when stopped or listed.
    pub network_status: Option<NetStatus>,
    /// What went wrong on the way that the verb got past (a stop whose
    /// flush of /workspace failed); absent when nothing did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

words! {
    /// Where a command in a workspace's history stands.
    pub enum CommandStatus {
        /// It runs now: recorded when it started, its caller still waits.
        Running = "running",
        /// It ended; `exit_code`, `signal`, `timed_out` and `cancelled`
        /// say how.
        Finished = "finished",
        /// Its caller (CLI, MCP server, program) or its VM died while it
        /// ran: how it ended is not known. `stdout`/`stderr` hold what
        /// arrived before, if the caller lived to record it.
        Interrupted = "interrupted",
        /// It never ran: the guest could not start it (no such program,
        /// say); `stderr` holds the guest's error.
        NotStarted = "not_started",
    }
}

impl Default for CommandStatus {
    /// Records from before statuses were kept were written at the end.
    fn default() -> Self {
        CommandStatus::Finished
    }
}

/// One command run in a workspace, as kept in its history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandRecord {
    pub workspace_id: String,
    pub sequence: u64,
    #[serde(default)]
    pub status: CommandStatus,
    pub command: Vec<String>,
    pub started_at: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub duration_ms: u64,
    #[serde(with = "lossy_bytes")]
    pub stdout: Vec<u8>,
    #[serde(with = "lossy_bytes")]
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// The caller gave up on the command and its process group was
    /// killed. `exit_code` and `signal` say how it ended if the guest
    /// reported it in time (signal 9: killed), else both are null.
    #[serde(default)]
    pub cancelled: bool,
    /// The workspace had been suspended on idle, and the command waited
    /// this long for its VM to resume (not in `duration_ms`); absent
    /// when it ran at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_ms: Option<u64>,
}

impl CommandRecord {
    /// The exit code a shell would report (124 on timeout, 128+N on signal N).
    pub fn shell_exit_code(&self) -> i32 {
        crate::run::shell_exit_code(self.timed_out, self.exit_code, self.signal)
    }
}

mod lossy_bytes {
    pub fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(b))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text: String = serde::Deserialize::deserialize(d)?;
        Ok(text.into_bytes())
    }
}

/// A checkpoint of /workspace (`snapshots/<name>.json`): a sparse copy of
/// its disk that `reset` puts back. Not a VM snapshot
/// (`pyro_vmm::snapshot::Snapshot`), which holds a machine's memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub workspace_id: String,
    pub name: String,
    pub kind: CheckpointKind,
    pub created_at: String,
    /// Bytes of disk the checkpoint holds (allocated, not the image size).
    pub bytes_written: u64,
    pub deletable: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Deleted {
    pub workspace_id: String,
    pub deleted: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileList {
    pub workspace_id: String,
    pub path: String,
    pub recursive: bool,
    pub entries: Vec<FileInfo>,
    pub truncated: bool,
    /// Where it was read: the disk image on the host, or the agent.
    pub served_by: ServedBy,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileRead {
    pub workspace_id: String,
    pub path: String,
    pub size_bytes: u64,
    pub max_bytes: u64,
    #[serde(serialize_with = "lossy_bytes::serialize")]
    pub content: Vec<u8>,
    pub truncated: bool,
    /// Where it was read: the disk image on the host, or the agent.
    pub served_by: ServedBy,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileWrite {
    pub workspace_id: String,
    pub path: String,
    pub bytes_written: u64,
    pub mode: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct PatchApply {
    pub workspace_id: String,
    pub changed: bool,
    pub summary: PatchSummary,
    pub entries: Vec<PatchEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Export {
    pub workspace_id: String,
    pub workspace_path: String,
    pub output_path: PathBuf,
    pub artifact_type: rpc::ArtifactType,
    pub entry_count: u64,
    pub bytes_written: u64,
    /// Where it was read: the disk image on the host, or the agent.
    pub served_by: ServedBy,
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncPush {
    pub workspace_id: String,
    pub source: PathBuf,
    #[serde(flatten)]
    pub upload: UploadResult,
}

#[derive(Debug, Clone, Serialize)]
pub struct Reset {
    pub workspace_id: String,
    /// The checkpoint restored (the JSON keeps the CLI's word).
    pub snapshot: String,
    pub bytes_restored: u64,
    pub workspace: Workspace,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Human output prints these with `Display`, JSON with serde: the
    /// same word either way.
    fn same_word<T: Serialize + std::fmt::Display + serde::de::DeserializeOwned + PartialEq>(
        all: &[T],
    ) {
        for v in all {
            assert_eq!(serde_json::to_string(v).unwrap(), format!("\"{v}\""));
            let back: T = serde_json::from_str(&format!("\"{v}\"")).unwrap();
            assert!(back == *v, "{v}");
        }
    }

    #[test]
    fn states_print_as_they_serialize() {
        use WorkspaceState::*;
        same_word(&[Running, Stopped, Suspended]);
        same_word(&[
            StartKind::Warm,
            StartKind::Cold,
            StartKind::Resumed,
            StartKind::Forked,
        ]);
        same_word(&[CheckpointKind::Baseline, CheckpointKind::Named]);
    }

    #[test]
    fn records_written_before_the_enums_still_read() {
        let old = r#"{"workspace_id":"x","name":"baseline","kind":"baseline",
            "created_at":"2026-11-24T22:47:23Z","bytes_written":1,"deletable":false}"#;
        let c: Checkpoint = serde_json::from_str(old).unwrap();
        assert_eq!(c.kind, CheckpointKind::Baseline);
    }
}
