//! Shared set-up for the end-to-end tests: the real kernel and images,
//! built from Debian packages on first use (`.ci/run` builds them first).

#![allow(dead_code)]

use pyro::images::{Images, Paths, StderrProgress};
use std::path::PathBuf;
use std::sync::OnceLock;

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
