//! Persistent workspaces: a VM in its own process with a writable
//! /workspace disk, state on disk under `<data>/workspaces/<id>/`, and
//! the verbs of `pyro workspace` (SPEC.md, Workspaces). Every verb is a
//! method on [`Pyro`] returning a typed result that serializes to the JSON
//! the CLI prints and the MCP server returns. Design notes:
//! `docs/workspaces.md`.

mod diff;
mod disk;
mod store;

pub use diff::{DiffEntry, DiffResult, DiffSummary};

use crate::detached::{DetachedVm, VmState};
use crate::guest::{GuestClient, GuestError};
use crate::transfer::unpack_untrusted;
use crate::{Cancel, Error, Progress, Pyro};
use pyro_proto::rpc::{
    self, DownloadResult, ExecRequest, ExecResult, FileInfo, PatchEntry, PatchSummary, Stream,
    UploadResult,
};
use pyro_vmm::control::VmmSpec;
use pyro_vmm::snapshot::STATE_FILE;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
pub(crate) use store::now_unix;
use store::{check_labels, check_name, read_json, rfc3339, write_json, WsDir};

/// Largest file `workspace_file_write` takes (bigger trees: `sync push`).
pub const MAX_FILE_WRITE_BYTES: usize = 1 << 20;
/// Default and largest `max_bytes` of `workspace_file_read`.
pub const DEFAULT_FILE_READ_BYTES: u64 = 64 << 10;
pub const MAX_FILE_READ_BYTES: u64 = 1 << 20;
/// Output kept per stream in a command's history record.
const HISTORY_OUTPUT_BYTES: usize = 1 << 20;
/// Size of a new /workspace disk (sparse: only what is used takes space).
pub const DEFAULT_DISK_MIB: u64 = pyro_vmm::limits::DISK_MIB.default;
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// Where a workspace VM's state comes from when it starts.
#[derive(Clone, Copy)]
enum StartFrom<'a> {
    /// A cold boot, the disk mounted by guest-init at start-up.
    Boot,
    /// The environment's warm workspace snapshot; the disk is attached and
    /// mounted after the restore.
    Warm(&'a Path),
    /// The workspace's own suspended VM (`stop --keep-memory`): the same
    /// machine, its processes and page cache included.
    Resume(&'a Path),
}

#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub environment: String,
    pub name: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// A host directory, or a `.tar` / `.tar.gz` / `.tgz` file.
    pub seed_path: Option<PathBuf>,
    pub vcpus: u8,
    pub mem_mib: u32,
    pub ttl_seconds: Option<u64>,
    pub disk_mib: u64,
    /// Boot the VM instead of restoring the environment's warm snapshot.
    pub cold: bool,
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
            disk_mib: DEFAULT_DISK_MIB,
            cold: false,
        }
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
    pub created_at: String,
    pub created_unix: u64,
    pub last_activity_at: String,
    pub last_activity_unix: u64,
    pub ttl_seconds: Option<u64>,
    pub expires_unix: Option<u64>,
    pub command_count: u64,
    pub seed_path: Option<PathBuf>,
    pub seed_entry_count: u64,
    /// How the VM last started: `warm` (restored from the environment's
    /// agent-ready snapshot), `cold` (booted) or `resumed` (its own
    /// memory, kept by `stop --keep-memory`).
    #[serde(default)]
    pub last_start: Option<String>,
    /// VMM start to agent ready (disk mounted), for that start.
    #[serde(default)]
    pub last_start_ms: Option<u64>,
}

