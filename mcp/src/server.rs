//! The MCP server: identity, instructions, and the tools of one profile.

use crate::call;
use crate::Profile;
use pyro_workspace::{Error, Pyro};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{tool_handler, ErrorData, RoleServer, ServerHandler};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

/// What a model reads first.
pub const INSTRUCTIONS: &str = "pyro runs commands in disposable Linux microVMs (Debian; no \
network unless a call asks for it with network_policy or allow_hosts). For a one-off \
command, call vm_run: it boots a fresh VM, runs the command, returns stdout/stderr/exit_code \
and destroys the VM. For work over several steps, call \
workspace_create (seed_path = a host directory to copy into /workspace), then use its \
workspace_id with workspace_exec (run commands in /workspace), workspace_file_read / \
workspace_file_write / workspace_patch_apply (edit files), workspace_diff (what changed since \
create) and workspace_export (copy results to the host); workspace_reset goes back to the \
seed. Paths are relative to /workspace. Call workspace_delete when done. A command's \
non-zero exit code is a normal result; tool errors say what to fix.";

/// The pyro MCP server: the tools of one [`Profile`] over one [`Pyro`].
#[derive(Clone)]
pub struct PyroServer {
    pub(crate) pyro: Pyro,
    /// Set when the client's side of the connection has closed: every
    /// call still running then counts as cancelled.
    pub(crate) session_closed: Arc<AtomicBool>,
    /// SDK calls running on the blocking pool.
    pub(crate) in_flight: Arc<AtomicUsize>,
    tools: ToolRouter<Self>,
}

impl PyroServer {
    pub fn new(pyro: Pyro, profile: Profile) -> Self {
        let mut tools = Self::run_tools()
            + Self::workspace_tools()
            + Self::file_tools()
            + Self::snapshot_tools()
            + Self::network_tools()
            + Self::shell_tools()
            + Self::service_tools()
            + Self::secret_tools()
            + Self::disk_tools();
        tools
            .map
            .retain(|name, _| profile.tools().contains(&name.as_ref()));
        for route in tools.map.values_mut() {
            unwrap_descriptions(&mut route.attr);
        }
        Self {
            pyro,
            session_closed: Arc::new(AtomicBool::new(false)),
            in_flight: Arc::new(AtomicUsize::new(0)),
            tools,
        }
    }

    /// The tools this server lists, sorted by name.
    pub fn tool_names(&self) -> Vec<String> {
        self.tools
            .list_all()
            .into_iter()
            .map(|t| t.name.into())
            .collect()
    }

    /// The tool definitions this server lists.
    pub fn tools(&self) -> Vec<rmcp::model::Tool> {
        self.tools.list_all()
    }
}

/// Arguments that do not fit a tool's schema are refused by rmcp before
/// the tool runs, as a bare text error; this makes them tool errors like
/// the others (`invalid_argument`, with what to do).
fn bad_arguments(tool: &str, result: CallToolResult) -> CallToolResult {
    const PREFIX: &str = "failed to deserialize parameters: ";
    let text = result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.as_str());
    match text.and_then(|t| t.strip_prefix(PREFIX)) {
        Some(why) if result.is_error == Some(true) && result.structured_content.is_none() => {
            call::failure(
                tool,
                &Error::InvalidArgument(format!(
                    "bad arguments: {why} (see the tool's input schema)"
                )),
            )
        }
        _ => result,
    }
}

