//! A VM's network as tools see it: the parameters `vm_run`,
//! `workspace_create` and `workspace_update` share (parsed with the
//! SDK's own parsers, the ones the CLI flags use, so a value means the
//! same everywhere and a bad one gets the same message), and the port
//! tools `workspace_port_publish`, `_list`, `_unpublish`.

use super::WorkspaceRef;
use crate::call::listing;
use crate::server::PyroServer;
use pyro_workspace::{AddHost, Error, HostPattern, NetRules, NetworkPolicy, PortMapping};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};
use schemars::JsonSchema;
use serde::Deserialize;
use std::str::FromStr;

/// The schema of a `network_policy` parameter: one of the policies'
/// words (the parser also takes them in any case), or null (absent), as
/// the other optional parameters are.
pub(crate) fn policy_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut words: Vec<serde_json::Value> = NetworkPolicy::ALL
        .iter()
        .map(|p| p.as_str().into())
        .collect();
    words.push(serde_json::Value::Null);
    schemars::json_schema!({ "type": ["string", "null"], "enum": words })
}

/// The policy a tool was given, if any.
pub(crate) fn policy(given: Option<&str>) -> Result<Option<NetworkPolicy>, Error> {
    given
        .map(|s| NetworkPolicy::from_str(s).map_err(|e| field_error("network_policy", e)))
        .transpose()
}

/// Every entry of a list parameter, parsed; the first bad one fails the
/// call with the parser's message.
pub(crate) fn parse_all<T: FromStr<Err = String>>(
    field: &str,
    items: &[String],
) -> Result<Vec<T>, Error> {
    items
        .iter()
        .map(|s| s.parse().map_err(|e| field_error(field, e)))
        .collect()
}

fn field_error(field: &str, message: String) -> Error {
    Error::InvalidArgument(format!("{field}: {message}"))
}

