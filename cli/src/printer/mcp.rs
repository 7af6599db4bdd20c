//! How `pyro mcp config` reads: the host's snippet, or what `--install`
//! changed. (`mcp` has no `--json`; `mcp serve` prints nothing.)

use pyro_mcp::config::{self, Host, Installed};
use pyro_mcp::Profile;
use std::path::Path;

/// The snippet or command that makes `host` start `pyro mcp serve`.
pub fn snippet(host: Host, profile: Profile, snippet: &str) {
    print!("{snippet}");
    eprintln!(
        "[mcp-config] host={host} profile={profile}: {}",
        config::describe(host)
    );
}

/// `claude mcp add` ran.
pub fn claude_added(claude: &Path, profile: Profile) {
    println!("Added pyro to Claude Code ({}).", claude.display());
    eprintln!("[mcp-config] host=claude profile={profile} installed=true");
}

/// `claude` is not installed: the command to run once it is.
pub fn claude_missing(snippet: &str, err: &std::io::Error) {
    print!("{snippet}");
    eprintln!("[error] {err}; run the command above once Claude Code is installed");
}

/// A host's config file, written.
pub fn installed(host: Host, profile: Profile, installed: &Installed) {
    println!(
        "Wrote the pyro MCP server into {}.",
        installed.path.display()
    );
    if let Some(b) = &installed.backup {
        println!("The previous version is in {}.", b.display());
    }
    eprintln!(
        "[mcp-config] host={host} profile={profile} path={} backup={}",
        installed.path.display(),
        installed
            .backup
            .as_deref()
            .map_or("none".into(), |b| b.display().to_string())
    );
}
