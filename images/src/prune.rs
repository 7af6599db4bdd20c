//! Removing what the cache no longer needs: unfinished and failed builds,
//! kernels and images of old inputs, trees no catalog entry uses.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::custom::all_specs;
use crate::error::Result;
use crate::fsutil::remove_dir_if_exists;
use crate::paths::Paths;
use crate::{guest_init, image, kernel, lock, rootfs, KernelVariant};

/// See [`crate::Images::prune`]. Anything a running build holds the lock
/// for is left alone.
pub(crate) fn prune(paths: &Paths) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    prune_build_dirs(paths, &mut removed)?;
    prune_kernels(paths, &mut removed)?;
    prune_trees(paths, &mut removed)?;
    prune_environments(paths, &mut removed)?;
    prune_guest_inits(paths, &mut removed)?;
    // Downloaded packages only speed up builds; any build fetches what
    // it misses. (A running build keeps the links it made.)
    let debs = paths.cache.join("debs");
    if debs.exists() {
        remove(&debs, &mut removed)?;
    }
    Ok(removed)
}

fn entries(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<_> = rd
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.to_string(), e.path())))
        .collect();
    v.sort();
    v
}

/// The key inside `.partial-<key>-<pid>`.
fn partial_key(name: &str) -> Option<&str> {
    name.strip_prefix(".partial-")?
        .rsplit_once('-')
        .map(|(k, _)| k)
}

/// Removes `path` if the lock `lock_name` is free (holding it meanwhile).
fn remove_unlocked(
    paths: &Paths,
    lock_name: &str,
    path: &Path,
    removed: &mut Vec<PathBuf>,
) -> Result<()> {
    if let Some(_held) = lock::try_acquire(&paths.locks(), lock_name)? {
        remove(path, removed)?;
    }
    Ok(())
}

fn remove(path: &Path, removed: &mut Vec<PathBuf>) -> Result<()> {
    if path.is_dir() {
        remove_dir_if_exists(path)?;
    } else {
        std::fs::remove_file(path)
            .map_err(|e| crate::Error::io(format!("remove {}", path.display()), e))?;
    }
    removed.push(path.to_path_buf());
    Ok(())
}

fn prune_build_dirs(paths: &Paths, removed: &mut Vec<PathBuf>) -> Result<()> {
    for (name, path) in entries(&paths.build()) {
        match name.strip_prefix("kernel-") {
            Some(key) => remove_unlocked(paths, &format!("kernel-{key}"), &path, removed)?,
            None => remove(&path, removed)?,
        }
    }
    Ok(())
}

fn prune_kernels(paths: &Paths, removed: &mut Vec<PathBuf>) -> Result<()> {
    // The kernels in use, per variant: the current key's, or (source
    // package gone) the newest with the current config. If none exists
    // and the current keys are unknown, nothing could be rebuilt: keep
    // everything.
    let mut keep = HashSet::new();
    for variant in [KernelVariant::Up, KernelVariant::Smp] {
        keep.extend(kernel::installed(paths, variant).map(|k| k.manifest.key));
        keep.extend(kernel::current_key(variant));
    }
    if keep.is_empty() {
        return Ok(());
    }
    for (name, path) in entries(&paths.kernels()) {
        if let Some(key) = partial_key(&name) {
            remove_unlocked(paths, &format!("kernel-{key}"), &path, removed)?;
        } else if !keep.contains(&name) {
            remove_unlocked(paths, &format!("kernel-{name}"), &path, removed)?;
        }
    }
    Ok(())
}

fn prune_trees(paths: &Paths, removed: &mut Vec<PathBuf>) -> Result<()> {
    let current: HashSet<String> = all_specs(paths).iter().map(rootfs::spec_tree_key).collect();
    for (name, path) in entries(&paths.trees()) {
        let key = partial_key(&name).unwrap_or(&name);
        if partial_key(&name).is_some() || !current.contains(key) {
            remove_unlocked(paths, &format!("rootfs-{key}"), &path, removed)?;
        }
    }
    Ok(())
}

fn prune_environments(paths: &Paths, removed: &mut Vec<PathBuf>) -> Result<()> {
    let gi_sha = guest_init::current_sha();
    let specs = all_specs(paths);
    for (dir_name, env_dir) in entries(&paths.environments()) {
        let Some(spec) = specs.iter().find(|s| s.dir_name() == dir_name) else {
            remove(&env_dir, removed)?;
            continue;
        };
        let tree_key = rootfs::spec_tree_key(spec);
        let lock_name = format!("rootfs-{tree_key}");
        let Some(_held) = lock::try_acquire(&paths.locks(), &lock_name)? else {
            continue; // being built right now
        };
        // Keep images of the current tree: the one with the current
        // guest-init if that is known, else the newest.
        let current: Vec<_> = image::all_of(paths, &spec.name)
            .into_iter()
            .filter(|e| e.manifest.tree_key == tree_key)
            .collect();
        let keep = match &gi_sha {
            Some(sha) => current
                .iter()
                .find(|e| &e.manifest.guest_init_sha256 == sha)
                .or_else(|| {
                    current
                        .iter()
                        .max_by(|a, b| a.manifest.built_at.cmp(&b.manifest.built_at))
                }),
            None => current
                .iter()
                .max_by(|a, b| a.manifest.built_at.cmp(&b.manifest.built_at)),
        }
        .map(|e| e.manifest.image_key.clone());
        for (name, path) in entries(&env_dir) {
            if Some(&name) != keep.as_ref() {
                remove(&path, removed)?;
            }
        }
    }
    Ok(())
}

/// Copies of guest-init other than the current one (older pyro builds
/// wrote them; images carry their own copy).
fn prune_guest_inits(paths: &Paths, removed: &mut Vec<PathBuf>) -> Result<()> {
    let current = guest_init::current_sha();
    for (name, path) in entries(&paths.guest_init()) {
        if Some(&name) != current.as_ref() {
            remove(&path, removed)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_names() {
        assert_eq!(partial_key(".partial-0123abcd-4567"), Some("0123abcd"));
        assert_eq!(partial_key("0123abcd"), None);
    }
}