/// Doc comments become descriptions with their source line breaks; a
/// model reads them better as one line per paragraph.
fn unwrap_descriptions(tool: &mut rmcp::model::Tool) {
    fn unwrap(text: &str) -> String {
        text.split("\n\n")
            .map(|para| {
                para.split('\n')
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect::<Vec<_>>()
            .join("\n\n")
    }
    fn walk(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    match v {
                        serde_json::Value::String(text) if key == "description" => {
                            *text = unwrap(text)
                        }
                        _ => walk(v),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    if let Some(d) = &tool.description {
        tool.description = Some(unwrap(d).into());
    }
    let mut schema = serde_json::Value::Object((*tool.input_schema).clone());
    walk(&mut schema);
    if let serde_json::Value::Object(map) = schema {
        tool.input_schema = Arc::new(map);
    }
}

#[tool_handler(router = self.tools)]
impl ServerHandler for PyroServer {
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let tool = request.name.clone();
        let response = self
            .tools
            .call(ToolCallContext::new(self, request, context))
            .await?;
        Ok(match response {
            CallToolResponse::Complete(result) => bad_arguments(&tool, result).into(),
            other => other,
        })
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("pyro", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_profile_lists_exactly_its_tools() {
        for profile in Profile::ALL {
            let server = PyroServer::new(Pyro::with_home("/nonexistent"), profile);
            let mut want: Vec<String> = profile.tools().iter().map(|s| s.to_string()).collect();
            want.sort();
            assert_eq!(server.tool_names(), want, "{profile}");
        }
    }

    #[test]
    fn every_tool_and_parameter_is_described() {
        let server = PyroServer::new(Pyro::with_home("/nonexistent"), Profile::WorkspaceFull);
        for tool in server.tools() {
            let description = tool.description.as_deref().unwrap_or("");
            assert!(description.len() > 40, "{}: {description:?}", tool.name);
            let schema = serde_json::Value::Object((*tool.input_schema).clone());
            assert_eq!(schema["type"], "object", "{}", tool.name);
            let properties = schema["properties"].as_object().unwrap();
            if !properties.is_empty() {
                // A misspelt parameter is an error, not silently ignored.
                assert_eq!(schema["additionalProperties"], false, "{}", tool.name);
            }
            for (name, prop) in properties {
                assert!(
                    prop["description"].as_str().is_some_and(|d| d.len() > 10),
                    "{}.{name}: {prop}",
                    tool.name
                );
            }
        }
    }

    /// The network parameters are where an agent looks for them, and the
    /// port tools are in workspace-full only.
    #[test]
    fn network_parameters_and_port_tools() {
        let server = PyroServer::new(Pyro::with_home("/nonexistent"), Profile::WorkspaceFull);
        let schema = |name: &str| {
            let tool = server.tools().into_iter().find(|t| t.name == name).unwrap();
            serde_json::Value::Object((*tool.input_schema).clone())
        };
        let policies = serde_json::json!([
            "off",
            "egress",
            "egress+published-ports",
            "published-ports",
            null
        ]);
        for (tool, fields) in [
            (
                "vm_run",
                &["network_policy", "allow_hosts", "add_hosts"][..],
            ),
            (
                "workspace_create",
                &["network_policy", "allow_hosts", "add_hosts", "publish"],
            ),
            (
                "workspace_update",
                &["network_policy", "allow_hosts", "add_hosts"],
            ),
        ] {
            let s = schema(tool);
            for field in fields {
                let p = &s["properties"][field];
                assert!(p.is_object(), "{tool}.{field}: {s}");
                assert!(
                    !s["required"]
                        .as_array()
                        .is_some_and(|r| r.contains(&(*field).into())),
                    "{tool}.{field} must be optional"
                );
            }
            assert_eq!(
                s["properties"]["network_policy"]["enum"], policies,
                "{tool}"
            );
        }
        assert!(schema("vm_run")["properties"]["publish"].is_null());
        let create = schema("workspace_create");
        let policy = create["properties"]["network_policy"]["description"]
            .as_str()
            .unwrap();
        assert!(policy.contains("\"off\" (the default"), "{policy}");
        let allow = create["properties"]["allow_hosts"]["description"]
            .as_str()
            .unwrap();
        assert!(
            allow.contains("private ranges") && allow.contains("resolve"),
            "{allow}"
        );
        let publish = create["properties"]["publish"]["description"]
            .as_str()
            .unwrap();
        assert!(publish.contains("127.0.0.1"), "{publish}");

        assert_eq!(
            schema("workspace_port_publish")["required"],
            serde_json::json!(["workspace_id", "port"])
        );
        let unpublish = schema("workspace_port_unpublish");
        assert_eq!(unpublish["properties"]["guest_port"]["minimum"], 1);
        assert_eq!(unpublish["properties"]["guest_port"]["maximum"], 65535);
        for tool in ["workspace_port_publish", "workspace_port_list"] {
            let d = server
                .tools()
                .into_iter()
                .find(|t| t.name == tool)
                .and_then(|t| t.description)
                .unwrap();
            assert!(d.contains("127.0.0.1"), "{tool}: {d}");
        }
        let core = PyroServer::new(Pyro::with_home("/nonexistent"), Profile::WorkspaceCore);
        assert!(
            !core
                .tool_names()
                .iter()
                .any(|t| t.starts_with("workspace_port_")),
            "{:?}",
            core.tool_names()
        );
    }

    #[test]
    fn schemas_carry_defaults_and_limits() {
        let server = PyroServer::new(Pyro::with_home("/nonexistent"), Profile::WorkspaceFull);
        let schema = |name: &str| {
            let tool = server.tools().into_iter().find(|t| t.name == name).unwrap();
            serde_json::Value::Object((*tool.input_schema).clone())
        };
        let read = schema("workspace_file_read");
        assert_eq!(read["properties"]["max_bytes"]["default"], 65536);
        assert_eq!(read["properties"]["max_bytes"]["maximum"], 1048576);
        assert_eq!(
            read["required"],
            serde_json::json!(["workspace_id", "path"])
        );
        let exec = schema("workspace_exec");
        assert_eq!(exec["properties"]["timeout_seconds"]["default"], 30);
        assert!(exec["properties"]["command"]["anyOf"].is_array(), "{exec}");
        let run = schema("vm_run");
        assert_eq!(run["properties"]["environment"]["default"], "debian:12");
        assert_eq!(run["properties"]["vcpus"]["maximum"], 32);
        let command = run["properties"]["command"]["description"]
            .as_str()
            .unwrap();
        assert!(
            command.contains("\"make test 2>&1 | tail -n 20\""),
            "{command}"
        );
        assert_eq!(schema("workspace_list")["type"], "object");
        if std::env::var_os("PYRO_MCP_PRINT_SCHEMAS").is_some() {
            for tool in server.tools() {
                println!(
                    "{}: {}",
                    tool.name,
                    serde_json::to_string_pretty(&tool).unwrap()
                );
            }
        }
    }
}
