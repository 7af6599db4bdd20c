//! `env list | pull | inspect | prune | build | delete`: the catalog's
//! environments and the user's custom ones.

use crate::{Error, Progress, Pyro};
use pyro_images::{CustomEnv, CustomRequest, EnvManifest, EnvSpec, KernelManifest};
use serde::Serialize;
use std::path::PathBuf;

/// One environment and whether it is built.
#[derive(Debug, Clone, Serialize)]
pub struct EnvSummary {
    pub name: String,
    pub description: String,
    pub packages: Vec<String>,
    pub installed: bool,
    /// `true` for an environment made with `env build`.
    pub custom: bool,
}

/// Everything known about one environment.
#[derive(Debug, Clone, Serialize)]
pub struct EnvDetail {
    pub name: String,
    pub description: String,
    pub packages: Vec<String>,
    pub installed: bool,
    /// For a custom environment: what it was made from and with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom: Option<CustomEnv>,
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

/// What `env delete` removed.
#[derive(Debug, Clone, Serialize)]
pub struct EnvDeleted {
    pub name: String,
    pub deleted: Vec<PathBuf>,
}

impl Pyro {
    /// The catalog and the custom environments, with what is built.
    pub fn env_list(&self) -> Vec<EnvSummary> {
        self.images()
            .specs()
            .into_iter()
            .map(|spec| EnvSummary {
                installed: self.images().installed_environment(&spec.name).is_some(),
                custom: spec.custom.is_some(),
                name: spec.name,
                description: spec.description,
                packages: spec.packages,
            })
            .collect()
    }

    /// Builds the kernel and the environment if needed (minutes the first
    /// time; progress goes to `progress`).
    pub fn env_pull(&self, name: &str, progress: &dyn Progress) -> Result<EnvDetail, Error> {
        self.images().spec(name)?;
        self.images().provide_tools(name, progress)?;
        self.images().kernel(progress)?;
        self.images().environment(name, progress)?;
        self.env_inspect(name)
    }

    /// What is known about `name`, built or not.
    pub fn env_inspect(&self, name: &str) -> Result<EnvDetail, Error> {
        let spec = self.images().spec(name)?;
        Ok(self.detail(spec))
    }

    fn detail(&self, spec: EnvSpec) -> EnvDetail {
        let env = self.images().installed_environment(&spec.name);
        let kernel = self.images().installed_kernel();
        EnvDetail {
            installed: env.is_some() && kernel.is_some(),
            name: spec.name,
            description: spec.description,
            packages: spec.packages,
            custom: spec.custom,
            rootfs: env.as_ref().map(|e| e.rootfs.clone()),
            manifest: env.map(|e| e.manifest),
            kernel: kernel.as_ref().map(|k| k.path.clone()),
            kernel_manifest: kernel.map(|k| k.manifest),
        }
    }

    /// Builds a custom environment (and the kernel if needed) on the host:
    /// minutes, progress to `progress`. It is then accepted wherever an
    /// environment name is. All or nothing; see
    /// [`pyro_images::Images::build_custom`].
    pub fn env_build(
        &self,
        req: &CustomRequest,
        progress: &dyn Progress,
    ) -> Result<EnvDetail, Error> {
        self.images().kernel(progress)?;
        self.images().build_custom(req, progress)?;
        self.env_inspect(&req.name)
    }

    /// Deletes a custom environment: its definition, image, package tree
    /// and warm snapshots. Refused while a workspace uses it (its system
    /// layer is an overlay over that image): delete those first.
    pub fn env_delete(&self, name: &str) -> Result<EnvDeleted, Error> {
        let users: Vec<String> = self
            .workspace_list()
            .into_iter()
            .filter(|w| w.record.environment == name)
            .map(|w| w.record.workspace_id)
            .collect();
        if !users.is_empty() {
            return Err(Error::Conflict(format!(
                "environment `{name}` is used by workspace{} {}: delete {} first",
                if users.len() == 1 { "" } else { "s" },
                users.join(", "),
                if users.len() == 1 { "it" } else { "them" },
            )));
        }
        let mut deleted = self.images().delete_custom(name)?;
        // Its warm snapshots boot an image that is gone now.
        deleted.extend(self.remove_snapshots_of(&self.images().images_dir(name)));
        Ok(EnvDeleted {
            name: name.to_string(),
            deleted,
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
