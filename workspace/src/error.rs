//! SDK errors: one enum, with a stable `kind` for `--json` output.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Images(#[from] pyro_images::Error),
    #[error(transparent)]
    Vm(#[from] pyro_vmm::Error),
    #[error("{0}")]
    Io(String),
    /// A file or directory of pyro's own state (a workspace's record,
    /// disk, history, ...) could not be read or written; `kind` `io`.
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Guest(String),
    /// Talking to the guest agent failed (connection lost, unexpected
    /// reply, a local file it read or wrote); `kind` `guest`.
    #[error(transparent)]
    GuestClient(crate::GuestError),
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
            other => Error::GuestClient(other),
        }
    }
}

impl Error {
    /// This error with every secret value in its message replaced (see
    /// [`crate::secrets::Redactor`]); its kind stays.
    pub fn redacted(self, r: &crate::secrets::Redactor) -> Error {
        let text = self.to_string();
        let clean = r.redact(&text);
        if clean == text {
            return self;
        }
        match self {
            Error::Io(_) => Error::Io(clean),
            Error::Guest(_) => Error::Guest(clean),
            Error::InvalidArgument(_) => Error::InvalidArgument(clean),
            Error::NotFound(_) => Error::NotFound(clean),
            Error::Conflict(_) => Error::Conflict(clean),
            Error::Cancelled(_) => Error::Cancelled(clean),
            other => Error::Agent {
                kind: other.kind().to_string(),
                message: clean,
            },
        }
    }

    /// Whether the caller's input was refused on its face (a usage error:
    /// exit code 2 in the CLI): its kind is one of [`BAD_INPUT_KINDS`].
    /// Nothing was changed.
    pub fn is_bad_input(&self) -> bool {
        BAD_INPUT_KINDS.contains(&self.kind())
    }

    /// A short machine-readable name for the kind of failure.
    pub fn kind(&self) -> &str {
        match self {
            Error::Images(pyro_images::Error::UnknownEnvironment { .. }) => "unknown_environment",
            Error::Images(pyro_images::Error::MissingTools { .. }) => "missing_host_tools",
            Error::Images(pyro_images::Error::InvalidEnvironment { .. }) => "invalid_argument",
            Error::Images(_) => "image_build",
            Error::Vm(pyro_vmm::Error::KvmOpen(_)) => "kvm_unavailable",
            Error::Vm(pyro_vmm::Error::Guest(_)) => "guest_failed",
            Error::Vm(pyro_vmm::Error::Timeout { .. }) => "timeout",
            Error::Vm(_) => "vm",
            Error::Io(_) | Error::File { .. } => "io",
            Error::Guest(_) | Error::GuestClient(_) => "guest",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::Cancelled(_) => "cancelled",
            Error::Agent { kind, .. } => kind,
        }
    }
}

/// The kinds of bad input (see [`Error::is_bad_input`]): a value outside
/// its rule, an unknown environment, a path with `..` or outside
/// /workspace, a malformed patch or archive, a request over a size limit
/// (a patch over [`pyro_proto::rpc::MAX_DATA`], a write over its limit, a
/// file too large to patch). A patch
/// that is well formed but does not apply (`patch_failed`), a missing
/// file (`not_found`) and a full disk (`no_space`) are not: they depend
/// on the workspace's content.
pub const BAD_INPUT_KINDS: [&str; 6] = [
    "invalid_argument",
    "unknown_environment",
    "invalid_path",
    "invalid_patch",
    "invalid_archive",
    "too_large",
];

/// `text` with its control characters escaped `{:?}`-style (`\n`,
/// `\u{1b}`): text that comes from a guest or an archive is printed as
/// data and never drives the terminal.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_sources_keep_the_messages_and_kinds() {
        let e = Error::File {
            path: "/data/workspaces/x/workspace.json".into(),
            source: std::io::ErrorKind::NotFound.into(),
        };
        assert_eq!(e.kind(), "io");
        assert_eq!(
            e.to_string(),
            format!(
                "/data/workspaces/x/workspace.json: {}",
                std::io::Error::from(std::io::ErrorKind::NotFound)
            )
        );
        assert!(std::error::Error::source(&e).is_some());

        let lost = crate::GuestError::Protocol("frame".into());
        let message = lost.to_string();
        let e = Error::from(lost);
        assert_eq!((e.kind(), e.to_string()), ("guest", message));
    }

    #[test]
    fn bad_input_is_known_by_its_kind() {
        let agent = |kind: &str| Error::Agent {
            kind: kind.into(),
            message: String::new(),
        };
        for bad in ["invalid_path", "invalid_patch", "too_large"] {
            assert!(agent(bad).is_bad_input(), "{bad}");
        }
        for state in ["patch_failed", "not_found", "no_space"] {
            assert!(!agent(state).is_bad_input(), "{state}");
        }
        assert!(Error::InvalidArgument(String::new()).is_bad_input());
        assert!(!Error::NotFound(String::new()).is_bad_input());
    }

    #[test]
    fn printable_escapes_control_characters_only() {
        assert_eq!(
            printable("entry \u{1b}[31mred\n\0é \"q\""),
            "entry \\u{1b}[31mred\\n\\0é \"q\""
        );
    }
}
