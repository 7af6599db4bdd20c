//! Secret arguments: `--secret` and `--secret-file` on create,
//! `--secret-env` on exec, shell open and service start, and `pyro
//! workspace secret set|unset` (docs/secrets.md).

use clap::{Args, Subcommand};
use pyro_workspace::parse_secret_env;
use std::path::PathBuf;

/// `NAME=VALUE` or `NAME=PATH`, split at the first `=`.
fn name_and(what: &'static str) -> impl Fn(&str) -> Result<(String, String), String> + Clone {
    move |s: &str| {
        s.split_once('=')
            .filter(|(n, v)| !n.is_empty() && !v.is_empty())
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .ok_or_else(|| format!("expected NAME={what}"))
    }
}

/// The secrets a new workspace starts with.
#[derive(Args)]
pub struct CreateSecretArgs {
    /// A secret NAME=VALUE (repeatable). The value is stored 0600 on the
    /// host, kept in the guest at /run/pyro-secrets/NAME (memory only),
    /// and replaced by [REDACTED] in everything pyro prints or stores.
    /// A value on the command line shows in process listings: prefer
    /// --secret-file or `secret set` (stdin) for real credentials.
    #[arg(long = "secret", value_name = "NAME=VALUE", value_parser = name_and("VALUE"))]
    pub secrets: Vec<(String, String)>,
    /// A secret whose value is the content of a host file, NAME=PATH
    /// (repeatable; one trailing newline is dropped).
    #[arg(long = "secret-file", value_name = "NAME=PATH", value_parser = name_and("PATH"))]
    pub secret_files: Vec<(String, String)>,
}

/// Secrets one command gets in its environment.
#[derive(Args, Clone, Default)]
pub struct SecretEnvArgs {
    /// Put secret NAME's value in environment variable VAR (default:
    /// NAME) for this command only (repeatable).
    #[arg(long = "secret-env", value_name = "NAME[=VAR]", value_parser = parse_secret_env)]
    pub secret_env: Vec<(String, String)>,
}

#[derive(Subcommand)]
pub enum SecretCommand {
    /// Set a secret (new, or a new value): from --value, --value-file,
    /// or else stdin. A running workspace gets it at once; commands
    /// started before keep the value they started with.
    Set(SecretSetArgs),
    /// Remove a secret, from the host and the guest.
    Unset(SecretUnsetArgs),
}

#[derive(Args)]
pub struct SecretSetArgs {
    /// Workspace id (or its unique name).
    pub id: String,
    /// [A-Za-z_][A-Za-z0-9_]{0,63}
    pub name: String,
    /// The value (shows in process listings; stdin does not).
    #[arg(long, conflicts_with = "value_file")]
    pub value: Option<String>,
    /// Read the value from this host file (one trailing newline is
    /// dropped).
    #[arg(long)]
    pub value_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct SecretUnsetArgs {
    /// Workspace id (or its unique name).
    pub id: String,
    pub name: String,
}
