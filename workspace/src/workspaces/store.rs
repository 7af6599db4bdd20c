//! Workspace state on disk: one directory per workspace under
//! `<data>/workspaces/`, its record written atomically, a lock file that
//! serializes changes, and the small pieces (ids, times, names) around it.

use crate::Error;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Files of one workspace.
#[derive(Debug, Clone)]
pub struct WsDir(pub PathBuf);

impl WsDir {
    pub fn record(&self) -> PathBuf {
        self.0.join("workspace.json")
    }
    pub fn disk(&self) -> PathBuf {
        self.0.join("disk.ext4")
    }
    /// Who is making the workspace, until its create ends.
    pub fn creating(&self) -> PathBuf {
        self.0.join("creating.json")
    }
    /// The writable system's upper layer (everything outside /workspace).
    pub fn system_disk(&self) -> PathBuf {
        self.0.join("system.ext4")
    }
    pub fn baseline_tar(&self) -> PathBuf {
        self.0.join("baseline.tar")
    }
    /// The checkpoints (`snapshots/`, the CLI's word).
    pub fn checkpoints(&self) -> PathBuf {
        self.0.join("snapshots")
    }
    /// Checkpoint `name`'s copy of the disk.
    pub fn checkpoint_image(&self, name: &str) -> PathBuf {
        self.checkpoints().join(format!("{name}.ext4"))
    }
    /// Checkpoint `name`'s copy of the system disk.
    pub fn checkpoint_system_image(&self, name: &str) -> PathBuf {
        self.checkpoints().join(format!("{name}.system.ext4"))
    }
    /// Checkpoint `name`'s record.
    pub fn checkpoint_meta(&self, name: &str) -> PathBuf {
        self.checkpoints().join(format!("{name}.json"))
    }
    /// The snapshot for new workspaces that the baseline system image is
    /// a copy of the template of (see `start::NewSystem`): a reset to
    /// `baseline` can restore it too.
    pub fn new_system(&self) -> PathBuf {
        self.0.join("new-system.json")
    }
    pub fn history(&self) -> PathBuf {
        self.0.join("history")
    }
    pub fn vm(&self) -> PathBuf {
        self.0.join("vm")
    }
    /// The VM snapshot `stop --keep-memory` took, until the next start.
    pub fn suspended(&self) -> PathBuf {
        self.0.join("suspended")
    }
    /// Where a fork of this workspace puts the snapshot and disk copies
    /// its running VM makes, until the children have theirs.
    pub fn fork_scratch(&self) -> PathBuf {
        self.0.join("fork.tmp")
    }
    /// The VM snapshot a fork made this workspace's first start from
    /// (links to the fork's files), until that start.
    pub fn forked(&self) -> PathBuf {
        self.0.join("forked")
    }

    /// Takes the workspace's lock (blocking); released when dropped.
    pub fn lock(&self) -> Result<Lock, Error> {
        lock_file(&self.lock_path())
    }

    /// The workspace's lock file (its VMM takes it too, without waiting,
    /// before an idle suspend).
    pub fn lock_path(&self) -> PathBuf {
        self.0.join("lock")
    }
}

/// Takes the exclusive lock on `path` (made if missing), waiting for it.
pub fn lock_file(path: &Path) -> Result<Lock, Error> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io_err(path, e.into()))?;
    Ok(Lock(file))
}

/// A held workspace lock.
pub struct Lock(#[allow(dead_code)] File);

/// `e` on `path`, the source kept: "<path>: <what failed>".
pub fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::File {
        path: path.to_path_buf(),
        source: e,
    }
}

/// Writes `value` as JSON to `path`: temporary file, fsync, rename, so a
/// reader sees the old or the new document, never half of one.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), Error> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Io(e.to_string()))?;
    let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    f.write_all(&bytes).map_err(|e| io_err(&tmp, e))?;
    f.sync_all().map_err(|e| io_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| io_err(path, e.into()))
}

/// How many hex digits a workspace id has.
const ID_DIGITS: usize = 12;

/// A short random id: [`ID_DIGITS`] hex digits from the kernel's generator.
pub fn new_id() -> Result<String, Error> {
    let mut bytes = [0u8; ID_DIGITS / 2];
    rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty())
        .map_err(|e| Error::Io(format!("getrandom: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub use pyro_images::rfc3339;

/// Names of workspaces, snapshots and label keys.
pub fn check_name(field: &str, value: &str) -> Result<(), Error> {
    let ok = value.len() <= 64
        && value
            .chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_alphanumeric() || (i > 0 && matches!(c, '.' | '_' | '-')))
        && !value.is_empty();
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{field} {value:?} is not allowed: use 1-64 characters from A-Z a-z 0-9 . _ -, \
             starting with a letter or digit"
        )))
    }
}

/// Workspace names: [`check_name`], and not of an id's form (12 hex
/// digits, in either case). Ids are looked up before names, so a name
/// that is (or becomes) another workspace's id would make commands given
/// that name act on the other workspace: refusing the whole form, not
/// only the ids in use, also covers ids made later.
pub fn check_workspace_name(value: &str) -> Result<(), Error> {
    check_name("name", value)?;
    if looks_like_id(value) {
        return Err(Error::InvalidArgument(format!(
            "name {value:?} is not allowed: {ID_DIGITS} hex digits is the form of workspace \
             ids; add a letter outside a-f or change the length"
        )));
    }
    Ok(())
}

fn looks_like_id(value: &str) -> bool {
    value.len() == ID_DIGITS && value.chars().all(|c| c.is_ascii_hexdigit())
}

/// Label values: any text without control characters, up to 256 bytes.
pub fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), Error> {
    for (k, v) in labels {
        check_name("label key", k)?;
        if v.len() > 256 || v.chars().any(char::is_control) {
            return Err(Error::InvalidArgument(format!(
                "label {k}: the value must be at most 256 bytes without control characters"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_560_443), "2026-11-24T22:47:23Z");
    }

    #[test]
    fn names_follow_the_rule() {
        for ok in ["a", "repro-fix_1.2", "X9", &"a".repeat(64)] {
            check_name("name", ok).unwrap();
        }
        for bad in ["", "-a", ".hidden", "a b", "a/b", "é", &"a".repeat(65)] {
            let e = check_name("name", bad).unwrap_err();
            assert_eq!(e.kind(), "invalid_argument", "{bad}");
        }
    }

    #[test]
    fn workspace_names_cannot_have_the_form_of_ids() {
        let id = new_id().unwrap();
        assert!(looks_like_id(&id), "{id}");
        for bad in [id.as_str(), "0123456789ab", "ABCDEF012345", "-a"] {
            let e = check_workspace_name(bad).unwrap_err();
            assert_eq!(e.kind(), "invalid_argument", "{bad}");
        }
        let e = check_workspace_name("deadbeef0000").unwrap_err();
        assert!(e.to_string().contains("form of workspace ids"), "{e}");
        for ok in [
            "demo",
            "0123456789a",
            "0123456789abc",
            "0123456789ag",
            "cafe",
        ] {
            check_workspace_name(ok).unwrap();
        }
    }
}
