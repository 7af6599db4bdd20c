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

use crate::guest::GuestClient;
use crate::{Error, Progress, Pyro};
use pyro_guest_init::proto::rpc::ExecRequest;
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
    /// or console set yet); it may not exist.
    pub(crate) fn warm_dir(&self, environment: &str, config: &VmConfig) -> PathBuf {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (
            pyro_vmm::snapshot::FORMAT_VERSION,
            vmm_build_id(),
            file_id(&config.kernel),
            config
                .disks
                .iter()
                .map(|d| file_id(&d.path))
                .collect::<Vec<_>>(),
            &config.cmdline_extra,
        )
            .hash(&mut h);
        let env: String = environment
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        self.paths().cache.join("snapshots").join(format!(
            "{env}-{}m-{}c-{:016x}",
            config.mem_mib,
            config.vcpus,
            h.finish()
        ))
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
        run_config.vsock = Some(VsockConfig {
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
        client.restored()?;
        Ok(Warm {
            vm,
            client,
            restore_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Boots `config` cold, warms the guest's page cache with one command
    /// and snapshots it into `snap`, under a lock (a second caller waits
    /// and uses the first one's snapshot).
    fn build_warm(
        &self,
        environment: &str,
        config: &VmConfig,
        snap: &Path,
        timeout: Duration,
        progress: &dyn Progress,
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
        let result = (|| -> Result<(), Error> {
            let mut boot = config.clone();
            let uds = work.join("vsock.sock");
            boot.vsock = Some(VsockConfig {
                cid: 3,
                uds: uds.clone(),
            });
            let mut vm = Vm::start(&boot)?;
            vm.wait_for_init(timeout)?;
            let mut client = GuestClient::wait_ready(&uds, timeout)?;
            // One command, so what every `run` needs first (the exec path,
            // libc, the shell) is already in the guest's page cache.
            client.exec(
                ExecRequest {
                    argv: vec!["true".into()],
                    ..Default::default()
                },
                |_, _| {},
            )?;
            drop(client);
            let state = work.join("state");
            vm.snapshot(&state)?;
            vm.shutdown();
            let _ = std::fs::remove_dir_all(snap);
            std::fs::rename(&state, snap).map_err(|e| io(snap, e))
        })();
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
