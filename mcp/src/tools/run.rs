//! `vm_run`: one command in a fresh VM that is gone when the call returns.

use super::{
    check_limit, check_vm_size, default_environment, default_mem_mib, default_timeout_seconds,
    default_vcpus, network, CommandLine,
};
use crate::server::PyroServer;
use pyro_vmm::limits::{MEM_MIB, OUTPUT_BYTES, TIMEOUT_SECONDS, VCPUS};
use pyro_workspace::{NetConfig, RunOptions};
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
    /// "debian:12-build" (git, gcc, make, cmake, python3 with pip and venv, pkg-config),
    /// or a custom environment the user built on the host (`pyro env list`).
    #[serde(default = "default_environment")]
    pub environment: String,
    /// Kill the command (its whole process group) after this many seconds,
    /// 1 to 86400. The result then has timed_out=true.
    #[serde(default = "default_timeout_seconds")]
    #[schemars(range(min = TIMEOUT_SECONDS.min, max = TIMEOUT_SECONDS.max))]
    pub timeout_seconds: u64,
    /// vCPUs of the VM, 1 to 32. More than 1 boots the SMP guest kernel,
    /// built once on first use (minutes).
    #[serde(default = "default_vcpus")]
    #[schemars(range(min = VCPUS.min, max = VCPUS.max))]
    pub vcpus: u8,
    /// Guest memory in MiB, 64 to 65536.
    #[serde(default = "default_mem_mib")]
    #[schemars(range(min = MEM_MIB.min, max = MEM_MIB.max))]
    pub mem_mib: u32,
    /// Network access: "off" (the default: no network at all), "egress"
    /// (outbound connections), "egress+published-ports" or
    /// "published-ports" (no ports are published in a run). Without
    /// it, allow_hosts implies "egress".
    #[serde(default)]
    #[schemars(schema_with = "network::policy_schema")]
    pub network_policy: Option<String>,
    /// Only these destinations are reachable (and, for names, resolve):
    /// domains ("pypi.org", "*.pythonhosted.org" for its subdomains), IPs
    /// or CIDRs, each with an optional ":PORT" ("github.com:443"). Without
    /// it every public destination is. Loopback and private ranges
    /// (127.0.0.0/8, 10.0.0.0/8, 192.168.0.0/16, ...) are refused unless
    /// listed here by address.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// Static DNS answers "NAME:IP", like /etc/hosts lines (e.g.
    /// "db.internal:10.1.2.3"). A name mapped to a loopback or private
    /// address ("NAME:127.0.0.1" is the host's loopback) is reachable only
    /// if the name is also in allow_hosts, as is every name when
    /// allow_hosts is given.
    #[serde(default)]
    pub add_hosts: Vec<String>,
    /// Keep at most this many bytes of each of stdout and stderr, 0 to
    /// 268435456 (default 1048576); stdout_truncated/stderr_truncated
    /// say when the command wrote more.
    #[serde(default = "default_max_output_bytes")]
    #[schemars(range(min = OUTPUT_BYTES.min, max = OUTPUT_BYTES.max))]
    pub max_output_bytes: u64,
}

fn default_max_output_bytes() -> u64 {
    OUTPUT_BYTES.default
}

#[tool_router(router = run_tools, vis = "pub(crate)")]
impl PyroServer {
    /// Run one command in a fresh, disposable Linux microVM and return its
    /// stdout, stderr and exit code. The VM is booted for this call and
    /// destroyed when it returns, whatever happens; nothing persists. No
    /// network unless network_policy or allow_hosts asks for it; what the
    /// policy refused is in network_refusals. Use it for one-off checks;
    /// for multi-step work on files,
    /// use workspace_create. A boot takes seconds (the first use of an
    /// environment builds it, which takes minutes; progress is reported).
    /// A non-zero exit_code is a normal result, not a tool error.
    /// Cancelling the request kills the command and removes the VM. Result:
    /// {environment, command, exit_code, signal, timed_out, stdout, stderr,
    /// stdout_truncated, stderr_truncated, duration_ms, network_refusals: [{source, target, reason, at_ms}],
    /// timings}.
    #[tool(annotations(destructive_hint = false, open_world_hint = false))]
    async fn vm_run(
        &self,
        Parameters(p): Parameters<VmRunParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("vm_run", ctx, move |job| {
            check_limit(TIMEOUT_SECONDS, p.timeout_seconds)?;
            check_limit(OUTPUT_BYTES, p.max_output_bytes)?;
            check_vm_size(p.vcpus, p.mem_mib)?;
            let rules = network::new_rules(
                p.network_policy.as_deref(),
                &p.allow_hosts,
                &p.add_hosts,
                false,
            )?;
            let opts = RunOptions {
                environment: p.environment,
                vcpus: p.vcpus,
                mem_mib: p.mem_mib,
                timeout: Duration::from_secs(p.timeout_seconds),
                cancel: job.cancel().clone(),
                max_output_bytes: p.max_output_bytes,
                network: NetConfig {
                    rules,
                    publish: Vec::new(),
                },
                ..RunOptions::default()
            };
            let argv = p.command.argv();
            job.say(format!("[run] booting {} for {:?}", opts.environment, argv));
            job.pyro.run(&opts, &argv, job.progress(), |_, _| {})
        })
        .await
    }
}
