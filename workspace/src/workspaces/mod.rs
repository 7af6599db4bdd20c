//! Persistent workspaces: a VM in its own process with a writable
//! /workspace disk, state on disk under `<data>/workspaces/<id>/`, and
//! the verbs of `pyro workspace` (README.md, docs/workspaces.md). Every verb is a
//! method on [`Pyro`](crate::Pyro) returning a typed result that
//! serializes to the JSON the CLI prints and the MCP server returns.
//! Design notes: `docs/workspaces.md`.
//!
//! By subject: `records` (what is stored and returned), `handle` (finding
//! a workspace, its lock and agent), `lifecycle` (create to delete),
//! `start` (starting its VM), `exec` (commands and their history),
//! `files` (files, sync, patch, export, diff), `fork` (live forks), `host_read` (a running
//! workspace's reads served from its frozen disk image), `disk_tools` (a
//! stopped workspace's disk read on the host, and the image reader), `checkpoints` (checkpoints
//! and reset), `network` (published ports, refusals), `shells` (PTY
//! sessions the guest keeps), `services` (supervised commands),
//! `secrets` (the store, installing, `--secret-env`, redaction); `store`,
//! `disk` and `diff` below them.

mod archive;
mod checkpoints;
mod diff;
mod disk;
mod disk_tools;
pub(crate) use disk_tools::read_everything as read_untrusted_image;
mod exec;
mod files;
mod fork;
pub use fork::{ForkOptions, Forked, MAX_FORK_COUNT};
mod handle;
mod host_read;
mod image_reader;
pub use image_reader::{
    serve as serve_image_reader, IMAGE_READER_MODE, TEST_ESCAPE_ENV as IMAGE_READER_ESCAPE_ENV,
};
mod lifecycle;
pub use lifecycle::abandon_creates;
mod network;
mod records;
mod secrets;
mod services;
mod shells;
mod start;
mod store;

pub use diff::{DiffEntry, DiffResult, DiffStatus, DiffSummary};
pub(crate) use disk::make_empty as make_empty_workspace_disk;
pub(crate) use disk::make_system as make_system_disk;
pub use disk_tools::DiskExport;
pub use exec::ExecOptions;
pub use files::{DEFAULT_FILE_READ_BYTES, MAX_FILE_READ_BYTES, MAX_FILE_WRITE_BYTES};
pub use host_read::{ServedBy, HOST_READS_ENV};
pub use network::{Port, PortList};
pub use records::{
    Checkpoint, CheckpointKind, CommandRecord, CommandStatus, CreateOptions, Deleted, Export,
    FileList, FileRead, FileWrite, PatchApply, Reset, SecretInfo, SecretSource, StartKind,
    SuspendedBy, SyncPush, UpdateOptions, Workspace, WorkspaceRecord, WorkspaceState,
};
pub use secrets::{parse_secret_env, secret_env_pair, secret_from_file};
pub use services::*;
pub use shells::*;
pub(crate) use store::{now_unix, read_json, write_json};

/// Size of a new /workspace disk (sparse: only what is used takes space).
pub const DEFAULT_DISK_MIB: u64 = pyro_vmm::limits::DISK_MIB.default;
/// Size of a new system disk (sparse, like the workspace disk).
pub const DEFAULT_SYSTEM_DISK_MIB: u64 = 4096;
/// A new workspace's idle time before its VM is suspended (`--idle-suspend-seconds`).
pub const DEFAULT_IDLE_SUSPEND_SECONDS: u64 = 900;

/// The checkpoint taken at create (reserved, never deleted).
const BASELINE: &str = "baseline";
