//! Live fork (`workspace fork`): new workspaces that each hold another
//! workspace's state at one instant, its running processes included.
//!
//! A running source is frozen once by its VMM, which writes a VM
//! snapshot and copies both disks in that one freeze
//! (`ControlRequest::Snapshot` with `disks`), so memory (page cache
//! included) and disks agree; then it runs on. A suspended source
//! already has both: its kept memory and its flushed disks. A stopped
//! one has only disks, and its children start afresh from them.
//!
//! Each child is made like a create (its directory reserved with
//! `creating.json`, visible once its first start wrote its record) from
//! sparse copies of the disks, hard links to the checkpoint images
//! (never written in place), a copy of its secrets, and hard links to
//! the snapshot's files in `forked/`. Its first start restores that
//! snapshot (guest memory is the one memory file mapped private: the
//! children share its pages until they write them) and gives the guest a
//! hostname, a reseeded RNG and the clock (`Request::Restored`). Then
//! the links go: the VMMs have the memory mapped, and nothing on disk
//! depends on the source any more.

use super::disk;
use super::handle::view;
use super::lifecycle::{remove_create, track_create, untrack_create};
use super::records::{Checkpoint, Workspace, WorkspaceRecord, WorkspaceState};
use super::secrets::SecretStore;
use super::store::{self, check_labels, now_unix, read_json, rfc3339, write_json, WsDir};
use crate::detached::VmState;
use crate::{Error, Progress, Pyro};
use pyro_vmm::snapshot::STATE_FILE;
use pyro_vmm::DiskCopy;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// At most this many children per fork: each is a VM of the source's
/// size.
pub const MAX_FORK_COUNT: u32 = 16;

/// What `workspace fork` makes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForkOptions {
    /// How many children (1 to [`MAX_FORK_COUNT`]).
    pub count: u32,
    /// The child's name; with more than one child, `NAME-1`, `NAME-2`...
    pub name: Option<String>,
    /// Labels set on every child, over the source's.
    pub labels: BTreeMap<String, String>,
}

impl Default for ForkOptions {
    fn default() -> Self {
        ForkOptions {
            count: 1,
            name: None,
            labels: BTreeMap::new(),
        }
    }
}

/// The result of a fork.
#[derive(Debug, Clone, Serialize)]
pub struct Forked {
    pub source_id: String,
    /// The source as it was forked: `running` (its processes are in
    /// the children), `suspended` (likewise, from its kept memory) or
    /// `stopped` (the children start afresh from its disks). The source
    /// stays as it was.
    pub source_state: WorkspaceState,
    /// How long a running source was frozen for its snapshot and disk
    /// copies, in milliseconds.
    pub source_paused_ms: Option<f64>,
    /// From the call to every child's agent answering.
    pub duration_ms: u64,
    pub children: Vec<Workspace>,
}

/// Where the children's state comes from.
struct Origin {
    disk: PathBuf,
    system_disk: PathBuf,
    /// The VM snapshot of the same instant, if the source had a VM.
    snapshot: Option<PathBuf>,
}

impl Pyro {
    /// Forks workspace `id` into `opts.count` new workspaces, each holding
    /// its state at one instant: memory and processes (if it runs or is
    /// suspended), /workspace and the system disk, checkpoints, secrets,
    /// labels and settings. Published ports are not copied (a host port
    /// serves one VM). The source is paused only for its snapshot and
    /// runs on. All children are made or none: a failure removes every
    /// child made so far and leaves the source as it was.
    pub fn workspace_fork(
        &self,
        id: &str,
        opts: &ForkOptions,
        progress: &dyn Progress,
    ) -> Result<Forked, Error> {
        let started = Instant::now();
        if opts.count == 0 || opts.count > MAX_FORK_COUNT {
            return Err(Error::InvalidArgument(format!(
                "count must be between 1 and {MAX_FORK_COUNT}, not {}",
                opts.count
            )));
        }
        let names = child_names(opts)?;
        check_labels(&opts.labels)?;
        let source = self.workspace_locked(id)?;
        let record = source.record()?;
        // In the source's directory, where its sandboxed VMM may write.
        // One a fork killed midway left (under this lock, no fork runs)
        // goes first.
        let scratch = source.dir.fork_scratch();
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir(&scratch).map_err(|e| store::io_err(&scratch, e))?;
        let forked = self.fork_from(&source.dir, &record, &scratch, &names, opts, progress);
        let _ = std::fs::remove_dir_all(&scratch);
        let (source_state, source_paused_ms, children) = forked?;
        Ok(Forked {
            source_id: record.workspace_id,
            source_state,
            source_paused_ms,
            duration_ms: started.elapsed().as_millis() as u64,
            children,
        })
    }

