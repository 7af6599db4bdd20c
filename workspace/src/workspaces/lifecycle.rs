//! A workspace's life: create (disk, baseline checkpoint, first start),
//! start, stop, suspend (`stop --keep-memory`), delete; list, status and
//! update of its record; and the sweep that removes expired workspaces.

use super::handle::view;
use super::records::{
    Checkpoint, CheckpointKind, CreateOptions, Deleted, SecretInfo, SecretSource, UpdateOptions,
    Workspace, WorkspaceRecord, WorkspaceState,
};
use super::secrets::SecretStore;
use super::store::{self, check_labels, check_name, now_unix, rfc3339, write_json, WsDir};
use super::{disk, BASELINE};
use crate::detached::{DetachedVm, VmState};
use crate::process::ProcessId;
use crate::secrets::{Secret, MAX_SECRETS};
use crate::transfer::unpack_untrusted;
use crate::{Error, Progress, Pyro};
use pyro_vmm::control::ExitReason;

impl Pyro {
    /// Stops and removes workspaces whose time to live has passed (the
    /// VMM stops its own VM at the deadline; this removes what is left,
    /// including stopped workspaces nobody started again).
    fn sweep_expired(&self) {
        self.sweep_abandoned_creates();
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
    /// speed), the immutable `baseline` checkpoint, and a running VM whose
    /// agent answers. A failure removes everything it made.
    pub fn workspace_create(
        &self,
        opts: &CreateOptions,
        progress: &dyn Progress,
    ) -> Result<Workspace, Error> {
        if let Some(name) = &opts.name {
            store::check_workspace_name(name)?;
        }
        check_labels(&opts.labels)?;
        if opts.ttl_seconds == Some(0) {
            return Err(Error::InvalidArgument(
                "ttl_seconds must be positive".into(),
            ));
        }
        for (field, mib) in [
            ("disk_mib", opts.disk_mib),
            ("system_disk_mib", opts.system_disk_mib),
        ] {
            if !pyro_vmm::limits::DISK_MIB.contains(mib) {
                return Err(Error::InvalidArgument(format!(
                    "{field} must be between {} and {}",
                    pyro_vmm::limits::DISK_MIB.min,
                    pyro_vmm::limits::DISK_MIB.max
                )));
            }
        }
        check_ports(&opts.network)?;
        check_secrets(&opts.secrets)?;
        if let Some(seed) = &opts.seed_path {
            super::archive::check_seed(seed)?;
        }
        // Kernel and image first: a missing image is built before any
        // workspace state exists.
        self.environment_vm(&opts.environment, opts.mem_mib, opts.vcpus, progress)?;
        let root = self.workspaces_root();
        std::fs::create_dir_all(&root).map_err(|e| store::io_err(&root, e))?;
        self.sweep_abandoned_creates();
        let (id, dir) = self.reserve_workspace_dir(opts.name.as_deref())?;
        track_create(&dir);
        let made = self.create_in(&id, &dir, opts, progress);
        match &made {
            // Visible (its record written) since its first start ended.
            Ok(_) => {
                let _ = std::fs::remove_file(dir.creating());
            }
            Err(_) => remove_create(&dir),
        }
        untrack_create(&dir);
        made
    }

    /// Makes the directory of a new workspace, named by a new id, with
    /// its `creating.json` in it (made aside, then renamed into place),
    /// and takes `name` for it under the names lock: two creates cannot
    /// both take one name. The workspace becomes visible when its record
    /// is written; until then a sweep removes it if this process dies.
    pub(super) fn reserve_workspace_dir(
        &self,
        name: Option<&str>,
    ) -> Result<(String, WsDir), Error> {
        let root = self.workspaces_root();
        let creating = Creating {
            by: ProcessId::current()
                .ok_or_else(|| Error::Io("cannot read /proc/self/stat".into()))?,
            name: name.map(String::from),
        };
        {
            let _names = self.names_lock()?;
            if let Some(name) = name {
                self.check_name_free(name, None)?;
            }
            loop {
                let id = store::new_id()?;
                let aside = root.join(aside_name(&id, &creating.by));
                match std::fs::create_dir(&aside) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(store::io_err(&aside, e)),
                }
                let dir = WsDir(root.join(&id));
                let placed =
                    write_json(&WsDir(aside.clone()).creating(), &creating).and_then(|()| {
                        rustix::fs::renameat_with(
                            rustix::fs::CWD,
                            &aside,
                            rustix::fs::CWD,
                            &dir.0,
                            rustix::fs::RenameFlags::NOREPLACE,
                        )
                        .map_err(|e| store::io_err(&dir.0, e.into()))
                    });
                match placed {
                    Ok(()) => return Ok((id, dir)),
                    Err(e) => {
                        let _ = std::fs::remove_dir_all(&aside);
                        if !dir.0.exists() {
                            return Err(e);
                        }
                    }
                }
            }
        }
    }

