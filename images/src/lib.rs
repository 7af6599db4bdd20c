//! `pyro-images` owns how pyro's guest artifacts are built and cached:
//!
//! - the guest **kernel**: Debian's `linux-source-6.1` plus the patches and
//!   Kconfig fragment in `images/kernel/` (embedded in the binary), built to
//!   an uncompressed ELF `vmlinux` (see `images/kernel/README.md`), in two
//!   variants ([`KernelVariant`]): uniprocessor for 1-vCPU VMs, SMP (built
//!   on first use) for more;
//! - **environments** from the [`Catalog`], and **custom environments**
//!   (a catalog environment plus packages and a setup script, defined by
//!   the user, [`CustomRequest`]): Debian package trees made by
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
//! and custom environments' definitions under `Paths::data`:
//! `environments/<name, ':' -> '_'>.json`.
//!
//! Long work reports to a caller-supplied [`Progress`].

#![forbid(unsafe_code)]

mod catalog;
mod custom;
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
pub use custom::{CustomEnv, CustomRequest, MAX_NAME_LEN, MAX_PACKAGES, MAX_SETUP_SCRIPT};
pub use error::{Error, MissingTool, Result};
pub use guest_init::{guest_init_binary, GUEST_INIT_ENV, GUEST_TARGET};
pub use image::{EnvManifest, Environment, GUEST_INIT_PATH, ROOT_LABEL};
pub use kernel::{Kernel, KernelManifest, KernelVariant, PatchInfo, SOURCE_PACKAGE};
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

    /// The uniprocessor guest kernel (the one 1-vCPU VMs boot) for the
    /// current source package, config and patches, built if needed
    /// (minutes; progress goes to `p`).
    pub fn kernel(&self, p: &dyn Progress) -> Result<Kernel> {
        self.kernel_variant(KernelVariant::Up, p)
    }

    /// The guest kernel a VM with `vcpus` vCPUs boots
    /// ([`KernelVariant::for_vcpus`]), built if needed.
    pub fn kernel_for_vcpus(&self, vcpus: u8, p: &dyn Progress) -> Result<Kernel> {
        self.kernel_variant(KernelVariant::for_vcpus(vcpus), p)
    }

    /// The `variant` guest kernel, built if needed.
    pub fn kernel_variant(&self, variant: KernelVariant, p: &dyn Progress) -> Result<Kernel> {
        kernel::ensure(&self.paths, variant, p)
    }

    /// The built uniprocessor kernel for the current inputs, or else the
    /// newest one with the current config and patches; never builds.
    pub fn installed_kernel(&self) -> Option<Kernel> {
        self.installed_kernel_variant(KernelVariant::Up)
    }

    /// Like [`Images::installed_kernel`] for `variant`.
    pub fn installed_kernel_variant(&self, variant: KernelVariant) -> Option<Kernel> {
        kernel::installed(&self.paths, variant)
    }

    /// The environment called `name`: the catalog's, else a custom one.
    /// The error for an unknown name lists every valid one.
    pub fn spec(&self, name: &str) -> Result<EnvSpec> {
        if let Some(spec) = Catalog::find(name) {
            return Ok(spec.clone());
        }
        custom::get(&self.paths, name)?.ok_or_else(|| custom::unknown(&self.paths, name))
    }

    /// Every environment: the catalog's, then the custom ones by name.
    pub fn specs(&self) -> Vec<EnvSpec> {
        custom::all_specs(&self.paths)
    }

    /// The image of environment `name` with the current guest-init, building
    /// guest-init, the package tree and the image as needed.
    pub fn environment(&self, name: &str, p: &dyn Progress) -> Result<Environment> {
        let spec = self.spec(name)?;
        let init = guest_init_binary(&self.paths, p)?;
        image::ensure(&self.paths, &spec, &init, p)
    }

    /// Like [`Images::environment`] with an explicit guest-init binary
    /// (a static x86_64 executable).
    pub fn environment_with_guest_init(
        &self,
        name: &str,
        guest_init: &Path,
        p: &dyn Progress,
    ) -> Result<Environment> {
        image::ensure(&self.paths, &self.spec(name)?, guest_init, p)
    }

    /// The newest built image of `name` (by `built_at`) of its current
    /// package set, whatever guest-init it carries; never builds. `None`
    /// for unknown names.
    pub fn installed_environment(&self, name: &str) -> Option<Environment> {
        image::installed(&self.paths, &self.spec(name).ok()?)
    }

    /// Where the images of environment `name` live (whether or not any
    /// is built): `cache/environments/<name, ':' -> '_'>`.
    pub fn images_dir(&self, name: &str) -> PathBuf {
        self.paths.environments().join(catalog::dir_name(name))
    }

    /// Builds the custom environment `req` describes (the package tree
    /// with mmdebstrap on the host, then its image; minutes, progress to
    /// `p`) and records it, so that every place that takes an environment
    /// name accepts it. All or nothing: if the build fails, no definition,
    /// tree or image is left. Building a name again with the same inputs
    /// returns the existing environment (rebuilding its image if needed);
    /// with other inputs it is refused: delete the old one first.
    pub fn build_custom(&self, req: &CustomRequest, p: &dyn Progress) -> Result<Environment> {
        let spec = custom::spec_of(req)?;
        let init = guest_init_binary(&self.paths, p)?;
        let _lock = lock::acquire(
            &self.paths.locks(),
            &format!("custom-{}", spec.dir_name()),
            &spec.name,
            p,
        )?;
        let spec = match custom::get(&self.paths, &spec.name)? {
            Some(old) if custom::same_build(&old, &spec) => old,
            Some(_) => {
                return Err(Error::InvalidEnvironment {
                    message: format!(
                        "custom environment `{}` exists with other packages or setup script: delete it first (`pyro env delete {}`)",
                        spec.name, spec.name
                    ),
                })
            }
            None => spec,
        };
        let env = image::ensure(&self.paths, &spec, &init, p)?;
        custom::save(&self.paths, &spec)?;
        Ok(env)
    }

    /// Deletes the custom environment `name`: its definition, its images,
    /// and its package tree unless another environment uses that tree.
    /// Catalog environments cannot be deleted (`prune` removes what their
    /// current inputs do not use). Whether a workspace still uses `name`
    /// is for the caller to check. Returns what it removed.
    pub fn delete_custom(&self, name: &str) -> Result<Vec<PathBuf>> {
        if Catalog::find(name).is_some() {
            return Err(Error::InvalidEnvironment {
                message: format!(
                    "`{name}` is a catalog environment and cannot be deleted (`pyro env prune` removes its stale builds)"
                ),
            });
        }
        let spec =
            custom::get(&self.paths, name)?.ok_or_else(|| custom::unknown(&self.paths, name))?;
        let _lock = lock::acquire(
            &self.paths.locks(),
            &format!("custom-{}", spec.dir_name()),
            name,
            &NoProgress,
        )?;
        let tree_key = rootfs::spec_tree_key(&spec);
        let _tree_lock = lock::acquire(
            &self.paths.locks(),
            &format!("rootfs-{tree_key}"),
            name,
            &NoProgress,
        )?;
        // The definition first: from here on the name is unknown, so no
        // new VM can pick up the image being removed.
        let mut removed = vec![custom::remove(&self.paths, name)?];
        let images = self.images_dir(name);
        if images.exists() {
            fsutil::remove_dir_if_exists(&images)?;
            removed.push(images);
        }
        let shared = self
            .specs()
            .iter()
            .any(|s| rootfs::spec_tree_key(s) == tree_key);
        let tree = self.paths.trees().join(&tree_key);
        if !shared && tree.exists() {
            fsutil::remove_dir_if_exists(&tree)?;
            removed.push(tree);
        }
        Ok(removed)
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
                missing.push(MissingTool::new(kernel::SOURCE_TARBALL, SOURCE_PACKAGE));
            }
        }
        if self.installed_environment(env).is_none() {
            missing.extend(tools::missing(tools::ROOTFS));
        }
        missing
    }

    /// Provides in one round what [`Images::missing_to_build`] finds
    /// missing for `env` (installed as root on Debian, else named in the
    /// error: `tools::ensure`), so a first build asks once, not once for
    /// the kernel and again for the image. Nothing when nothing is missing.
    pub fn provide_tools(&self, env: &str, p: &dyn Progress) -> Result<()> {
        // The usual case first, with a few `stat`s: everything is here.
        let all_here = tools::missing(tools::KERNEL).is_empty()
            && tools::missing(tools::ROOTFS).is_empty()
            && Path::new(kernel::SOURCE_TARBALL).is_file();
        if all_here {
            return Ok(());
        }
        let missing = self.missing_to_build(env);
        tools::ensure(&[], &missing, &kernel::tools_log(&self.paths), p)
    }

    /// Removes unfinished (`.partial-*`) and failed builds, kernels and
    /// images that do not match the current inputs, and package trees no
    /// catalog entry uses. Returns what it deleted.
    ///
    /// For images, the one with the current guest-init (the embedded one,
    /// or `PYRO_GUEST_INIT`'s) is kept, else the newest of each
    /// environment's current tree; copies of older guest-inits go too.
    pub fn prune(&self) -> Result<Vec<PathBuf>> {
        prune::prune(&self.paths)
    }
}
