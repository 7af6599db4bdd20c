//! Environment images: a package tree plus guest-init, packed into a
//! read-only ext4 file at
//! `cache/environments/<name>/<image key>/rootfs.ext4` with a manifest.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::catalog::{dir_name, EnvSpec};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{self, remove_dir_if_exists};
use crate::guest_init;
use crate::hash::{derive_key, sha256_file};
use crate::kernel::{self, verify_file};
use crate::manifest::{now_rfc3339, read_json, write_json};
use crate::paths::Paths;
use crate::progress::Progress;
use crate::rootfs::{self, Tree};
use crate::run::{self, Job, Line};
use crate::{lock, tools};

/// Bump when the image procedure changes in a way that changes the result.
const FORMAT: u32 = 1;

/// Where guest-init lives in every image.
pub const GUEST_INIT_PATH: &str = "/opt/pyro/bin/pyro-init";

/// The ext4 volume label of every image.
pub const ROOT_LABEL: &str = "pyro-root";

const MIB: u64 = 1024 * 1024;

/// `cache/environments/<name>/<image key>/manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvManifest {
    pub format: u32,
    pub name: String,
    pub description: String,
    /// The requested packages (the `Essential: yes` set comes on top).
    pub packages: Vec<String>,
    pub suite: String,
    pub variant: String,
    /// The mirror the packages came from.
    pub mirror: String,
    /// Installed version of each requested package.
    pub package_versions: BTreeMap<String, String>,
    /// How many packages the image holds in all.
    pub installed_packages: usize,
    pub tree_key: String,
    pub guest_init_sha256: String,
    /// First 16 hex digits of SHA-256 over format, tree key, guest-init hash.
    pub image_key: String,
    pub image_sha256: String,
    /// Size of `rootfs.ext4` in bytes.
    pub size: u64,
    /// Seconds mmdebstrap took when the tree was built (possibly earlier).
    pub tree_build_seconds: f64,
    /// Seconds this image took (guest-init copy, mkfs, hashing).
    pub image_build_seconds: f64,
    /// RFC 3339 UTC.
    pub built_at: String,
}

/// A built environment: its read-only root filesystem image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Environment {
    pub name: String,
    pub rootfs: PathBuf,
    pub manifest: EnvManifest,
}

impl Environment {
    /// Checks the image against the manifest's size and SHA-256.
    pub fn verify(&self) -> Result<()> {
        verify_file(
            &self.rootfs,
            self.manifest.size,
            &self.manifest.image_sha256,
        )
    }
}

/// The cache key of an image of tree `tree_key` with that guest-init.
pub(crate) fn image_key(tree_key: &str, guest_init_sha256: &str) -> String {
    let format = FORMAT.to_string();
    derive_key(&[
        b"pyro-image",
        format.as_bytes(),
        tree_key.as_bytes(),
        guest_init_sha256.as_bytes(),
    ])
}

/// Image size for a tree occupying `bytes`: 15 % plus 16 MiB of room for
/// ext4 metadata (inode tables, directories), rounded up to a MiB.
pub(crate) fn image_size(bytes: u64) -> u64 {
    (bytes + bytes * 15 / 100 + 16 * MIB).div_ceil(MIB) * MIB
}

/// Inodes for a tree of `entries`: a read-only root needs few spare ones.
pub(crate) fn inode_count(entries: u64) -> u64 {
    entries + entries / 4 + 1024
}

/// A finished image in `dir`: manifest present, key matching the
/// directory, `rootfs.ext4` of the recorded size.
pub(crate) fn load(dir: &Path) -> Option<Environment> {
    let manifest: EnvManifest = read_json(&dir.join("manifest.json")).ok()??;
    let rootfs = dir.join("rootfs.ext4");
    let size = std::fs::metadata(&rootfs).ok()?.len();
    let name = dir.file_name()?.to_str()?;
    (size == manifest.size && manifest.image_key == name).then(|| Environment {
        name: manifest.name.clone(),
        rootfs,
        manifest,
    })
}

/// Every finished image of environment `name`.
pub(crate) fn all_of(paths: &Paths, name: &str) -> Vec<Environment> {
    let Ok(rd) = std::fs::read_dir(paths.environments().join(dir_name(name))) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| load(&e.path()))
        .filter(|env| env.name == name)
        .collect()
}

/// The newest image of `spec` (of its current tree), whatever guest-init
/// it carries. Never builds.
pub(crate) fn installed(paths: &Paths, spec: &EnvSpec) -> Option<Environment> {
    let tree_key = rootfs::spec_tree_key(spec);
    all_of(paths, &spec.name)
        .into_iter()
        .filter(|e| e.manifest.tree_key == tree_key)
        .max_by(|a, b| a.manifest.built_at.cmp(&b.manifest.built_at))
}