/// The rules of a new VM (vm_run, workspace_create), as the CLI makes
/// them: without a policy, published ports imply
/// `egress+published-ports`, an allowlist alone `egress`, nothing `off`.
pub(crate) fn new_rules(
    network_policy: Option<&str>,
    allow_hosts: &[String],
    add_hosts: &[String],
    publishes: bool,
) -> Result<NetRules, Error> {
    let allow: Vec<HostPattern> = parse_all("allow_hosts", allow_hosts)?;
    let add_hosts: Vec<AddHost> = parse_all("add_hosts", add_hosts)?;
    Ok(NetRules {
        policy: NetworkPolicy::implied(policy(network_policy)?, !allow.is_empty(), publishes),
        allow,
        add_hosts,
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortPublishParams {
    /// The workspace: its id or unique name. It must be running, with
    /// network_policy "egress+published-ports" or "published-ports".
    pub workspace_id: String,
    /// "GUEST" (e.g. "8000": the host picks a free port), "HOST:GUEST"
    /// (e.g. "8080:8000") or "127.0.0.1:HOST:GUEST". The port listens on
    /// the host's 127.0.0.1 only; other addresses are refused.
    pub port: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortUnpublishParams {
    /// The workspace: its id or unique name.
    pub workspace_id: String,
    /// The guest port to stop publishing, 1 to 65535 (as
    /// workspace_port_list shows it).
    #[schemars(range(min = 1, max = 65535))]
    pub guest_port: u16,
}

#[tool_router(router = network_tools, vis = "pub(crate)")]
impl PyroServer {
    /// Make a port a server listens on inside a running workspace
    /// reachable from the host, on 127.0.0.1 only (never on other
    /// addresses), e.g. to test a web app from the host. Kept for the
    /// workspace's next starts (a "GUEST"-only port may get another host
    /// port then). Needs network_policy "egress+published-ports" or
    /// "published-ports" (workspace_update can set it). Result: {guest_port,
    /// host_port, requested_host_port, host_address: "127.0.0.1"}.
    #[tool(annotations(destructive_hint = false, open_world_hint = false))]
    async fn workspace_port_publish(
        &self,
        Parameters(p): Parameters<PortPublishParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("workspace_port_publish", ctx, move |job| {
            let mapping: PortMapping = p.port.parse().map_err(|e| field_error("port", e))?;
            job.pyro.workspace_port_publish(&p.workspace_id, mapping)
        })
        .await
    }

    /// A workspace's published ports and the host ports they listen on
    /// (127.0.0.1). host_port is null while the workspace is stopped.
    /// Result: {workspace_id, count, ports: [{guest_port, host_port,
    /// requested_host_port, host_address}]}.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn workspace_port_list(
        &self,
        Parameters(p): Parameters<WorkspaceRef>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("workspace_port_list", ctx, move |job| {
            let list = job.pyro.workspace_port_list(&p.workspace_id)?;
            Ok(listing(
                "ports",
                &list.ports,
                &[("workspace_id", &list.workspace_id)],
            ))
        })
        .await
    }

    /// Stop publishing a guest port, now and on later starts; connections
    /// already open stay until they close. Result: the port as it was
    /// {guest_port, host_port, requested_host_port, host_address}.
    #[tool(annotations(destructive_hint = false, open_world_hint = false))]
    async fn workspace_port_unpublish(
        &self,
        Parameters(p): Parameters<PortUnpublishParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("workspace_port_unpublish", ctx, move |job| {
            super::check_range("guest_port", p.guest_port, 1, u16::MAX)?;
            job.pyro
                .workspace_port_unpublish(&p.workspace_id, p.guest_port)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn policies_are_implied_as_on_the_command_line() {
        let rules = |allow: &[&str], publishes| {
            new_rules(None, &strings(allow), &[], publishes)
                .unwrap()
                .policy
        };
        assert_eq!(rules(&[], false), NetworkPolicy::Off);
        assert_eq!(rules(&["pypi.org"], false), NetworkPolicy::Egress);
        assert_eq!(rules(&[], true), NetworkPolicy::EgressPublishedPorts);
        let given = new_rules(Some("published-ports"), &strings(&["x.org"]), &[], true).unwrap();
        assert_eq!(given.policy, NetworkPolicy::PublishedPorts);
        let all = new_rules(
            Some("egress"),
            &strings(&["*.example.com", "10.0.0.0/8:5432"]),
            &strings(&["db.internal:10.1.2.3"]),
            false,
        )
        .unwrap();
        assert_eq!(all.allow.len(), 2);
        assert_eq!(all.add_hosts[0].to_string(), "db.internal:10.1.2.3");
    }

    #[test]
    fn bad_values_are_invalid_arguments_with_the_parsers_message() {
        let fail = |policy: Option<&str>, allow: &[&str], add: &[&str]| {
            let e = new_rules(policy, &strings(allow), &strings(add), false).unwrap_err();
            assert_eq!(e.kind(), "invalid_argument");
            e.to_string()
        };
        let e = fail(Some("everything"), &[], &[]);
        assert!(
            e.starts_with("network_policy: unknown network policy \"everything\""),
            "{e}"
        );
        let e = fail(None, &["pypi.org", "exa mple.com"], &[]);
        assert!(
            e.starts_with("allow_hosts: invalid --allow-host \"exa mple.com\""),
            "{e}"
        );
        let e = fail(None, &[], &["db"]);
        assert!(e.starts_with("add_hosts: invalid --add-host \"db\""), "{e}");
        let bad: Result<Vec<PortMapping>, _> = parse_all("publish", &strings(&["0.0.0.0:80:80"]));
        let e = bad.unwrap_err().to_string();
        assert!(e.starts_with("publish: invalid published port"), "{e}");
        assert!(e.contains("127.0.0.1 only"), "{e}");
    }

    #[test]
    fn the_policy_schema_lists_the_four_policies_or_null() {
        let schema =
            serde_json::to_value(policy_schema(&mut schemars::SchemaGenerator::default())).unwrap();
        assert_eq!(
            schema["enum"],
            serde_json::json!([
                "off",
                "egress",
                "egress+published-ports",
                "published-ports",
                null
            ])
        );
    }
}