    /// The fork itself, under the source's lock, with `scratch` for the
    /// running source's snapshot and disk copies.
    fn fork_from(
        &self,
        source: &WsDir,
        record: &WorkspaceRecord,
        scratch: &Path,
        names: &[Option<String>],
        opts: &ForkOptions,
        progress: &dyn Progress,
    ) -> Result<(WorkspaceState, Option<f64>, Vec<Workspace>), Error> {
        let vm = crate::detached::DetachedVm::open(source.vm());
        let kept = source.suspended();
        let (state, paused, origin) = match vm.state() {
            VmState::Running { .. } => {
                progress.phase("fork", "snapshot of the running source");
                let origin = Origin {
                    disk: scratch.join("disk.ext4"),
                    system_disk: scratch.join("system.ext4"),
                    snapshot: Some(scratch.join("vm")),
                };
                let paused = vm.snapshot_with_disks(
                    &scratch.join("vm"),
                    &[
                        DiskCopy {
                            source: source.disk(),
                            dest: origin.disk.clone(),
                        },
                        DiskCopy {
                            source: source.system_disk(),
                            dest: origin.system_disk.clone(),
                        },
                    ],
                )?;
                (
                    WorkspaceState::Running,
                    Some(paused.as_secs_f64() * 1000.0),
                    origin,
                )
            }
            VmState::Stopped { .. } => {
                let snapshot = kept.join(STATE_FILE).is_file().then_some(kept);
                let state = match snapshot {
                    Some(_) => WorkspaceState::Suspended,
                    None => WorkspaceState::Stopped,
                };
                (
                    state,
                    None,
                    Origin {
                        disk: source.disk(),
                        system_disk: source.system_disk(),
                        snapshot,
                    },
                )
            }
        };
        if let Some(snapshot) = &origin.snapshot {
            check_restorable(snapshot, &record.workspace_id)?;
        }
        // Made one after the other (files only), then started all at
        // once: a start is mostly waiting for the guest, and N guests
        // restore side by side in about the time of one or two.
        let mut made: Vec<WsDir> = Vec::new();
        let result = (|| {
            let mut ready = Vec::new();
            for name in names {
                let (child_id, dir) = self.reserve_workspace_dir(name.as_deref())?;
                track_create(&dir);
                made.push(dir.clone());
                let child = child_record(record, &child_id, name.clone(), opts);
                copy_state(source, &origin, &dir, &child_id)?;
                ready.push((dir, child));
            }
            progress.phase("fork", &format!("starting {} children", ready.len()));
            std::thread::scope(|s| {
                let starts: Vec<_> = ready
                    .into_iter()
                    .map(|(dir, mut child)| {
                        s.spawn(move || {
                            let _lock = dir.lock()?;
                            self.boot(&dir, &mut child, false, None, progress)?;
                            Ok(view(&dir, child))
                        })
                    })
                    .collect();
                starts
                    .into_iter()
                    .map(|t| {
                        t.join()
                            .unwrap_or_else(|_| Err(Error::Io("a child's start panicked".into())))
                    })
                    .collect::<Vec<Result<Workspace, Error>>>()
                    .into_iter()
                    .collect::<Result<Vec<_>, _>>()
            })
        })();
        for dir in &made {
            match &result {
                Ok(_) => {
                    let _ = std::fs::remove_file(dir.creating());
                }
                Err(_) => remove_create(dir),
            }
            untrack_create(dir);
        }
        result.map(|children| (state, paused, children))
    }
}

/// Fails, saying what to do, if the VMM the children would run cannot
/// restore `snapshot`: the source's VM runs another pyro build (pyro was
/// upgraded or rebuilt since it started), whose device state this one
/// may not read. Checked before any child is made.
fn check_restorable(snapshot: &Path, source_id: &str) -> Result<(), Error> {
    let ours = pyro_vmm::snapshot::vmm_build_id_of(&crate::detached::vmm_program()?);
    let theirs = pyro_vmm::snapshot::Snapshot::read(snapshot)
        .map_err(|e| Error::Io(e.to_string()))?
        .origin
        .vmm;
    if theirs != ours {
        return Err(Error::Conflict(format!(
            "workspace {source_id}'s VM was started by another pyro build than this one \
             (pyro was upgraded or rebuilt since), and this one cannot restore its memory: \
             `pyro workspace stop {source_id}` and `start` it, then fork it"
        )));
    }
    Ok(())
}

