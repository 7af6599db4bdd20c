//! The guest's secrets: [`DIR`] holds exactly the set the host sent last
//! (one 0600 file per secret in a 0700 directory on the /run tmpfs, so
//! no disk image ever holds a value). A value that is replaced or
//! removed is overwritten with zeros first, so its tmpfs pages do not
//! keep it after the file is gone.
//!
//! Values reach commands through the host (`--secret-env` becomes the
//! command's environment), so nothing here is read back by the agent;
//! the files are for the user's programs (`cat /run/pyro-secrets/X`).

use super::RpcError;
use pyro_proto::rpc::Reply;
use pyro_proto::secrets::{self, Entry, DIR};
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Mutex;

/// One install at a time: two would share temporary names.
static INSTALL: Mutex<()> = Mutex::new(());

pub fn install(entries: &[Entry], data: &[u8]) -> Result<Reply, RpcError> {
    let set = secrets::split(entries, data).map_err(|e| RpcError::new("invalid_argument", e))?;
    let _one = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    let fail =
        |what: &str, e: std::io::Error| RpcError::new("io_error", format!("secrets: {what}: {e}"));
    let dir = Path::new(DIR);
    // The guest is root everywhere: whatever a command left at the path
    // (a file, a symlink to /workspace) is replaced by the directory, so
    // values never land on a disk.
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => fs::remove_file(dir).map_err(|e| fail("replace what is at the path", e))?,
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(fail(DIR, e)),
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(fail("mkdir", e)),
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| fail("chmod", e))?;
    for (name, value) in &set {
        let (tmp, path) = (dir.join(format!(".{name}.tmp")), dir.join(name));
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| fail(name, e))?;
        f.write_all(value).map_err(|e| fail(name, e))?;
        // The old value's file, still open after the rename, is zeroed.
        let old = open_regular(&path);
        fs::rename(&tmp, &path).map_err(|e| fail(name, e))?;
        if let Some(old) = old {
            zero(old);
        }
    }
    let entries = fs::read_dir(dir).map_err(|e| fail("list", e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if set.iter().any(|(n, _)| name == **n) {
            continue;
        }
        let path = entry.path();
        if let Some(f) = open_regular(&path) {
            zero(f);
        }
        let _ = fs::remove_file(&path).or_else(|_| fs::remove_dir_all(&path));
    }
    Ok(Reply::Secrets {
        count: set.len() as u32,
    })
}

/// `path` opened for writing if it is a regular file (not through a
/// symlink).
fn open_regular(path: &Path) -> Option<fs::File> {
    fs::symlink_metadata(path).ok().filter(|m| m.is_file())?;
    OpenOptions::new()
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .ok()
}

/// Overwrites the whole file with zeros, in place.
fn zero(mut f: fs::File) {
    let len = f.metadata().map_or(0, |m| m.len()) as usize;
    let _ = f.write_all(&vec![0u8; len.min(secrets::MAX_VALUE * 2)]);
}