impl WorkspaceRecord {
    fn mark_activity(&mut self) {
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
    /// `running`, `stopped`, or `suspended` (stopped with its memory
    /// kept; `start` resumes it).
    pub state: String,
    /// Why it is stopped, when it did not stop on request.
    pub last_error: Option<String>,
}

/// One command run in a workspace, as kept in its history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandRecord {
    pub workspace_id: String,
    pub sequence: u64,
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

#[derive(Debug, Clone, Default)]
pub struct UpdateOptions {
    pub name: Option<String>,
    pub clear_name: bool,
    pub set_labels: BTreeMap<String, String>,
    pub clear_labels: Vec<String>,
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
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncPush {
    pub workspace_id: String,
    pub source: PathBuf,
    #[serde(flatten)]
    pub upload: UploadResult,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub workspace_id: String,
    pub name: String,
    /// `baseline` (taken at create, immutable) or `named`.
    pub kind: String,
    pub created_at: String,
    /// Bytes of disk the snapshot holds (allocated, not the image size).
    pub bytes_written: u64,
    pub deletable: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Reset {
    pub workspace_id: String,
    pub snapshot: String,
    pub bytes_restored: u64,
    pub workspace: Workspace,
}

impl Pyro {
    fn workspaces_root(&self) -> PathBuf {
        self.paths().data.join("workspaces")
    }

    /// The directory of workspace `id` (or of the one named `id`).
    fn ws_dir(&self, id: &str) -> Result<WsDir, Error> {
        if !id.is_empty()
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            let dir = self.workspaces_root().join(id);
            if dir.join("workspace.json").is_file() {
                return Ok(WsDir(dir));
            }
            // A name: unique among live workspaces.
            let matches: Vec<_> = self
                .records()
                .into_iter()
                .filter(|(_, r)| r.name.as_deref() == Some(id))
                .collect();
            if matches.len() == 1 {
                return Ok(matches.into_iter().next().unwrap().0);
            }
        }
        Err(Error::NotFound(format!(
            "no workspace {id:?}: see `pyro workspace list` for ids"
        )))
    }

    fn records(&self) -> Vec<(WsDir, WorkspaceRecord)> {
        let Ok(entries) = std::fs::read_dir(self.workspaces_root()) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let dir = WsDir(e.path());
                let record = read_json(&dir.record()).ok()?;
                Some((dir, record))
            })
            .collect()
    }

    fn view(&self, dir: &WsDir, record: WorkspaceRecord) -> Workspace {
        let (state, last_error) = match DetachedVm::open(dir.vm()).state() {
            VmState::Running { .. } => ("running", None),
            VmState::Stopped { .. } if dir.suspended().join(STATE_FILE).is_file() => {
                ("suspended", None)
            }
            VmState::Stopped { reason, message } => (
                "stopped",
                (reason != "stopped" && dir.vm().exists()).then(|| format!("{reason}: {message}")),
            ),
        };
        Workspace {
            record,
            state: state.into(),
            last_error,
        }
    }

    /// Stops and removes workspaces whose time to live has passed (the
    /// VMM stops its own VM at the deadline; this removes what is left,
    /// including stopped workspaces nobody started again).
    fn sweep_expired(&self) {
        let now = now_unix();
        for (dir, record) in self.records() {
            if record.expires_unix.is_some_and(|t| t <= now) {
                if let Ok(_lock) = dir.lock() {
                    let _ = DetachedVm::open(dir.vm()).stop();
                    let _ = std::fs::remove_dir_all(&dir.0);
                }
            }
        }
    }