/// Returns the image of `spec` carrying `guest_init`, building the tree
/// and the image as needed.
pub(crate) fn ensure(
    paths: &Paths,
    spec: &EnvSpec,
    guest_init: &Path,
    p: &dyn Progress,
) -> Result<Environment> {
    let name = spec.name.as_str();
    guest_init::check_static(guest_init)?;
    let gi_sha = sha256_file(guest_init)?;
    let tree_key = rootfs::spec_tree_key(spec);
    let key = image_key(&tree_key, &gi_sha);
    let env_dir = paths.environments().join(spec.dir_name());
    let dir = env_dir.join(&key);
    if let Some(env) = load(&dir) {
        return Ok(env);
    }
    tools::ensure(tools::ROOTFS, &[], &kernel::tools_log(paths), p)?;
    if !tools::is_root() {
        return Err(Error::NotRoot {
            what: format!("building environment {name}"),
        });
    }
    // One lock per tree: images of a tree are built by copying guest-init
    // into the shared tree, so they must not overlap.
    let _lock = lock::acquire(&paths.locks(), &format!("rootfs-{tree_key}"), name, p)?;
    if let Some(env) = load(&dir) {
        p.done(
            name,
            &format!("ready: {} (built by another process)", env.rootfs.display()),
        );
        return Ok(env);
    }
    // Say up front what is coming and how long it took last time: an MCP
    // client's first call may be this build, and its user waits on it.
    let tree_ready = rootfs::load(&paths.trees().join(&tree_key)).is_some();
    let last = all_of(paths, name)
        .into_iter()
        .max_by(|a, b| a.manifest.built_at.cmp(&b.manifest.built_at))
        .map(|e| {
            (
                e.manifest.tree_build_seconds,
                e.manifest.image_build_seconds,
            )
        });
    p.phase(
        name,
        &format!(
            "building environment {name}, {}",
            build_estimate(last, tree_ready)
        ),
    );
    let tree = rootfs::ensure_tree(paths, spec, p)?;
    build_image(spec, &tree, guest_init, &gi_sha, &key, &env_dir, p)
}

/// How long a build of an environment will take, from its last build's
/// tree and image seconds (if it was ever built here), and whether its
/// Debian tree is already here (then only the image is made).
fn build_estimate(last: Option<(f64, f64)>, tree_ready: bool) -> String {
    match (last, tree_ready) {
        (Some((tree, image)), _) => {
            let seconds = image + if tree_ready { 0.0 } else { tree };
            let minutes = (seconds / 60.0).ceil().max(1.0);
            format!("about {minutes:.0} minute(s) (as its last build here)")
        }
        (None, true) => "its image from the Debian tree already here (about a minute)".into(),
        (None, false) => {
            "a Debian tree (mmdebstrap, downloads) then its image: several minutes the first time"
                .into()
        }
    }
}

fn build_image(
    spec: &EnvSpec,
    tree: &Tree,
    guest_init: &Path,
    gi_sha: &str,
    key: &str,
    env_dir: &Path,
    p: &dyn Progress,
) -> Result<Environment> {
    let started = Instant::now();
    let step = spec.name.as_str();
    p.phase(
        step,
        &format!("guest-init: {} -> {GUEST_INIT_PATH}", guest_init.display()),
    );
    install_guest_init(&tree.dir, guest_init)?;

    let usage = fsutil::usage(&tree.dir)?;
    let size = image_size(usage.bytes);
    let inodes = inode_count(usage.entries);
    let partial = env_dir.join(format!(".partial-{key}-{}", std::process::id()));
    remove_dir_if_exists(&partial)?;
    std::fs::create_dir_all(&partial).ctx(|| format!("create {}", partial.display()))?;
    let image = partial.join("rootfs.ext4");
    p.phase(
        step,
        &format!(
            "mkfs: {} MiB ext4, {inodes} inodes, from {:.0} MiB in {} entries",
            size / MIB,
            usage.bytes as f64 / MIB as f64,
            usage.entries
        ),
    );
    let file = std::fs::File::create(&image).ctx(|| format!("create {}", image.display()))?;
    file.set_len(size)
        .ctx(|| format!("size {}", image.display()))?;
    drop(file);
    let mkfs = tools::find_command("mkfs.ext4").unwrap_or_else(|| "mkfs.ext4".into());
    let mut cmd = Command::new(mkfs);
    cmd.args(["-q", "-F", "-L", ROOT_LABEL])
        // 4 KiB blocks and 256-byte inodes even though the file system is
        // "small" by mke2fs.conf's measure (which would pick 1 KiB / 128).
        .args(["-b", "4096", "-I", "256", "-m", "0"])
        .arg("-N")
        .arg(inodes.to_string())
        // Mounted read-only and shared: no journal needed.
        .args(["-O", "^has_journal", "-E", "root_owner=0:0,nodiscard"])
        .arg("-d")
        .arg(&tree.dir)
        .arg(&image);
    let log = partial.join("mkfs.log");
    let job = Job {
        step,
        phase: "mkfs",
        progress: p,
        log: &log,
        unit: "",
        classify: |_| Line::Other,
    };
    run::run(cmd, &job)?;

    p.phase(step, "install: hash image and write manifest");
    let image_sha256 = sha256_file(&image)?;
    let package_versions = spec
        .packages
        .iter()
        .filter_map(|p| {
            tree.manifest
                .installed
                .get(p)
                .map(|v| (p.clone(), v.clone()))
        })
        .collect();
    let manifest = EnvManifest {
        format: FORMAT,
        name: spec.name.clone(),
        description: spec.description.clone(),
        packages: spec.packages.clone(),
        suite: spec.suite.clone(),
        variant: tree.manifest.variant.clone(),
        mirror: tree.manifest.mirror.clone(),
        package_versions,
        installed_packages: tree.manifest.installed.len(),
        tree_key: tree.manifest.key.clone(),
        guest_init_sha256: gi_sha.to_string(),
        image_key: key.to_string(),
        image_sha256,
        size,
        tree_build_seconds: tree.manifest.build_seconds,
        image_build_seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        built_at: now_rfc3339(),
    };
    write_json(&partial.join("manifest.json"), &manifest)?;
    let _ = std::fs::remove_file(&log);
    let dir = env_dir.join(key);
    remove_dir_if_exists(&dir)?;
    std::fs::rename(&partial, &dir)
        .ctx(|| format!("rename {} to {}", partial.display(), dir.display()))?;
    let env = Environment {
        name: spec.name.clone(),
        rootfs: dir.join("rootfs.ext4"),
        manifest,
    };
    p.done(
        step,
        &format!(
            "built {} ({} MiB, {} packages)",
            env.rootfs.display(),
            env.manifest.size / MIB,
            env.manifest.installed_packages
        ),
    );
    Ok(env)
}

