//! Checkpoints of /workspace and going back to one: snapshot create, list,
//! delete, and workspace reset.

use crate::call::listing;
use crate::server::PyroServer;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};
use schemars::JsonSchema;
use serde::Deserialize;

use super::WorkspaceRef;

fn default_snapshot() -> String {
    "baseline".into()
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotParams {
    /// The workspace: its id or unique name.
    pub workspace_id: String,
    /// Snapshot name: [A-Za-z0-9][A-Za-z0-9._-]{0,63}; "baseline" is the
    /// create-time snapshot and is reserved.
    pub snapshot_name: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetParams {
    /// The workspace: its id or unique name.
    pub workspace_id: String,
    /// Snapshot to restore: "baseline" (the seed, as created) or a name
    /// from snapshot_list.
    #[serde(default = "default_snapshot")]
    pub snapshot: String,
}

#[tool_router(router = snapshot_tools, vis = "pub(crate)")]
impl PyroServer {
    /// Restore /workspace exactly to a snapshot (default: baseline, the
    /// seed as created): later changes are gone. The VM restarts, which
    /// takes seconds; progress is reported. Command history and named
    /// snapshots are kept. Result: {workspace_id, snapshot,
    /// bytes_restored, workspace}.
    #[tool(annotations(destructive_hint = true, open_world_hint = false))]
    async fn workspace_reset(
        &self,
        Parameters(p): Parameters<ResetParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("workspace_reset", ctx, move |job| {
            job.pyro
                .workspace_reset(&p.workspace_id, &p.snapshot, job.progress())
        })
        .await
    }

    /// Checkpoint /workspace as it is now under a name, to go back to with
    /// workspace_reset. Result: {workspace_id, name, kind, created_at,
    /// bytes_written, deletable}.
    #[tool(annotations(destructive_hint = false, open_world_hint = false))]
    async fn snapshot_create(
        &self,
        Parameters(p): Parameters<SnapshotParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("snapshot_create", ctx, move |job| {
            job.pyro
                .checkpoint_create(&p.workspace_id, &p.snapshot_name)
        })
        .await
    }

    /// A workspace's snapshots, baseline first. Result: {workspace_id,
    /// count, snapshots: [{name, kind (baseline|named), created_at,
    /// bytes_written, deletable}]}.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn snapshot_list(
        &self,
        Parameters(p): Parameters<WorkspaceRef>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("snapshot_list", ctx, move |job| {
            let all = job.pyro.checkpoint_list(&p.workspace_id)?;
            let id = job
                .pyro
                .workspace_status(&p.workspace_id)?
                .record
                .workspace_id;
            Ok(listing("snapshots", &all, &[("workspace_id", &id)]))
        })
        .await
    }

    /// Delete a named snapshot (baseline cannot be deleted). Result: the
    /// deleted snapshot.
    #[tool(annotations(destructive_hint = true, open_world_hint = false))]
    async fn snapshot_delete(
        &self,
        Parameters(p): Parameters<SnapshotParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("snapshot_delete", ctx, move |job| {
            job.pyro
                .checkpoint_delete(&p.workspace_id, &p.snapshot_name)
        })
        .await
    }
}
