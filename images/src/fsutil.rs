//! Small file-system helpers: removal, copies, tree sizes.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// `rm -rf dir`, quiet when it does not exist.
pub(crate) fn remove_dir_if_exists(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("remove {}", dir.display()), e)),
    }
}

/// Copies a file's contents (and permission bits).
pub(crate) fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .map(|_| ())
        .ctx(|| format!("copy {} to {}", from.display(), to.display()))
}

/// What a directory tree occupies, as `du` would count it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Bytes of allocated blocks (files, directories, long symlinks).
    pub bytes: u64,
    /// Entries (each needs an inode), the root included.
    pub entries: u64,
}

/// Walks a tree without following symlinks; hard links count once per name
/// (an overestimate, which is the safe side for sizing an image).
pub(crate) fn usage(root: &Path) -> Result<Usage> {
    let mut u = Usage::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let md = std::fs::symlink_metadata(&dir).ctx(|| format!("stat {}", dir.display()))?;
        u.entries += 1;
        u.bytes += md.blocks() * 512;
        for entry in std::fs::read_dir(&dir).ctx(|| format!("read {}", dir.display()))? {
            let entry = entry.ctx(|| format!("read {}", dir.display()))?;
            let md = entry
                .metadata()
                .ctx(|| format!("stat {}", entry.path().display()))?;
            if md.is_dir() {
                stack.push(entry.path());
            } else {
                u.entries += 1;
                u.bytes += md.blocks() * 512;
            }
        }
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_entries() {
        let dir = std::env::temp_dir().join(format!("pyro-images-usage-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/f"), vec![1u8; 10_000]).unwrap();
        std::os::unix::fs::symlink("f", dir.join("a/l")).unwrap();
        let u = usage(&dir).unwrap();
        assert_eq!(u.entries, 5);
        assert!(u.bytes >= 10_000, "{u:?}");
        remove_dir_if_exists(&dir).unwrap();
        assert!(!dir.exists());
    }
}