/// Copies guest-init into the tree (mode 0755) through a temporary name.
fn install_guest_init(tree: &Path, guest_init: &Path) -> Result<()> {
    let rel = GUEST_INIT_PATH.trim_start_matches('/');
    let dest = tree.join(rel);
    let tmp = dest.with_file_name(".pyro-init.tmp");
    fsutil::copy(guest_init, &tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
        .ctx(|| format!("chmod {}", tmp.display()))?;
    std::fs::rename(&tmp, &dest).ctx(|| format!("rename {} to {}", tmp.display(), dest.display()))
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_build_says_how_long_it_took_last_time() {
        assert_eq!(
            build_estimate(Some((200.0, 50.0)), false),
            "about 5 minute(s) (as its last build here)"
        );
        assert_eq!(
            build_estimate(Some((200.0, 50.0)), true),
            "about 1 minute(s) (as its last build here)"
        );
        assert!(build_estimate(None, false).contains("several minutes"));
        assert!(build_estimate(None, true).contains("about a minute"));
    }

    use super::*;

    #[test]
    fn key_changes_with_tree_or_guest_init() {
        let k = image_key("t1", "g1");
        assert_eq!(k, image_key("t1", "g1"));
        assert_ne!(k, image_key("t2", "g1"));
        assert_ne!(k, image_key("t1", "g2"));
    }

    #[test]
    fn sizes() {
        assert_eq!(image_size(0), 16 * MIB);
        assert_eq!(image_size(100 * MIB), 131 * MIB);
        assert_eq!(image_size(1), 17 * MIB);
        assert_eq!(inode_count(4000), 6024);
    }

    #[test]
    fn manifest_round_trip() {
        let m = EnvManifest {
            format: FORMAT,
            name: "debian:12".into(),
            description: "d".into(),
            packages: vec!["bash".into()],
            suite: "bookworm".into(),
            variant: "essential".into(),
            mirror: "http://deb.debian.org/debian".into(),
            package_versions: [("bash".to_string(), "5.2.15-2+b8".to_string())].into(),
            installed_packages: 80,
            tree_key: "0123456789abcdef".into(),
            guest_init_sha256: "00".into(),
            image_key: "fedcba9876543210".into(),
            image_sha256: "11".into(),
            size: 3 * MIB,
            tree_build_seconds: 61.5,
            image_build_seconds: 2.0,
            built_at: "2026-11-24T20:31:02Z".into(),
        };
        let dir = std::env::temp_dir()
            .join(format!("pyro-images-env-{}", std::process::id()))
            .join("fedcba9876543210");
        std::fs::create_dir_all(&dir).unwrap();
        write_json(&dir.join("manifest.json"), &m).unwrap();
        // No image yet: not a finished environment.
        assert!(load(&dir).is_none());
        std::fs::File::create(dir.join("rootfs.ext4"))
            .unwrap()
            .set_len(3 * MIB)
            .unwrap();
        let env = load(&dir).unwrap();
        assert_eq!(env.manifest, m);
        assert_eq!(env.name, "debian:12");
        assert!(env.verify().is_err());
        remove_dir_if_exists(dir.parent().unwrap()).unwrap();
    }
}
