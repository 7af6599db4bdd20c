//! Shared set-up for the end-to-end tests: the real kernel and images,
//! built from Debian packages on first use (`.ci/run` builds them first).

#![allow(dead_code)]

use pyro::images::{Images, Paths, StderrProgress};
use pyro::vmm::{Disk, Vm, VmConfig, VsockConfig};
use pyro::workspace::GuestClient;
use pyro::workspace::Pyro;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// The default cache (or `PYRO_HOME`), as users have it.
pub fn images() -> Images {
    Images::new(Paths::from_env())
}

/// The guest kernel, built if missing.
pub fn kernel() -> PathBuf {
    static KERNEL: OnceLock<PathBuf> = OnceLock::new();
    KERNEL
        .get_or_init(|| {
            images()
                .kernel(&StderrProgress::new())
                .expect("guest kernel")
                .path
        })
        .clone()
}

/// The root image of `env` with the current guest-init, built if missing.
pub fn rootfs(env: &str) -> PathBuf {
    images()
        .environment(env, &StderrProgress::new())
        .expect("environment image")
        .rootfs
}

/// A scratch directory removed at the end of the test.
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Boots `env` with vsock and waits for its agent; the sockets and the
/// console log go in `dir`. Returns the VM and its vsock socket.
pub fn serving_vm(env: &str, dir: &Path) -> (Vm, PathBuf) {
    serving_vm_with(env, dir, &[])
}

/// [`serving_vm`] with `cmdline_extra` appended to the kernel command line.
pub fn serving_vm_with(env: &str, dir: &Path, cmdline_extra: &[&str]) -> (Vm, PathBuf) {
    let uds = dir.join("vsock.sock");
    let mut config = VmConfig::new(kernel());
    config
        .cmdline_extra
        .extend(cmdline_extra.iter().map(|w| w.to_string()));
    config.add_disk(Disk {
        path: rootfs(env),
        read_only: true,
        direct_only: false,
    });
    config.set_vsock(VsockConfig {
        cid: 3,
        uds: uds.clone(),
    });
    config.serial_log = Some(dir.join("console.log"));
    let mut vm = Vm::start(&config).expect("start");
    vm.wait_for_init(Duration::from_secs(120)).expect("init");
    GuestClient::wait_ready(&uds, Duration::from_secs(30)).expect("agent ready");
    (vm, uds)
}

/// The shared image cache, but a data dir of our own, so "nothing left
/// behind" can be checked without other tests' runs in the way.
pub fn pyro_with_own_data(data: &std::path::Path) -> Pyro {
    kernel(); // build once, before the threads race for it
    rootfs("debian:12");
    Pyro::with_paths(Paths {
        cache: Paths::from_env().cache,
        data: data.to_path_buf(),
    })
}

/// Creates a workspace seeded from the directory `seed`; its id. A TTL
/// of 30 minutes: a failed assertion never leaves its VM running.
pub fn seeded_workspace(pyro: &Pyro, seed: &Path) -> String {
    let opts = pyro::workspace::CreateOptions {
        seed_path: Some(seed.to_path_buf()),
        ttl_seconds: Some(1800),
        ..Default::default()
    };
    pyro.workspace_create(&opts, &pyro::workspace::NoProgress)
        .expect("create")
        .record
        .workspace_id
}

/// Run directories left under `data` (by runs that did not clean up).
pub fn leftovers(data: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(data.join("vms"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Deletes workspace `id` when dropped, also when a step failed; then
/// it first prints the tail of the guest's console, for the report.
pub fn delete_on_drop<'a>(pyro: &'a Pyro, id: &'a str) -> impl Drop + 'a {
    struct Guard<'a>(&'a Pyro, &'a str);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                // What the guest said, for the failure's report.
                let log = self
                    .0
                    .paths()
                    .data
                    .join("workspaces")
                    .join(self.1)
                    .join("vm/console.log");
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                eprintln!("console of {}:", self.1);
                for line in tail.iter().rev() {
                    eprintln!("  {line}");
                }
            }
            let _ = self.0.workspace_delete(self.1);
        }
    }
    Guard(pyro, id)
}