/// The children's names: none, `name`, or `name-1`... for more than one.
fn child_names(opts: &ForkOptions) -> Result<Vec<Option<String>>, Error> {
    (1..=opts.count)
        .map(|i| match &opts.name {
            None => Ok(None),
            Some(name) => {
                let name = match opts.count {
                    1 => name.clone(),
                    _ => format!("{name}-{i}"),
                };
                store::check_workspace_name(&name)?;
                Ok(Some(name))
            }
        })
        .collect()
}

/// A child's record: the source's settings, a new identity, its own
/// history, and no published ports.
fn child_record(
    source: &WorkspaceRecord,
    id: &str,
    name: Option<String>,
    opts: &ForkOptions,
) -> WorkspaceRecord {
    let now = now_unix();
    let mut child = source.clone();
    child.workspace_id = id.to_string();
    child.name = name;
    child.labels.extend(opts.labels.clone());
    child.created_at = rfc3339(now);
    child.created_unix = now;
    child.mark_activity();
    child.expires_unix = source.ttl_seconds.map(|t| now + t);
    child.command_count = 0;
    child.reset_count = 0;
    child.last_reset_at = None;
    child.last_start = None;
    child.last_start_ms = None;
    child.network.publish.clear();
    child.forked_from = Some(source.workspace_id.clone());
    child
}

/// Fills a child's directory `dir` from the source's: its disks from
/// `origin` (sparse copies), checkpoints (images linked, records
/// rewritten for the child), the baseline archive, secrets, and the
/// snapshot to start from (linked into `forked/`).
fn copy_state(source: &WsDir, origin: &Origin, dir: &WsDir, child_id: &str) -> Result<(), Error> {
    disk::sparse_copy(&origin.disk, &dir.disk())?;
    disk::sparse_copy(&origin.system_disk, &dir.system_disk())?;
    let checkpoints = dir.checkpoints();
    std::fs::create_dir_all(&checkpoints).map_err(|e| store::io_err(&checkpoints, e))?;
    std::fs::create_dir_all(dir.history()).map_err(|e| store::io_err(&dir.history(), e))?;
    for entry in read_dir(&source.checkpoints())? {
        let to = checkpoints.join(entry.file_name().unwrap_or_default());
        if entry.extension().is_some_and(|x| x == "json") {
            let mut meta: Checkpoint = read_json(&entry)?;
            meta.workspace_id = child_id.to_string();
            write_json(&to, &meta)?;
        } else if entry.extension().is_some_and(|x| x == "ext4") {
            link_or_copy(&entry, &to)?;
        }
    }
    for file in [source.baseline_tar(), source.new_system()] {
        if file.is_file() {
            link_or_copy(&file, &dir.0.join(file.file_name().unwrap_or_default()))?;
        }
    }
    SecretStore::of(source).copy_to(&SecretStore::of(dir))?;
    if let Some(snapshot) = &origin.snapshot {
        let forked = dir.forked();
        std::fs::create_dir(&forked).map_err(|e| store::io_err(&forked, e))?;
        for file in read_dir(snapshot)? {
            let to = forked.join(file.file_name().unwrap_or_default());
            std::fs::hard_link(&file, &to).map_err(|e| store::io_err(&to, e))?;
        }
    }
    Ok(())
}

/// The files in `dir` (none if it does not exist).
fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(store::io_err(dir, e)),
    }
}

/// A hard link of a file that is never written in place (replaced by
/// rename or removed only), or a sparse copy where links cannot be made.
fn link_or_copy(from: &Path, to: &Path) -> Result<(), Error> {
    match std::fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(_) => disk::sparse_copy(from, to).map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_named_after_the_name_given() {
        let opts = |count, name: Option<&str>| ForkOptions {
            count,
            name: name.map(String::from),
            labels: BTreeMap::new(),
        };
        assert_eq!(child_names(&opts(2, None)).unwrap(), vec![None, None]);
        assert_eq!(
            child_names(&opts(1, Some("try"))).unwrap(),
            vec![Some("try".to_string())]
        );
        assert_eq!(
            child_names(&opts(3, Some("try"))).unwrap(),
            ["try-1", "try-2", "try-3"].map(|n| Some(n.to_string()))
        );
        assert!(child_names(&opts(1, Some("no/slash"))).is_err());
    }
}
