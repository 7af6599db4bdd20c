//! Warm starts: for each VM shape (environment, kernel, memory, vCPUs,
//! VMM build) an "agent ready" VM snapshot, built on first need, that
//! `run` restores instead of cold-booting. On PVM hosts a cold boot is
//! ~10 s of emulated kernel work; a restore skips all of it.
//!
//! The snapshot lives in `<cache>/snapshots/<key>/` (see
//! `pyro_vmm::snapshot` for its files). Its key hashes the kernel and
//! root image files' identities and the VMM build, so any change to
//! those makes a new one; a snapshot that still fails the VMM's own
//! checks is rebuilt once. Every restored VM is made unique at once
//! ([`GuestClient::restored`]: hostname, reseeded kernel RNG, clock).

use crate::detached::{vmm_program, DetachedVm};
use crate::guest::GuestClient;
use crate::{Error, Progress, Pyro};
use pyro_proto::rpc::ExecRequest;
use pyro_vmm::control::VmmSpec;
use pyro_vmm::snapshot::{file_id, vmm_build_id, STATE_FILE};
use pyro_vmm::{Vm, VmConfig, VsockConfig};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A restored VM with its agent made unique and answering.
pub(crate) struct Warm {
    pub vm: Vm,
    pub client: GuestClient,
    /// VMM start to agent answering, restore included.
    pub restore_ms: u64,
}

impl Pyro {
    /// The directory of the agent-ready snapshot for `config` (no vsock
    /// or console set yet) taken by the VMM binary `vmm` (its
    /// [`vmm_build_id`]); it may not exist. `kind` tells apart snapshots
    /// of one shape taken for different uses.
    fn snapshot_dir(&self, environment: &str, config: &VmConfig, vmm: &str, kind: &str) -> PathBuf {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (
            pyro_vmm::snapshot::FORMAT_VERSION,
            vmm,
            file_id(&config.kernel),
            // The root image; a workspace's disk is never in a snapshot.
            config.root().map(|d| file_id(&d.path)),
            config.layout(),
            &config.cmdline_extra,
        )
            .hash(&mut h);
        let env: String = environment
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        self.paths().cache.join("snapshots").join(format!(
            "{env}-{}m-{}c-{kind}{:016x}",
            config.mem_mib,
            config.vcpus,
            h.finish()
        ))
    }

    /// The warm snapshot `run` restores in this process.
    pub(crate) fn warm_dir(&self, environment: &str, config: &VmConfig) -> PathBuf {
        self.snapshot_dir(environment, config, &vmm_build_id(), "")
    }

