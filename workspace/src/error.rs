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
    /// Bad input: names the field and the rule (exit code 2 in the CLI).
    #[error("{0}")]
    InvalidArgument(String),
    /// No such workspace, snapshot, ...
    #[error("{0}")]
    NotFound(String),
    /// The request cannot be done in the current state (exists already,
    /// workspace stopped, ...).
    #[error("{0}")]
    Conflict(String),
    /// The caller gave up on the call (a [`crate::Cancel`] fired); a
    /// command it was running was killed.
    #[error("{0}")]
    Cancelled(String),
    /// The guest agent refused or failed a request; `kind` is its word
    /// (`invalid_path`, `patch_failed`, `not_found`, `no_space`, ...).
    #[error("{message}")]
    Agent { kind: String, message: String },
}

impl From<crate::GuestError> for Error {
    fn from(e: crate::GuestError) -> Self {
        match e {
            crate::GuestError::Remote { kind, message } => Error::Agent { kind, message },
            crate::GuestError::Cancelled(_) => Error::Cancelled(e.to_string()),
            other => Error::Guest(other.to_string()),
        }
    }
}

impl Error {
    /// A short machine-readable name for the kind of failure.
    pub fn kind(&self) -> &str {
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
            Error::InvalidArgument(_) => "invalid_argument",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::Cancelled(_) => "cancelled",
            Error::Agent { kind, .. } => kind,
        }
    }
}
