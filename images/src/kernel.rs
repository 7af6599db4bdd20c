//! The guest kernel: Debian's `linux-source-6.1` plus our patches and
//! config fragment (embedded in the binary), built into
//! `cache/kernels/<key>/vmlinux` with a manifest.
//!
//! Two variants from the same source and patches ([`KernelVariant`]): the
//! uniprocessor kernel for 1-vCPU VMs (`microvm.config`) and an SMP
//! kernel for VMs with more vCPUs (`microvm.config` with `smp.config`
//! over it), each under its own key, each built on first use.

use std::borrow::Cow;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, MissingTool, Result};
use crate::fsutil::{copy, remove_dir_if_exists};
use crate::hash::{derive_key, sha256_file, sha256_hex};
use crate::manifest::{now_rfc3339, read_json, write_json};
use crate::paths::Paths;
use crate::progress::Progress;
use crate::run::{self, Job, Line};
use crate::{lock, tools};

/// The Debian package the kernel source comes from.
pub const SOURCE_PACKAGE: &str = "linux-source-6.1";
/// Where that package installs the source.
pub const SOURCE_TARBALL: &str = "/usr/src/linux-source-6.1.tar.xz";

/// Bump when the build procedure changes in a way that changes the result.
const FORMAT: u32 = 1;

/// The Kconfig fragment (`images/kernel/microvm.config`).
pub const CONFIG: &str = include_str!("../kernel/microvm.config");

/// What the SMP variant sets over [`CONFIG`] (`images/kernel/smp.config`).
pub const SMP_CONFIG: &str = include_str!("../kernel/smp.config");

/// Which kernel a VM boots: the uniprocessor one unless it has more than
/// one vCPU (a uniprocessor kernel uses only the boot CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelVariant {
    /// `CONFIG_SMP=n`: the default, the fastest to boot.
    Up,
    /// `CONFIG_SMP=y`: for VMs with 2 or more vCPUs.
    Smp,
}

impl KernelVariant {
    /// The variant a VM with `vcpus` vCPUs needs.
    pub fn for_vcpus(vcpus: u8) -> Self {
        if vcpus > 1 {
            KernelVariant::Smp
        } else {
            KernelVariant::Up
        }
    }

    /// The Kconfig fragment `make allnoconfig` gets: [`CONFIG`] for the
    /// uniprocessor kernel (byte for byte, so its key never changes), or
    /// [`CONFIG`] with [`SMP_CONFIG`]'s symbols replacing their lines.
    pub fn config(self) -> Cow<'static, str> {
        match self {
            KernelVariant::Up => Cow::Borrowed(CONFIG),
            KernelVariant::Smp => Cow::Owned(overlay(CONFIG, SMP_CONFIG)),
        }
    }

    /// How progress and errors name it.
    fn describe(self) -> &'static str {
        match self {
            KernelVariant::Up => "microvm.config",
            KernelVariant::Smp => "microvm.config + smp.config",
        }
    }
}

/// `base` without the lines that set a symbol `over` sets, then `over`.
fn overlay(base: &str, over: &str) -> String {
    let symbol = |line: &str| -> Option<String> {
        let line = line.trim();
        let sym = match line.split_once('=') {
            Some((sym, _)) => sym,
            None => line.strip_prefix("# ")?.strip_suffix(" is not set")?,
        };
        sym.starts_with("CONFIG_").then(|| sym.to_string())
    };
    let replaced: std::collections::HashSet<String> = over.lines().filter_map(symbol).collect();
    let mut out = String::with_capacity(base.len() + over.len());
    for line in base.lines() {
        if symbol(line).is_some_and(|s| replaced.contains(&s)) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(over);
    out
}

/// Patches applied with `patch -p1`, in order (`images/kernel/*.patch`).
pub const PATCHES: &[(&str, &[u8])] = &[(
    "pvm-native-guest.patch",
    include_bytes!("../kernel/pvm-native-guest.patch"),
)];

const STEP: &str = "kernel";

/// A patch that went into a kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchInfo {
    pub name: String,
    pub sha256: String,
}

/// `cache/kernels/<key>/manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelManifest {
    /// Builder format version that produced this kernel.
    pub format: u32,
    /// First 16 hex digits of SHA-256 over format, source version, config, patches.
    pub key: String,
    pub source_package: String,
    pub source_version: String,
    /// SHA-256 of the config fragment (the full `.config` is saved as `config`).
    pub config_sha256: String,
    pub patches: Vec<PatchInfo>,
    /// Fragment options that did not end up as asked in `.config`
    /// (dependency-driven, e.g. an option that does not exist in 6.1).
    pub config_mismatches: Vec<String>,
    pub vmlinux_sha256: String,
    /// Size of `vmlinux` in bytes.
    pub size: u64,
    /// Objects compiled (C and assembly), to estimate the next build.
    pub objects: u64,
    pub build_seconds: f64,
    /// RFC 3339 UTC.
    pub built_at: String,
}