    /// Restores `config`'s warm snapshot (building it first if missing
    /// or unusable) with the vsock socket at `uds`.
    pub(crate) fn restore_warm(
        &self,
        environment: &str,
        config: &VmConfig,
        uds: &Path,
        timeout: Duration,
        progress: &dyn Progress,
    ) -> Result<Warm, Error> {
        let snap = self.warm_dir(environment, config);
        if !snap.join(STATE_FILE).exists() {
            self.build_warm(environment, config, &snap, timeout, progress)?;
        }
        let mut run_config = config.clone();
        run_config.set_vsock(VsockConfig {
            cid: 3,
            uds: uds.to_path_buf(),
        });
        let started = Instant::now();
        let vm = match Vm::restore(&run_config, &snap) {
            Ok(vm) => vm,
            Err(pyro_vmm::Error::Snapshot { detail, .. }) => {
                progress.phase("snapshot", &format!("rebuilding: {detail}"));
                let _ = std::fs::remove_dir_all(&snap);
                self.build_warm(environment, config, &snap, timeout, progress)?;
                Vm::restore(&run_config, &snap)?
            }
            Err(e) => return Err(e.into()),
        };
        let mut client = GuestClient::wait_ready(uds, timeout)?;
        // A throwaway writable system: the command may write anywhere.
        client.restored(None, Some(pyro_proto::cmdline::SYSTEM_TMPFS))?;
        Ok(Warm {
            vm,
            client,
            restore_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Boots `config` cold in this process, warms the guest's page cache
    /// and snapshots it into `snap` (see [`Pyro::build_snapshot`]).
    fn build_warm(
        &self,
        environment: &str,
        config: &VmConfig,
        snap: &Path,
        timeout: Duration,
        progress: &dyn Progress,
    ) -> Result<(), Error> {
        self.build_snapshot(environment, snap, progress, |work, state| {
            let mut boot = config.clone();
            boot.set_net(snapshot_network());
            let uds = work.join("vsock.sock");
            boot.set_vsock(VsockConfig {
                cid: 3,
                uds: uds.clone(),
            });
            let mut vm = Vm::start(&boot)?;
            vm.wait_for_init(timeout)?;
            let mut client = GuestClient::wait_ready(&uds, timeout)?;
            warm_page_cache(&mut client)?;
            drop(client);
            vm.snapshot(state)?;
            vm.shutdown();
            Ok(())
        })
    }

    /// Makes the snapshot `snap` with `take(work, state)`, which must
    /// leave a snapshot in `state` (scratch files go in `work`), under a
    /// lock: a second caller waits and uses the first one's snapshot. The
    /// snapshot appears whole or not at all.
    pub(crate) fn build_snapshot(
        &self,
        environment: &str,
        snap: &Path,
        progress: &dyn Progress,
        take: impl FnOnce(&Path, &Path) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let io = |what: &Path, e: std::io::Error| Error::Io(format!("{}: {e}", what.display()));
        let parent = snap.parent().unwrap_or(snap);
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        let lock_path = snap.with_extension("lock");
        let lock = std::fs::File::create(&lock_path).map_err(|e| io(&lock_path, e))?;
        lock.lock().map_err(|e| io(&lock_path, e))?;
        if snap.join(STATE_FILE).exists() {
            return Ok(());
        }
        progress.phase(
            "snapshot",
            &format!("booting {environment} once to take its warm-start snapshot"),
        );
        let started = Instant::now();
        let work = snap.with_extension(format!("tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).map_err(|e| io(&work, e))?;
        let state = work.join("state");
        let result = take(&work, &state).and_then(|()| {
            let _ = std::fs::remove_dir_all(snap);
            std::fs::rename(&state, snap).map_err(|e| io(snap, e))
        });
        let _ = std::fs::remove_dir_all(&work);
        result?;
        progress.done(
            "snapshot",
            &format!(
                "warm-start snapshot ready in {:.1} s",
                started.elapsed().as_secs_f64()
            ),
        );
        Ok(())
    }
}

/// One command before the snapshot, so what every later command needs
/// first (the exec path, libc, the shell) is already in the guest's page
/// cache.
pub(crate) fn warm_page_cache(client: &mut GuestClient) -> Result<(), Error> {
    client.exec(
        ExecRequest {
            argv: vec!["true".into()],
            ..Default::default()
        },
        |_, _| {},
    )?;
    Ok(())
}

/// The empty disk a workspace snapshot is taken with, in the VM's
/// directory (see [`Pyro::workspace_snapshot`]).
const PLACEHOLDER: &str = "placeholder.img";

/// The system disk a workspace snapshot is taken with: empty, or (for a
/// [`Mounts::SystemAtBoot`] snapshot) a new upper layer the VM mounted.
const PLACEHOLDER_SYSTEM: &str = "placeholder-system.img";

/// In the directory of a snapshot for new workspaces: its system disk as
/// it was when the snapshot was taken, which a new workspace's system
/// disk is copied from.
pub(crate) const SYSTEM_TEMPLATE: &str = "system.ext4";

/// In the directory of a snapshot for new workspaces with an empty
/// /workspace ([`NewDisks::workspace_mib`]): its /workspace disk as it
/// was when the snapshot was taken, which such a workspace's disk is
/// copied from.
pub(crate) const WORKSPACE_TEMPLATE: &str = "workspace.ext4";

/// The new, empty disks a snapshot for new workspaces boots with and
/// mounts, so that restoring it skips their mounts (see
/// [`Pyro::workspace_snapshot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NewDisks {
    /// The system disk's size (MiB).
    pub system_mib: u64,
    /// The /workspace disk's size (MiB), for workspaces with no seed: the
    /// snapshot then has /workspace mounted too. `None`: /workspace is
    /// attached and mounted after the restore ([`Mounts::SystemAtBoot`]).
    pub workspace_mib: Option<u64>,
}

impl NewDisks {
    /// How the snapshot's VM (and every VM restored from it) has its
    /// disks mounted.
    pub(crate) fn mounts(&self) -> Mounts {
        match self.workspace_mib {
            Some(_) => Mounts::AtBoot,
            None => Mounts::SystemAtBoot,
        }
    }

    /// The templates a disk must be copied from to be attached to a VM
    /// restored from such a snapshot.
    pub(crate) fn templates(&self) -> &'static [&'static str] {
        match self.workspace_mib {
            Some(_) => &[SYSTEM_TEMPLATE, WORKSPACE_TEMPLATE],
            None => &[SYSTEM_TEMPLATE],
        }
    }
}

/// The device a workspace's disk appears as in the guest (the second
/// disk, after the root image).
pub(crate) const WORKSPACE_DEVICE: &str = "/dev/vdb";
/// The device of a workspace's system disk (the third).
pub(crate) const SYSTEM_DEVICE: &str = "/dev/vdc";

/// When a workspace VM's guest mounts its two disks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mounts {
    /// Both at boot: a cold boot, and the snapshot for new workspaces
    /// with an empty /workspace. Only disks copied from such a
    /// snapshot's templates may be attached to a VM restored from it.
    AtBoot,
    /// Both on `Restored`, after a restore (the workspace snapshot).
    OnRestore,
    /// The system disk at boot, so it is mounted (and the overlay made)
    /// in the snapshot taken from that boot; /workspace on `Restored`.
    /// Only a system disk copied from the snapshot's [`SYSTEM_TEMPLATE`]
    /// may be attached to a VM restored from it: the guest's memory
    /// holds that filesystem's mounted state.
    SystemAtBoot,
}

impl Pyro {
    /// The VM of a workspace: `base` (the environment's VM, see
    /// [`Pyro::environment_vm`]) with `disk` as /workspace and `system`
    /// as the writable system's upper layer, mounted as `mounts` says,
    /// vsock, console and staging disk ([`crate::staging`]) in `vm_dir`.
    pub(crate) fn workspace_vm_config(
        base: &VmConfig,
        disk: &Path,
        system: &Path,
        mounts: Mounts,
        vm_dir: &Path,
    ) -> VmConfig {
        use pyro_proto::cmdline::{SYSTEM_KEY, SYSTEM_LATER, WORKSPACE_KEY, WORKSPACE_LATER};
        let mut config = base.clone();
        for path in [disk, system] {
            config.add_disk(pyro_vmm::Disk {
                path: path.to_path_buf(),
                read_only: false,
                direct_only: false,
            });
        }
        // The staging disk (made by `staging::reset` before the VM
        // starts): read-only to the guest, written by the host.
        config.add_disk(pyro_vmm::Disk {
            path: vm_dir.join(crate::staging::STAGING_FILE),
            read_only: true,
            direct_only: true,
        });
        let (mount, upper) = match mounts {
            Mounts::AtBoot => (WORKSPACE_DEVICE, SYSTEM_DEVICE),
            Mounts::OnRestore => (WORKSPACE_LATER, SYSTEM_LATER),
            Mounts::SystemAtBoot => (WORKSPACE_LATER, SYSTEM_DEVICE),
        };
        config
            .cmdline_extra
            .push(format!("{WORKSPACE_KEY}={mount}"));
        config.cmdline_extra.push(format!("{SYSTEM_KEY}={upper}"));
        config.set_vsock(VsockConfig {
            cid: 3,
            uds: vm_dir.join("vsock.sock"),
        });
        config.serial_log = Some(vm_dir.join("console.log"));
        config
    }

    /// The agent-ready snapshot workspaces of environment `environment`
    /// (VM `base`) restore from, built first if missing. It is taken by
    /// the VMM binary that will restore it (a `pyro __vmm` process, see
    /// [`vmm_program`]), from a VM whose workspace disk is an empty
    /// placeholder it never mounted: at restore the workspace's own disk
    /// takes that slot, the device tells the guest its new size, and the
    /// agent mounts it (see [`GuestClient::restored`]). So the snapshot
    /// holds no workspace data, and one serves every workspace of the
    /// shape.
    ///
    /// `new` asks for the snapshot new workspaces start from instead: its
    /// VM booted with a new, empty system disk of that size
    /// ([`Mounts::SystemAtBoot`]), and, for workspaces with no seed, an
    /// empty /workspace disk too ([`Mounts::AtBoot`]). So the snapshot
    /// has the writable system already made (an ext4 mount, the overlay
    /// and the pivot) and, with the second, /workspace mounted: each is
    /// about a second of emulated guest-kernel work on PVM hosts. It keeps
    /// those disks as [`SYSTEM_TEMPLATE`] and [`WORKSPACE_TEMPLATE`] for
    /// new workspaces to copy. The guest is synced, then paused before
    /// the snapshot and stopped after it, so each template is the disk as
    /// the snapshot's memory knows it.
    pub(crate) fn workspace_snapshot(
        &self,
        environment: &str,
        base: &VmConfig,
        new: Option<NewDisks>,
        timeout: Duration,
        progress: &dyn Progress,
    ) -> Result<PathBuf, Error> {
        let vmm = pyro_vmm::snapshot::vmm_build_id_of(&vmm_program()?);
        let mounts = new.as_ref().map_or(Mounts::OnRestore, NewDisks::mounts);
        let shape = |work: &Path| {
            Self::workspace_vm_config(
                base,
                &work.join(PLACEHOLDER),
                &work.join(PLACEHOLDER_SYSTEM),
                mounts,
                work,
            )
        };
        let kind = match new {
            Some(NewDisks {
                system_mib,
                workspace_mib: Some(ws),
            }) => format!("new{system_mib}m-ws{ws}m-"),
            Some(NewDisks { system_mib, .. }) => format!("new{system_mib}m-"),
            None => "ws-".to_string(),
        };
        let snap = self.snapshot_dir(environment, &shape(Path::new("")), &vmm, &kind);
        let templates = new.as_ref().map_or(&[][..], NewDisks::templates);
        let template_missing = templates.iter().any(|t| !snap.join(t).is_file());
        if snap.join(STATE_FILE).exists() && !template_missing {
            return Ok(snap);
        }
        if template_missing {
            // Half of one (never written so; removed by hand?): start over.
            let _ = std::fs::remove_dir_all(&snap);
        }
        self.build_snapshot(environment, &snap, progress, |work, state| {
            let io = |what: &Path, e: std::io::Error| Error::Io(format!("{}: {e}", what.display()));
            let mut config = shape(work);
            config.set_net(snapshot_network());
            // The second and third disks `shape` gave the VM.
            let placeholder = work.join(PLACEHOLDER);
            match new.and_then(|n| n.workspace_mib) {
                Some(mib) => crate::workspaces::make_empty_workspace_disk(&placeholder, mib)?,
                None => drop(std::fs::File::create(&placeholder).map_err(|e| io(&placeholder, e))?),
            }
            let staging = work.join(crate::staging::STAGING_FILE);
            crate::staging::reset(&staging).map_err(|e| io(&staging, e))?;
            let system = work.join(PLACEHOLDER_SYSTEM);
            match new {
                Some(n) => crate::workspaces::make_system_disk(&system, n.system_mib)?,
                None => drop(std::fs::File::create(&system).map_err(|e| io(&system, e))?),
            }
            // A deadline, so the VMM (its own process group) ends even if
            // this process is killed mid-build and never stops it.
            let deadline = crate::workspaces::now_unix() + 2 * timeout.as_secs() + 60;
            let vm = DetachedVm::spawn(&VmmSpec {
                config,
                dir: work.to_path_buf(),
                deadline_unix: Some(deadline),
                boot_timeout_ms: timeout.as_millis() as u64,
                remove_on_expiry: None,
                restore_from: None,
                idle_suspend: None,
            })?;
            let taken = vm.wait_ready(timeout).and_then(|mut client| {
                warm_page_cache(&mut client)?;
                if new.is_some() {
                    client.sync()?;
                    vm.pause()?;
                }
                drop(client);
                vm.snapshot(state)
            });
            let stopped = vm.stop();
            taken?;
            if new.is_some() {
                // Only once the VMM is gone: nothing writes the disks now.
                stopped?;
                for (disk, template) in [
                    (&system, SYSTEM_TEMPLATE),
                    (&placeholder, WORKSPACE_TEMPLATE),
                ]
                .into_iter()
                .filter(|(_, t)| templates.contains(t))
                {
                    let template = state.join(template);
                    std::fs::rename(disk, &template).map_err(|e| io(&template, e))?;
                }
            }
            Ok(())
        })?;
        Ok(snap)
    }
}

impl Pyro {
    /// Removes warm-start snapshots that no start will use again: those
    /// this `pyro` (the running program and the VMM binary) cannot
    /// restore (another build, host kernel, guest kernel or root image;
    /// damaged), and what interrupted builds left. Snapshots other
    /// programs embedding the SDK took are among them; each is taken
    /// again on its next need. One being built (its lock held) is left.
    pub(crate) fn prune_snapshots(&self) -> Vec<PathBuf> {
        let mut ours = vec![vmm_build_id()];
        if let Ok(program) = vmm_program() {
            ours.push(pyro_vmm::snapshot::vmm_build_id_of(&program));
        }
        self.sweep_snapshots(|snap| match snap {
            Err(_) => true,
            Ok(snap) => {
                let mut here = pyro_vmm::snapshot::Origin::current(&snap.config);
                if ours.contains(&snap.origin.vmm) {
                    here.vmm = snap.origin.vmm.clone();
                }
                snap.origin.mismatch(&here).is_some()
            }
        })
    }

    /// Removes the warm snapshots that boot a root image under `images`
    /// (a deleted environment's).
    pub(crate) fn remove_snapshots_of(&self, images: &Path) -> Vec<PathBuf> {
        self.sweep_snapshots(|snap| {
            snap.is_ok_and(|s| s.config.root().is_some_and(|d| d.path.starts_with(images)))
        })
    }

    /// Removes every snapshot `doomed` picks (and leftovers of snapshot
    /// builds whose process is gone); a snapshot being built is skipped.
    fn sweep_snapshots(
        &self,
        doomed: impl Fn(Result<&pyro_vmm::snapshot::Snapshot, &pyro_vmm::Error>) -> bool,
    ) -> Vec<PathBuf> {
        let root = self.paths().cache.join("snapshots");
        let Ok(entries) = std::fs::read_dir(&root) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        for path in entries.flatten().map(|e| e.path()) {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if let Some((_, pid)) = name.rsplit_once(".tmp-") {
                let alive = Path::new("/proc").join(pid).exists();
                if !alive && std::fs::remove_dir_all(&path).is_ok() {
                    removed.push(path);
                }
                continue;
            }
            if name.ends_with(".lock") || !path.is_dir() {
                continue;
            }
            let lock_path = path.with_extension("lock");
            let Ok(lock) = std::fs::File::create(&lock_path) else {
                continue;
            };
            if lock.try_lock().is_err() {
                continue; // being built
            }
            let stale = doomed(pyro_vmm::snapshot::Snapshot::read(&path).as_ref());
            if stale && std::fs::remove_dir_all(&path).is_ok() {
                // No key leads here again (its inputs are gone).
                let _ = std::fs::remove_file(&lock_path);
                removed.push(path);
            }
        }
        removed
    }
}

/// The network a warm snapshot is taken with, whatever the policy of the
/// VMs that restore it: link up (so a VM restored with networking can
/// connect at once; under `off` the device takes the link down as it
/// comes back), nothing allowed out, no ports.
fn snapshot_network() -> pyro_vmm::NetConfig {
    pyro_vmm::NetConfig {
        rules: pyro_vmm::net::policy::NetRules {
            policy: pyro_vmm::net::policy::NetworkPolicy::PublishedPorts,
            ..Default::default()
        },
        publish: Vec::new(),
    }
}
