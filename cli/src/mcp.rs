//! `pyro mcp ...`: the MCP server (`serve`) and the configuration MCP
//! hosts need to start it (`config`). Both live in `pyro-mcp`; this file
//! parses and runs them, `crate::printer::mcp` prints.

use crate::args::shape;
use crate::printer::mcp as printer;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};
use pyro_mcp::config::{self, Host, Server, TOOL_TIMEOUT_SECONDS};
use pyro_mcp::Profile;
use pyro_workspace::{Error, Pyro};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum McpCommand {
    /// Serve pyro's tools to an MCP host over stdin/stdout. Hosts start
    /// this themselves (see `pyro mcp config`).
    Serve(ServeArgs),
    /// Print the snippet or command that makes an MCP host start `pyro mcp
    /// serve`, or write it into the host's config with --install.
    Config(ConfigArgs),
}

fn profile_parser() -> impl TypedValueParser<Value = Profile> {
    PossibleValuesParser::new(Profile::NAMES)
        .map(|s| s.parse::<Profile>().expect("a listed profile"))
}

#[derive(Args)]
pub struct ServeArgs {
    /// Which tools: vm-run (vm_run only), workspace-core (vm_run and the
    /// workspace edit-run-diff loop), workspace-full (also stop/start and
    /// snapshots).
    #[arg(long, default_value = "workspace-core", value_parser = profile_parser())]
    profile: Profile,
}

#[derive(Args)]
pub struct ConfigArgs {
    /// The MCP host.
    #[arg(value_parser = PossibleValuesParser::new(Host::NAMES).map(|s| s.parse::<Host>().expect("a listed host")))]
    host: Host,
    /// The tool profile the host's server gets.
    #[arg(long, default_value = "workspace-core", value_parser = profile_parser())]
    profile: Profile,
    #[arg(
        long,
        default_value_t = TOOL_TIMEOUT_SECONDS.default,
        value_parser = shape::limited(TOOL_TIMEOUT_SECONDS),
        help = shape::help(
            "How long the host lets one pyro tool call run, in seconds (Codex's \
             tool_timeout_sec, Claude Code's and OpenCode's timeout)",
            TOOL_TIMEOUT_SECONDS
        )
    )]
    tool_timeout_seconds: u64,
    /// Write it for the user: run `claude mcp add-json`, or merge into
    /// ~/.codex/config.toml or ~/.config/opencode/opencode.json (the old
    /// file is kept as <file>.bak-<unix time>).
    #[arg(long)]
    install: bool,
}

pub fn run(pyro: Pyro, cmd: McpCommand) -> Result<i32, Error> {
    match cmd {
        McpCommand::Serve(a) => {
            pyro_mcp::serve(pyro, a.profile).map_err(|e| Error::Io(e.to_string()))?;
            Ok(0)
        }
        McpCommand::Config(a) => configure(&a),
    }
}

fn configure(a: &ConfigArgs) -> Result<i32, Error> {
    let io = |e: std::io::Error| Error::Io(e.to_string());
    let pyro = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| Error::Io(format!("cannot find the pyro binary's path: {e}")))?;
    let server = Server {
        tool_timeout_seconds: a.tool_timeout_seconds,
        ..Server::new(&pyro, a.profile)
    };
    let snippet = config::snippet(a.host, &server);
    if !a.install {
        printer::snippet(a.host, &server, &snippet);
        return Ok(0);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .ok_or_else(|| Error::Io("HOME is not set: cannot find the host's config".into()))?;
    let installed = match a.host {
        Host::Claude => {
            let path = std::env::var_os("PATH").unwrap_or_default();
            return match config::install_claude(&server, &path) {
                Ok(claude) => {
                    printer::claude_added(&claude, &server);
                    Ok(0)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    printer::claude_missing(&snippet, &e, &server);
                    Ok(1)
                }
                Err(e) => Err(io(e)),
            };
        }
        Host::Codex => {
            let path = config::codex_config_path(&home, std::env::var_os("CODEX_HOME").as_deref());
            config::install_codex(&path, &server, now_unix()).map_err(io)?
        }
        Host::Opencode => {
            let xdg = std::env::var_os("XDG_CONFIG_HOME");
            let path = config::opencode_config_path(&home, xdg.as_deref());
            config::install_opencode(&path, &server, now_unix()).map_err(io)?
        }
    };
    printer::installed(a.host, &server, &installed);
    Ok(0)
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
