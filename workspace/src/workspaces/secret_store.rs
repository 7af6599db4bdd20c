//! A workspace's secrets on the host (groundwork on the secrets branch;
//! see docs/design/secrets.md): `<workspace>/secrets/<NAME>`, one file
//! per secret, mode 0600 in a 0700 directory, each written whole (temp
//! file, fsync, rename). Names come back checked; nothing else in the
//! directory is read as a secret.
#![allow(dead_code)] // Not wired yet: docs/design/secrets.md.

use super::store::io_err;
use crate::secrets::{check_name, Secret, MAX_VALUE};
use crate::Error;
use std::fs::{DirBuilder, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Most secrets per workspace.
pub const MAX_SECRETS: usize = 64;

/// The secrets of the workspace whose directory is `dir`.
pub struct SecretStore(PathBuf);

impl SecretStore {
    pub fn of(workspace_dir: &Path) -> SecretStore {
        SecretStore(workspace_dir.join("secrets"))
    }

    /// Writes (or replaces) `secret`; refuses a new one past
    /// [`MAX_SECRETS`].
    pub fn set(&self, secret: &Secret) -> Result<(), Error> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.0)
            .map_err(|e| io_err(&self.0, e))?;
        let path = self.0.join(secret.name());
        if !path.exists() && self.names()?.len() >= MAX_SECRETS {
            return Err(Error::InvalidArgument(format!(
                "a workspace holds at most {MAX_SECRETS} secrets"
            )));
        }
        let tmp = self.0.join(format!(".{}.tmp", secret.name()));
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io_err(&tmp, e))?;
        f.write_all(secret.expose()).map_err(|e| io_err(&tmp, e))?;
        f.sync_all().map_err(|e| io_err(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))
    }

    /// Removes secret `name`; whether it was there.
    pub fn unset(&self, name: &str) -> Result<bool, Error> {
        check_name(name).map_err(Error::InvalidArgument)?;
        let path = self.0.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(&path, e)),
        }
    }

    /// The names held, sorted.
    pub fn names(&self) -> Result<Vec<String>, Error> {
        let entries = match std::fs::read_dir(&self.0) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.0, e)),
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| check_name(n).is_ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Every secret held (for the guest and the redactor), each read
    /// with a bound.
    pub fn all(&self) -> Result<Vec<Secret>, Error> {
        self.names()?
            .into_iter()
            .map(|name| {
                let path = self.0.join(&name);
                let mut value = Vec::new();
                std::fs::File::open(&path)
                    .and_then(|f| f.take(MAX_VALUE as u64 + 1).read_to_end(&mut value))
                    .map_err(|e| io_err(&path, e))?;
                Secret::new(&name, value).map_err(Error::InvalidArgument)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pyro-secrets-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn secrets_are_kept_0600_replaced_whole_listed_and_removed() {
        let dir = scratch();
        let store = SecretStore::of(&dir);
        assert!(store.names().unwrap().is_empty());
        store.set(&Secret::new("B_TOKEN", "one").unwrap()).unwrap();
        store.set(&Secret::new("A_KEY", "k").unwrap()).unwrap();
        store.set(&Secret::new("B_TOKEN", "two").unwrap()).unwrap();
        assert_eq!(store.names().unwrap(), ["A_KEY", "B_TOKEN"]);
        let all = store.all().unwrap();
        assert_eq!(all[1].expose(), b"two");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join("secrets")), 0o700);
        assert_eq!(mode(&dir.join("secrets/B_TOKEN")), 0o600);
        // Stray files are not secrets.
        std::fs::write(dir.join("secrets/.B_TOKEN.tmp"), "x").unwrap();
        assert_eq!(store.names().unwrap().len(), 2);
        assert!(store.unset("A_KEY").unwrap());
        assert!(!store.unset("A_KEY").unwrap());
        assert!(store.unset("../x").is_err());
        assert_eq!(store.names().unwrap(), ["B_TOKEN"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
