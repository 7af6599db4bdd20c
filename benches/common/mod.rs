//! Shared bench set-up: the default environment's VM config, with the
//! kernel and image built first if missing.

use pyro::images::{Images, Paths, StderrProgress};
use pyro::vmm::{Disk, VmConfig};

pub fn default_env_vm() -> VmConfig {
    let images = Images::new(Paths::from_env());
    let progress = StderrProgress::new();
    let kernel = images.kernel(&progress).expect("kernel").path;
    let rootfs = images
        .environment(pyro::images::DEFAULT_ENV, &progress)
        .expect("environment")
        .rootfs;
    let mut config = VmConfig::new(kernel);
    config.disks.push(Disk {
        path: rootfs,
        read_only: true,
    });
    config
}
