//! Files in /workspace: list, read, write, patch, diff, and copies between
//! the host and the workspace (sync push, export).

use super::{default_workspace_path, WorkspaceRef};
use crate::server::PyroServer;
use pyro_workspace::{DEFAULT_FILE_READ_BYTES, MAX_FILE_READ_BYTES};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};
use schemars::JsonSchema;
use serde::Deserialize;
use std::path::PathBuf;

fn default_max_bytes() -> u64 {
    DEFAULT_FILE_READ_BYTES
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileListParams {
    /// The workspace: its id or unique name.
    pub workspace_id: String,
    /// Directory (or file) to list: relative to /workspace, or absolute
    /// under it.
    #[serde(default = "default_workspace_path")]
    pub path: String,
    /// Also list everything below (up to 100000 entries; `truncated` says
    /// if there were more).
    #[serde(default)]
    pub recursive: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileReadParams {
    /// The workspace: its id or unique name.
    pub workspace_id: String,
    /// File to read: relative to /workspace (e.g. "src/main.rs"), or
    /// absolute under it.
    pub path: String,
    /// Read at most this many bytes, 1 to 1048576; `truncated` says if the
    /// file is longer. Content is returned as UTF-8 text (invalid bytes
    /// replaced).
    #[serde(default = "default_max_bytes")]
    #[schemars(range(min = 1, max = MAX_FILE_READ_BYTES))]
    pub max_bytes: u64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileWriteParams {
    /// The workspace: its id or unique name.
    pub workspace_id: String,
    /// File to write: relative to /workspace, or absolute under it.
    /// Parent directories are created; an existing file keeps its mode
    /// (new files get 0644).
    pub path: String,
    /// The whole new content, at most 1 MiB (1048576 bytes). For bigger
    /// or many files use workspace_sync_push.
    pub text: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchParams {
    /// The workspace: its id or unique name.
    pub workspace_id: String,
    /// A unified diff, at most 1 MiB, with paths relative to /workspace
    /// (`a/`/`b/` prefixes as `git diff` writes them are fine). `git diff`
    /// output for added, deleted and renamed files and mode changes is
    /// accepted. Context lines must match the current files.
    pub patch: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncPushParams {
    /// The workspace: its id or unique name.
    pub workspace_id: String,
    /// A directory, .tar, .tar.gz or .tgz on the machine running this
    /// server (absolute path).
    pub source_path: PathBuf,
    /// Where in the workspace to put it (existing files are overwritten,
    /// nothing is deleted).
    #[serde(default = "default_workspace_path")]
    pub dest: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// The workspace: its id or unique name.
    pub workspace_id: String,
    /// File or directory to copy out: relative to /workspace, or absolute
    /// under it.
    pub path: String,
    /// Host path to create (absolute; it must not exist yet). A directory
    /// is recreated with its contents.
    pub output_path: PathBuf,
}

#[tool_router(router = file_tools, vis = "pub(crate)")]
impl PyroServer {
    /// List a directory in /workspace (or show one file). Result:
    /// {workspace_id, path, recursive, entries: [{path, artifact_type
    /// (file|directory|symlink), size_bytes, mode, link_target, ...}],
    /// truncated}.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn workspace_file_list(
        &self,
        Parameters(p): Parameters<FileListParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("workspace_file_list", ctx, move |job| {
            job.pyro
                .workspace_file_list(&p.workspace_id, &p.path, p.recursive)
        })
        .await
    }

    /// Read a file in /workspace. Result: {workspace_id, path, size_bytes,
    /// max_bytes, content, truncated}.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn workspace_file_read(
        &self,
        Parameters(p): Parameters<FileReadParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("workspace_file_read", ctx, move |job| {
            job.pyro
                .workspace_file_read(&p.workspace_id, &p.path, p.max_bytes)
        })
        .await
    }

    /// Write a whole file in /workspace, atomically (readers see the old or
    /// the new content, never a mix). For a change to part of a file,
    /// workspace_patch_apply is usually better. Result: {workspace_id,
    /// path, bytes_written, mode}.
    #[tool(annotations(destructive_hint = true, open_world_hint = false))]
    async fn workspace_file_write(
        &self,
        Parameters(p): Parameters<FileWriteParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("workspace_file_write", ctx, move |job| {
            job.pyro
                .workspace_file_write(&p.workspace_id, &p.path, p.text.as_bytes())
        })
        .await
    }

    /// Apply a unified diff to /workspace, all or nothing: if any hunk does
    /// not apply, no file changes and the error names the file, hunk and
    /// line. Result: {workspace_id, changed, summary {total, added,
    /// modified, deleted}, entries: [{path, status}]}.
    #[tool(annotations(destructive_hint = true, open_world_hint = false))]
    async fn workspace_patch_apply(
        &self,
        Parameters(p): Parameters<PatchParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("workspace_patch_apply", ctx, move |job| {
            job.pyro.workspace_patch_apply(&p.workspace_id, &p.patch)
        })
        .await
    }

    /// What changed in /workspace since the workspace was created (its
    /// baseline): a summary, one entry per changed path, and a unified
    /// patch that `git apply` accepts. Result: {workspace_id, changed,
    /// summary {total, added, modified, deleted, type_changed,
    /// text_patched, non_text}, entries: [{path, status, ...}], patch}.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn workspace_diff(
        &self,
        Parameters(p): Parameters<WorkspaceRef>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("workspace_diff", ctx, move |job| {
            job.pyro.workspace_diff(&p.workspace_id)
        })
        .await
    }

    /// Copy a host directory or tar archive into the workspace, all or
    /// nothing. Result: {workspace_id, source, dest, entry_count,
    /// bytes_written}.
    #[tool(annotations(destructive_hint = true, open_world_hint = false))]
    async fn workspace_sync_push(
        &self,
        Parameters(p): Parameters<SyncPushParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("workspace_sync_push", ctx, move |job| {
            job.pyro
                .workspace_sync_push(&p.workspace_id, &p.source_path, &p.dest)
        })
        .await
    }

    /// Copy a file or directory out of /workspace to a new host path.
    /// Result: {workspace_id, workspace_path, output_path, artifact_type,
    /// entry_count, bytes_written}.
    #[tool(annotations(destructive_hint = false, open_world_hint = false))]
    async fn workspace_export(
        &self,
        Parameters(p): Parameters<ExportParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("workspace_export", ctx, move |job| {
            job.pyro
                .workspace_export(&p.workspace_id, &p.path, &p.output_path)
        })
        .await
    }
}
