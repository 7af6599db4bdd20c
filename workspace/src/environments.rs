//! `env list | pull | inspect | prune`.

use crate::{Error, Progress, Pyro};
use pyro_images::{Catalog, EnvManifest, EnvSpec, KernelManifest};
use serde::Serialize;
use std::path::PathBuf;

/// One catalog entry and whether it is built.
#[derive(Debug, Clone, Serialize)]
pub struct EnvSummary {
    pub name: String,
    pub description: String,
    pub packages: Vec<String>,
    pub installed: bool,
}

/// Everything known about one environment.
#[derive(Debug, Clone, Serialize)]
pub struct EnvDetail {
    pub name: String,
    pub description: String,
    pub packages: Vec<String>,
    pub installed: bool,
    pub rootfs: Option<PathBuf>,
    pub manifest: Option<EnvManifest>,
    pub kernel: Option<PathBuf>,
    pub kernel_manifest: Option<KernelManifest>,
}

/// What `env prune` removed.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub deleted: Vec<PathBuf>,
    pub count: usize,
}

impl Pyro {
    /// The catalog, with what is built.
    pub fn env_list(&self) -> Vec<EnvSummary> {
        Catalog::all()
            .iter()
            .map(|spec| EnvSummary {
                name: spec.name.to_string(),
                description: spec.description.to_string(),
                packages: packages(spec),
                installed: self.images().installed_environment(spec.name).is_some(),
            })
            .collect()
    }

    /// Builds the kernel and the environment if needed (minutes the first
    /// time; progress goes to `progress`).
    pub fn env_pull(&self, name: &str, progress: &dyn Progress) -> Result<EnvDetail, Error> {
        Catalog::get(name)?;
        self.images().kernel(progress)?;
        self.images().environment(name, progress)?;
        self.env_inspect(name)
    }

    /// What is known about `name`, built or not.
    pub fn env_inspect(&self, name: &str) -> Result<EnvDetail, Error> {
        let spec = Catalog::get(name)?;
        let env = self.images().installed_environment(name);
        let kernel = self.images().installed_kernel();
        Ok(EnvDetail {
            name: spec.name.to_string(),
            description: spec.description.to_string(),
            packages: packages(spec),
            installed: env.is_some() && kernel.is_some(),
            rootfs: env.as_ref().map(|e| e.rootfs.clone()),
            manifest: env.map(|e| e.manifest),
            kernel: kernel.as_ref().map(|k| k.path.clone()),
            kernel_manifest: kernel.map(|k| k.manifest),
        })
    }

    /// Removes unfinished builds, artifacts the current inputs no longer
    /// use, and warm-start snapshots this pyro cannot restore.
    pub fn env_prune(&self) -> Result<PruneReport, Error> {
        let mut deleted = self.images().prune()?;
        deleted.extend(self.prune_snapshots());
        Ok(PruneReport {
            count: deleted.len(),
            deleted,
        })
    }
}

fn packages(spec: &EnvSpec) -> Vec<String> {
    spec.packages.iter().map(|p| p.to_string()).collect()
}
