//! SDK errors: one enum, with a stable `kind` for `--json` output.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Images(#[from] pyro_images::Error),
    #[error(transparent)]
    Vm(#[from] pyro_vmm::Error),
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Guest(String),
}

impl Error {
    /// A short machine-readable name for the kind of failure.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Images(pyro_images::Error::UnknownEnvironment { .. }) => "unknown_environment",
            Error::Images(pyro_images::Error::MissingTools { .. }) => "missing_host_tools",
            Error::Images(_) => "image_build",
            Error::Vm(pyro_vmm::Error::KvmOpen(_)) => "kvm_unavailable",
            Error::Vm(pyro_vmm::Error::Guest(_)) => "guest_failed",
            Error::Vm(pyro_vmm::Error::Timeout { .. }) => "timeout",
            Error::Vm(_) => "vm",
            Error::Io(_) => "io",
            Error::Guest(_) => "guest",
        }
    }
}
