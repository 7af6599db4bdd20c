//! Files in /workspace: list, read and write one file, push a host tree
//! in (`sync push`), apply a patch, export a path to the host, and the
//! diff against the create-time baseline (`diff.rs`).

use super::diff::{self, DiffResult};
use super::host_read::{host_or_guest, on_image, Frozen, ServedBy};
use super::records::{Export, FileList, FileRead, FileWrite, PatchApply, SyncPush};
use super::store;
use crate::{Error, GuestError, Pyro};
use pyro_proto::rpc::{self, DownloadResult};
use std::path::Path;

/// Largest file `workspace_file_write` takes (bigger trees: `sync push`).
pub const MAX_FILE_WRITE_BYTES: usize = 1 << 20;
/// Default and largest `max_bytes` of `workspace_file_read`.
pub const DEFAULT_FILE_READ_BYTES: u64 = 64 << 10;
pub const MAX_FILE_READ_BYTES: u64 = 1 << 20;

/// `path` as the results spell it: absolute, under /workspace.
fn absolute(path: &str) -> String {
    rpc::workspace_absolute(&rpc::workspace_relative(path).unwrap_or_default())
}

/// `max_bytes` of a file read (1 to [`MAX_FILE_READ_BYTES`]).
/// Reads of a file no larger than this are served by the agent. Measured
/// on a PVM host (2026-11-30, `file read` wall): through the agent 0.06 s
/// for 4 KiB, 0.23-0.30 s for 64 KiB, 0.58-0.76 s for 1 MiB; from the
/// frozen image on the host about 0.20 s for any of them (the freeze, the
/// thaw and the reader's start). Most source files are smaller than this.
const AGENT_FIRST_BYTES: u64 = 16 << 10;

pub(super) fn check_read_bytes(max_bytes: u64) -> Result<(), Error> {
    if (1..=MAX_FILE_READ_BYTES).contains(&max_bytes) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "max_bytes must be between 1 and {MAX_FILE_READ_BYTES}"
        )))
    }
}

/// `output` of an export: a new path in an existing host directory,
/// checked before anything is read.
pub(super) fn check_new_output(output: &Path) -> Result<(), Error> {
    let refuse = |why: String| {
        Err(Error::InvalidArgument(format!(
            "output {}: {why}",
            output.display()
        )))
    };
    if output.symlink_metadata().is_ok() {
        return refuse(
            "exists already; an export writes a new path: give one that does not exist".into(),
        );
    }
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match dir.metadata() {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => refuse(format!("{} is not a directory", dir.display())),
        Err(_) => refuse(format!(
            "the directory {} does not exist; an export writes into an existing directory",
            dir.display()
        )),
    }
}

impl Pyro {
    /// Copies a host directory or tar (`.tar`, `.tar.gz`, `.tgz`) into
    /// the workspace at `dest`, all or nothing.
    pub fn workspace_sync_push(
        &self,
        id: &str,
        source: &Path,
        dest: &str,
    ) -> Result<SyncPush, Error> {
        let ws = self.workspace(id)?;
        let mut agent = ws.agent()?;
        let upload = (|| -> Result<_, Error> {
            Ok(if source.is_dir() {
                agent.upload_dir(source, dest)?
            } else if source.is_file() {
                let mut tar = super::archive::open(source).map_err(|e| store::io_err(source, e))?;
                agent.upload(dest, &mut tar)?
            } else {
                return Err(Error::InvalidArgument(format!(
                    "source {}: no such file or directory",
                    source.display()
                )));
            })
        })()
        .map_err(|e| ws.redact_err(e))?;
        let record = ws.touch(|_| {})?;
        Ok(SyncPush {
            workspace_id: record.workspace_id,
            source: source.to_path_buf(),
            upload,
        })
    }

    pub fn workspace_file_list(
        &self,
        id: &str,
        path: &str,
        recursive: bool,
    ) -> Result<FileList, Error> {
        let ws = self.workspace(id)?;
        let ((entries, truncated), served_by) = host_or_guest(
            &ws,
            path,
            |image, rel| image.list(rel, recursive),
            || {
                let list = ws.guest(|a| a.list(path, recursive))?;
                Ok((list.entries, list.truncated))
            },
        )?;
        Ok(FileList {
            workspace_id: ws.id,
            path: absolute(path),
            recursive,
            entries,
            truncated,
            served_by,
        })
    }

