//! `patch apply` next to the files: parse, check every path, compute the
//! whole result in memory (`pyro-patch`, all or nothing), then write it:
//! every new file content goes to a temporary sibling (written and synced)
//! before anything is renamed or deleted, so a full disk or a refused path
//! leaves the workspace exactly as it was.

use super::files::{self, fs_error, open_beneath};
use super::RpcError;
use pyro_patch::{self as patch, Change, FileState, PatchSource};
use pyro_proto::rpc::{workspace_absolute, PatchEntry, PatchResult, Reply};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{
    fchmod, fdatasync, fstat, openat, renameat, unlinkat, AtFlags, FileType, Mode, OFlags,
};
use rustix::io::Errno;
use std::cell::RefCell;
use std::io::{Read, Write};

/// Files larger than this are not patched (the result is built in memory).
const MAX_FILE: u64 = 64 << 20;

struct Workspace<'a> {
    root: &'a OwnedFd,
    /// The first read failure other than "absent": reported instead of
    /// whatever `apply` concludes from the `None` it got.
    error: RefCell<Option<RpcError>>,
}

impl Workspace<'_> {
    fn load(&self, rel: &str) -> Result<Option<FileState>, RpcError> {
        let fd = match open_beneath(self.root, rel, OFlags::RDONLY | OFlags::NONBLOCK, 0) {
            Ok(fd) => fd,
            Err(e) if e.kind == "not_found" => return Ok(None),
            Err(e) => return Err(e),
        };
        let st = fstat(&fd).map_err(|e| fs_error(e, rel))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(RpcError::new(
                "not_a_file",
                format!(
                    "{}: is not a regular file; a patch can only change files",
                    workspace_absolute(rel)
                ),
            ));
        }
        if st.st_size as u64 > MAX_FILE {
            return Err(RpcError::new(
                "too_large",
                format!(
                    "{}: larger than {} MiB; too large to patch",
                    workspace_absolute(rel),
                    MAX_FILE >> 20
                ),
            ));
        }
        let mut bytes = Vec::with_capacity(st.st_size as usize);
        std::fs::File::from(fd)
            .read_to_end(&mut bytes)
            .map_err(|e| RpcError::io(rel, e))?;
        Ok(Some(FileState {
            bytes,
            mode: st.st_mode & 0o7777,
        }))
    }
}

impl PatchSource for Workspace<'_> {
    fn read(&self, path: &str) -> Option<FileState> {
        let rel = files::relative(path).ok()?;
        match self.load(&rel) {
            Ok(state) => state,
            Err(e) => {
                self.error.borrow_mut().get_or_insert(e);
                None
            }
        }
    }
}

pub fn apply(text: &[u8]) -> Result<Reply, RpcError> {
    let text = std::str::from_utf8(text)
        .map_err(|_| RpcError::new("invalid_patch", "the patch is not UTF-8 text".into()))?;
    let parsed = patch::parse(text).map_err(|e| RpcError::new("invalid_patch", e.to_string()))?;
    for path in parsed.paths() {
        let rel = files::relative(path)?;
        if rel.is_empty() {
            return Err(RpcError::new(
                "invalid_path",
                format!("the patch names {path:?}, which is /workspace itself"),
            ));
        }
    }
    let root = files::root()?;
    let tree = Workspace {
        root: &root,
        error: RefCell::new(None),
    };
    let outcome = patch::apply(&parsed, &tree);
    if let Some(e) = tree.error.into_inner() {
        return Err(e);
    }
    let changes =
        outcome.map_err(|e| RpcError::new("patch_failed", format!("{e}; nothing was changed")))?;
    commit(&root, &changes)?;
    // The renames and deletes, durable before the reply.
    files::sync_workspace()?;

    let mut result = PatchResult::default();
    let mut entry = |path: &str, status: &str| {
        let rel = files::relative(path).unwrap_or_else(|_| path.to_string());
        result.entries.push(PatchEntry {
            path: rel,
            status: status.into(),
        });
    };
    for f in &parsed.files {
        match (&f.old_path, &f.new_path) {
            (None, Some(new)) => entry(new, "added"),
            (Some(old), None) => entry(old, "deleted"),
            (Some(old), Some(new)) if f.rename => {
                entry(old, "deleted");
                entry(new, "added");
            }
            (Some(_), Some(new)) if f.copy => entry(new, "added"),
            (_, Some(new)) => entry(new, "modified"),
            (None, None) => {}
        }
    }
    for e in &result.entries {
        match e.status.as_str() {
            "added" => result.summary.added += 1,
            "deleted" => result.summary.deleted += 1,
            _ => result.summary.modified += 1,
        }
    }
    result.summary.total = result.entries.len() as u64;
    result.changed = !changes.is_empty();
    Ok(Reply::Patched(result))
}

/// A new file content written beside its final name.
struct Staged<'a> {
    /// Where the new file is made ([`files::Staging::for_dir`]).
    stage: files::Stage<'a>,
    dir: OwnedFd,
    tmp: String,
    name: String,
    rel: String,
}

fn commit(root: &OwnedFd, changes: &[Change]) -> Result<(), RpcError> {
    let staging_dir = files::Staging::open(root)?;
    let mut staged: Vec<Staged> = Vec::new();
    let staging = (|| {
        for change in changes {
            let Change::Write { path, bytes, mode } = change else {
                continue;
            };
            let rel = files::relative(path)?;
            let (parent, name) = rel.rsplit_once('/').unwrap_or(("", &rel));
            let dir = files::mkdir_all(root, parent)?;
            let stage = staging_dir.for_dir(&dir)?;
            let tmp = files::temp_name(name);
            let fd = openat(
                &stage,
                tmp.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(*mode),
            )
            .map_err(|e| fs_error(e, &rel))?;
            staged.push(Staged {
                stage,
                dir,
                tmp,
                name: name.to_string(),
                rel: rel.clone(),
            });
            fchmod(&fd, Mode::from_raw_mode(*mode)).map_err(|e| fs_error(e, &rel))?;
            let mut file = std::fs::File::from(fd);
            file.write_all(bytes).map_err(|e| RpcError::io(&rel, e))?;
            fdatasync(&file).map_err(|e| fs_error(e, &rel))?;
        }
        Ok(())
    })();
    // Everything new is on disk; now the quick part.
    let result = staging.and_then(|()| {
        for change in changes {
            if let Change::Delete { path } = change {
                let rel = files::relative(path)?;
                let (dir, name) = files::open_parent(root, &rel, false)?;
                match unlinkat(&dir, name, AtFlags::empty()) {
                    Ok(()) | Err(Errno::NOENT) => {}
                    Err(e) => return Err(fs_error(e, &rel)),
                }
            }
        }
        for s in &staged {
            renameat(
                s.stage.as_fd(),
                s.tmp.as_str(),
                s.dir.as_fd(),
                s.name.as_str(),
            )
            .map_err(|e| fs_error(e, &s.rel))?;
        }
        Ok(())
    });
    if result.is_err() {
        // Those already renamed are gone from staging (ENOENT here).
        for s in &staged {
            let _ = unlinkat(&s.stage, s.tmp.as_str(), AtFlags::empty());
        }
    }
    result
}
