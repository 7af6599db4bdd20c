//! Root filesystem trees: Debian packages installed by mmdebstrap into
//! `cache/rootfs/<tree key>/tree/`, shared by every image built from the
//! same package set.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::catalog::EnvSpec;
use crate::dpkg;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::remove_dir_if_exists;
use crate::hash::{derive_key, sha256_hex};
use crate::manifest::{now_rfc3339, read_json, write_json};
use crate::mirror::debian_mirror;
use crate::paths::Paths;
use crate::progress::Progress;
use crate::run::{self, Job, Line};

/// Bump when the tree procedure changes in a way that changes the result
/// (the image key covers the tree key). 2: /etc/resolv.conf symlink.
const FORMAT: u32 = 2;

/// mmdebstrap variant. `essential` installs only the `Essential: yes` set
/// plus `--include`d packages with their dependencies; `minbase` would add
/// apt and the other `Priority: required` packages, none of which a
/// read-only guest root needs (nobody runs apt inside it; guest-init mounts
/// with syscalls, not mount(8)). Measured for debian:12 on the 2-core build
/// host: essential 17 s, 99 packages, 160 MiB; minbase 117 packages,
/// 177 MiB (and 76 s, though with a kernel build running alongside).
pub(crate) const VARIANT: &str = "essential";

/// Empty directories the guest mounts over or writes into; the root is
/// mounted read-only, so they must exist in the image.
const GUEST_DIRS: &[(&str, u32)] = &[
    ("workspace", 0o755),
    ("run", 0o755),
    ("tmp", 0o1777),
    ("proc", 0o555),
    ("sys", 0o555),
    ("dev", 0o755),
    ("opt/pyro/bin", 0o755),
];

/// Where `/etc/resolv.conf` points: the file guest-init writes at start-up
/// (`pyro_proto::net::RESOLV_CONF`; the root is read-only, /run a tmpfs).
const RESOLV_CONF_TARGET: &str = "/run/pyro/resolv.conf";

/// `/etc/hosts` unless the packages installed one.
const HOSTS: &str =
    "127.0.0.1\tlocalhost\n127.0.1.1\tpyro\n::1\tlocalhost ip6-localhost ip6-loopback\n";

