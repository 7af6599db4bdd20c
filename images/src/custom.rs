//! Custom environments: a catalog environment plus packages and an
//! optional setup script, built on the host like the catalog's.
//!
//! A definition is user data, not cache: it lives in
//! `data/environments/<name, ':' -> '_'>.json` and survives `env prune`, so
//! an image that was pruned, or made stale by a new guest-init, is rebuilt
//! from it on next use. The definition is written only after the first
//! build succeeded: a failed build leaves no environment behind.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::catalog::{self, dir_name, Catalog, EnvSpec};
use crate::error::{Error, IoContext, Result};
use crate::hash::sha256_hex;
use crate::manifest::{now_rfc3339, read_json, write_json};
use crate::paths::Paths;

/// Longest environment name.
pub const MAX_NAME_LEN: usize = 64;
/// Most extra packages one environment may name.
pub const MAX_PACKAGES: usize = 256;
/// Largest setup script, in bytes.
pub const MAX_SETUP_SCRIPT: usize = 256 * 1024;

/// What a custom environment adds to the one it is made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomEnv {
    /// The catalog environment it builds on.
    pub from: String,
    /// The packages it adds, as given (sorted, without duplicates).
    pub extra_packages: Vec<String>,
    /// The script run as root in a chroot of the new tree, on the host,
    /// after the packages are installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_script: Option<String>,
    /// SHA-256 of the setup script (part of the tree's key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_script_sha256: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// How to build a custom environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomRequest {
    pub name: String,
    /// A catalog environment.
    pub from: String,
    pub packages: Vec<String>,
    /// The script's text (run with its `#!` interpreter, else `/bin/sh`).
    pub setup_script: Option<String>,
    pub description: Option<String>,
}

/// `data/environments/<name>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Definition {
    format: u32,
    name: String,
    description: String,
    custom: CustomEnv,
}

const DEFINITION_FORMAT: u32 = 1;

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidEnvironment {
        message: message.into(),
    }
}

/// A custom environment's name: 1-64 of `a-z 0-9 . : -`, starting with a
/// letter or digit, and no catalog name. (`_` is out: `:` maps to it in
/// directory names, so `a:b` and `a_b` would share one.)
pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || ".:-".contains(c);
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.is_empty() || name.len() > MAX_NAME_LEN || !first_ok || !name.chars().all(ok_char) {
        return Err(invalid(format!(
            "environment name `{name}`: use 1-{MAX_NAME_LEN} of a-z, 0-9, `.`, `:` and `-`, starting with a letter or digit (e.g. `myproject:1`)"
        )));
    }
    if Catalog::find(name).is_some() {
        return Err(invalid(format!(
            "`{name}` is a catalog environment: a custom environment needs a name of its own"
        )));
    }
    Ok(())
}

/// A Debian package name (policy 5.6.1): lowercase letters, digits and
/// `+ - .`, at least two characters, starting with a letter or digit.
/// Checked here so that nothing else reaches mmdebstrap's `--include`.
pub(crate) fn check_package(p: &str) -> Result<()> {
    let ok = p.len() >= 2
        && p.len() <= 128
        && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "package `{p}` is not a Debian package name (lowercase letters, digits, `+`, `-`, `.`)"
        )))
    }
}

