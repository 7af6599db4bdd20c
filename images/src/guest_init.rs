//! The guest's PID 1 (`pyro-init`, crate `pyro-guest-init`): a static
//! x86_64 binary that every environment image carries at
//! `/opt/pyro/bin/pyro-init`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::elf;
use crate::error::{Error, IoContext, Result};
use crate::paths::Paths;
use crate::progress::Progress;

/// Names a prebuilt static guest-init binary to use instead of the one
/// embedded in pyro.
pub const GUEST_INIT_ENV: &str = "PYRO_GUEST_INIT";

/// The target the guest-init is built for (static glibc via crt-static;
/// `build.rs` builds it).
pub const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";

const STEP: &str = "guest-init";

/// guest-init as `build.rs` built it when pyro was built: no `pyro` call
/// needs cargo or the source tree.
static EMBEDDED: &[u8] = include_bytes!(env!("PYRO_EMBEDDED_GUEST_INIT"));

static WRITTEN: OnceLock<PathBuf> = OnceLock::new();
static WRITING: Mutex<()> = Mutex::new(());

/// The guest-init binary to put into images.
///
/// `$PYRO_GUEST_INIT` if set; otherwise the binary embedded in pyro,
/// written once to `cache/guest-init/<sha256>/pyro-init`. Either way the
/// file must be a static x86_64 ELF executable.
pub fn guest_init_binary(paths: &Paths, progress: &dyn Progress) -> Result<PathBuf> {
    if let Some(p) = from_env() {
        check_static(&p)?;
        return Ok(p);
    }
    if let Some(p) = WRITTEN.get() {
        return Ok(p.clone());
    }
    let _guard = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = WRITTEN.get() {
        return Ok(p.clone());
    }
    let out = paths.guest_init().join(embedded_sha()).join("pyro-init");
    let whole = std::fs::metadata(&out).is_ok_and(|m| m.len() == EMBEDDED.len() as u64);
    if !whole {
        write(&out)?;
        progress.done(STEP, &format!("ready: {}", out.display()));
    }
    check_static(&out)?;
    Ok(WRITTEN.get_or_init(|| out).clone())
}

/// The embedded binary's SHA-256, hex.
fn embedded_sha() -> &'static str {
    static SHA: OnceLock<String> = OnceLock::new();
    SHA.get_or_init(|| crate::hash::sha256_hex(EMBEDDED))
}

/// Writes the embedded binary to `out`, whole or not at all (another
/// process may be writing the same one: each writes its own temporary
/// file and renames it).
fn write(out: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = out.parent().expect("a directory");
    std::fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
    let tmp = dir.join(format!("pyro-init.tmp-{}", std::process::id()));
    std::fs::write(&tmp, EMBEDDED).ctx(|| format!("write {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
        .ctx(|| format!("chmod {}", tmp.display()))?;
    std::fs::rename(&tmp, out).ctx(|| format!("rename to {}", out.display()))
}

/// The SHA-256 of the guest-init binary in use: `$PYRO_GUEST_INIT`'s,
/// else the embedded one's.
pub(crate) fn current_sha() -> Option<String> {
    match from_env() {
        Some(p) => crate::hash::sha256_file(&p).ok(),
        None => Some(embedded_sha().to_string()),
    }
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