    /// Creates a workspace: its disk from the seed (host side, at native
    /// speed), the immutable `baseline` snapshot, and a running VM whose
    /// agent answers. A failure removes everything it made.
    pub fn workspace_create(
        &self,
        opts: &CreateOptions,
        progress: &dyn Progress,
    ) -> Result<Workspace, Error> {
        if let Some(name) = &opts.name {
            check_name("name", name)?;
            if self
                .records()
                .iter()
                .any(|(_, r)| r.name.as_deref() == Some(name))
            {
                return Err(Error::Conflict(format!(
                    "a workspace named {name:?} exists already; names are unique"
                )));
            }
        }
        check_labels(&opts.labels)?;
        if opts.ttl_seconds == Some(0) {
            return Err(Error::InvalidArgument(
                "ttl_seconds must be positive".into(),
            ));
        }
        if !pyro_vmm::limits::DISK_MIB.contains(opts.disk_mib) {
            return Err(Error::InvalidArgument(
                "disk_mib must be between 64 and 1048576".into(),
            ));
        }
        if let Some(seed) = &opts.seed_path {
            if !seed.exists() {
                return Err(Error::InvalidArgument(format!(
                    "seed_path {}: no such file or directory",
                    seed.display()
                )));
            }
        }
        // Kernel and image first: a missing image is built before any
        // workspace state exists.
        self.environment_vm(&opts.environment, opts.mem_mib, opts.vcpus, progress)?;
        std::fs::create_dir_all(self.workspaces_root())
            .map_err(|e| store::io_err(&self.workspaces_root(), e))?;
        let (id, dir) = loop {
            let id = store::new_id()?;
            let dir = self.workspaces_root().join(&id);
            match std::fs::create_dir(&dir) {
                Ok(()) => break (id, WsDir(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(store::io_err(&dir, e)),
            }
        };
        let made = self.create_in(&id, &dir, opts, progress);
        if made.is_err() {
            let _ = DetachedVm::open(dir.vm()).stop();
            let _ = std::fs::remove_dir_all(&dir.0);
        }
        made
    }

    fn create_in(
        &self,
        id: &str,
        dir: &WsDir,
        opts: &CreateOptions,
        progress: &dyn Progress,
    ) -> Result<Workspace, Error> {
        let _lock = dir.lock()?;
        // The seed as a plain directory tree: mkfs reads it, and a tar of
        // it is the baseline that `diff` compares against.
        let staged = dir.0.join("seed");
        let seed_dir = match &opts.seed_path {
            Some(p) if p.is_dir() => p.clone(),
            Some(p) => {
                progress.phase("seed", &format!("unpacking {}", p.display()));
                std::fs::create_dir(&staged).map_err(|e| store::io_err(&staged, e))?;
                let file = std::fs::File::open(p).map_err(|e| store::io_err(p, e))?;
                let name = p.to_string_lossy();
                let unpacked = if name.ends_with(".gz") || name.ends_with(".tgz") {
                    unpack_untrusted(flate2::read::GzDecoder::new(file), &staged)
                } else {
                    unpack_untrusted(file, &staged)
                };
                unpacked.map_err(|e| {
                    Error::InvalidArgument(format!("seed_path {}: {e}", p.display()))
                })?;
                staged.clone()
            }
            None => {
                std::fs::create_dir(&staged).map_err(|e| store::io_err(&staged, e))?;
                staged.clone()
            }
        };
        let baseline_tar = std::fs::File::create(dir.baseline_tar())
            .map_err(|e| store::io_err(&dir.baseline_tar(), e))?;
        let packed = crate::transfer::pack_dir(&seed_dir, std::io::BufWriter::new(baseline_tar))
            .map_err(|e| Error::InvalidArgument(format!("seed_path: {e}")))?;
        progress.phase(
            "disk",
            &format!("{} MiB ext4 from {} entries", opts.disk_mib, packed.entries),
        );
        disk::make(&dir.disk(), opts.disk_mib, &seed_dir)?;
        let _ = std::fs::remove_dir_all(&staged);
        std::fs::create_dir_all(dir.snapshots()).map_err(|e| store::io_err(&dir.snapshots(), e))?;
        std::fs::create_dir_all(dir.history()).map_err(|e| store::io_err(&dir.history(), e))?;
        let bytes = disk::sparse_copy(&dir.disk(), &dir.snapshots().join("baseline.ext4"))?;

        let now = now_unix();
        let record = WorkspaceRecord {
            workspace_id: id.to_string(),
            name: opts.name.clone(),
            labels: opts.labels.clone(),
            environment: opts.environment.clone(),
            vcpus: opts.vcpus,
            mem_mib: opts.mem_mib,
            disk_mib: opts.disk_mib,
            created_at: rfc3339(now),
            created_unix: now,
            last_activity_at: rfc3339(now),
            last_activity_unix: now,
            ttl_seconds: opts.ttl_seconds,
            expires_unix: opts.ttl_seconds.map(|t| now + t),
            command_count: 0,
            seed_path: opts.seed_path.clone(),
            seed_entry_count: packed.entries,
            last_start: None,
            last_start_ms: None,
        };
        write_json(
            &dir.snapshots().join("baseline.json"),
            &Snapshot {
                workspace_id: id.into(),
                name: "baseline".into(),
                kind: "baseline".into(),
                created_at: rfc3339(now),
                bytes_written: bytes,
                deletable: false,
            },
        )?;
        write_json(&dir.record(), &record)?;
        progress.phase("boot", &format!("starting workspace {id}"));
        let mut record = record;
        self.boot(dir, &mut record, opts.cold, progress)?;
        Ok(self.view(dir, record))
    }

    /// Starts the workspace's VM and waits for its agent: resumed from
    /// its kept memory if `stop --keep-memory` left one, else restored
    /// from the environment's warm workspace snapshot unless `cold`, else
    /// booted. A failed resume or restore falls through to the next (the
    /// user still gets the workspace). How it started goes into the
    /// record, which is written.
    fn boot(
        &self,
        dir: &WsDir,
        record: &mut WorkspaceRecord,
        cold: bool,
        progress: &dyn Progress,
    ) -> Result<GuestClient, Error> {
        let vm_dir = dir.vm();
        std::fs::create_dir_all(&vm_dir).map_err(|e| store::io_err(&vm_dir, e))?;
        let started = Instant::now();
        let (base, _) =
            self.environment_vm(&record.environment, record.mem_mib, record.vcpus, progress)?;
        // A start that failed but left no VM running is worth falling back
        // from; one whose VMM still runs is an error (never two VMs on one
        // disk).
        let fall_back = |tried: Result<GuestClient, Error>, what: &str, then: &str| match tried {
            Ok(client) => Ok(Some(client)),
            Err(e) if matches!(DetachedVm::open(&vm_dir).state(), VmState::Running { .. }) => {
                Err(e)
            }
            Err(e) => {
                progress.phase("boot", &format!("{what} ({e}); {then}"));
                Ok(None)
            }
        };
        let mut start = None;
        let suspended = dir.suspended();
        if suspended.join(STATE_FILE).is_file() {
            let resumed = self.start_vm(dir, record, &base, StartFrom::Resume(&suspended));
            // Used up either way: once the guest runs on, the kept memory
            // is stale; if it could not be restored, it never will be
            // (the disk was synced when it was taken).
            let _ = std::fs::remove_dir_all(&suspended);
            start = fall_back(
                resumed,
                "could not resume the kept memory",
                "starting afresh",
            )?
            .map(|c| (c, "resumed"));
        }
        if start.is_none() && !cold {
            let warm = self
                .workspace_snapshot(&record.environment, &base, BOOT_TIMEOUT, progress)
                .and_then(|snap| self.start_vm(dir, record, &base, StartFrom::Warm(&snap)));
            start = fall_back(warm, "no warm start", "booting")?.map(|c| (c, "warm"));
        }
        let (client, kind) = match start {
            Some(start) => start,
            None => (self.start_vm(dir, record, &base, StartFrom::Boot)?, "cold"),
        };
        record.last_start = Some(kind.into());
        record.last_start_ms = Some(started.elapsed().as_millis() as u64);
        write_json(&dir.record(), record)?;
        Ok(client)
    }

    /// Runs the workspace's VMM process (VM `base` plus its disk) from
    /// `from` and waits for the agent (which, after a warm restore,
    /// mounts the disk). A failure leaves no VM running; a warm snapshot
    /// the VMM refused is removed, so the next start takes it again.
    fn start_vm(
        &self,
        dir: &WsDir,
        record: &WorkspaceRecord,
        base: &pyro_vmm::VmConfig,
        from: StartFrom,
    ) -> Result<GuestClient, Error> {
        let vm_dir = dir.vm();
        let snapshot = match from {
            StartFrom::Boot => None,
            StartFrom::Warm(p) | StartFrom::Resume(p) => Some(p),
        };
        let config = Pyro::workspace_vm_config(base, &dir.disk(), snapshot.is_none(), &vm_dir);
        let vm = DetachedVm::spawn(&VmmSpec {
            config,
            dir: vm_dir.clone(),
            deadline_unix: record.expires_unix,
            boot_timeout_ms: BOOT_TIMEOUT.as_millis() as u64,
            remove_on_expiry: Some(dir.0.clone()),
            restore_from: snapshot.map(Path::to_path_buf),
        })?;
        let ready = vm.wait_ready(BOOT_TIMEOUT).and_then(|mut client| {
            match from {
                StartFrom::Boot => {}
                StartFrom::Warm(_) => {
                    client.restored(Some(crate::warm::WORKSPACE_DEVICE))?;
                }
                StartFrom::Resume(_) => client.resumed()?,
            }
            Ok(client)
        });
        if ready.is_err() {
            vm.stop()?;
            let refused = pyro_vmm::control::exit_record(&vm_dir)
                .is_some_and(|r| r.reason == pyro_vmm::control::REASON_BAD_SNAPSHOT);
            if let (true, StartFrom::Warm(snap)) = (refused, from) {
                let _ = std::fs::remove_dir_all(snap);
            }
        }
        ready
    }

    /// A connection to a running workspace's agent.
    fn agent(&self, dir: &WsDir, id: &str) -> Result<GuestClient, Error> {
        let vm = DetachedVm::open(dir.vm());
        GuestClient::connect(&vm.vsock()).map_err(|_| match vm.state() {
            VmState::Running { .. } => Error::Guest(format!(
                "workspace {id}: its VM runs but the agent does not answer"
            )),
            VmState::Stopped { .. } => Error::Conflict(format!(
                "workspace {id} is stopped: start it with `pyro workspace start {id}`"
            )),
        })
    }

    /// Records activity now (under the lock).
    fn touch(
        &self,
        dir: &WsDir,
        f: impl FnOnce(&mut WorkspaceRecord),
    ) -> Result<WorkspaceRecord, Error> {
        let _lock = dir.lock()?;
        let mut record: WorkspaceRecord = read_json(&dir.record())?;
        record.mark_activity();
        f(&mut record);
        write_json(&dir.record(), &record)?;
        Ok(record)
    }

    /// Every workspace, newest activity first. A workspace whose VM died
    /// shows as stopped, never as running.
    pub fn workspace_list(&self) -> Vec<Workspace> {
        self.sweep_expired();
        let mut all: Vec<_> = self
            .records()
            .into_iter()
            .map(|(dir, record)| self.view(&dir, record))
            .collect();
        all.sort_by(|a, b| {
            b.record
                .last_activity_unix
                .cmp(&a.record.last_activity_unix)
                .then(b.record.created_unix.cmp(&a.record.created_unix))
        });
        all
    }

    pub fn workspace_status(&self, id: &str) -> Result<Workspace, Error> {
        self.sweep_expired();
        let dir = self.ws_dir(id)?;
        let record = read_json(&dir.record())?;
        Ok(self.view(&dir, record))
    }

    pub fn workspace_update(&self, id: &str, opts: &UpdateOptions) -> Result<Workspace, Error> {
        let dir = self.ws_dir(id)?;
        if let Some(name) = &opts.name {
            check_name("name", name)?;
            if self
                .records()
                .iter()
                .any(|(d, r)| r.name.as_deref() == Some(name) && d.0 != dir.0)
            {
                return Err(Error::Conflict(format!(
                    "a workspace named {name:?} exists already"
                )));
            }
        }
        check_labels(&opts.set_labels)?;
        for key in &opts.clear_labels {
            check_name("label key", key)?;
        }
        let record = self.touch(&dir, |r| {
            if opts.clear_name {
                r.name = None;
            }
            if let Some(name) = &opts.name {
                r.name = Some(name.clone());
            }
            for key in &opts.clear_labels {
                r.labels.remove(key);
            }
            r.labels.extend(opts.set_labels.clone());
        })?;
        Ok(self.view(&dir, record))
    }

    /// The workspace's command history, oldest first.
    pub fn workspace_logs(&self, id: &str) -> Result<Vec<CommandRecord>, Error> {
        let dir = self.ws_dir(id)?;
        let mut records: Vec<CommandRecord> = std::fs::read_dir(dir.history())
            .map_err(|e| store::io_err(&dir.history(), e))?
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| read_json(&e.path()).ok())
            .collect();
        records.sort_by_key(|r| r.sequence);
        Ok(records)
    }

    /// Flushes /workspace and stops the VM; the disk keeps everything.
    pub fn workspace_stop(&self, id: &str) -> Result<Workspace, Error> {
        let dir = self.ws_dir(id)?;
        let _lock = dir.lock()?;
        if let Ok(mut agent) = self.agent(&dir, id) {
            let _ = agent.sync();
        }
        DetachedVm::open(dir.vm()).stop()?;
        let record = read_json(&dir.record())?;
        Ok(self.view(&dir, record))
    }

    /// Stops a running workspace keeping its memory (`stop
    /// --keep-memory`): /workspace is synced to its disk, the VM paused,
    /// snapshotted into the workspace's directory (about the guest
    /// memory in use) and stopped. The next start resumes that machine,
    /// processes included, instead of starting a fresh one. A failure
    /// leaves the workspace running as it was.
    pub fn workspace_suspend(&self, id: &str) -> Result<Workspace, Error> {
        let dir = self.ws_dir(id)?;
        let _lock = dir.lock()?;
        let mut agent = self.agent(&dir, id)?;
        agent.sync()?;
        drop(agent);
        let vm = DetachedVm::open(dir.vm());
        let (work, kept) = (dir.0.join("suspended.tmp"), dir.suspended());
        let _ = std::fs::remove_dir_all(&work);
        let _ = std::fs::remove_dir_all(&kept);
        // Paused before the snapshot and never run again: a guest that
        // went on writing its disk after the snapshot would no longer
        // match the memory we resume.
        vm.pause()?;
        let taken = vm
            .snapshot(&work)
            .and_then(|()| std::fs::rename(&work, &kept).map_err(|e| store::io_err(&kept, e)))
            .and_then(|()| vm.stop());
        if let Err(e) = taken {
            let _ = std::fs::remove_dir_all(&work);
            let _ = std::fs::remove_dir_all(&kept);
            let _ = vm.resume();
            return Err(e);
        }
        let record = read_json(&dir.record())?;
        Ok(self.view(&dir, record))
    }

    /// Boots a stopped workspace again, /workspace as it was, or resumes
    /// a suspended one; a no-op if it runs.
    pub fn workspace_start(&self, id: &str, progress: &dyn Progress) -> Result<Workspace, Error> {
        let dir = self.ws_dir(id)?;
        let _lock = dir.lock()?;
        let mut record: WorkspaceRecord = read_json(&dir.record())?;
        if !matches!(DetachedVm::open(dir.vm()).state(), VmState::Running { .. }) {
            self.boot(&dir, &mut record, false, progress)?;
        }
        Ok(self.view(&dir, record))
    }

    pub fn workspace_delete(&self, id: &str) -> Result<Deleted, Error> {
        let dir = self.ws_dir(id)?;
        let _lock = dir.lock()?;
        DetachedVm::open(dir.vm()).stop()?;
        let workspace_id = read_json::<WorkspaceRecord>(&dir.record())?.workspace_id;
        std::fs::remove_dir_all(&dir.0).map_err(|e| store::io_err(&dir.0, e))?;
        Ok(Deleted {
            workspace_id,
            deleted: true,
        })
    }

    /// Runs a command in /workspace, streaming output to `on_output`, and
    /// records it in the history. Several may run at once.
    pub fn workspace_exec(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
        on_output: impl FnMut(Stream, &[u8]),
    ) -> Result<CommandRecord, Error> {
        self.workspace_exec_cancellable(id, command, timeout, &Cancel::never(), on_output)
    }

    /// [`Pyro::workspace_exec`] that `cancel` can stop: the command's
    /// process group is killed, the history records it as cancelled, and
    /// the call fails with [`Error::Cancelled`].
    pub fn workspace_exec_cancellable(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
        cancel: &Cancel,
        mut on_output: impl FnMut(Stream, &[u8]),
    ) -> Result<CommandRecord, Error> {
        if command.is_empty() {
            return Err(Error::InvalidArgument(
                "command: give the command after `--`".into(),
            ));
        }
        let dir = self.ws_dir(id)?;
        let mut agent = self.agent(&dir, id)?;
        let record = self.touch(&dir, |r| r.command_count += 1)?;
        let sequence = record.command_count;
        let started = now_unix();
        let clock = Instant::now();
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let outcome = agent.exec_cancellable(
            ExecRequest {
                argv: command.to_vec(),
                cwd: Some(rpc::WORKSPACE.into()),
                timeout_ms: Some(timeout.as_millis() as u64),
                ..Default::default()
            },
            None,
            cancel,
            |stream, bytes| {
                let keep = match stream {
                    Stream::Stdout => &mut stdout,
                    Stream::Stderr => &mut stderr,
                };
                let room = HISTORY_OUTPUT_BYTES.saturating_sub(keep.len());
                keep.extend_from_slice(&bytes[..bytes.len().min(room)]);
                on_output(stream, bytes);
            },
        );
        let (result, cancelled) = match outcome {
            Ok(result) => (result, false),
            Err(GuestError::Cancelled(result)) => {
                let result = result.unwrap_or_else(|| ExecResult {
                    duration_ms: clock.elapsed().as_millis() as u64,
                    ..Default::default()
                });
                (result, true)
            }
            Err(e) => return Err(e.into()),
        };
        let entry = CommandRecord {
            workspace_id: record.workspace_id.clone(),
            sequence,
            command: command.to_vec(),
            started_at: rfc3339(started),
            exit_code: result.exit_code,
            signal: result.signal,
            timed_out: result.timed_out,
            duration_ms: result.duration_ms,
            stdout_truncated: result.stdout_bytes > stdout.len() as u64,
            stderr_truncated: result.stderr_bytes > stderr.len() as u64,
            stdout,
            stderr,
            cancelled,
        };
        write_json(&dir.history().join(format!("{sequence:08}.json")), &entry)?;
        if cancelled {
            return Err(Error::Cancelled(format!(
                "workspace {id}: command #{sequence} was cancelled and its process group \
                 killed (recorded in the history)"
            )));
        }
        Ok(entry)
    }

    /// Copies a host directory or tar (`.tar`, `.tar.gz`, `.tgz`) into
    /// the workspace at `dest`, all or nothing.
    pub fn workspace_sync_push(
        &self,
        id: &str,
        source: &Path,
        dest: &str,
    ) -> Result<SyncPush, Error> {
        let dir = self.ws_dir(id)?;
        let mut agent = self.agent(&dir, id)?;
        let upload = if source.is_dir() {
            agent.upload_dir(source, dest)?
        } else if source.is_file() {
            let file = std::fs::File::open(source).map_err(|e| store::io_err(source, e))?;
            let name = source.to_string_lossy();
            if name.ends_with(".gz") || name.ends_with(".tgz") {
                agent.upload(dest, &mut flate2::read::GzDecoder::new(file))?
            } else {
                agent.upload(dest, &mut std::io::BufReader::new(file))?
            }
        } else {
            return Err(Error::InvalidArgument(format!(
                "source {}: no such file or directory",
                source.display()
            )));
        };
        let record = self.touch(&dir, |_| {})?;
        Ok(SyncPush {
            workspace_id: record.workspace_id,
            source: source.to_path_buf(),
            upload,
        })
    }

    pub fn workspace_file_list(
        &self,
        id: &str,
        path: &str,
        recursive: bool,
    ) -> Result<FileList, Error> {
        let dir = self.ws_dir(id)?;
        let list = self.agent(&dir, id)?.list(path, recursive)?;
        Ok(FileList {
            workspace_id: self.id_of(&dir)?,
            path: rpc::workspace_absolute(&rpc::workspace_relative(path).unwrap_or_default()),
            recursive,
            entries: list.entries,
            truncated: list.truncated,
        })
    }

    pub fn workspace_file_read(
        &self,
        id: &str,
        path: &str,
        max_bytes: u64,
    ) -> Result<FileRead, Error> {
        if !(1..=MAX_FILE_READ_BYTES).contains(&max_bytes) {
            return Err(Error::InvalidArgument(format!(
                "max_bytes must be between 1 and {MAX_FILE_READ_BYTES}"
            )));
        }
        let dir = self.ws_dir(id)?;
        let (content, r) = self.agent(&dir, id)?.read_to_vec(path, Some(max_bytes))?;
        Ok(FileRead {
            workspace_id: self.id_of(&dir)?,
            path: rpc::workspace_absolute(&rpc::workspace_relative(path).unwrap_or_default()),
            size_bytes: r.size_bytes,
            max_bytes,
            content,
            truncated: r.truncated,
        })
    }

    /// Writes a file atomically (parents created; mode kept or 0644).
    pub fn workspace_file_write(
        &self,
        id: &str,
        path: &str,
        content: &[u8],
    ) -> Result<FileWrite, Error> {
        if content.len() > MAX_FILE_WRITE_BYTES {
            return Err(Error::InvalidArgument(format!(
                "content is {} bytes; a file write takes at most {} (use `sync push` for more)",
                content.len(),
                MAX_FILE_WRITE_BYTES
            )));
        }
        rpc::workspace_relative(path).map_err(|e| Error::Agent {
            kind: "invalid_path".into(),
            message: e.to_string(),
        })?;
        let dir = self.ws_dir(id)?;
        let w = self
            .agent(&dir, id)?
            .write(path, None, true, &mut &content[..])?;
        let record = self.touch(&dir, |_| {})?;
        Ok(FileWrite {
            workspace_id: record.workspace_id,
            path: w.path,
            bytes_written: w.bytes_written,
            mode: w.mode,
        })
    }

    pub fn workspace_patch_apply(&self, id: &str, patch: &str) -> Result<PatchApply, Error> {
        let dir = self.ws_dir(id)?;
        let result = self.agent(&dir, id)?.patch_apply(patch)?;
        let record = self.touch(&dir, |_| {})?;
        Ok(PatchApply {
            workspace_id: record.workspace_id,
            changed: result.changed,
            summary: result.summary,
            entries: result.entries,
        })
    }

    /// Copies a workspace path to the host path `output` (which must not
    /// exist).
    pub fn workspace_export(&self, id: &str, path: &str, output: &Path) -> Result<Export, Error> {
        let dir = self.ws_dir(id)?;
        let DownloadResult {
            path: workspace_path,
            artifact_type,
            entry_count,
            bytes_read,
        } = self.agent(&dir, id)?.export(path, output)?;
        Ok(Export {
            workspace_id: self.id_of(&dir)?,
            workspace_path,
            output_path: output.to_path_buf(),
            artifact_type,
            entry_count,
            bytes_written: bytes_read,
        })
    }

    pub fn workspace_diff(&self, id: &str) -> Result<DiffResult, Error> {
        let dir = self.ws_dir(id)?;
        let mut agent = self.agent(&dir, id)?;
        diff::diff(&self.id_of(&dir)?, &dir.baseline_tar(), &mut agent)
    }

    fn id_of(&self, dir: &WsDir) -> Result<String, Error> {
        Ok(read_json::<WorkspaceRecord>(&dir.record())?.workspace_id)
    }

    /// Checkpoints /workspace as it is now (flushed first) under `name`.
    pub fn snapshot_create(&self, id: &str, name: &str) -> Result<Snapshot, Error> {
        check_name("snapshot name", name)?;
        if name == "baseline" {
            return Err(Error::InvalidArgument(
                "snapshot name \"baseline\" is reserved for the create-time snapshot".into(),
            ));
        }
        let dir = self.ws_dir(id)?;
        let _lock = dir.lock()?;
        let image = dir.snapshots().join(format!("{name}.ext4"));
        if image.exists() {
            return Err(Error::Conflict(format!(
                "snapshot {name:?} exists already; delete it first"
            )));
        }
        if let Ok(mut agent) = self.agent(&dir, id) {
            agent.sync()?;
        }
        let bytes = disk::sparse_copy(&dir.disk(), &image)?;
        let snapshot = Snapshot {
            workspace_id: self.id_of(&dir)?,
            name: name.into(),
            kind: "named".into(),
            created_at: rfc3339(now_unix()),
            bytes_written: bytes,
            deletable: true,
        };
        write_json(&dir.snapshots().join(format!("{name}.json")), &snapshot)?;
        Ok(snapshot)
    }

    pub fn snapshot_list(&self, id: &str) -> Result<Vec<Snapshot>, Error> {
        let dir = self.ws_dir(id)?;
        let mut all: Vec<Snapshot> = std::fs::read_dir(dir.snapshots())
            .map_err(|e| store::io_err(&dir.snapshots(), e))?
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| read_json(&e.path()).ok())
            .collect();
        all.sort_by(|a, b| {
            (a.kind != "baseline", &a.created_at, &a.name).cmp(&(
                b.kind != "baseline",
                &b.created_at,
                &b.name,
            ))
        });
        Ok(all)
    }

