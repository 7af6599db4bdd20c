//! A workspace's secrets (docs/secrets.md).
//!
//! - **On the host**, [`SecretStore`]: `<workspace>/secrets/<NAME>`, one
//!   file per secret, mode 0600 in a 0700 directory, each written whole
//!   (temp file, fsync, rename). The record keeps only names and where
//!   each came from.
//! - **In the guest**, `/run/pyro-secrets/<NAME>` (tmpfs): [`install`]
//!   sends the whole set after every boot, restore and resume, and after
//!   `secret set|unset` on a running workspace.
//! - **Into a command**, `--secret-env NAME[=VAR]`: the host reads the
//!   value and puts it in that one call's environment ([`resolve_env`]).
//! - **Out of everything returned or stored**: each output of a
//!   workspace goes through a [`Redactor`] made from its secrets
//!   ([`WorkspaceHandle::redactor`]).

use super::handle::{view, WorkspaceHandle};
use super::records::{SecretInfo, SecretSource, Workspace};
use super::store::{io_err, WsDir};
use crate::detached::VmState;
use crate::guest::GuestClient;
use crate::secrets::{check_name, Redactor, Secret, MAX_SECRETS, MAX_VALUE};
use crate::{Error, Pyro};
use std::fs::{DirBuilder, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The secrets of one workspace on the host.
pub struct SecretStore(PathBuf);

impl SecretStore {
    pub fn of(dir: &WsDir) -> SecretStore {
        SecretStore(dir.0.join("secrets"))
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

    /// Writes every secret held into `other` (a fork's child).
    pub fn copy_to(&self, other: &SecretStore) -> Result<(), Error> {
        for secret in self.all()? {
            other.set(&secret)?;
        }
        Ok(())
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

impl Pyro {
    /// Sets secret `secret` (new, or a new value), and installs the set
    /// in the guest if the workspace runs. Commands started before keep
    /// the environment they started with; new ones see the new value.
    pub fn workspace_secret_set(
        &self,
        id: &str,
        secret: &Secret,
        source: SecretSource,
    ) -> Result<Workspace, Error> {
        let ws = self.workspace_locked(id)?;
        let store = SecretStore::of(&ws.dir);
        store.set(secret)?;
        let record = ws.touch(|r| {
            r.secrets.retain(|s| s.name != secret.name());
            r.secrets.push(SecretInfo {
                name: secret.name().into(),
                source_kind: source,
            });
            r.secrets.sort_by(|a, b| a.name.cmp(&b.name));
        })?;
        install_if_running(&ws, &store)?;
        Ok(view(&ws.dir, record))
    }

    /// `text` with workspace `id`'s secret values replaced: for callers
    /// that echo what they were given (the MCP server's progress line of
    /// an exec names its command).
    pub fn workspace_redact(&self, id: &str, text: &str) -> Result<String, Error> {
        let ws = self.workspace(id)?;
        Ok(ws.redactor()?.redact(text))
    }

    /// Removes secret `name`, from the host and, if the workspace runs,
    /// from the guest.
    pub fn workspace_secret_unset(&self, id: &str, name: &str) -> Result<Workspace, Error> {
        check_name(name).map_err(Error::InvalidArgument)?;
        let ws = self.workspace_locked(id)?;
        let store = SecretStore::of(&ws.dir);
        if !store.unset(name)? {
            return Err(Error::NotFound(format!(
                "workspace {}: no secret {name}",
                ws.given
            )));
        }
        let record = ws.touch(|r| r.secrets.retain(|s| s.name != name))?;
        install_if_running(&ws, &store)?;
        Ok(view(&ws.dir, record))
    }
}

/// Gives a running guest the secrets as they are now. First, its VMM
/// the idle policy they imply: one with secrets is never suspended, and
/// must not be from the moment the guest holds a value.
fn install_if_running(ws: &WorkspaceHandle, store: &SecretStore) -> Result<(), Error> {
    if !matches!(ws.vm().state(), VmState::Running { .. }) {
        return Ok(());
    }
    super::start::apply_idle_policy(&ws.dir, &ws.record()?)?;
    let mut agent = ws.agent()?;
    install(&mut agent, store, true).map_err(|e| {
        Error::Guest(format!(
            "workspace {}: the secret is stored, but the guest did not take it ({e}); \
             `pyro workspace stop` and `start` install it",
            ws.given
        ))
    })
}

/// Makes the guest hold the workspace's secrets. `always`: also when
/// there are none (after an unset); a fresh guest has none to remove.
pub(super) fn install(
    agent: &mut GuestClient,
    store: &SecretStore,
    always: bool,
) -> Result<(), Error> {
    let all = store.all()?;
    if all.is_empty() && !always {
        return Ok(());
    }
    agent.secrets(&all)?;
    Ok(())
}

/// `--secret-env` pairs (secret name, variable) as environment entries
/// (variable, value) for one call. An unknown secret is an error that
/// names the ones there are.
pub(super) fn resolve_env(
    ws: &WorkspaceHandle,
    pairs: &[(String, String)],
) -> Result<Vec<(String, String)>, Error> {
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let all = SecretStore::of(&ws.dir).all()?;
    pairs
        .iter()
        .map(|(name, var)| {
            secret_env_pair(name, var).map_err(Error::InvalidArgument)?;
            let secret = all.iter().find(|s| s.name() == name).ok_or_else(|| {
                let names: Vec<&str> = all.iter().map(Secret::name).collect();
                Error::InvalidArgument(format!(
                    "workspace {}: no secret {name:?} (it has: {}); set one with \
                     `pyro workspace secret set`",
                    ws.given,
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ))
            })?;
            // Values are checked UTF-8 when stored (`Secret::new`).
            let value = String::from_utf8_lossy(secret.expose()).into_owned();
            Ok((var.clone(), value))
        })
        .collect()
}

/// The redactor for everything workspace `dir` returns or stores.
pub(super) fn redactor(dir: &WsDir) -> Result<Redactor, Error> {
    Ok(Redactor::new(&SecretStore::of(dir).all()?))
}

/// `NAME[=VAR]` (`--secret-env`): the secret and the variable it becomes
/// (the secret's own name when no `=VAR`).
pub fn parse_secret_env(spec: &str) -> Result<(String, String), String> {
    let (name, var) = spec.split_once('=').unwrap_or((spec, spec));
    secret_env_pair(name, var)
}

/// A `--secret-env` pair, checked: secret `name` into variable `var`.
pub fn secret_env_pair(name: &str, var: &str) -> Result<(String, String), String> {
    check_name(name)?;
    check_name(var).map_err(|_| {
        format!(
            "--secret-env {name}={var}: {var:?} is not a variable name \
             ([A-Za-z_][A-Za-z0-9_]{{0,63}})"
        )
    })?;
    Ok((name.to_string(), var.to_string()))
}

/// A secret whose value is the file at `path` (`--secret-file`), read
/// with a bound. One trailing newline is dropped: editors add it, and a
/// token with it would not match what a program prints.
pub fn secret_from_file(name: &str, path: &Path) -> Result<Secret, Error> {
    let mut value = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_VALUE as u64 + 2).read_to_end(&mut value))
        .map_err(|e| {
            Error::InvalidArgument(format!("--secret-file {name}={}: {e}", path.display()))
        })?;
    if value.ends_with(b"\n") {
        value.pop();
        if value.ends_with(b"\r") {
            value.pop();
        }
    }
    Secret::new(name, value)
        .map_err(|e| Error::InvalidArgument(format!("--secret-file {}: {e}", path.display())))
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
        let store = SecretStore::of(&WsDir(dir.clone()));
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
