//! Where the cache (kernels, trees, images) and the data dir live.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The two roots pyro writes to.
///
/// `$PYRO_HOME` moves both (`$PYRO_HOME/cache`, `$PYRO_HOME/data`);
/// otherwise they follow XDG: `$XDG_CACHE_HOME/pyro` or `~/.cache/pyro`, and
/// `$XDG_DATA_HOME/pyro` or `~/.local/share/pyro`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Paths {
    /// Rebuildable things: kernels, root filesystem trees, environment images.
    pub cache: PathBuf,
    /// Things that must survive: workspaces, VM dirs (not used by this crate).
    pub data: PathBuf,
}

impl Paths {
    /// Reads `PYRO_HOME`, `XDG_CACHE_HOME`, `XDG_DATA_HOME` and `HOME`.
    pub fn from_env() -> Self {
        Self::resolve(|k| std::env::var_os(k), std::env::home_dir())
    }

    /// Everything under one directory, as `PYRO_HOME=home` would.
    pub fn with_home(home: impl AsRef<Path>) -> Self {
        let home = home.as_ref();
        Paths {
            cache: home.join("cache"),
            data: home.join("data"),
        }
    }

    fn resolve(var: impl Fn(&str) -> Option<OsString>, home: Option<PathBuf>) -> Self {
        if let Some(h) = var("PYRO_HOME").filter(|v| !v.is_empty()) {
            return Self::with_home(PathBuf::from(h));
        }
        let home = home.unwrap_or_else(|| PathBuf::from("/"));
        // The XDG spec says relative values are to be ignored.
        let xdg = |k: &str, default: &str| {
            var(k)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .unwrap_or_else(|| home.join(default))
                .join("pyro")
        };
        Paths {
            cache: xdg("XDG_CACHE_HOME", ".cache"),
            data: xdg("XDG_DATA_HOME", ".local/share"),
        }
    }

    /// `cache/kernels`: one directory per kernel key.
    pub(crate) fn kernels(&self) -> PathBuf {
        self.cache.join("kernels")
    }

    /// `cache/rootfs`: one package tree per tree key.
    pub(crate) fn trees(&self) -> PathBuf {
        self.cache.join("rootfs")
    }

    /// `cache/debs/<suite>`: downloaded packages, hard-linked into each
    /// new tree's apt cache so that a build downloads only what no earlier
    /// build did.
    pub(crate) fn debs(&self, suite: &str) -> PathBuf {
        self.cache.join("debs").join(suite)
    }

    /// `cache/guest-init/<sha256>/pyro-init`: the guest-init embedded in
    /// pyro, written out for the image builds.
    pub(crate) fn guest_init(&self) -> PathBuf {
        self.cache.join("guest-init")
    }

    /// `cache/environments`: one directory per environment name.
    pub(crate) fn environments(&self) -> PathBuf {
        self.cache.join("environments")
    }

    /// `cache/build`: scratch space of running (or failed) builds.
    pub(crate) fn build(&self) -> PathBuf {
        self.cache.join("build")
    }

    /// `cache/locks`: lock files, one per thing being built.
    pub(crate) fn locks(&self) -> PathBuf {
        self.cache.join("locks")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(vars: &[(&str, &str)]) -> Paths {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        Paths::resolve(|k| map.get(k).cloned(), Some(PathBuf::from("/home/u")))
    }

    #[test]
    fn pyro_home_wins() {
        let p = resolve(&[("PYRO_HOME", "/p"), ("XDG_CACHE_HOME", "/x")]);
        assert_eq!(p, Paths::with_home("/p"));
        assert_eq!(p.cache, PathBuf::from("/p/cache"));
        assert_eq!(p.data, PathBuf::from("/p/data"));
    }

    #[test]
    fn xdg_then_home() {
        let p = resolve(&[("XDG_CACHE_HOME", "/x/cache")]);
        assert_eq!(p.cache, PathBuf::from("/x/cache/pyro"));
        assert_eq!(p.data, PathBuf::from("/home/u/.local/share/pyro"));
        let p = resolve(&[("XDG_DATA_HOME", "relative")]);
        assert_eq!(p.cache, PathBuf::from("/home/u/.cache/pyro"));
        assert_eq!(p.data, PathBuf::from("/home/u/.local/share/pyro"));
    }
}
