//! Shared bench set-up: the default environment's VM config (and a
//! workspace for the workspace benches), with the
//! kernel and image built first if missing.

#![allow(dead_code)]

use pyro::images::{Images, Paths, StderrProgress};
use pyro::vmm::{Disk, Vm, VmConfig, VsockConfig};
use pyro::workspace::GuestClient;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub fn default_env_vm() -> VmConfig {
    let images = Images::new(Paths::from_env());
    let progress = StderrProgress::new();
    let kernel = images.kernel(&progress).expect("kernel").path;
    let rootfs = images
        .environment(pyro::images::DEFAULT_ENV, &progress)
        .expect("environment")
        .rootfs;
    let mut config = VmConfig::new(kernel);
    config.add_disk(Disk {
        path: rootfs,
        read_only: true,
        direct_only: false,
    });
    config
}

/// Boots the default environment with `mem_mib` of RAM and vsock in
/// `dir`, and waits for its agent. Returns the VM and its vsock socket.
pub fn serving_vm(dir: &Path, mem_mib: u32) -> (Vm, PathBuf) {
    let uds = dir.join("vsock.sock");
    let mut config = default_env_vm();
    config.mem_mib = mem_mib;
    config.set_vsock(VsockConfig {
        cid: 3,
        uds: uds.clone(),
    });
    let mut vm = Vm::start(&config).expect("start");
    vm.wait_for_init(Duration::from_secs(120)).expect("init");
    GuestClient::wait_ready(&uds, Duration::from_secs(60)).expect("agent");
    (vm, uds)
}

/// A `Pyro` with the shared image cache and the data dir `data`, and a
/// new workspace in it (its id).
pub fn pyro_with_workspace(data: &Path) -> (pyro::workspace::Pyro, String) {
    let pyro = pyro::workspace::Pyro::with_paths(pyro::images::Paths {
        cache: pyro::images::Paths::from_env().cache,
        data: data.to_path_buf(),
    });
    let ws = pyro
        .workspace_create(
            &pyro::workspace::CreateOptions::default(),
            &pyro::workspace::NoProgress,
        )
        .expect("create")
        .record
        .workspace_id;
    (pyro, ws)
}