/// A built kernel: an uncompressed ELF `vmlinux` for direct boot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kernel {
    pub path: PathBuf,
    pub manifest: KernelManifest,
}

impl Kernel {
    /// Checks the file against the manifest's size and SHA-256 (reads the
    /// whole file; the lookups only compare sizes).
    pub fn verify(&self) -> Result<()> {
        verify_file(
            &self.path,
            self.manifest.size,
            &self.manifest.vmlinux_sha256,
        )
    }

    /// The full `.config` the kernel was built with.
    pub fn config_path(&self) -> PathBuf {
        self.path.with_file_name("config")
    }
}

/// Compares a file's size and SHA-256 with expected values.
pub(crate) fn verify_file(path: &Path, size: u64, sha256: &str) -> Result<()> {
    let actual = std::fs::metadata(path)
        .ctx(|| format!("stat {}", path.display()))?
        .len();
    let sum = if actual == size {
        sha256_file(path)?
    } else {
        String::new()
    };
    if actual != size || sum != sha256 {
        return Err(Error::build(
            "verify",
            format!(
                "{} does not match its manifest (size {actual}, expected {size}): delete its directory to rebuild it",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// The cache key of a kernel built from these inputs.
pub(crate) fn kernel_key(source_version: &str, config: &[u8], patches: &[(&str, &[u8])]) -> String {
    let format = FORMAT.to_string();
    let mut parts: Vec<&[u8]> = vec![
        b"pyro-kernel",
        format.as_bytes(),
        source_version.as_bytes(),
        config,
    ];
    for (name, bytes) in patches {
        parts.push(name.as_bytes());
        parts.push(bytes);
    }
    derive_key(&parts)
}

/// The installed version of the source package, if it is installed.
pub(crate) fn source_version() -> Option<String> {
    let v = run::output(Command::new("dpkg-query").args(["-W", "-f=${Version}", SOURCE_PACKAGE]))?;
    let v = v.trim();
    (!v.is_empty() && Path::new(SOURCE_TARBALL).is_file()).then(|| v.to_string())
}

/// Where an install of host tools logs (`tools::ensure`).
pub(crate) fn tools_log(paths: &Paths) -> PathBuf {
    paths.build().join("host-tools.log")
}

/// The key of the `variant` kernel that [`ensure`] would build now.
pub(crate) fn current_key(variant: KernelVariant) -> Option<String> {
    source_version().map(|v| kernel_key(&v, variant.config().as_bytes(), PATCHES))
}

/// A finished kernel in `dir`: manifest present, key matching the
/// directory, `vmlinux` of the recorded size.
pub(crate) fn load(dir: &Path) -> Option<Kernel> {
    let manifest: KernelManifest = read_json(&dir.join("manifest.json")).ok()??;
    let path = dir.join("vmlinux");
    let size = std::fs::metadata(&path).ok()?.len();
    let name = dir.file_name()?.to_str()?;
    (size == manifest.size && manifest.key == name).then_some(Kernel { path, manifest })
}

fn embedded_patch_infos() -> Vec<PatchInfo> {
    PATCHES
        .iter()
        .map(|(name, bytes)| PatchInfo {
            name: name.to_string(),
            sha256: sha256_hex(bytes),
        })
        .collect()
}

/// The `variant` kernel for the current key if built; otherwise the
/// newest built kernel with the current config and patches (built from
/// another version of the source package, e.g. before a Debian update).
/// Never builds.
pub(crate) fn installed(paths: &Paths, variant: KernelVariant) -> Option<Kernel> {
    if let Some(k) = current_key(variant).and_then(|key| load(&paths.kernels().join(key))) {
        return Some(k);
    }
    let config_sha = sha256_hex(variant.config().as_bytes());
    let patches = embedded_patch_infos();
    all(paths)
        .into_iter()
        .filter(|k| k.manifest.config_sha256 == config_sha && k.manifest.patches == patches)
        .max_by(|a, b| a.manifest.built_at.cmp(&b.manifest.built_at))
}

/// Every finished kernel in the cache.
pub(crate) fn all(paths: &Paths) -> Vec<Kernel> {
    let Ok(rd) = std::fs::read_dir(paths.kernels()) else {
        return Vec::new();
    };
    rd.flatten().filter_map(|e| load(&e.path())).collect()
}

/// Returns the `variant` kernel for the current inputs, building it if
/// needed.
pub(crate) fn ensure(paths: &Paths, variant: KernelVariant, p: &dyn Progress) -> Result<Kernel> {
    let version = match source_version() {
        Some(version) => version,
        None => {
            // Without the source package the current key is unknown; a kernel
            // built from the same config and patches (any 6.1.x) will do.
            if let Some(k) = installed(paths, variant) {
                return Ok(k);
            }
            // Every missing tool at once, the source package included:
            // installed as root on Debian, else named in the error.
            let source = MissingTool::new(SOURCE_TARBALL, SOURCE_PACKAGE);
            tools::ensure(
                tools::KERNEL,
                std::slice::from_ref(&source),
                &tools_log(paths),
                p,
            )?;
            source_version().ok_or(Error::MissingTools {
                missing: vec![source],
            })?
        }
    };
    let config = variant.config();
    let key = kernel_key(&version, config.as_bytes(), PATCHES);
    let dir = paths.kernels().join(&key);
    if let Some(k) = load(&dir) {
        return Ok(k);
    }
    tools::ensure(tools::KERNEL, &[], &tools_log(paths), p)?;
    let _lock = lock::acquire(&paths.locks(), &format!("kernel-{key}"), STEP, p)?;
    if let Some(k) = load(&dir) {
        p.done(
            STEP,
            &format!("ready: {} (built by another process)", k.path.display()),
        );
        return Ok(k);
    }
    build(paths, &key, &version, variant, p)
}

fn build(
    paths: &Paths,
    key: &str,
    version: &str,
    variant: KernelVariant,
    p: &dyn Progress,
) -> Result<Kernel> {
    let config = variant.config();
    let started = Instant::now();
    if variant == KernelVariant::Smp {
        p.phase(
            STEP,
            "the SMP kernel for VMs with more than one vCPU: built once, like the first kernel",
        );
    }
    let build_dir = paths.build().join(format!("kernel-{key}"));
    remove_dir_if_exists(&build_dir)?;
    let src = build_dir.join("src");
    std::fs::create_dir_all(&src).ctx(|| format!("create {}", src.display()))?;
    let log = build_dir.join("build.log");
    let job = |phase: &'static str, unit: &'static str, classify: fn(&str) -> Line| Job {
        step: STEP,
        phase,
        progress: p,
        log: &log,
        unit,
        classify,
    };

    p.phase(
        STEP,
        &format!(
            "extract: {SOURCE_TARBALL} ({SOURCE_PACKAGE} {version}) into {}",
            src.display()
        ),
    );
    let mut tar = Command::new("tar");
    tar.arg("-xf")
        .arg(SOURCE_TARBALL)
        .arg("-C")
        .arg(&src)
        .arg("--strip-components=1");
    run::run(tar, &job("extract", "", no_status))?;

    for (name, bytes) in PATCHES {
        p.phase(STEP, &format!("patch: {name}"));
        let patch_file = build_dir.join(name);
        std::fs::write(&patch_file, bytes).ctx(|| format!("write {}", patch_file.display()))?;
        let mut cmd = Command::new("patch");
        cmd.args(["-p1", "--forward", "--batch", "-d"])
            .arg(&src)
            .arg("-i")
            .arg(&patch_file);
        run::run(cmd, &job("patch", "", no_status))?;
    }

    p.phase(
        STEP,
        &format!("configure: make allnoconfig with {}", variant.describe()),
    );
    let fragment = build_dir.join("microvm.config");
    std::fs::write(&fragment, config.as_bytes()).ctx(|| format!("write {}", fragment.display()))?;
    let mut cmd = make(&src);
    cmd.arg("allnoconfig").env("KCONFIG_ALLCONFIG", &fragment);
    run::run(cmd, &job("configure", "", no_status))?;
    let dotconfig_path = src.join(".config");
    let dotconfig = std::fs::read_to_string(&dotconfig_path)
        .ctx(|| format!("read {}", dotconfig_path.display()))?;
    let mismatches = fragment_mismatches(&config, &dotconfig);
    if !mismatches.is_empty() {
        p.phase(
            STEP,
            &format!(
                "configure: warning: {} fragment option(s) not as asked (dependency-driven): {}",
                mismatches.len(),
                mismatches.join(", ")
            ),
        );
    }

    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let estimate = all(paths)
        .iter()
        .map(|k| k.manifest.objects)
        .max()
        .filter(|&n| n > 0)
        .map(|n| format!(", about {n} objects"))
        .unwrap_or_default();
    p.phase(STEP, &format!("compile: make -j{jobs} vmlinux{estimate}"));
    let mut cmd = make(&src);
    cmd.arg(format!("-j{jobs}")).arg("vmlinux");
    let compiled = run::run(cmd, &job("compile", "objects", classify_make))?;

    p.phase(STEP, "install: copy vmlinux and write manifest");
    let kernels = paths.kernels();
    let partial = kernels.join(format!(".partial-{key}-{}", std::process::id()));
    remove_dir_if_exists(&partial)?;
    std::fs::create_dir_all(&partial).ctx(|| format!("create {}", partial.display()))?;
    let vmlinux = partial.join("vmlinux");
    copy(&src.join("vmlinux"), &vmlinux)?;
    copy(&dotconfig_path, &partial.join("config"))?;
    let manifest = KernelManifest {
        format: FORMAT,
        key: key.to_string(),
        source_package: SOURCE_PACKAGE.to_string(),
        source_version: version.to_string(),
        config_sha256: sha256_hex(config.as_bytes()),
        patches: embedded_patch_infos(),
        config_mismatches: mismatches,
        vmlinux_sha256: sha256_file(&vmlinux)?,
        size: std::fs::metadata(&vmlinux)
            .ctx(|| format!("stat {}", vmlinux.display()))?
            .len(),
        objects: compiled.count,
        build_seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        built_at: now_rfc3339(),
    };
    write_json(&partial.join("manifest.json"), &manifest)?;
    let dir = kernels.join(key);
    // Under the build lock: anything here is an unfinished leftover.
    remove_dir_if_exists(&dir)?;
    std::fs::rename(&partial, &dir)
        .ctx(|| format!("rename {} to {}", partial.display(), dir.display()))?;
    remove_dir_if_exists(&build_dir)?;
    let kernel = Kernel {
        path: dir.join("vmlinux"),
        manifest,
    };
    p.done(
        STEP,
        &format!(
            "built {} ({:.1} MiB, {} objects, {:.0}s)",
            kernel.path.display(),
            kernel.manifest.size as f64 / (1024.0 * 1024.0),
            kernel.manifest.objects,
            kernel.manifest.build_seconds
        ),
    );
    Ok(kernel)
}

/// `make -C src` with a clean environment for kbuild.
fn make(src: &Path) -> Command {
    let mut cmd = Command::new("make");
    cmd.arg("-C").arg(src);
    // A caller running under make (or cargo) must not leak its jobserver
    // or cross-compilation settings into the kernel build.
    for var in [
        "MAKEFLAGS",
        "MFLAGS",
        "MAKELEVEL",
        "ARCH",
        "CROSS_COMPILE",
        "O",
        "KBUILD_OUTPUT",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("KBUILD_BUILD_USER", "pyro")
        .env("KBUILD_BUILD_HOST", "pyro");
    cmd
}

fn no_status(_: &str) -> Line {
    Line::Other
}

/// Kbuild's quiet output: `  CC      kernel/fork.o`. Compilations count;
/// the final vmlinux link steps (long and silent) become the status.
pub(crate) fn classify_make(line: &str) -> Line {
    let Some(rest) = line.strip_prefix("  ") else {
        return Line::Other;
    };
    let mut words = rest.split_whitespace();
    let (Some(tag), Some(target)) = (words.next(), words.next()) else {
        return Line::Other;
    };
    match tag {
        "CC" | "AS" | "HOSTCC" | "HOSTCXX" => Line::Count,
        "LD" | "KSYMS" | "KSYMSCHK" | "SYSMAP" | "SORTTAB" | "MODPOST"
            if target.starts_with("vmlinux") || target.starts_with(".tmp_vmlinux") =>
        {
            Line::Status(format!("{tag} {target}"))
        }
        _ => Line::Other,
    }
}

/// Fragment lines `CONFIG_X=y` / `CONFIG_X=n` (or `# CONFIG_X is not set`)
/// that `.config` does not honour. A symbol absent from `.config` is off.
pub(crate) fn fragment_mismatches(fragment: &str, dotconfig: &str) -> Vec<String> {
    let actual: std::collections::HashMap<&str, &str> = dotconfig
        .lines()
        .filter_map(|l| l.trim().split_once('='))
        .collect();
    let mut out = Vec::new();
    for line in fragment.lines() {
        let line = line.trim();
        let (sym, want) = if let Some((sym, val)) = line.split_once('=') {
            (sym, val)
        } else if let Some(sym) = line
            .strip_prefix("# ")
            .and_then(|l| l.strip_suffix(" is not set"))
        {
            (sym, "n")
        } else {
            continue;
        };
        if !sym.starts_with("CONFIG_") || !(want == "y" || want == "n") {
            continue;
        }
        let got = actual.get(sym).copied().unwrap_or("n");
        if got != want {
            out.push(format!("{sym} (asked {want}, got {got})"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_changes_with_each_input_only() {
        let base = kernel_key("6.1.192-2", b"CONFIG_A=y\n", &[("p", b"x")]);
        assert_eq!(
            base,
            kernel_key("6.1.192-2", b"CONFIG_A=y\n", &[("p", b"x")])
        );
        assert_ne!(
            base,
            kernel_key("6.1.193-1", b"CONFIG_A=y\n", &[("p", b"x")])
        );
        assert_ne!(
            base,
            kernel_key("6.1.192-2", b"CONFIG_A=n\n", &[("p", b"x")])
        );
        assert_ne!(
            base,
            kernel_key("6.1.192-2", b"CONFIG_A=y\n", &[("p", b"y")])
        );
        assert_ne!(base, kernel_key("6.1.192-2", b"CONFIG_A=y\n", &[]));
    }

    #[test]
    fn embedded_config_is_as_designed() {
        let mut seen = std::collections::HashSet::new();
        for line in CONFIG.lines().filter(|l| l.starts_with("CONFIG_")) {
            let sym = line.split('=').next().unwrap();
            assert!(seen.insert(sym), "duplicate {sym}");
        }
        for want in [
            "CONFIG_DEVMEM=y",
            "CONFIG_SMP=n",
            "CONFIG_LOCALVERSION=\"-pyro\"",
        ] {
            assert!(CONFIG.lines().any(|l| l == want), "{want}");
        }
        assert!(!CONFIG.contains("CONFIG_PVH=y"));
    }

    #[test]
    fn variants_differ_only_in_smp_config() {
        assert_eq!(KernelVariant::for_vcpus(1), KernelVariant::Up);
        assert_eq!(KernelVariant::for_vcpus(2), KernelVariant::Smp);
        // The uniprocessor kernel's fragment (and so its key and every
        // warm snapshot made with it) is microvm.config as it is.
        assert_eq!(KernelVariant::Up.config(), CONFIG);
        let smp = KernelVariant::Smp.config();
        let lines = |s: &str| -> Vec<String> {
            s.lines()
                .filter(|l| l.starts_with("CONFIG_"))
                .map(String::from)
                .collect()
        };
        let (up, smp) = (lines(CONFIG), lines(&smp));
        assert!(smp.contains(&"CONFIG_SMP=y".to_string()));
        assert!(!smp.contains(&"CONFIG_SMP=n".to_string()));
        // NR_CPUS = the VMM's vCPU limit: checked in pyro-workspace,
        // which sees both crates.
        assert!(smp.iter().any(|l| l.starts_with("CONFIG_NR_CPUS=")));
        let removed: Vec<_> = up.iter().filter(|l| !smp.contains(l)).collect();
        assert_eq!(removed, ["CONFIG_SMP=n"]);
        let mut seen = std::collections::HashSet::new();
        for line in &smp {
            assert!(
                seen.insert(line.split('=').next().unwrap()),
                "duplicate {line}"
            );
        }
    }

    #[test]
    fn overlay_replaces_lines_of_the_same_symbol() {
        let base = "# c\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=n\n";
        assert_eq!(
            overlay(base, "CONFIG_B=y\nCONFIG_C=y\n"),
            "# c\nCONFIG_A=y\nCONFIG_B=y\nCONFIG_C=y\n"
        );
    }

    #[test]
    fn mismatches_found() {
        let fragment = "# comment\nCONFIG_A=y\nCONFIG_B=n\nCONFIG_C=y\nCONFIG_D=n\n# CONFIG_E is not set\nCONFIG_S=\"x\"\n";
        let dotconfig = "CONFIG_A=y\n# CONFIG_B is not set\n# CONFIG_C is not set\nCONFIG_E=y\nCONFIG_S=\"y\"\n";
        assert_eq!(
            fragment_mismatches(fragment, dotconfig),
            vec!["CONFIG_C (asked y, got n)", "CONFIG_E (asked n, got y)"]
        );
    }

    #[test]
    fn make_lines() {
        assert_eq!(classify_make("  CC      kernel/fork.o"), Line::Count);
        assert_eq!(classify_make("  HOSTCC  scripts/kallsyms"), Line::Count);
        assert_eq!(
            classify_make("  LD      .tmp_vmlinux.kallsyms1"),
            Line::Status("LD .tmp_vmlinux.kallsyms1".into())
        );
        assert_eq!(classify_make("  LD      arch/x86/built-in.a"), Line::Other);
        assert_eq!(classify_make("make[1]: Entering directory"), Line::Other);
    }
}