/// Checks a request and turns it into the spec to build.
pub(crate) fn spec_of(req: &CustomRequest) -> Result<EnvSpec> {
    check_name(&req.name)?;
    let base = Catalog::find(&req.from).ok_or_else(|| {
        invalid(format!(
            "--from `{}`: a custom environment builds on a catalog environment ({})",
            req.from,
            Catalog::all()
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let mut extra: Vec<String> = req.packages.iter().map(|p| p.trim().to_string()).collect();
    extra.retain(|p| !p.is_empty());
    extra.sort();
    extra.dedup();
    if extra.len() > MAX_PACKAGES {
        return Err(invalid(format!(
            "{} packages: at most {MAX_PACKAGES}",
            extra.len()
        )));
    }
    for p in &extra {
        check_package(p)?;
    }
    let script = req.setup_script.as_ref().filter(|s| !s.trim().is_empty());
    if let Some(s) = script {
        if s.len() > MAX_SETUP_SCRIPT {
            return Err(invalid(format!(
                "setup script of {} bytes: at most {MAX_SETUP_SCRIPT}",
                s.len()
            )));
        }
    }
    if extra.is_empty() && script.is_none() {
        return Err(invalid(
            "a custom environment needs packages, a setup script, or both",
        ));
    }
    let description = req
        .description
        .clone()
        .filter(|d| !d.trim().is_empty())
        .unwrap_or_else(|| {
            let mut d = format!("{} + {}", base.name, extra.join(", "));
            if script.is_some() {
                d.push_str(if extra.is_empty() {
                    "setup script"
                } else {
                    " + setup script"
                });
            }
            d
        });
    let mut packages = base.packages.clone();
    packages.extend(extra.iter().cloned());
    Ok(EnvSpec {
        name: req.name.clone(),
        description,
        packages,
        suite: base.suite.clone(),
        custom: Some(CustomEnv {
            from: base.name.clone(),
            extra_packages: extra,
            setup_script: script.cloned(),
            setup_script_sha256: script.map(|s| sha256_hex(s.as_bytes())),
            created_at: now_rfc3339(),
        }),
    })
}

/// Whether two specs build the same thing (the time they were made aside).
pub(crate) fn same_build(a: &EnvSpec, b: &EnvSpec) -> bool {
    let strip = |s: &EnvSpec| {
        let mut s = s.clone();
        if let Some(c) = s.custom.as_mut() {
            c.created_at.clear();
        }
        s.description.clear();
        s
    };
    strip(a) == strip(b)
}

fn definitions_dir(paths: &Paths) -> PathBuf {
    paths.data.join("environments")
}

fn definition_path(paths: &Paths, name: &str) -> PathBuf {
    definitions_dir(paths).join(format!("{}.json", dir_name(name)))
}

/// The custom environment called `name`, if one is defined.
pub(crate) fn get(paths: &Paths, name: &str) -> Result<Option<EnvSpec>> {
    if check_name(name).is_err() {
        return Ok(None);
    }
    let Some(def) = read_json::<Definition>(&definition_path(paths, name))? else {
        return Ok(None);
    };
    Ok(to_spec(def).filter(|spec| spec.name == name))
}

/// The spec a definition builds; `None` if its base is no longer in the
/// catalog (it cannot be built, so it is not listed or accepted).
fn to_spec(def: Definition) -> Option<EnvSpec> {
    let base = Catalog::find(&def.custom.from)?;
    let mut packages = base.packages.clone();
    packages.extend(def.custom.extra_packages.iter().cloned());
    Some(EnvSpec {
        name: def.name,
        description: def.description,
        packages,
        suite: base.suite.clone(),
        custom: Some(def.custom),
    })
}

/// Every defined custom environment, by name. Unreadable definitions are
/// skipped (`env list` must not fail on one bad file).
pub(crate) fn all(paths: &Paths) -> Vec<EnvSpec> {
    let Ok(rd) = std::fs::read_dir(definitions_dir(paths)) else {
        return Vec::new();
    };
    let mut v: Vec<EnvSpec> = rd
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .filter_map(|e| read_json::<Definition>(&e.path()).ok().flatten())
        .filter(|d| check_name(&d.name).is_ok())
        .filter_map(to_spec)
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Every environment: the catalog's, then the custom ones by name.
pub(crate) fn all_specs(paths: &Paths) -> Vec<EnvSpec> {
    let mut v = Catalog::all().to_vec();
    v.extend(all(paths));
    v
}

/// Records a built custom environment.
pub(crate) fn save(paths: &Paths, spec: &EnvSpec) -> Result<()> {
    let custom = spec
        .custom
        .clone()
        .ok_or_else(|| invalid(format!("`{}` is not a custom environment", spec.name)))?;
    let dir = definitions_dir(paths);
    std::fs::create_dir_all(&dir).ctx(|| format!("create {}", dir.display()))?;
    write_json(
        &definition_path(paths, &spec.name),
        &Definition {
            format: DEFINITION_FORMAT,
            name: spec.name.clone(),
            description: spec.description.clone(),
            custom,
        },
    )
}

/// Forgets a custom environment's definition; returns its path.
pub(crate) fn remove(paths: &Paths, name: &str) -> Result<PathBuf> {
    let path = definition_path(paths, name);
    std::fs::remove_file(&path).ctx(|| format!("remove {}", path.display()))?;
    Ok(path)
}

/// [`Error::UnknownEnvironment`] naming catalog and custom environments.
pub(crate) fn unknown(paths: &Paths, name: &str) -> Error {
    let custom: Vec<String> = all(paths).into_iter().map(|s| s.name).collect();
    catalog::unknown(name, &custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str, packages: &[&str]) -> CustomRequest {
        CustomRequest {
            name: name.into(),
            from: "debian:12".into(),
            packages: packages.iter().map(|p| p.to_string()).collect(),
            setup_script: None,
            description: None,
        }
    }

    #[test]
    fn names() {
        for ok in ["jq", "myproject:1", "a.b-c", "0x"] {
            check_name(ok).unwrap();
        }
        for bad in [
            "",
            "debian:12",
            "debian:12-build",
            "My",
            "a_b",
            "a/b",
            "-x",
            ":x",
            "a b",
            &"x".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        let msg = check_name("debian:12").unwrap_err().to_string();
        assert!(msg.contains("catalog"), "{msg}");
    }

    #[test]
    fn packages_are_checked_sorted_and_deduplicated() {
        let spec = spec_of(&req("j", &["jq", " curl", "jq", ""])).unwrap();
        let custom = spec.custom.as_ref().unwrap();
        assert_eq!(custom.extra_packages, ["curl", "jq"]);
        assert_eq!(custom.from, "debian:12");
        assert!(spec
            .packages
            .starts_with(&Catalog::get("debian:12").unwrap().packages));
        assert!(spec
            .packages
            .ends_with(&["curl".to_string(), "jq".to_string()]));
        assert_eq!(spec.description, "debian:12 + curl, jq");
        for bad in ["--dry-run", "jq,curl", "Jq", "j", "a b", "x;rm"] {
            let e = spec_of(&req("j", &[bad])).unwrap_err().to_string();
            assert!(e.contains("Debian package name"), "{bad}: {e}");
        }
        assert!(spec_of(&req("j", &[])).is_err());
        let mut r = req("j", &[]);
        r.from = "j2".into();
        r.setup_script = Some("true".into());
        assert!(spec_of(&r).unwrap_err().to_string().contains("catalog"));
        r.from = "debian:12-base".into();
        let s = spec_of(&r).unwrap();
        assert_eq!(s.description, "debian:12-base + setup script");
        assert_eq!(s.setup_script(), Some("true"));
        r.setup_script = Some("x".repeat(MAX_SETUP_SCRIPT + 1));
        assert!(spec_of(&r).is_err());
    }

    #[test]
    fn definitions_round_trip() {
        let home = std::env::temp_dir().join(format!("pyro-images-custom-{}", std::process::id()));
        let paths = Paths::with_home(&home);
        assert!(all(&paths).is_empty());
        let mut r = req("tools:1", &["jq"]);
        r.setup_script = Some("echo hi\n".into());
        let spec = spec_of(&r).unwrap();
        save(&paths, &spec).unwrap();
        let back = get(&paths, "tools:1").unwrap().unwrap();
        assert_eq!(back, spec);
        assert!(same_build(&back, &spec_of(&r).unwrap()));
        r.packages.push("curl".into());
        assert!(!same_build(&back, &spec_of(&r).unwrap()));
        assert_eq!(all(&paths), vec![spec]);
        assert!(get(&paths, "tools_1").unwrap().is_none());
        assert!(unknown(&paths, "nope").to_string().contains("tools:1"));
        remove(&paths, "tools:1").unwrap();
        assert!(get(&paths, "tools:1").unwrap().is_none());
        let _ = std::fs::remove_dir_all(&home);
    }
}
