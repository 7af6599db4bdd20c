//! Exclusive file locks so that two processes never build the same thing at
//! once: the second waits, then finds the first one's result.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::progress::Progress;

/// Held while building; the lock is released when this is dropped (the file
/// is closed). Lock files themselves are left in place: deleting one while
/// another process waits on it would let a third lock a different file.
#[derive(Debug)]
pub(crate) struct BuildLock {
    _file: File,
}

fn lock_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.lock"))
}

fn open(dir: &Path, name: &str) -> Result<(File, PathBuf)> {
    std::fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
    let path = lock_path(dir, name);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .ctx(|| format!("open lock file {}", path.display()))?;
    Ok((file, path))
}

/// Takes the lock `dir/name.lock`, waiting (and saying so) if another
/// process holds it.
pub(crate) fn acquire(dir: &Path, name: &str, step: &str, p: &dyn Progress) -> Result<BuildLock> {
    let (file, path) = open(dir, name)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            p.phase(
                step,
                &format!(
                    "wait: another process is building this ({})",
                    path.display()
                ),
            );
            file.lock().ctx(|| format!("lock {}", path.display()))?;
        }
        Err(TryLockError::Error(e)) => {
            return Err(crate::Error::io(format!("lock {}", path.display()), e))
        }
    }
    Ok(BuildLock { _file: file })
}

/// Takes the lock only if it is free right now.
pub(crate) fn try_acquire(dir: &Path, name: &str) -> Result<Option<BuildLock>> {
    let (file, path) = open(dir, name)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(BuildLock { _file: file })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(crate::Error::io(format!("lock {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    #[test]
    fn second_lock_is_refused_until_release() {
        let dir = std::env::temp_dir().join(format!("pyro-images-lock-{}", std::process::id()));
        let held = acquire(&dir, "k", "test", &NoProgress).unwrap();
        assert!(try_acquire(&dir, "k").unwrap().is_none());
        assert!(try_acquire(&dir, "other").unwrap().is_some());
        drop(held);
        assert!(try_acquire(&dir, "k").unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
