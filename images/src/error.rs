//! The crate's error type. Every message says what to do about it.

use std::path::PathBuf;

/// A host tool (or header, or source package) that a build step needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingTool {
    /// What was looked for: a command name or a file.
    pub tool: String,
    /// The Debian package that provides it.
    pub package: String,
}

impl MissingTool {
    pub(crate) fn new(tool: &str, package: &str) -> Self {
        MissingTool {
            tool: tool.into(),
            package: package.into(),
        }
    }
}

/// Everything that can go wrong while building or finding images.
#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// Host tools are missing; one error lists all of them.
    #[error("{}", missing_tools_message(.missing))]
    MissingTools { missing: Vec<MissingTool> },

    /// Building root filesystems runs mmdebstrap in root mode.
    #[error("{what} needs root (mmdebstrap runs in root mode so that files in the image are owned by root): run it as root, e.g. with sudo")]
    NotRoot { what: String },

    /// The name is neither in the catalog nor a custom environment.
    #[error("unknown environment `{name}`: valid names are {valid}")]
    UnknownEnvironment { name: String, valid: String },

    /// A custom environment's name, packages or setup script were refused,
    /// or the environment cannot be changed as asked.
    #[error("{message}")]
    InvalidEnvironment { message: String },

    /// A build step failed; `tail` holds the last lines of its log.
    #[error("{}", build_message(.step, .message, .log, .tail))]
    Build {
        step: String,
        message: String,
        log: Option<PathBuf>,
        tail: String,
    },

    /// The guest-init binary could not be found, built or accepted.
    #[error("guest-init: {message}")]
    GuestInit { message: String },

    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// A manifest could not be read or written.
    #[error("manifest {}: {source} (delete the directory holding it to rebuild)", .path.display())]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// An [`Error::Io`] with a description of what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// An [`Error::Build`] without a log.
    pub(crate) fn build(step: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Build {
            step: step.into(),
            message: message.into(),
            log: None,
            tail: String::new(),
        }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds a context string to io results.
pub(crate) trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}

fn missing_tools_message(missing: &[MissingTool]) -> String {
    let what: Vec<String> = missing
        .iter()
        .map(|m| format!("{} (package {})", m.tool, m.package))
        .collect();
    let mut packages: Vec<&str> = missing.iter().map(|m| m.package.as_str()).collect();
    packages.sort_unstable();
    packages.dedup();
    format!(
        "missing on this host: {}: install with `apt-get install {}` (run as root on \
         Debian, pyro installs them itself unless {}=0)",
        what.join(", "),
        packages.join(" "),
        crate::tools::INSTALL_TOOLS_ENV
    )
}

fn build_message(step: &str, message: &str, log: &Option<PathBuf>, tail: &str) -> String {
    let mut s = format!("{step} failed: {message}");
    if let Some(log) = log {
        s.push_str(&format!("\nfull log: {}", log.display()));
    }
    if !tail.is_empty() {
        s.push_str("\nlast lines:\n");
        s.push_str(tail.trim_end());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tools_lists_every_package_once() {
        let e = Error::MissingTools {
            missing: vec![
                MissingTool::new("mmdebstrap", "mmdebstrap"),
                MissingTool::new("mkfs.ext4", "e2fsprogs"),
                MissingTool::new("/usr/include/libelf.h", "libelf-dev"),
                MissingTool::new("/usr/include/gelf.h", "libelf-dev"),
            ],
        };
        let msg = e.to_string();
        assert!(
            msg.contains("apt-get install e2fsprogs libelf-dev mmdebstrap`"),
            "{msg}"
        );
        assert!(msg.contains("mkfs.ext4 (package e2fsprogs)"), "{msg}");
    }
}
