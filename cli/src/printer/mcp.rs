//! How `pyro mcp config` reads: the host's snippet, or what `--install`
//! changed. (`mcp` has no `--json`; `mcp serve` prints nothing.) What the
//! user has to do by hand comes last, as `hint:` lines on stderr, so that
//! stdout stays exactly what to run or paste.

use super::stdout;
use pyro_mcp::config::{self, Host, Installed, Server};
use std::path::Path;

/// The snippet or command that makes `host` start `pyro mcp serve`.
pub fn snippet(host: Host, server: &Server, snippet: &str) {
    stdout(|out| write!(out, "{snippet}"));
    eprintln!("{}: {}", summary(host, server), config::describe(host));
    hints(host, server);
}

/// `claude mcp add-json` ran.
pub fn claude_added(claude: &Path, server: &Server) {
    stdout(|out| {
        writeln!(
            out,
            "Added pyro to Claude Code ({}); a tool call may run {} s.",
            claude.display(),
            server.tool_timeout_seconds
        )
    });
    eprintln!("{} installed=true", summary(Host::Claude, server));
    hints(Host::Claude, server);
}

/// `claude` is not installed: the command to run once it is.
pub fn claude_missing(snippet: &str, err: &std::io::Error, server: &Server) {
    stdout(|out| write!(out, "{snippet}"));
    eprintln!("[error] {err}; run the command above once Claude Code is installed");
    hints(Host::Claude, server);
}

/// A host's config file, written.
pub fn installed(host: Host, server: &Server, installed: &Installed) {
    stdout(|out| {
        writeln!(
            out,
            "Wrote the pyro MCP server into {}; a tool call may run {} s.",
            installed.path.display(),
            server.tool_timeout_seconds
        )?;
        match &installed.backup {
            Some(b) => writeln!(out, "The previous version is in {}.", b.display()),
            None => Ok(()),
        }
    });
    eprintln!(
        "{} path={} backup={}",
        summary(host, server),
        installed.path.display(),
        installed
            .backup
            .as_deref()
            .map_or("none".into(), |b| b.display().to_string())
    );
    hints(host, server);
}

fn summary(host: Host, server: &Server) -> String {
    format!(
        "[mcp-config] host={host} profile={} tool_timeout_seconds={}",
        server.profile, server.tool_timeout_seconds
    )
}

/// The limits the entry could not set, and `env pull` before first use.
fn hints(host: Host, server: &Server) {
    let pull = config::pull_hint(server.pyro);
    for line in config::notes(host, server).into_iter().chain([pull]) {
        eprintln!("hint: {line}");
    }
}