/// dpkg options. Files dpkg does not install, to keep images small: documentation (but
/// not copyright files), manual pages, translations (but not
/// locale.alias), lintian overrides.
const DPKG_OPTIONS: &[&str] = &[
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/lintian/*",
    // No fsync per file: a failed build is thrown away, and a finished
    // tree is packed into an image (which is synced) before use.
    "force-unsafe-io",
];

/// `cache/rootfs/<key>/manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeManifest {
    pub format: u32,
    pub key: String,
    pub suite: String,
    pub variant: String,
    pub packages: Vec<String>,
    /// The mirror the packages came from (not part of the key).
    pub mirror: String,
    /// Every installed package and its version.
    pub installed: BTreeMap<String, String>,
    pub build_seconds: f64,
    pub built_at: String,
}

/// A finished tree.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    pub dir: PathBuf,
    pub manifest: TreeManifest,
}

/// The requested packages, sorted and without duplicates.
fn package_set<S: AsRef<str>>(packages: &[S]) -> Vec<String> {
    let mut p: Vec<String> = packages.iter().map(|s| s.as_ref().to_string()).collect();
    p.sort();
    p.dedup();
    p
}

/// Key over format, suite, variant and package set (not the mirror: any
/// mirror serves the same packages).
pub(crate) fn tree_key<S: AsRef<str>>(
    suite: &str,
    variant: &str,
    packages: &[S],
    setup_script: Option<&str>,
) -> String {
    let format = FORMAT.to_string();
    let set = package_set(packages).join(",");
    let mut parts: Vec<&[u8]> = vec![
        b"pyro-rootfs",
        format.as_bytes(),
        suite.as_bytes(),
        variant.as_bytes(),
        set.as_bytes(),
    ];
    // Only a tree with a setup script hashes one, so the catalog's keys
    // (and caches) stay what they were.
    let script_sha = setup_script.map(|s| sha256_hex(s.as_bytes()));
    if let Some(sha) = &script_sha {
        parts.extend([b"setup".as_slice(), sha.as_bytes()]);
    }
    derive_key(&parts)
}

pub(crate) fn spec_tree_key(spec: &EnvSpec) -> String {
    tree_key(&spec.suite, VARIANT, &spec.packages, spec.setup_script())
}

/// A finished tree in `dir` (`dir/tree` and a manifest whose key matches).
pub(crate) fn load(dir: &Path) -> Option<Tree> {
    let manifest: TreeManifest = read_json(&dir.join("manifest.json")).ok()??;
    let name = dir.file_name()?.to_str()?;
    (manifest.key == name && dir.join("tree").is_dir()).then(|| Tree {
        dir: dir.join("tree"),
        manifest,
    })
}

/// Returns the tree for `spec`, building it if needed. The caller holds
/// the tree's lock and has checked tools and privileges.
pub(crate) fn ensure_tree(paths: &Paths, spec: &EnvSpec, p: &dyn Progress) -> Result<Tree> {
    let key = spec_tree_key(spec);
    let dir = paths.trees().join(&key);
    if let Some(t) = load(&dir) {
        return Ok(t);
    }
    let started = Instant::now();
    let step = spec.name.as_str();
    let mirror = debian_mirror(&spec.suite);
    let partial = paths
        .trees()
        .join(format!(".partial-{key}-{}", std::process::id()));
    remove_dir_if_exists(&partial)?;
    std::fs::create_dir_all(&partial).ctx(|| format!("create {}", partial.display()))?;
    let tree = partial.join("tree");
    let log = partial.join("mmdebstrap.log");
    let packages = package_set(&spec.packages);

    p.phase(
        step,
        &format!(
            "mmdebstrap: {} {VARIANT} + {} from {mirror}",
            spec.suite,
            packages.join(",")
        ),
    );
    let mut cmd = Command::new("mmdebstrap");
    cmd.args(["--mode=root", "--format=directory"])
        .arg(format!("--variant={VARIANT}"))
        .arg(format!("--include={}", packages.join(",")))
        .arg("--aptopt=Acquire::Retries \"3\"");
    for opt in DPKG_OPTIONS {
        cmd.arg(format!("--dpkgopt={opt}"));
    }
    let debs = paths.debs(&spec.suite);
    std::fs::create_dir_all(&debs).ctx(|| format!("create {}", debs.display()))?;
    cmd.env("PYRO_DEB_CACHE", &debs)
        .arg("--skip=essential/unlink")
        .arg(format!("--setup-hook={DEBS_IN}"))
        .arg(format!("--customize-hook={DEBS_OUT}"));
    if let Some(script) = spec.setup_script() {
        add_setup_script(&mut cmd, &partial, script)?;
    }
    cmd.arg(&spec.suite).arg(&tree).arg(&mirror);
    let job = Job {
        step,
        phase: "mmdebstrap",
        progress: p,
        log: &log,
        unit: "",
        classify: classify_mmdebstrap,
    };
    if let Err(e) = run::run(cmd, &job) {
        // Nothing half-built stays: the error carries the log's tail
        // (apt's own message for a package that does not exist).
        let _ = remove_dir_if_exists(&partial);
        return Err(match e {
            Error::Build {
                step,
                message,
                tail,
                ..
            } => Error::Build {
                step,
                message,
                log: None,
                tail,
            },
            e => e,
        });
    }

    p.phase(
        step,
        "prepare: directories for a read-only root, /etc/hostname, /etc/resolv.conf",
    );
    prepare_for_guest(&tree)?;
    let status_path = tree.join("var/lib/dpkg/status");
    let status =
        std::fs::read_to_string(&status_path).ctx(|| format!("read {}", status_path.display()))?;
    let manifest = TreeManifest {
        format: FORMAT,
        key: key.clone(),
        suite: spec.suite.clone(),
        variant: VARIANT.to_string(),
        packages,
        mirror,
        installed: dpkg::installed_versions(&status),
        build_seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        built_at: now_rfc3339(),
    };
    write_json(&partial.join("manifest.json"), &manifest)?;
    // Under the lock: an existing directory is an unfinished leftover.
    remove_dir_if_exists(&dir)?;
    std::fs::rename(&partial, &dir)
        .ctx(|| format!("rename {} to {}", partial.display(), dir.display()))?;
    p.phase(
        step,
        &format!(
            "mmdebstrap: {} packages in {:.0}s",
            manifest.installed.len(),
            manifest.build_seconds
        ),
    );
    Ok(Tree {
        dir: dir.join("tree"),
        manifest,
    })
}

/// Setup hook: the packages earlier builds downloaded, hard-linked into
/// the new tree's apt cache, where apt finds them instead of downloading.
/// (mmdebstrap's own cleanup empties that cache at the end.)
const DEBS_IN: &str = r#"mkdir -p "$1/var/cache/apt/archives" && for f in "$PYRO_DEB_CACHE"/*.deb; do [ -e "$f" ] && { ln "$f" "$1/var/cache/apt/archives/" 2>/dev/null || cp "$f" "$1/var/cache/apt/archives/"; }; done; true"#;

/// Customize hook: what this build downloaded, hard-linked back into the
/// cache. A link is atomic, so a concurrent build never sees half a file.
const DEBS_OUT: &str = r#"for f in "$1"/var/cache/apt/archives/*.deb; do [ -e "$f" ] && ln "$f" "$PYRO_DEB_CACHE/" 2>/dev/null; done; true"#;

/// The customize hook that runs a custom environment's setup script in
/// a chroot of the new tree, after its packages are installed (mmdebstrap
/// has /dev, /proc and /sys mounted there in root mode). The script runs
/// with its `#!` interpreter, else `/bin/sh`, from `/` with HOME=/root;
/// it is removed from the tree afterwards. Paths reach the hook through
/// the environment, so a cache path with spaces cannot split a command.
fn add_setup_script(cmd: &mut Command, partial: &Path, script: &str) -> Result<()> {
    let script_path = partial.join("setup-script");
    let hook_path = partial.join("setup-hook.sh");
    std::fs::write(&script_path, script).ctx(|| format!("write {}", script_path.display()))?;
    std::fs::write(&hook_path, SETUP_HOOK).ctx(|| format!("write {}", hook_path.display()))?;
    cmd.env("PYRO_SETUP_SCRIPT", &script_path)
        .env("PYRO_SETUP_HOOK", &hook_path)
        .arg("--customize-hook=sh \"$PYRO_SETUP_HOOK\" \"$1\"");
    Ok(())
}

/// Run by mmdebstrap with the tree as `$1`.
const SETUP_HOOK: &str = r##"set -e
echo "I: running the setup script"
cp "$PYRO_SETUP_SCRIPT" "$1/tmp/pyro-setup-script"
chmod 0755 "$1/tmp/pyro-setup-script"
rc=0
if [ "$(head -c 2 "$1/tmp/pyro-setup-script")" = "#!" ]; then
  chroot "$1" /usr/bin/env HOME=/root /bin/sh -c 'cd / && exec /tmp/pyro-setup-script' || rc=$?
else
  chroot "$1" /usr/bin/env HOME=/root /bin/sh -c 'cd / && exec /bin/sh /tmp/pyro-setup-script' || rc=$?
fi
rm -f "$1/tmp/pyro-setup-script"
if [ "$rc" -ne 0 ]; then
  echo "E: the setup script exited with status $rc"
  exit "$rc"
fi
"##;

/// Directories and files a read-only guest root needs.
fn prepare_for_guest(tree: &Path) -> Result<()> {
    for (dir, mode) in GUEST_DIRS {
        let d = tree.join(dir);
        std::fs::create_dir_all(&d).ctx(|| format!("create {}", d.display()))?;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(*mode))
            .ctx(|| format!("chmod {}", d.display()))?;
    }
    let write = |rel: &str, text: &str| {
        let f = tree.join(rel);
        std::fs::write(&f, text).ctx(|| format!("write {}", f.display()))
    };
    write("etc/hostname", "pyro\n")?;
    if !tree.join("etc/hosts").exists() {
        write("etc/hosts", HOSTS)?;
    }
    // Replaces whatever is there (a file, a link to systemd-resolved's).
    let resolv = tree.join("etc/resolv.conf");
    if resolv.symlink_metadata().is_ok() {
        std::fs::remove_file(&resolv).ctx(|| format!("remove {}", resolv.display()))?;
    }
    std::os::unix::fs::symlink(RESOLV_CONF_TARGET, &resolv)
        .ctx(|| format!("symlink {}", resolv.display()))?;
    Ok(())
}

/// mmdebstrap's `I: ...` lines make the status.
fn classify_mmdebstrap(line: &str) -> Line {
    match line.strip_prefix("I: ") {
        Some(s) => Line::Status(s.chars().take(60).collect()),
        None => Line::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_depends_on_package_set_not_order() {
        let k = tree_key("bookworm", "essential", &["bash", "git"], None);
        assert_eq!(
            k,
            tree_key("bookworm", "essential", &["git", "bash", "git"], None)
        );
        assert_ne!(k, tree_key("bookworm", "essential", &["bash"], None));
        assert_ne!(k, tree_key("trixie", "essential", &["bash", "git"], None));
        assert_ne!(k, tree_key("bookworm", "minbase", &["bash", "git"], None));
        let s = tree_key("bookworm", "essential", &["bash", "git"], Some("true"));
        assert_ne!(k, s);
        assert_ne!(
            s,
            tree_key("bookworm", "essential", &["bash", "git"], Some("false"))
        );
    }

    #[test]
    fn prepare_creates_guest_dirs() {
        let dir = std::env::temp_dir().join(format!("pyro-images-prep-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        prepare_for_guest(&dir).unwrap();
        for (d, _) in GUEST_DIRS {
            assert!(dir.join(d).is_dir(), "{d}");
        }
        let tmp = std::fs::metadata(dir.join("tmp")).unwrap();
        assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
        assert_eq!(
            std::fs::read_to_string(dir.join("etc/hostname")).unwrap(),
            "pyro\n"
        );
        let hosts = std::fs::read_to_string(dir.join("etc/hosts")).unwrap();
        let has = |ip: &str| {
            hosts.lines().any(|l| {
                let mut w = l.split_whitespace();
                w.next() == Some(ip) && w.any(|n| n == "localhost")
            })
        };
        assert!(has("127.0.0.1") && has("::1"), "{hosts}");
        let link = std::fs::read_link(dir.join("etc/resolv.conf")).unwrap();
        assert_eq!(link, Path::new("/run/pyro/resolv.conf"));
        // Again over an existing file: replaced by the link.
        std::fs::remove_file(dir.join("etc/resolv.conf")).unwrap();
        std::fs::write(dir.join("etc/resolv.conf"), "nameserver 1.1.1.1\n").unwrap();
        prepare_for_guest(&dir).unwrap();
        let link = std::fs::read_link(dir.join("etc/resolv.conf")).unwrap();
        assert_eq!(link, Path::new("/run/pyro/resolv.conf"));
        remove_dir_if_exists(&dir).unwrap();
    }
}
