//! The guest's PID 1 (`pyro-init`, crate `pyro-guest-init`): a static
//! x86_64 binary that every environment image carries at
//! `/opt/pyro/bin/pyro-init`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::elf;
use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;
use crate::run::{self, Job, Line};

/// Names a prebuilt static guest-init binary to use instead of building one.
pub const GUEST_INIT_ENV: &str = "PYRO_GUEST_INIT";

/// The target the guest-init is built for (static glibc via crt-static).
pub const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";

const STEP: &str = "guest-init";

static BUILT: OnceLock<PathBuf> = OnceLock::new();
static BUILDING: Mutex<()> = Mutex::new(());

/// The source tree this crate was compiled from.
fn workspace_root() -> PathBuf {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    root.canonicalize().unwrap_or(root)
}

/// The guest-init binary to put into images.
///
/// `$PYRO_GUEST_INIT` if set; otherwise `cargo build --release -p
/// pyro-guest-init` in this crate's source tree (static, into
/// `target/guest/`), once per process. Either way the file must be a static
/// x86_64 ELF executable.
pub fn guest_init_binary(progress: &dyn Progress) -> Result<PathBuf> {
    if let Some(p) = from_env() {
        check_static(&p)?;
        return Ok(p);
    }
    if let Some(p) = BUILT.get() {
        return Ok(p.clone());
    }
    let _guard = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = BUILT.get() {
        return Ok(p.clone());
    }
    let p = build(&workspace_root(), progress)?;
    check_static(&p)?;
    Ok(BUILT.get_or_init(|| p).clone())
}

/// The binary [`guest_init_binary`] would return, if known without
/// building anything.
pub(crate) fn known_binary() -> Option<PathBuf> {
    from_env().or_else(|| BUILT.get().cloned())
}

fn from_env() -> Option<PathBuf> {
    std::env::var_os(GUEST_INIT_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Fails unless `path` is a static x86_64 ELF executable.
pub(crate) fn check_static(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| Error::GuestInit {
        message: format!("cannot read {}: {e}", path.display()),
    })?;
    elf::check_static_x86_64(&bytes).map_err(|why| Error::GuestInit {
        message: format!(
            "{} is {why}; the guest needs a static x86_64 executable",
            path.display()
        ),
    })
}

fn build(root: &Path, p: &dyn Progress) -> Result<PathBuf> {
    if !root.join("guest-init/Cargo.toml").is_file() {
        return Err(Error::GuestInit {
            message: format!(
                "no source tree at {} to build it from: set {GUEST_INIT_ENV} to a static pyro-init binary",
                root.display()
            ),
        });
    }
    let target_dir = root.join("target/guest");
    std::fs::create_dir_all(&target_dir).ctx(|| format!("create {}", target_dir.display()))?;
    let log = target_dir.join("pyro-init-build.log");
    let _ = std::fs::remove_file(&log);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--release",
            "-p",
            "pyro-guest-init",
            "--bin",
            "pyro-init",
        ])
        .args(["--target", GUEST_TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        // Static glibc, and not position-independent: a static-pie binary
        // relocates itself at start-up, touching pages that each cost a
        // page fault in the emulated guest kernel on PVM hosts.
        .env(
            "RUSTFLAGS",
            "-C target-feature=+crt-static -C relocation-model=static",
        )
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    p.phase(
        STEP,
        &format!("cargo build: pyro-init for {GUEST_TARGET} (static)"),
    );
    let job = Job {
        step: STEP,
        phase: "cargo build",
        progress: p,
        log: &log,
        unit: "crates",
        classify: classify_cargo,
    };
    run::run(cmd, &job).map_err(|e| match e {
        Error::Build {
            message, log, tail, ..
        } => Error::Build {
            step: STEP.to_string(),
            message: format!(
                "{message} (set {GUEST_INIT_ENV} to a prebuilt static binary to skip this build)"
            ),
            log,
            tail,
        },
        other => other,
    })?;
    let out = target_dir.join(GUEST_TARGET).join("release/pyro-init");
    if !out.is_file() {
        return Err(Error::GuestInit {
            message: format!("cargo succeeded but {} does not exist", out.display()),
        });
    }
    p.done(STEP, &format!("ready: {}", out.display()));
    Ok(out)
}

fn classify_cargo(line: &str) -> Line {
    if line.trim_start().starts_with("Compiling ") {
        Line::Count
    } else {
        Line::Other
    }
}
