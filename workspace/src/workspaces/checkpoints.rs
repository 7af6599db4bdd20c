//! Checkpoints of a workspace (the CLI's and MCP's `snapshot` verbs):
//! create, list, delete, and reset to one. A checkpoint is a sparse copy
//! of the workspace's two disks (`disk.rs`: /workspace, and the system
//! disk with everything written outside it), not a VM snapshot. The disk of a
//! running workspace is copied by its VMM with the vCPUs frozen
//! (`ControlRequest::CopyDisk`), so the copy is one instant of the disk,
//! never torn by a write landing halfway through.

use super::records::{Checkpoint, CheckpointKind, Reset};
use super::store::{self, check_name, now_unix, read_json, rfc3339, write_json};
use super::{disk, BASELINE};
use crate::{Error, Progress, Pyro, VmState};
use std::path::Path;

impl Pyro {
    /// Checkpoints /workspace as it is now (flushed first) under `name`.
    pub fn checkpoint_create(&self, id: &str, name: &str) -> Result<Checkpoint, Error> {
        check_name("snapshot name", name)?;
        if name == BASELINE {
            return Err(Error::InvalidArgument(
                "snapshot name \"baseline\" is reserved for the create-time snapshot".into(),
            ));
        }
        let ws = self.workspace_locked(id)?;
        let image = ws.dir.checkpoint_image(name);
        if image.exists() {
            return Err(Error::Conflict(format!(
                "snapshot {name:?} exists already; delete it first"
            )));
        }
        let vm = ws.vm();
        let running = matches!(vm.state(), VmState::Running { .. });
        if running {
            // Flushed first, so the copy holds what the guest's page cache
            // had; then copied in a freeze, so nothing lands mid-copy.
            if let Ok(agent) = ws.agent() {
                ws.sync(agent)?;
            }
        }
        // A running VM's disks are copied by its VMM (one freeze per disk:
        // both hold everything flushed above; a command running meanwhile
        // may land between the two); a stopped one's here, nothing writes.
        let copy = |from: &Path, to: &Path| {
            if running {
                vm.copy_disk(from, to)
            } else {
                disk::sparse_copy(from, to)
            }
        };
        let bytes = copy(&ws.dir.disk(), &image)?;
        if ws.dir.system_disk().exists() {
            if let Err(e) = copy(&ws.dir.system_disk(), &ws.dir.checkpoint_system_image(name)) {
                let _ = std::fs::remove_file(&image);
                return Err(e);
            }
        }
        let checkpoint = Checkpoint {
            workspace_id: ws.id.clone(),
            name: name.into(),
            kind: CheckpointKind::Named,
            created_at: rfc3339(now_unix()),
            bytes_written: bytes,
            deletable: true,
        };
        write_json(&ws.dir.checkpoint_meta(name), &checkpoint)?;
        Ok(checkpoint)
    }

    /// A workspace's checkpoints, baseline first, then oldest first.
    pub fn checkpoint_list(&self, id: &str) -> Result<Vec<Checkpoint>, Error> {
        let dir = self.workspace(id)?.dir.checkpoints();
        let mut all: Vec<Checkpoint> = std::fs::read_dir(&dir)
            .map_err(|e| store::io_err(&dir, e))?
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| read_json(&e.path()).ok())
            .collect();
        all.sort_by(|a, b| order(a).cmp(&order(b)));
        Ok(all)
    }

    pub fn checkpoint_delete(&self, id: &str, name: &str) -> Result<Checkpoint, Error> {
        check_name("snapshot name", name)?;
        if name == BASELINE {
            return Err(Error::InvalidArgument(
                "the baseline snapshot cannot be deleted".into(),
            ));
        }
        let ws = self.workspace_locked(id)?;
        let meta = ws.dir.checkpoint_meta(name);
        let checkpoint: Checkpoint = read_json(&meta)
            .map_err(|_| Error::NotFound(format!("workspace {id} has no snapshot {name:?}")))?;
        std::fs::remove_file(&meta).map_err(|e| store::io_err(&meta, e))?;
        let _ = std::fs::remove_file(ws.dir.checkpoint_image(name));
        let _ = std::fs::remove_file(ws.dir.checkpoint_system_image(name));
        Ok(checkpoint)
    }

    /// Restores the workspace exactly to a checkpoint (default
    /// `baseline`): stops the VM, puts the checkpoint's disks in place
    /// (/workspace and the system; a checkpoint from before the writable
    /// system gets an empty one, the clean environment), boots again.
    pub fn workspace_reset(
        &self,
        id: &str,
        checkpoint: &str,
        progress: &dyn Progress,
    ) -> Result<Reset, Error> {
        check_name("snapshot name", checkpoint)?;
        let ws = self.workspace_locked(id)?;
        let image = ws.dir.checkpoint_image(checkpoint);
        if !image.is_file() {
            return Err(Error::NotFound(format!(
                "workspace {id} has no snapshot {checkpoint:?}: see `pyro workspace snapshot list {id}`"
            )));
        }
        ws.vm().stop()?;
        // Kept memory belongs to the disk being replaced.
        let _ = std::fs::remove_dir_all(ws.dir.suspended());
        let restored = ws.dir.0.join("disk.restore");
        let _ = std::fs::remove_file(&restored);
        let bytes = disk::sparse_copy(&image, &restored)?;
        let system = ws.dir.0.join("system.restore");
        let _ = std::fs::remove_file(&system);
        let saved_system = ws.dir.checkpoint_system_image(checkpoint);
        let record = ws.record()?;
        let made = if saved_system.is_file() {
            disk::sparse_copy(&saved_system, &system).map(|_| ())
        } else {
            disk::make_system(&system, record.system_disk_mib)
        };
        if let Err(e) = made {
            let _ = std::fs::remove_file(&restored);
            return Err(e);
        }
        // Both in place, or (if the second rename fails) the old system
        // with the new /workspace: either boots, and nothing is lost that
        // the checkpoint does not hold.
        std::fs::rename(&restored, ws.dir.disk()).map_err(|e| store::io_err(&ws.dir.disk(), e))?;
        std::fs::rename(&system, ws.dir.system_disk())
            .map_err(|e| store::io_err(&ws.dir.system_disk(), e))?;
        let mut record = ws.touch(|r| {
            r.reset_count += 1;
            r.last_reset_at = Some(r.last_activity_at.clone());
        })?;
        progress.phase("reset", &format!("restored {checkpoint}; starting"));
        // The baseline's system image is the new-workspace snapshot's
        // template, unless that snapshot was taken again since.
        let new = (checkpoint == BASELINE && saved_system.is_file())
            .then(|| self.baseline_new_system(&ws.dir))
            .flatten();
        self.boot(&ws.dir, &mut record, false, new.as_ref(), progress)?;
        Ok(Reset {
            workspace_id: record.workspace_id.clone(),
            snapshot: checkpoint.into(),
            bytes_restored: bytes,
            workspace: super::handle::view(&ws.dir, record),
        })
    }
}

/// Baseline first, then by creation time, then by name.
fn order(c: &Checkpoint) -> (bool, &str, &str) {
    (c.kind != CheckpointKind::Baseline, &c.created_at, &c.name)
}
