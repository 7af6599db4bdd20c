//! Secrets (docs/secrets.md): the parameters that give them (`secrets`
//! on workspace_create, `secret_env` on workspace_exec, shell_open and
//! service_start) and the tools that rotate them (workspace_secret_set,
//! workspace_secret_unset). Values are never in a result: secret
//! values in outputs and errors come back as [REDACTED].

use crate::server::PyroServer;
use pyro_workspace::secrets::Secret;
use pyro_workspace::{secret_from_file, Error, SecretSource};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A secret given to workspace_create: a value, or a host file holding
/// it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretParam {
    /// [A-Za-z_][A-Za-z0-9_]{0,63}
    pub name: String,
    /// The value (UTF-8 text, up to 32 KiB). Give this or file_path.
    #[serde(default)]
    pub value: Option<String>,
    /// A host file whose content is the value (one trailing newline is
    /// dropped).
    #[serde(default)]
    pub file_path: Option<PathBuf>,
}

impl SecretParam {
    pub fn secret(&self) -> Result<(Secret, SecretSource), Error> {
        match (&self.value, &self.file_path) {
            (Some(v), None) => Secret::new(&self.name, v.as_bytes())
                .map(|s| (s, SecretSource::Literal))
                .map_err(Error::InvalidArgument),
            (None, Some(p)) => secret_from_file(&self.name, p).map(|s| (s, SecretSource::File)),
            _ => Err(Error::InvalidArgument(format!(
                "secret {}: give exactly one of value and file_path",
                self.name
            ))),
        }
    }
}

/// `secret_env` as the SDK takes it: (secret, variable) pairs; an empty
/// variable means the secret's own name.
pub fn secret_env(map: &BTreeMap<String, String>) -> Result<Vec<(String, String)>, Error> {
    map.iter()
        .map(|(secret, var)| {
            let var = if var.is_empty() { secret } else { var };
            pyro_workspace::secret_env_pair(secret, var).map_err(Error::InvalidArgument)
        })
        .collect()
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretSetParams {
    /// The workspace: its id or unique name.
    pub workspace_id: String,
    /// [A-Za-z_][A-Za-z0-9_]{0,63}
    pub name: String,
    /// The value (UTF-8 text, up to 32 KiB). Give this or file_path.
    #[serde(default)]
    pub value: Option<String>,
    /// A host file whose content is the value.
    #[serde(default)]
    pub file_path: Option<PathBuf>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretUnsetParams {
    /// The workspace: its id or unique name.
    pub workspace_id: String,
    /// The secret's name, as workspace_status lists it in secrets.
    pub name: String,
}

#[tool_router(router = secret_tools, vis = "pub(crate)")]
impl PyroServer {
    /// Set a workspace secret (new, or rotate its value). A running
    /// workspace gets it at once in /run/pyro-secrets/NAME; give it to a
    /// command as an environment variable with secret_env on
    /// workspace_exec, shell_open or service_start. Its value is
    /// replaced by [REDACTED] in every output. Result: the workspace
    /// (secrets lists names only).
    #[tool(annotations(destructive_hint = false, open_world_hint = false))]
    async fn workspace_secret_set(
        &self,
        Parameters(p): Parameters<SecretSetParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("workspace_secret_set", ctx, move |job| {
            let (secret, source) = SecretParam {
                name: p.name,
                value: p.value,
                file_path: p.file_path,
            }
            .secret()?;
            job.pyro
                .workspace_secret_set(&p.workspace_id, &secret, source)
        })
        .await
    }

    /// Remove a workspace secret, from the host and the guest. Result:
    /// the workspace.
    #[tool(annotations(destructive_hint = true, open_world_hint = false))]
    async fn workspace_secret_unset(
        &self,
        Parameters(p): Parameters<SecretUnsetParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("workspace_secret_unset", ctx, move |job| {
            job.pyro.workspace_secret_unset(&p.workspace_id, &p.name)
        })
        .await
    }
}
