//! The environments pyro can build: one constant table.

use crate::error::{Error, Result};

/// The environment used when none is named.
pub const DEFAULT_ENV: &str = "debian:12";

/// One buildable environment: a Debian suite plus packages on top of the
/// `Essential: yes` set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EnvSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub packages: &'static [&'static str],
    pub suite: &'static str,
}

impl EnvSpec {
    /// The directory name under `cache/environments/` (`:` is not portable).
    pub fn dir_name(&self) -> String {
        dir_name(self.name)
    }
}

pub(crate) fn dir_name(name: &str) -> String {
    name.replace(':', "_")
}

// Recommends are not installed (mmdebstrap's default), so debian:12-build
// names libc6-dev itself: gcc only recommends it, and gcc cannot link a
// program without it.
static ENVIRONMENTS: &[EnvSpec] = &[
    EnvSpec {
        name: "debian:12-base",
        description: "Debian 12 (bookworm) essential set with bash and coreutils",
        packages: &["bash", "coreutils"],
        suite: "bookworm",
    },
    EnvSpec {
        name: "debian:12",
        description: "Debian 12 (bookworm) with bash, coreutils, git and CA certificates",
        packages: &["bash", "coreutils", "git", "ca-certificates"],
        suite: "bookworm",
    },
    EnvSpec {
        name: "debian:12-build",
        description:
            "Debian 12 (bookworm) for building code: git, gcc, make, cmake, python3 with pip and venv, pkg-config",
        packages: &[
            "bash",
            "coreutils",
            "ca-certificates",
            "git",
            "gcc",
            "libc6-dev",
            "make",
            "cmake",
            "python3",
            "python3-pip",
            "python3-venv",
            "pkg-config",
        ],
        suite: "bookworm",
    },
];

/// The environment catalog.
#[derive(Debug, Clone, Copy)]
pub struct Catalog;

impl Catalog {
    /// Every environment, in a stable order.
    pub fn all() -> &'static [EnvSpec] {
        ENVIRONMENTS
    }

    /// Looks up an environment by name; the error lists the valid names.
    pub fn get(name: &str) -> Result<&'static EnvSpec> {
        ENVIRONMENTS
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| Error::UnknownEnvironment {
                name: name.to_string(),
                valid: ENVIRONMENTS
                    .iter()
                    .map(|e| e.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_exists_and_names_are_unique() {
        assert!(Catalog::get(DEFAULT_ENV).is_ok());
        let mut names: Vec<_> = Catalog::all().iter().map(|e| e.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Catalog::all().len());
        assert_eq!(Catalog::get("debian:12").unwrap().dir_name(), "debian_12");
    }

    #[test]
    fn unknown_name_lists_valid_ones() {
        let msg = Catalog::get("ubuntu:24.04").unwrap_err().to_string();
        assert!(msg.contains("`ubuntu:24.04`"), "{msg}");
        for e in Catalog::all() {
            assert!(msg.contains(e.name), "{msg}");
        }
    }
}