    /// Held while a name is checked and taken (create, update), so that
    /// names stay unique under concurrent calls. Beside the workspaces'
    /// directory (`<data>/workspaces.names.lock`), which holds
    /// workspaces only.
    fn names_lock(&self) -> Result<store::Lock, Error> {
        store::lock_file(&self.workspaces_root().with_extension("names.lock"))
    }

    /// Fails if a workspace other than `except` has `name`, or a create
    /// in progress is taking it.
    fn check_name_free(&self, name: &str, except: Option<&WsDir>) -> Result<(), Error> {
        let other = |d: &WsDir| except.is_none_or(|e| e.0 != d.0);
        let taken = self
            .records()
            .iter()
            .any(|(d, r)| r.name.as_deref() == Some(name) && other(d))
            || self
                .creates_in_progress()
                .iter()
                .any(|(d, c)| c.name.as_deref() == Some(name) && other(d));
        if taken {
            return Err(Error::Conflict(format!(
                "a workspace named {name:?} exists already; names are unique"
            )));
        }
        Ok(())
    }

    /// Creates whose process still runs: not yet workspaces (no record),
    /// but their names are taken.
    fn creates_in_progress(&self) -> Vec<(WsDir, Creating)> {
        self.creates()
            .into_iter()
            .filter(|(d, _)| !d.record().exists())
            .filter_map(|(d, c)| c.filter(|c| c.by.alive()).map(|c| (d, c)))
            .collect()
    }

