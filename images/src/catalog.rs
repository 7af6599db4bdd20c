//! The environments pyro can build: one constant table (the catalog), and
//! [`EnvSpec`], what every environment, catalog or custom, is built from.

use std::sync::LazyLock;

use crate::error::{Error, Result};

/// The environment used when none is named.
pub const DEFAULT_ENV: &str = "debian:12";

/// One buildable environment: a Debian suite plus packages on top of the
/// `Essential: yes` set, and for custom environments what they were made
/// from and an optional setup script.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EnvSpec {
    pub name: String,
    pub description: String,
    /// Every requested package (a custom environment's base packages
    /// followed by its own).
    pub packages: Vec<String>,
    pub suite: String,
    /// `None` for catalog environments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom: Option<crate::custom::CustomEnv>,
}

impl EnvSpec {
    /// The directory name under `cache/environments/` (`:` is not portable).
    pub fn dir_name(&self) -> String {
        dir_name(&self.name)
    }

    /// The setup script a custom environment runs in its tree, if any.
    pub(crate) fn setup_script(&self) -> Option<&str> {
        self.custom.as_ref()?.setup_script.as_deref()
    }
}

pub(crate) fn dir_name(name: &str) -> String {
    name.replace(':', "_")
}

/// One catalog row (static, so the table is a constant).
struct Entry {
    name: &'static str,
    description: &'static str,
    packages: &'static [&'static str],
    suite: &'static str,
}

// Recommends are not installed (mmdebstrap's default), so debian:12-build
// names libc6-dev itself: gcc only recommends it, and gcc cannot link a
// program without it.
static ENTRIES: &[Entry] = &[
    Entry {
        name: "debian:12-base",
        description: "Debian 12 (bookworm) essential set with bash and coreutils",
        packages: &["bash", "coreutils"],
        suite: "bookworm",
    },
    Entry {
        name: "debian:12",
        description: "Debian 12 (bookworm) with bash, coreutils, git and CA certificates",
        packages: &["bash", "coreutils", "git", "ca-certificates"],
        suite: "bookworm",
    },
    Entry {
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

static ENVIRONMENTS: LazyLock<Vec<EnvSpec>> = LazyLock::new(|| {
    ENTRIES
        .iter()
        .map(|e| EnvSpec {
            name: e.name.to_string(),
            description: e.description.to_string(),
            packages: e.packages.iter().map(|p| p.to_string()).collect(),
            suite: e.suite.to_string(),
            custom: None,
        })
        .collect()
});

/// The environment catalog.
#[derive(Debug, Clone, Copy)]
pub struct Catalog;

impl Catalog {
    /// Every environment, in a stable order.
    pub fn all() -> &'static [EnvSpec] {
        &ENVIRONMENTS
    }

    /// Looks up an environment by name; the error lists the valid names.
    pub fn get(name: &str) -> Result<&'static EnvSpec> {
        Self::find(name).ok_or_else(|| unknown(name, &[]))
    }

    /// The catalog entry called `name`, if there is one.
    pub fn find(name: &str) -> Option<&'static EnvSpec> {
        Self::all().iter().find(|e| e.name == name)
    }
}

/// [`Error::UnknownEnvironment`] listing the catalog's names and `custom`.
pub(crate) fn unknown(name: &str, custom: &[String]) -> Error {
    let mut valid: Vec<&str> = Catalog::all().iter().map(|e| e.name.as_str()).collect();
    valid.extend(custom.iter().map(String::as_str));
    Error::UnknownEnvironment {
        name: name.to_string(),
        valid: valid.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_exists_and_names_are_unique() {
        assert!(Catalog::get(DEFAULT_ENV).is_ok());
        let mut names: Vec<_> = Catalog::all().iter().map(|e| e.name.clone()).collect();
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
            assert!(msg.contains(&e.name), "{msg}");
        }
        let msg = unknown("x", &["mine".to_string()]).to_string();
        assert!(msg.contains("debian:12-build, mine"), "{msg}");
    }
}
