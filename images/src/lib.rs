//! `pyro-images` owns how pyro's guest artifacts are built and cached:
//!
//! - the guest **kernel**: Debian's `linux-source-6.1` plus the patches and
//!   Kconfig fragment in `images/kernel/` (embedded in the binary), built to
//!   an uncompressed ELF `vmlinux` (see `images/kernel/README.md`);
//! - **environments** from the [`Catalog`]: Debian package trees made by
//!   `mmdebstrap`, with the static guest-init ([`guest_init_binary`]) added
//!   at `/opt/pyro/bin/pyro-init`, packed into read-only ext4 images by
//!   `mkfs.ext4 -d`;
//! - the content-addressed **cache** that holds them ([`Paths`]): every
//!   result lives under a key derived from its inputs, is rebuilt only when
//!   an input changes, is written atomically with a JSON manifest, and is
//!   built by one process at a time (file locks).
//!
//! Layout under `Paths::cache`:
//!
//! ```text
//! kernels/<key>/{vmlinux,config,manifest.json}
//! rootfs/<tree key>/{tree/,manifest.json}
//! environments/<name, ':' -> '_'>/<image key>/{rootfs.ext4,manifest.json}
//! build/kernel-<key>/      (scratch; kept after a failure for its log)
//! locks/*.lock
//! ```
//!
//! Long work reports to a caller-supplied [`Progress`].

#![forbid(unsafe_code)]

mod catalog;
mod dpkg;
mod elf;
mod error;
mod fsutil;
mod guest_init;
mod hash;
mod image;
mod kernel;
mod lock;
mod manifest;
mod mirror;
mod paths;
mod progress;
mod prune;
mod rootfs;
mod run;
mod tools;

use std::path::{Path, PathBuf};

pub use catalog::{Catalog, EnvSpec, DEFAULT_ENV};
pub use error::{Error, MissingTool, Result};
pub use guest_init::{guest_init_binary, GUEST_INIT_ENV, GUEST_TARGET};
pub use image::{EnvManifest, Environment, GUEST_INIT_PATH, ROOT_LABEL};
pub use kernel::{Kernel, KernelManifest, PatchInfo, SOURCE_PACKAGE};
pub use manifest::rfc3339;
pub use mirror::{debian_mirror, DEFAULT_MIRROR};
pub use paths::Paths;
pub use progress::{NoProgress, Progress, StderrProgress};

/// Builds and finds kernels and environment images in one cache.
#[derive(Debug, Clone)]
pub struct Images {
    paths: Paths,
}

impl Images {
    pub fn new(paths: Paths) -> Self {
        Images { paths }
    }

    /// The cache and data locations in use.
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// The guest kernel for the current source package, config and patches,
    /// built if needed (minutes; progress goes to `p`).
    pub fn kernel(&self, p: &dyn Progress) -> Result<Kernel> {
        kernel::ensure(&self.paths, p)
    }

    /// The built kernel for the current inputs, or else the newest one with
    /// the current config and patches; never builds.
    pub fn installed_kernel(&self) -> Option<Kernel> {
        kernel::installed(&self.paths)
    }

    /// The image of environment `name` with the current guest-init, building
    /// guest-init, the package tree and the image as needed.
    pub fn environment(&self, name: &str, p: &dyn Progress) -> Result<Environment> {
        Catalog::get(name)?;
        let init = guest_init_binary(p)?;
        self.environment_with_guest_init(name, &init, p)
    }

    /// Like [`Images::environment`] with an explicit guest-init binary
    /// (a static x86_64 executable).
    pub fn environment_with_guest_init(
        &self,
        name: &str,
        guest_init: &Path,
        p: &dyn Progress,
    ) -> Result<Environment> {
        image::ensure(&self.paths, name, guest_init, p)
    }

    /// The newest built image of `name` (by `built_at`), whatever guest-init
    /// it carries; never builds. `None` for unknown names.
    pub fn installed_environment(&self, name: &str) -> Option<Environment> {
        image::installed(&self.paths, name)
    }

    /// What this host lacks to build the kernel and the image of `env`,
    /// for whichever of them is not built yet: one entry per missing
    /// tool, with its Debian package. Empty when both are built, or can
    /// be. (Only the host's tools are checked: a build can still fail on
    /// the network or the disk.)
    pub fn missing_to_build(&self, env: &str) -> Vec<MissingTool> {
        let mut missing = Vec::new();
        if self.installed_kernel().is_none() {
            missing.extend(tools::missing(tools::KERNEL));
            if !Path::new(kernel::SOURCE_TARBALL).is_file() {
                missing.push(MissingTool {
                    tool: kernel::SOURCE_TARBALL.to_string(),
                    package: SOURCE_PACKAGE.to_string(),
                });
            }
        }
        if self.installed_environment(env).is_none() {
            missing.extend(tools::missing(tools::ROOTFS));
        }
        missing
    }

    /// Removes unfinished (`.partial-*`) and failed builds, kernels and
    /// images that do not match the current inputs, and package trees no
    /// catalog entry uses. Returns what it deleted.
    ///
    /// For images the current guest-init is known only if `PYRO_GUEST_INIT`
    /// is set or this process already built it; otherwise the newest image
    /// of each environment's current tree is kept.
    pub fn prune(&self) -> Result<Vec<PathBuf>> {
        prune::prune(&self.paths)
    }
}