    pub fn snapshot_delete(&self, id: &str, name: &str) -> Result<Snapshot, Error> {
        check_name("snapshot name", name)?;
        if name == "baseline" {
            return Err(Error::InvalidArgument(
                "the baseline snapshot cannot be deleted".into(),
            ));
        }
        let dir = self.ws_dir(id)?;
        let _lock = dir.lock()?;
        let meta = dir.snapshots().join(format!("{name}.json"));
        let snapshot: Snapshot = read_json(&meta)
            .map_err(|_| Error::NotFound(format!("workspace {id} has no snapshot {name:?}")))?;
        std::fs::remove_file(&meta).map_err(|e| store::io_err(&meta, e))?;
        let _ = std::fs::remove_file(dir.snapshots().join(format!("{name}.ext4")));
        Ok(snapshot)
    }

    /// Restores /workspace exactly to a snapshot (default `baseline`):
    /// stops the VM, puts the snapshot's disk in place, boots again.
    pub fn workspace_reset(
        &self,
        id: &str,
        snapshot: &str,
        progress: &dyn Progress,
    ) -> Result<Reset, Error> {
        check_name("snapshot name", snapshot)?;
        let dir = self.ws_dir(id)?;
        let _lock = dir.lock()?;
        let image = dir.snapshots().join(format!("{snapshot}.ext4"));
        if !image.is_file() {
            return Err(Error::NotFound(format!(
                "workspace {id} has no snapshot {snapshot:?}: see `pyro workspace snapshot list {id}`"
            )));
        }
        DetachedVm::open(dir.vm()).stop()?;
        // Kept memory belongs to the disk being replaced.
        let _ = std::fs::remove_dir_all(dir.suspended());
        let restored = dir.0.join("disk.restore");
        let _ = std::fs::remove_file(&restored);
        let bytes = disk::sparse_copy(&image, &restored)?;
        std::fs::rename(&restored, dir.disk()).map_err(|e| store::io_err(&dir.disk(), e))?;
        let mut record: WorkspaceRecord = read_json(&dir.record())?;
        record.mark_activity();
        write_json(&dir.record(), &record)?;
        progress.phase("reset", &format!("restored {snapshot}; starting"));
        self.boot(&dir, &mut record, false, progress)?;
        Ok(Reset {
            workspace_id: record.workspace_id.clone(),
            snapshot: snapshot.into(),
            bytes_restored: bytes,
            workspace: self.view(&dir, record),
        })
    }
}
