//! `vm_run`: one command in a fresh VM that is gone when the call returns.

use super::{
    check_limit, check_vm_size, default_environment, default_mem_mib, default_timeout_seconds,
    default_vcpus, CommandLine,
};
use crate::server::PyroServer;
use pyro_vmm::limits::{MEM_MIB, TIMEOUT_SECONDS, VCPUS};
use pyro_workspace::RunOptions;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};
use schemars::JsonSchema;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmRunParams {
    /// What to run. A string runs with `/bin/sh -c` (e.g. "make test 2>&1 |
    /// tail -n 20"); an array runs directly as argv (e.g. ["uname", "-r"]).
    pub command: CommandLine,
    /// Environment to boot: "debian:12" (bash, coreutils, git,
    /// ca-certificates), "debian:12-base" (bash, coreutils) or
    /// "debian:12-build" (git, gcc, make, cmake, python3, pkg-config).
    #[serde(default = "default_environment")]
    pub environment: String,
    /// Kill the command (its whole process group) after this many seconds,
    /// 1 to 86400. The result then has timed_out=true.
    #[serde(default = "default_timeout_seconds")]
    #[schemars(range(min = TIMEOUT_SECONDS.min, max = TIMEOUT_SECONDS.max))]
    pub timeout_seconds: u64,
    /// vCPUs of the VM, 1 to 32.
    #[serde(default = "default_vcpus")]
    #[schemars(range(min = VCPUS.min, max = VCPUS.max))]
    pub vcpus: u8,
    /// Guest memory in MiB, 64 to 65536.
    #[serde(default = "default_mem_mib")]
    #[schemars(range(min = MEM_MIB.min, max = MEM_MIB.max))]
    pub mem_mib: u32,
}

#[tool_router(router = run_tools, vis = "pub(crate)")]
impl PyroServer {
    /// Run one command in a fresh, disposable Linux microVM and return its
    /// stdout, stderr and exit code. The VM is booted for this call and
    /// destroyed when it returns, whatever happens; nothing persists. No
    /// network. Use it for one-off checks; for multi-step work on files,
    /// use workspace_create. A boot takes seconds (the first use of an
    /// environment builds it, which takes minutes; progress is reported).
    /// A non-zero exit_code is a normal result, not a tool error.
    /// Cancelling the request kills the command and removes the VM. Result:
    /// {environment, command, exit_code, signal, timed_out, stdout, stderr,
    /// duration_ms, timings}.
    #[tool(annotations(destructive_hint = false, open_world_hint = false))]
    async fn vm_run(
        &self,
        Parameters(p): Parameters<VmRunParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("vm_run", ctx, move |job| {
            check_limit(TIMEOUT_SECONDS, p.timeout_seconds)?;
            check_vm_size(p.vcpus, p.mem_mib)?;
            let opts = RunOptions {
                environment: p.environment,
                vcpus: p.vcpus,
                mem_mib: p.mem_mib,
                timeout: Duration::from_secs(p.timeout_seconds),
                cancel: job.cancel().clone(),
                ..RunOptions::default()
            };
            let argv = p.command.argv();
            job.say(format!("[run] booting {} for {:?}", opts.environment, argv));
            job.pyro.run(&opts, &argv, job.progress(), |_, _| {})
        })
        .await
    }
}
