//! `pyro-mcp`: the MCP server (stdio, tool profiles `vm-run`,
//! `workspace-core`, `workspace-full`) over the `pyro-workspace` SDK.
//!
//! Empty until the MCP issue: the tools it will expose (`vm_run`, the
//! `workspace_*`, `snapshot_*`, `shell_*` and `service_*` families) are
//! listed in `shared/SPEC.md`; each will be a thin call into `Pyro` whose
//! structured result is the same JSON the CLI prints with `--json`.
