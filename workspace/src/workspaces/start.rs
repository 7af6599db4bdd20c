//! Starting a workspace's VM: resumed from its kept memory, restored from
//! the environment's warm snapshot, or booted, falling back from one to
//! the next; how it started goes into the record.

use super::records::{StartKind, WorkspaceRecord};
use super::store::{self, write_json, WsDir};
use crate::detached::{DetachedVm, VmState};
use crate::guest::GuestClient;
use crate::warm::{
    Mounts, NewDisks, SYSTEM_DEVICE, SYSTEM_TEMPLATE, WORKSPACE_DEVICE, WORKSPACE_TEMPLATE,
};
use crate::{Error, Progress, Pyro};
use pyro_vmm::control::{ExitReason, VmmSpec};
use pyro_vmm::idle::IdleSuspend;
use pyro_vmm::snapshot::{file_id, STATE_FILE};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub(super) const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// Where a workspace VM's state comes from when it starts.
#[derive(Clone, Copy)]
enum StartFrom<'a> {
    /// A cold boot, the disk mounted by guest-init at start-up.
    Boot,
    /// The environment's warm workspace snapshot; the disk is attached and
    /// mounted after the restore.
    Warm(&'a Path),
    /// The environment's snapshot for new workspaces, its writable system
    /// already made: only for disks just copied from its templates (see
    /// [`NewSystem`]); /workspace is mounted after the restore, unless it
    /// is a copy of the snapshot's empty one, mounted already.
    New(&'a NewSystem),
    /// The workspace's own suspended VM (`stop --keep-memory`): the same
    /// machine, its processes and page cache included.
    Resume(&'a Path),
    /// The snapshot a fork took of another workspace, whose disks this
    /// one's are copies of from the same instant: that machine, made a
    /// machine of its own (hostname, RNG).
    Fork(&'a Path),
}

/// A new workspace's disks, copied from the templates of the snapshot
/// new workspaces restore (see `NewDisks` in `warm.rs`): its system disk,
/// and with no seed its /workspace disk too. Kept with the workspace
/// ([`WsDir::new_system`]): its baseline images are such copies too.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct NewSystem {
    snap: PathBuf,
    /// The system template's identity when it was copied: a restore from
    /// a snapshot rebuilt since (another template) must not happen.
    template_id: String,
    /// The /workspace template's identity when it was copied, if the
    /// disk is such a copy (the snapshot has /workspace mounted).
    #[serde(default)]
    workspace_template_id: Option<String>,
}

impl NewSystem {
    /// The snapshot still has the templates the disks were copied from
    /// (it was not taken again since).
    fn template_unchanged(&self) -> bool {
        let same = |template: &str, id: &str| file_id(&self.snap.join(template)) == id;
        same(SYSTEM_TEMPLATE, &self.template_id)
            && self
                .workspace_template_id
                .as_deref()
                .is_none_or(|id| same(WORKSPACE_TEMPLATE, id))
    }

    /// How a VM restored from the snapshot has its disks mounted.
    fn mounts(&self) -> Mounts {
        match self.workspace_template_id {
            Some(_) => Mounts::AtBoot,
            None => Mounts::SystemAtBoot,
        }
    }
}

/// When the VMM of workspace `record` suspends its idle VM, and where the
/// kept memory goes: never if the record says 0, or if the workspace has
/// secrets (kept memory would hold their values on disk, which
/// `stop --keep-memory` refuses too).
pub(super) fn idle_policy(dir: &WsDir, record: &WorkspaceRecord) -> Option<IdleSuspend> {
    (record.idle_suspend_seconds > 0 && record.secrets.is_empty()).then(|| IdleSuspend {
        after_seconds: record.idle_suspend_seconds,
        with_services: record.idle_suspend_services,
        into: dir.suspended(),
        lock: Some(dir.lock_path()),
    })
}

/// Gives a running VM the idle policy `record` now implies (after an
/// update, or a secret set or unset); a stopped one takes it at start.
pub(super) fn apply_idle_policy(dir: &WsDir, record: &WorkspaceRecord) -> Result<(), Error> {
    let vm = DetachedVm::open(dir.vm());
    match vm.state() {
        VmState::Running { .. } => vm.set_idle_suspend(idle_policy(dir, record)),
        VmState::Stopped { .. } => Ok(()),
    }
}

impl Pyro {
    /// Makes a new workspace's disks: /workspace holding the tree of
    /// `seed` (`None`: empty) and an empty system disk. Unless `cold`,
    /// they are copies of the templates of the environment's snapshot for
    /// new workspaces (built first if missing), so the start can restore
    /// it with the writable system already made and, with no seed,
    /// /workspace already mounted. A seed is never in a template: its
    /// /workspace is made on the host and mounted after the restore. For
    /// a cold start, or if that snapshot cannot be had, new ext4s.
    pub(super) fn new_disks(
        &self,
        dir: &WsDir,
        record: &WorkspaceRecord,
        seed: Option<&Path>,
        cold: bool,
        progress: &dyn Progress,
    ) -> Result<Option<NewSystem>, Error> {
        let disks = NewDisks {
            system_mib: record.system_disk_mib,
            workspace_mib: seed.is_none().then_some(record.disk_mib),
        };
        if !cold {
            let new = self
                .environment_vm(&record.environment, record.mem_mib, record.vcpus, progress)
                .and_then(|(base, _)| {
                    self.workspace_snapshot(
                        &record.environment,
                        &base,
                        Some(disks),
                        BOOT_TIMEOUT,
                        progress,
                    )
                })
                .and_then(|snap| {
                    let copy = |template: &str, disk: &Path| -> Result<String, Error> {
                        let template = snap.join(template);
                        let id = file_id(&template);
                        super::disk::sparse_copy(&template, disk)?;
                        Ok(id)
                    };
                    let template_id = copy(SYSTEM_TEMPLATE, &dir.system_disk())?;
                    let workspace_template_id = match disks.workspace_mib {
                        Some(_) => Some(copy(WORKSPACE_TEMPLATE, &dir.disk())?),
                        None => None,
                    };
                    Ok(NewSystem {
                        snap,
                        template_id,
                        workspace_template_id,
                    })
                });
            match new {
                Ok(new) => {
                    if let Some(seed) = seed {
                        super::disk::make(&dir.disk(), record.disk_mib, seed)?;
                    }
                    return Ok(Some(new));
                }
                Err(e) => progress.phase("boot", &format!("no snapshot for new workspaces ({e})")),
            }
        }
        match seed {
            Some(seed) => super::disk::make(&dir.disk(), record.disk_mib, seed)?,
            None => super::disk::make_empty(&dir.disk(), record.disk_mib)?,
        }
        super::disk::make_system(&dir.system_disk(), record.system_disk_mib)?;
        Ok(None)
    }

    /// The snapshot a disk copied from the baseline system image can be
    /// restored with, if the workspace was made from one that still has
    /// the same template.
    pub(super) fn baseline_new_system(&self, dir: &WsDir) -> Option<NewSystem> {
        let new: NewSystem = store::read_json(&dir.new_system()).ok()?;
        new.template_unchanged().then_some(new)
    }

    /// Starts the workspace's VM and waits for its agent: resumed from
    /// its kept memory if `stop --keep-memory` left one, else restored
    /// from the environment's warm workspace snapshot unless `cold`, else
    /// booted. `new`: the system disk was just made by
    /// [`Pyro::new_disks`] from a snapshot's templates, and that
    /// snapshot is the warm start. A failed resume or restore falls
    /// through to the next (the user still gets the workspace). How it
    /// started goes into the record, which is written.
    pub(super) fn boot(
        &self,
        dir: &WsDir,
        record: &mut WorkspaceRecord,
        cold: bool,
        new: Option<&NewSystem>,
        progress: &dyn Progress,
    ) -> Result<GuestClient, Error> {
        let vm_dir = dir.vm();
        std::fs::create_dir_all(&vm_dir).map_err(|e| store::io_err(&vm_dir, e))?;
        if !dir.system_disk().exists() {
            // A workspace made before the writable system: it gets an
            // empty one now.
            super::disk::make_system(&dir.system_disk(), record.system_disk_mib)?;
        }
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
        let forked = dir.forked();
        if forked.join(STATE_FILE).is_file() {
            // A fork's first start. No falling back: a child that booted
            // afresh would have lost the processes it was made to keep.
            let restored = self.start_vm(dir, record, &base, StartFrom::Fork(&forked));
            // The VMM has the memory mapped; the links are not needed.
            let _ = std::fs::remove_dir_all(&forked);
            start = Some((restored?, StartKind::Forked));
        }
        let suspended = dir.suspended();
        if start.is_none() && suspended.join(STATE_FILE).is_file() {
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
            .map(|c| (c, StartKind::Resumed));
        }
        if start.is_none() && !cold {
            // A new workspace's warm start is the snapshot its system disk
            // came from; if that fails, booting is quicker than taking the
            // other snapshot first.
            let warm = match new {
                Some(new) => self.start_vm(dir, record, &base, StartFrom::New(new)),
                None => self
                    .workspace_snapshot(&record.environment, &base, None, BOOT_TIMEOUT, progress)
                    .and_then(|snap| self.start_vm(dir, record, &base, StartFrom::Warm(&snap))),
            };
            start = fall_back(warm, "no warm start", "booting")?.map(|c| (c, StartKind::Warm));
        }
        let (client, kind) = match start {
            Some(start) => start,
            None => (
                self.start_vm(dir, record, &base, StartFrom::Boot)?,
                StartKind::Cold,
            ),
        };
        record.last_start = Some(kind);
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
        let (snapshot, mounts) = match from {
            StartFrom::Boot => (None, Mounts::AtBoot),
            StartFrom::Warm(p) | StartFrom::Resume(p) | StartFrom::Fork(p) => {
                (Some(p), Mounts::OnRestore)
            }
            StartFrom::New(new) => (Some(new.snap.as_path()), new.mounts()),
        };
        if matches!(from, StartFrom::New(new) if !new.template_unchanged()) {
            return Err(Error::Io(
                "the snapshot for new workspaces was rebuilt meanwhile".into(),
            ));
        }
        let mut config =
            Pyro::workspace_vm_config(base, &dir.disk(), &dir.system_disk(), mounts, &vm_dir);
        let staging = vm_dir.join(crate::staging::STAGING_FILE);
        std::fs::create_dir_all(&vm_dir)
            .and_then(|()| crate::staging::reset(&staging))
            .map_err(|e| store::io_err(&staging, e))?;
        // Its network as recorded: the ports are bound again (the same
        // host port when one was asked for, a new ephemeral one if not).
        config.set_net(record.network.clone());
        let vm = DetachedVm::spawn(&VmmSpec {
            config,
            dir: vm_dir.clone(),
            deadline_unix: record.expires_unix,
            boot_timeout_ms: BOOT_TIMEOUT.as_millis() as u64,
            remove_on_expiry: Some(dir.0.clone()),
            restore_from: snapshot.map(Path::to_path_buf),
            idle_suspend: idle_policy(dir, record),
        })?;
        let ready = vm.wait_ready(BOOT_TIMEOUT).and_then(|mut client| {
            match from {
                // A machine of its own, as a restored one gets: its own
                // hostname (the image's is `pyro`) and a reseeded RNG; its
                // disks were mounted at boot.
                StartFrom::Boot => {
                    client.restored(None, None)?;
                }
                StartFrom::Warm(_) => {
                    client.restored(Some(WORKSPACE_DEVICE), Some(SYSTEM_DEVICE))?;
                }
                StartFrom::New(new) => {
                    let attached = new.mounts() == Mounts::SystemAtBoot;
                    client.restored(attached.then_some(WORKSPACE_DEVICE), None)?;
                }
                StartFrom::Resume(_) => client.resumed()?,
                // Its disks are mounted already (the copies, where the
                // source's were).
                StartFrom::Fork(_) => {
                    client.restored(None, None)?;
                }
            }
            super::secrets::install(&mut client, &super::secrets::SecretStore::of(dir), false)?;
            Ok(client)
        });
        if ready.is_err() {
            vm.stop()?;
            let refused = pyro_vmm::control::exit_record(&vm_dir)
                .is_some_and(|r| r.reason == ExitReason::BadSnapshot);
            // A refused environment snapshot is taken again on next need
            // (a refused kept memory is removed by `boot` either way).
            if let (true, Some(snap)) = (refused, snapshot) {
                if matches!(from, StartFrom::Warm(_) | StartFrom::New(_)) {
                    let _ = std::fs::remove_dir_all(snap);
                }
            }
        }
        ready
    }
}