    pub fn workspace_file_read(
        &self,
        id: &str,
        path: &str,
        max_bytes: u64,
    ) -> Result<FileRead, Error> {
        check_read_bytes(max_bytes)?;
        let ws = self.workspace(id)?;
        let result = |content: Vec<u8>, size_bytes: u64, served_by| FileRead {
            workspace_id: ws.id.clone(),
            path: absolute(path),
            size_bytes,
            max_bytes,
            truncated: size_bytes > content.len() as u64,
            content,
            served_by,
        };
        // A small file costs the agent less than a freeze costs the host:
        // ask it for the first AGENT_FIRST_BYTES; the host reads only a
        // file larger than that. The agent's error (a missing file) is
        // the answer either way.
        let first = max_bytes.min(AGENT_FIRST_BYTES);
        let (content, read) = ws.guest(|a| a.read_to_vec(path, first))?;
        if read.size_bytes <= first || max_bytes == first {
            return Ok(result(content, read.size_bytes, ServedBy::GuestAgent));
        }
        let ((content, size_bytes), served_by) = host_or_guest(
            &ws,
            path,
            |image, rel| image.read(rel, max_bytes),
            || {
                let (content, r) = ws.guest(|a| a.read_to_vec(path, max_bytes))?;
                Ok((content, r.size_bytes))
            },
        )?;
        Ok(result(content, size_bytes, served_by))
    }

    /// Writes a file atomically (parents created; mode kept or 0644).
    pub fn workspace_file_write(
        &self,
        id: &str,
        path: &str,
        content: &[u8],
    ) -> Result<FileWrite, Error> {
        if content.len() > MAX_FILE_WRITE_BYTES {
            return Err(Error::InvalidArgument(format!(
                "content is {} bytes; a file write takes at most {} (use `sync push` for more)",
                content.len(),
                MAX_FILE_WRITE_BYTES
            )));
        }
        rpc::workspace_relative(path).map_err(|e| Error::Agent {
            kind: "invalid_path".into(),
            message: e.to_string(),
        })?;
        let ws = self.workspace(id)?;
        let w = ws.guest(|a| a.write(path, None, true, &mut &content[..]))?;
        let record = ws.touch(|_| {})?;
        Ok(FileWrite {
            workspace_id: record.workspace_id,
            path: w.path,
            bytes_written: w.bytes_written,
            mode: w.mode,
        })
    }

    pub fn workspace_patch_apply(&self, id: &str, patch: &str) -> Result<PatchApply, Error> {
        let ws = self.workspace(id)?;
        // A failed hunk's message quotes the file's lines.
        let result = ws.guest(|a| a.patch_apply(patch))?;
        let record = ws.touch(|_| {})?;
        Ok(PatchApply {
            workspace_id: record.workspace_id,
            changed: result.changed,
            summary: result.summary,
            entries: result.entries,
        })
    }

    /// Copies a workspace path to the host path `output` (which must not
    /// exist).
    pub fn workspace_export(&self, id: &str, path: &str, output: &Path) -> Result<Export, Error> {
        check_new_output(output)?;
        let ws = self.workspace(id)?;
        let (done, served_by) = match export_on_host(&ws, path, output) {
            Some(done) => (done, ServedBy::HostImage),
            None => (ws.guest(|a| a.export(path, output))?, ServedBy::GuestAgent),
        };
        let DownloadResult {
            path: workspace_path,
            artifact_type,
            entry_count,
            bytes_read,
        } = done;
        Ok(Export {
            workspace_id: ws.id,
            workspace_path,
            output_path: output.to_path_buf(),
            artifact_type,
            entry_count,
            bytes_written: bytes_read,
            served_by,
        })
    }

    /// What changed in /workspace since create: entries and a patch
    /// `git apply` takes on a copy of the seed.
    pub fn workspace_diff(&self, id: &str) -> Result<DiffResult, Error> {
        let ws = self.workspace(id)?;
        let baseline = ws.dir.baseline_tar();
        // A tree too large to diff is as large through the agent (which
        // would take hours to list it on a PVM host): that answer stands.
        let on_host = on_image(&ws, |image| match diff::diff(&ws.id, &baseline, image) {
            Err(too_large @ Error::Conflict(_)) => Ok(Err(too_large)),
            other => other.map(Ok),
        });
        if let Some(result) = on_host {
            return result;
        }
        diff::diff(&ws.id, &baseline, &mut ws.agent()?).map_err(|e| ws.redact_err(e))
    }
}

/// An export from the frozen image, or `None` for the agent to do it
/// (see `host_read.rs`). The copy is renamed into place only once the
/// thaw confirms the whole read was one instant.
fn export_on_host(
    ws: &super::handle::WorkspaceHandle,
    path: &str,
    output: &Path,
) -> Option<DownloadResult> {
    let rel = rpc::workspace_relative(path).ok()?;
    let frozen = Frozen::new(ws)?;
    let mut image = frozen.reader().ok()?;
    let failed = |e: Error| GuestError::Source(std::io::Error::other(e.to_string()));
    crate::transfer::export_with(
        path,
        output,
        |w| image.pack(&rel, w).map_err(failed),
        || frozen.thaw().map_err(failed),
    )
    .ok()
}
