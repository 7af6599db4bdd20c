//! Disk tools: a stopped workspace's /workspace disk, read on the host
//! without starting its VM (workspace_disk_list, _read, _export).

use super::files::{FileListParams, FileReadParams};
use crate::server::PyroServer;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};
use schemars::JsonSchema;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskExportParams {
    /// The workspace: its id or unique name. It must be stopped.
    pub workspace_id: String,
    /// Host path to create for the ext4 image (absolute; must not exist).
    pub output_path: PathBuf,
}

#[tool_router(router = disk_tools, vis = "pub(crate)")]
impl PyroServer {
    /// List a directory (or show a file) on a STOPPED workspace's
    /// /workspace disk, read on the host without starting it (symlinks
    /// are listed, never followed). For a running workspace use
    /// workspace_file_list. Result: {workspace_id, path, recursive,
    /// entries: [{path, artifact_type, size_bytes, mode, link_target}],
    /// truncated}.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn workspace_disk_list(
        &self,
        Parameters(p): Parameters<FileListParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("workspace_disk_list", ctx, move |job| {
            job.pyro
                .workspace_disk_list(&p.workspace_id, &p.path, p.recursive)
        })
        .await
    }

    /// Read a file on a STOPPED workspace's /workspace disk, on the host
    /// without starting it. For a running workspace use
    /// workspace_file_read. Result: {workspace_id, path, size_bytes,
    /// max_bytes, content, truncated}.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn workspace_disk_read(
        &self,
        Parameters(p): Parameters<FileReadParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("workspace_disk_read", ctx, move |job| {
            job.pyro
                .workspace_disk_read(&p.workspace_id, &p.path, p.max_bytes)
        })
        .await
    }

    /// Copy a STOPPED workspace's /workspace disk image (ext4, sparse) to
    /// a host file, e.g. to mount or inspect it elsewhere. Result:
    /// {workspace_id, output_path, disk_format: "ext4", bytes_written}.
    #[tool(annotations(destructive_hint = false, open_world_hint = false))]
    async fn workspace_disk_export(
        &self,
        Parameters(p): Parameters<DiskExportParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("workspace_disk_export", ctx, move |job| {
            job.pyro
                .workspace_disk_export(&p.workspace_id, &p.output_path)
        })
        .await
    }
}