    /// Every entry of the workspaces' directory with its `creating.json`,
    /// if it has one.
    fn creates(&self) -> Vec<(WsDir, Option<Creating>)> {
        let Ok(entries) = std::fs::read_dir(self.workspaces_root()) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| WsDir(e.path()))
            .map(|d| {
                let creating = store::read_json(&d.creating()).ok();
                (d, creating)
            })
            .collect()
    }

    /// Removes what creates whose process died (killed, or its machine
    /// restarted) left: a workspace becomes visible only once its first
    /// start has ended (its record is written then), so until then its
    /// directory holds `creating.json` naming the process making it. If
    /// that process is gone, its VM (if it started one) is stopped,
    /// killed if it does not answer, and the directory removed. A
    /// `creating.json` left beside a record (the process died between
    /// the two) is just removed; a directory with neither is removed too
    /// (no live process makes one: see the comment in the loop).
    fn sweep_abandoned_creates(&self) {
        for (dir, creating) in self.creates() {
            if creating.as_ref().is_some_and(|c| c.by.alive()) {
                continue;
            }
            let name = dir.0.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with(NEW_PREFIX) {
                // Never had a VM. Its name says who makes it, so a
                // marker not yet written (the process killed between
                // the two) leaves no doubt; a name of another form
                // (an older pyro) is left a minute.
                let abandoned = match aside_maker(name) {
                    Some(by) => !by.alive(),
                    None => {
                        creating.is_some()
                            || std::fs::metadata(&dir.0)
                                .and_then(|m| m.modified())
                                .is_ok_and(|t| t.elapsed().is_ok_and(|a| a.as_secs() > 60))
                    }
                };
                if abandoned {
                    let _ = std::fs::remove_dir_all(&dir.0);
                }
                continue;
            }
            if dir.record().exists() {
                if creating.is_some() {
                    let _ = std::fs::remove_file(dir.creating());
                }
                continue;
            }
            // Neither a record nor a marker: nothing any live process is
            // making (a create writes its marker before the directory
            // appears, and the record before it removes the marker). It
            // is what a create cut by Ctrl-C left while its main thread
            // still wrote (the handler removed the directory, a last
            // write made part of it again), or a delete cut short.
            if !dir.0.is_dir() {
                continue;
            }
            let Ok(_lock) = dir.lock() else { continue };
            if DetachedVm::open(dir.vm()).stop().is_ok() {
                let _ = std::fs::remove_dir_all(&dir.0);
            }
        }
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
                let tar = super::archive::open(p).map_err(|e| store::io_err(p, e))?;
                unpack_untrusted(tar, &staged).map_err(|e| {
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
        std::fs::create_dir_all(dir.checkpoints())
            .map_err(|e| store::io_err(&dir.checkpoints(), e))?;
        std::fs::create_dir_all(dir.history()).map_err(|e| store::io_err(&dir.history(), e))?;

        let now = now_unix();
        let record = WorkspaceRecord {
            workspace_id: id.to_string(),
            name: opts.name.clone(),
            labels: opts.labels.clone(),
            environment: opts.environment.clone(),
            vcpus: opts.vcpus,
            mem_mib: opts.mem_mib,
            disk_mib: opts.disk_mib,
            system_disk_mib: opts.system_disk_mib,
            created_at: rfc3339(now),
            created_unix: now,
            last_activity_at: rfc3339(now),
            last_activity_unix: now,
            ttl_seconds: opts.ttl_seconds,
            expires_unix: opts.ttl_seconds.map(|t| now + t),
            command_count: 0,
            reset_count: 0,
            last_reset_at: None,
            seed_path: opts.seed_path.clone(),
            seed_entry_count: packed.entries,
            last_start: None,
            last_start_ms: None,
            network: opts.network.clone(),
            secrets: Vec::new(),
            idle_suspend_seconds: opts.idle_suspend_seconds,
            idle_suspend_services: opts.idle_suspend_services,
            forked_from: None,
        };
        // Both disks, copies of a snapshot's templates where they can be
        // (see `new_disks`); the clean environment (an empty upper layer)
        // and the seed are kept as the baseline.
        let seed = opts.seed_path.is_some().then_some(seed_dir.as_path());
        let new = self.new_disks(dir, &record, seed, opts.cold, progress)?;
        let _ = std::fs::remove_dir_all(&staged);
        let bytes = disk::sparse_copy(&dir.disk(), &dir.checkpoint_image(BASELINE))?;
        disk::sparse_copy(&dir.system_disk(), &dir.checkpoint_system_image(BASELINE))?;
        if let Some(new) = &new {
            write_json(&dir.new_system(), new)?;
        }
        write_json(
            &dir.checkpoint_meta(BASELINE),
            &Checkpoint {
                workspace_id: id.into(),
                name: BASELINE.into(),
                kind: CheckpointKind::Baseline,
                created_at: rfc3339(now),
                bytes_written: bytes,
                deletable: false,
            },
        )?;
        let mut record = record;
        // Before the first boot, which installs them in the guest.
        let store = SecretStore::of(dir);
        for (secret, source) in &opts.secrets {
            store.set(secret)?;
            record.secrets.push(SecretInfo {
                name: secret.name().into(),
                source_kind: *source,
            });
        }
        record.secrets.sort_by(|a, b| a.name.cmp(&b.name));
        // No record yet: the start writes it once the agent answers, and
        // only then is the workspace visible (see `workspace_create`).
        progress.phase("boot", &format!("starting workspace {id}"));
        self.boot(dir, &mut record, opts.cold, new.as_ref(), progress)?;
        Ok(view(dir, record))
    }

    /// Every workspace, newest activity first. A workspace whose VM died
    /// shows as stopped, never as running.
    pub fn workspace_list(&self) -> Vec<Workspace> {
        self.sweep_expired();
        let mut all: Vec<_> = self
            .records()
            .into_iter()
            .map(|(dir, record)| view(&dir, record))
            .collect();
        all.sort_by(|a, b| {
            b.record
                .last_activity_unix
                .cmp(&a.record.last_activity_unix)
                .then(b.record.created_unix.cmp(&a.record.created_unix))
        });
        all
    }

    /// The workspace, with its running VM's network as it is now.
    pub fn workspace_status(&self, id: &str) -> Result<Workspace, Error> {
        self.sweep_expired();
        let ws = self.workspace(id)?;
        let mut view = ws.view()?;
        if view.state == WorkspaceState::Running {
            view.network_status = ws.vm().net_status().ok();
        }
        Ok(view)
    }

    pub fn workspace_update(&self, id: &str, opts: &UpdateOptions) -> Result<Workspace, Error> {
        // A network or idle change talks to the VM: under the lock, so
        // two updates cannot cross between the VM and the record.
        let ws = if opts.changes_network() || opts.changes_idle() {
            self.workspace_locked(id)?
        } else {
            self.workspace(id)?
        };
        // Held until the record is written: names stay unique.
        let _names = match &opts.name {
            Some(name) => {
                store::check_workspace_name(name)?;
                let names = self.names_lock()?;
                self.check_name_free(name, Some(&ws.dir))?;
                Some(names)
            }
            None => None,
        };
        check_labels(&opts.set_labels)?;
        for key in &opts.clear_labels {
            check_name("label key", key)?;
        }
        let rules = if opts.changes_network() {
            let network = ws.record()?.network;
            let mut rules = network.rules;
            if let Some(policy) = opts.network_policy {
                rules.policy = policy;
            }
            if let Some(allow) = &opts.allow_hosts {
                rules.allow = allow.clone();
            }
            if let Some(add) = &opts.add_hosts {
                rules.add_hosts = add.clone();
            }
            if !rules.policy.published_ports() && !network.publish.is_empty() {
                return Err(Error::Conflict(format!(
                    "policy {} publishes no ports, and {} port(s) are published: \
                     unpublish them first (`pyro workspace port unpublish`)",
                    rules.policy,
                    network.publish.len()
                )));
            }
            // The running VM first: if it refuses, the record stays as
            // it was.
            let vm = ws.vm();
            if matches!(vm.state(), VmState::Running { .. }) {
                vm.net_update(rules.clone())?;
            }
            Some(rules)
        } else {
            None
        };
        let record = ws.touch(|r| {
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
            if let Some(rules) = rules {
                r.network.rules = rules;
            }
            if let Some(seconds) = opts.idle_suspend_seconds {
                r.idle_suspend_seconds = seconds;
            }
            if let Some(services) = opts.idle_suspend_services {
                r.idle_suspend_services = services;
            }
        })?;
        if opts.changes_idle() {
            super::start::apply_idle_policy(&ws.dir, &record)?;
        }
        Ok(view(&ws.dir, record))
    }

    /// Flushes /workspace and stops the VM; the disk keeps everything.
    pub fn workspace_stop(&self, id: &str) -> Result<Workspace, Error> {
        let ws = self.workspace_locked(id)?;
        // Services get their TERM, then /workspace is flushed. A guest
        // that does not answer (found once, by the connection: not again
        // by each call's own deadline) or cannot flush is stopped all the
        // same, and the result says so.
        let flushed = match ws.vm().state() {
            VmState::Running { .. } => ws
                .agent()
                .and_then(|agent| {
                    super::services::stop_all(&ws);
                    ws.sync(agent)
                })
                .map_err(|e| e.to_string()),
            VmState::Stopped { .. } => Ok(()),
        };
        ws.vm().stop()?;
        // Suspended on idle, it is stopped now: its kept memory goes (the
        // disk was flushed when it was kept), and the next call says to
        // start it instead of resuming it.
        if let VmState::Stopped {
            reason: ExitReason::IdleSuspended,
            ..
        } = ws.vm().state()
        {
            let kept = ws.dir.suspended();
            std::fs::remove_dir_all(&kept).map_err(|e| store::io_err(&kept, e))?;
            pyro_vmm::control::write_exit_record(
                &ws.dir.vm(),
                &pyro_vmm::control::ExitRecord {
                    reason: ExitReason::Stopped,
                    message: "stopped on request while suspended on idle".into(),
                    at_unix: now_unix(),
                },
            );
        }
        let mut view = ws.view()?;
        if let Err(why) = flushed {
            view.warnings.push(format!(
                "/workspace was not flushed before the VM stopped ({why}); what the guest \
                 had not yet written to its disk is lost"
            ));
        }
        Ok(view)
    }

    /// Stops a running workspace keeping its memory (`stop
    /// --keep-memory`): /workspace is synced to its disk, the VM paused,
    /// snapshotted into the workspace's directory (about the guest
    /// memory in use) and stopped. The next start resumes that machine,
    /// processes included, instead of starting a fresh one. A failure
    /// leaves the workspace running as it was.
    pub fn workspace_suspend(&self, id: &str) -> Result<Workspace, Error> {
        let ws = self.workspace_locked(id)?;
        let secrets = ws.record()?.secrets;
        if !secrets.is_empty() {
            // Kept memory is a VM snapshot on disk, and the processes of a
            // workspace with secrets may hold their values (environments,
            // buffers): secrets never go into one.
            return Err(Error::Conflict(format!(
                "workspace {} has secrets ({}), and kept memory would hold their values on \
                 disk: stop it without --keep-memory, or unset them first",
                ws.given,
                secrets
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        ws.sync(ws.agent()?)?;
        let vm = ws.vm();
        let (work, kept) = (ws.dir.0.join("suspended.tmp"), ws.dir.suspended());
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
        ws.view()
    }

    /// Boots a stopped workspace again, /workspace as it was, or resumes
    /// a suspended one; a no-op if it runs.
    pub fn workspace_start(&self, id: &str, progress: &dyn Progress) -> Result<Workspace, Error> {
        let ws = self.workspace_locked(id)?;
        let mut record = ws.record()?;
        if !matches!(ws.vm().state(), VmState::Running { .. }) {
            self.boot(&ws.dir, &mut record, false, None, progress)?;
        }
        Ok(view(&ws.dir, record))
    }

    pub fn workspace_delete(&self, id: &str) -> Result<Deleted, Error> {
        let ws = self.workspace_locked(id)?;
        ws.vm().stop()?;
        let workspace_id = ws.record()?.workspace_id;
        std::fs::remove_dir_all(&ws.dir.0).map_err(|e| store::io_err(&ws.dir.0, e))?;
        Ok(Deleted {
            workspace_id,
            deleted: true,
        })
    }
}

/// The secrets a new workspace is given: distinct names, not too many.
fn check_secrets(secrets: &[(Secret, SecretSource)]) -> Result<(), Error> {
    if secrets.len() > MAX_SECRETS {
        return Err(Error::InvalidArgument(format!(
            "at most {MAX_SECRETS} secrets per workspace, not {}",
            secrets.len()
        )));
    }
    for (i, (s, _)) in secrets.iter().enumerate() {
        if secrets[..i].iter().any(|(o, _)| o.name() == s.name()) {
            return Err(Error::InvalidArgument(format!(
                "secret {} is given twice",
                s.name()
            )));
        }
    }
    Ok(())
}

/// The ports a new workspace asks to publish: its policy must publish
/// ports, and no guest or host port twice.
fn check_ports(network: &pyro_vmm::NetConfig) -> Result<(), Error> {
    let policy = network.rules.policy;
    if !network.publish.is_empty() && !policy.published_ports() {
        return Err(Error::InvalidArgument(format!(
            "publishing ports needs a policy that publishes them (egress+published-ports or \
             published-ports), not {policy}"
        )));
    }
    for (i, m) in network.publish.iter().enumerate() {
        if let Some(why) = super::network::clash(&network.publish[..i], *m) {
            return Err(Error::InvalidArgument(why));
        }
    }
    Ok(())
}

/// How the directory of a workspace being created is named until it is
/// renamed to its id (with its `creating.json` in it): see [`aside_name`].
const NEW_PREFIX: &str = ".new-";

/// `.new-<id>.<pid>.<start ticks>`: the directory's name itself says
/// which process makes it, for the moment before its marker exists.
fn aside_name(id: &str, by: &ProcessId) -> String {
    format!("{NEW_PREFIX}{id}.{}.{}", by.pid, by.start_ticks)
}

/// The process an [`aside_name`] names.
fn aside_maker(name: &str) -> Option<ProcessId> {
    let mut parts = name.strip_prefix(NEW_PREFIX)?.split('.');
    let (_id, pid, start_ticks) = (parts.next()?, parts.next()?, parts.next()?);
    Some(ProcessId {
        pid: pid.parse().ok()?,
        start_ticks: start_ticks.parse().ok()?,
    })
}

/// `creating.json`: in a workspace's directory from the moment it appears
/// until its create has ended (see [`Pyro::workspace_create`]).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Creating {
    /// The process making it; if it is gone, the create was abandoned.
    by: ProcessId,
    /// The name it takes.
    name: Option<String>,
}

/// Directories of this process's creates in progress, for
/// [`abandon_creates`].
fn in_progress() -> std::sync::MutexGuard<'static, Vec<std::path::PathBuf>> {
    static DIRS: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());
    DIRS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Notes a create in progress in this process (see [`abandon_creates`]).
pub(super) fn track_create(dir: &WsDir) {
    in_progress().push(dir.0.clone());
}

/// The create of `dir` has ended.
pub(super) fn untrack_create(dir: &WsDir) {
    in_progress().retain(|d| d != &dir.0);
}

/// Undoes a create that failed: its VM stopped, its directory removed.
pub(super) fn remove_create(dir: &WsDir) {
    let _ = DetachedVm::open(dir.vm()).stop();
    let _ = std::fs::remove_dir_all(&dir.0);
}

/// Stops the VMs of this process's creates in progress and removes their
/// directories, after which no VM can start in this process. For a front
/// end about to exit on a signal (Ctrl-C): the workspace it was making
/// is gone rather than left for the next sweep.
pub fn abandon_creates() {
    crate::detached::close_spawns();
    for dir in in_progress().drain(..) {
        remove_create(&WsDir(dir));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_aside_name_says_who_makes_it() {
        let me = ProcessId::current().unwrap();
        let name = aside_name("0123456789ab", &me);
        assert!(name.starts_with(".new-0123456789ab."), "{name}");
        assert_eq!(aside_maker(&name), Some(me));
        assert!(aside_maker(&name).unwrap().alive());
        // An older pyro's form, and garbage: nobody known.
        assert_eq!(aside_maker(".new-0123456789ab"), None);
        assert_eq!(aside_maker(".new-x.y.z"), None);
        assert_eq!(aside_maker("0123456789ab"), None);
    }
}
