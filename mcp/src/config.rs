//! `pyro mcp config`: what an MCP host needs to start `pyro mcp serve`,
//! printed as the host expects it, or installed into the host's config.
//!
//! - Claude Code: the `claude mcp add-json pyro '{...}'` command;
//!   installing runs it. (`claude mcp add` takes no per-server timeout;
//!   `add-json` takes the whole entry, `timeout` included.)
//! - Codex: a `[mcp_servers.pyro]` table; installing merges it into
//!   `$CODEX_HOME/config.toml` (default `~/.codex/config.toml`) with
//!   `toml_edit`, so other tables, comments and formatting stay.
//! - OpenCode: an `opencode.json` document; installing merges `mcp.pyro`
//!   into the user's global config, `$XDG_CONFIG_HOME/opencode/opencode.json`
//!   (default `~/.config/opencode/opencode.json`), keeping other keys
//!   (JSON has no comments to keep; keys come out sorted).
//!
//! Every entry carries the host's per-server tool-call timeout, because
//! the hosts' defaults (Codex 60 s, OpenCode the MCP SDK's 60 s) end a
//! first `workspace_create` that builds its environment, or a
//! `workspace_exec` of a test suite, long before pyro does. Codex also
//! gets a startup timeout. What a host reads only from its own process
//! or global settings is not written; [`notes`] says what to set.
//!
//! An install that changes an existing file first copies it to
//! `<file>.bak-<unix time>`, then replaces it atomically. Reinstalling
//! sets pyro's keys again and keeps keys the user added to the entry.

use crate::Profile;
use pyro_vmm::limits::Limit;
use pyro_workspace::{shell_join, DEFAULT_ENV};
use std::ffi::OsStr;
use std::fmt;
use std::io::{Error, ErrorKind, Result};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// How long the host lets one pyro tool call run (`--tool-timeout-seconds`).
///
/// 30 minutes by default: the longest normal call is a first
/// `workspace_create` that builds debian:12-build (several minutes on a
/// cold cache) or a `workspace_exec` of a test suite (a few minutes:
/// more-itertools' 817 tests take 138 s); both together fit with room to
/// spare, and a call that hangs is still given up on within the half
/// hour. The top is the longest a guest command may run: a host that
/// waits longer than pyro lets a command run gains nothing.
pub const TOOL_TIMEOUT_SECONDS: Limit<u64> = Limit {
    name: "--tool-timeout-seconds",
    min: 1,
    max: pyro_vmm::limits::TIMEOUT_SECONDS.max,
    default: 1800,
};

/// Codex's `startup_timeout_sec` (its default is 10 s). `pyro mcp serve`
/// answers `initialize` in well under a second (it boots nothing until a
/// call), so this only covers a cold disk or a loaded machine; a larger
/// value would only delay the report of a broken path.
pub const CODEX_STARTUP_TIMEOUT_SECONDS: u64 = 60;

/// An MCP host pyro knows how to configure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    Claude,
    Codex,
    Opencode,
}

impl Host {
    pub const ALL: [Host; 3] = [Host::Claude, Host::Codex, Host::Opencode];
    pub const NAMES: [&'static str; 3] = ["claude", "codex", "opencode"];

    pub fn name(self) -> &'static str {
        // Variants are declared in the order of NAMES.
        Self::NAMES[self as usize]
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Host {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        crate::profile::one_of("host", s, &Host::ALL, &Host::NAMES)
    }
}

/// What every host's entry says: which pyro to start, with which tools,
/// and how long one call may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Server<'a> {
    pub pyro: &'a Path,
    pub profile: Profile,
    /// Within [`TOOL_TIMEOUT_SECONDS`].
    pub tool_timeout_seconds: u64,
}

impl<'a> Server<'a> {
    /// The entry with the default tool timeout.
    pub fn new(pyro: &'a Path, profile: Profile) -> Self {
        Server {
            pyro,
            profile,
            tool_timeout_seconds: TOOL_TIMEOUT_SECONDS.default,
        }
    }

    fn program(&self) -> String {
        self.pyro.display().to_string()
    }

    /// The server's arguments after the program.
    fn args(&self) -> [&'static str; 4] {
        ["mcp", "serve", "--profile", self.profile.name()]
    }

    /// Claude Code's and OpenCode's `timeout` are milliseconds.
    fn tool_timeout_ms(&self) -> u64 {
        self.tool_timeout_seconds.saturating_mul(1000)
    }
}

/// `s` as a JSON string literal.
fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The entry `claude mcp add-json` takes, on one line, keys in the order
/// a reader expects.
fn claude_json(server: &Server) -> String {
    let args: Vec<String> = server.args().map(json_str).into();
    format!(
        "{{\"type\":\"stdio\",\"command\":{},\"args\":[{}],\"timeout\":{}}}",
        json_str(&server.program()),
        args.join(","),
        server.tool_timeout_ms()
    )
}

/// The `claude` command that registers the server (argv).
pub fn claude_argv(server: &Server) -> Vec<String> {
    let mut argv: Vec<String> = ["claude", "mcp", "add-json", "pyro"]
        .map(String::from)
        .into();
    argv.push(claude_json(server));
    argv
}

/// The `[mcp_servers.pyro]` table, alone in a document.
fn codex_document(server: &Server) -> toml_edit::DocumentMut {
    let mut doc = toml_edit::DocumentMut::new();
    let mut servers = toml_edit::Table::new();
    servers.set_implicit(true);
    servers.insert("pyro", toml_edit::Item::Table(codex_table(server)));
    doc.insert("mcp_servers", toml_edit::Item::Table(servers));
    doc
}

fn codex_table(server: &Server) -> toml_edit::Table {
    let mut table = toml_edit::Table::new();
    table.insert("command", toml_edit::value(server.program()));
    let args: toml_edit::Array = server.args().into_iter().collect();
    table.insert("args", toml_edit::value(args));
    let secs = |n: u64| toml_edit::value(i64::try_from(n).unwrap_or(i64::MAX));
    table.insert("startup_timeout_sec", secs(CODEX_STARTUP_TIMEOUT_SECONDS));
    table.insert("tool_timeout_sec", secs(server.tool_timeout_seconds));
    table
}

/// `mcp.pyro` of an OpenCode config.
fn opencode_entry(server: &Server) -> serde_json::Map<String, serde_json::Value> {
    let mut command = vec![server.program()];
    command.extend(server.args().map(String::from));
    let mut entry = serde_json::Map::new();
    entry.insert("type".into(), "local".into());
    entry.insert("command".into(), command.into());
    entry.insert("enabled".into(), true.into());
    entry.insert("timeout".into(), server.tool_timeout_ms().into());
    entry
}

const OPENCODE_SCHEMA: &str = "https://opencode.ai/config.json";

/// What `pyro mcp config HOST` prints: exactly what to run or paste.
pub fn snippet(host: Host, server: &Server) -> String {
    match host {
        Host::Claude => format!("{}\n", shell_join(&claude_argv(server))),
        Host::Codex => codex_document(server).to_string(),
        Host::Opencode => {
            let mut command = vec![json_str(&server.program())];
            command.extend(server.args().map(json_str));
            format!(
                "{{\n  \"$schema\": {},\n  \"mcp\": {{\n    \"pyro\": {{\n      \"type\": \"local\",\n      \"command\": [{}],\n      \"enabled\": true,\n      \"timeout\": {}\n    }}\n  }}\n}}\n",
                json_str(OPENCODE_SCHEMA),
                command.join(", "),
                server.tool_timeout_ms()
            )
        }
    }
}

/// Where a host's config goes, and what it says to a human.
pub fn describe(host: Host) -> &'static str {
    match host {
        Host::Claude => "run this command (or `pyro mcp config claude --install`)",
        Host::Codex => "add this to ~/.codex/config.toml (or `pyro mcp config codex --install`)",
        Host::Opencode => {
            "merge this into opencode.json (or `pyro mcp config opencode --install`, which \
             writes ~/.config/opencode/opencode.json)"
        }
    }
}

/// `$CODEX_HOME/config.toml`, or `~/.codex/config.toml`.
pub fn codex_config_path(home: &Path, codex_home: Option<&OsStr>) -> PathBuf {
    match codex_home.filter(|h| !h.is_empty()) {
        Some(dir) => Path::new(dir).join("config.toml"),
        None => home.join(".codex/config.toml"),
    }
}

/// `$XDG_CONFIG_HOME/opencode/opencode.json`, or
/// `~/.config/opencode/opencode.json`.
pub fn opencode_config_path(home: &Path, xdg_config_home: Option<&OsStr>) -> PathBuf {
    let base = match xdg_config_home.filter(|h| !h.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => home.join(".config"),
    };
    base.join("opencode/opencode.json")
}

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The file written.
    pub path: PathBuf,
    /// The previous version of it, if there was one.
    pub backup: Option<PathBuf>,
}

/// Merges `[mcp_servers.pyro]` into the Codex config at `path` (created
/// if missing): pyro's keys are set, other keys of an older pyro entry
/// (`env`, `enabled_tools`, ...) and everything else in the file stay.
pub fn install_codex(path: &Path, server: &Server, now: u64) -> Result<Installed> {
    let old = read_existing(path)?;
    let mut doc: toml_edit::DocumentMut = match &old {
        Some(text) => text.parse().map_err(|e| {
            invalid(format!(
                "{} is not valid TOML, so it was left alone: {e}",
                path.display()
            ))
        })?,
        None => toml_edit::DocumentMut::new(),
    };
    if !doc.contains_key("mcp_servers") {
        let mut servers = toml_edit::Table::new();
        servers.set_implicit(true);
        doc.insert("mcp_servers", toml_edit::Item::Table(servers));
    }
    let servers = doc["mcp_servers"].as_table_mut().ok_or_else(|| {
        invalid(format!(
            "{}: mcp_servers is not a table, so the file was left alone",
            path.display()
        ))
    })?;
    let fresh = codex_table(server);
    match servers
        .get_mut("pyro")
        .and_then(toml_edit::Item::as_table_like_mut)
    {
        Some(entry) => {
            for (key, item) in fresh.iter() {
                let mut item = item.clone();
                // A comment the user wrote after an old value stays on its
                // line. (Other decor is left to toml_edit: in an inline
                // table it is the spacing before a `,` or `}`.)
                let commented = entry
                    .get(key)
                    .and_then(toml_edit::Item::as_value)
                    .filter(|old| has_comment(old.decor()));
                if let (Some(new), Some(old)) = (item.as_value_mut(), commented) {
                    *new.decor_mut() = old.decor().clone();
                }
                entry.insert(key, item);
            }
        }
        None => {
            servers.insert("pyro", toml_edit::Item::Table(fresh));
        }
    }
    replace(path, old.is_some(), &doc.to_string(), now)
}

fn has_comment(decor: &toml_edit::Decor) -> bool {
    decor
        .suffix()
        .and_then(toml_edit::RawString::as_str)
        .is_some_and(|s| s.contains('#'))
}

/// Merges `mcp.pyro` into the OpenCode config at `path` (created if
/// missing): pyro's keys are set, other keys of an older pyro entry
/// (`environment`, ...) and every other key in the file stay.
pub fn install_opencode(path: &Path, server: &Server, now: u64) -> Result<Installed> {
    let old = read_existing(path)?;
    let mut doc: serde_json::Value = match &old {
        Some(text) => serde_json::from_str(text).map_err(|e| {
            invalid(format!(
                "{} is not plain JSON (comments are not supported), so it was left alone: {e}",
                path.display()
            ))
        })?,
        None => serde_json::json!({}),
    };
    let left_alone = |what: &str| {
        invalid(format!(
            "{}: {what} is not an object, so the file was left alone",
            path.display()
        ))
    };
    let root = doc
        .as_object_mut()
        .ok_or_else(|| left_alone("the document"))?;
    root.entry("$schema").or_insert(OPENCODE_SCHEMA.into());
    let mcp = root
        .entry("mcp")
        .or_insert(serde_json::json!({}))
        .as_object_mut()
        .ok_or_else(|| left_alone("\"mcp\""))?;
    let fresh = opencode_entry(server);
    match mcp
        .get_mut("pyro")
        .and_then(serde_json::Value::as_object_mut)
    {
        Some(entry) => entry.extend(fresh),
        None => {
            mcp.insert("pyro".into(), fresh.into());
        }
    }
    let text = serde_json::to_string_pretty(&doc).map_err(Error::other)? + "\n";
    replace(path, old.is_some(), &text, now)
}

/// The program `name` in the directories of a `PATH` value.
pub fn find_program(name: &str, path_var: &OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path_var)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Runs `claude mcp add-json pyro '{...}'` with the `claude` found on
/// `path_var`. `NotFound` if there is none.
pub fn install_claude(server: &Server, path_var: &OsStr) -> Result<PathBuf> {
    let claude = find_program("claude", path_var).ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            "claude (Claude Code's CLI) was not found on PATH",
        )
    })?;
    let argv = claude_argv(server);
    let status = std::process::Command::new(&claude)
        .args(&argv[1..])
        .status()
        .map_err(|e| Error::other(format!("cannot run {}: {e}", claude.display())))?;
    if !status.success() {
        return Err(Error::other(format!(
            "`{}` failed ({status}); if a server named pyro is configured already, remove it \
             with `claude mcp remove pyro` and run this again",
            shell_join(&argv)
        )));
    }
    Ok(claude)
}

/// What the user should set by hand: the limits a host reads only from
/// its own process or from settings shared by every server, which an
/// install must not change behind the user's back.
pub fn notes(host: Host, server: &Server) -> Vec<String> {
    let ms = server.tool_timeout_ms();
    match host {
        Host::Claude => vec![format!(
            "a Claude Code that ignores a server's \"timeout\" takes the tool-call limit from its \
             own environment instead: start it as `MCP_TOOL_TIMEOUT={ms} claude`, or set \
             MCP_TOOL_TIMEOUT under \"env\" in ~/.claude/settings.json (every server gets it)"
        )],
        Host::Codex => Vec::new(),
        Host::Opencode => vec![format!(
            "if pyro calls still end after 60 s, this OpenCode uses \"timeout\" only to list \
             tools: set \"experimental\": {{\"mcp_timeout\": {ms}}} in opencode.json (every \
             server gets it)"
        )],
    }
}

/// The suggestion to build the default environment before the first
/// call, so that no call spends the host's timeout building it.
pub fn pull_hint(pyro: &Path) -> String {
    let pyro = shell_join(&[pyro.display().to_string()]);
    format!(
        "before first use, build the environment the agent will use, so that no tool call \
         has to (minutes the first time, nothing once built): {pyro} env pull {DEFAULT_ENV} \
         (`{pyro} env list` shows the others; debian:12-build has compilers)"
    )
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidData, message)
}

fn read_existing(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
}

/// Writes `text` to `path` atomically (temp file + rename), after copying
/// the existing file to `<path>.bak-<now>` if `existed`.
fn replace(path: &Path, existed: bool, text: &str, now: u64) -> Result<Installed> {
    let with_path = |e: Error, p: &Path| Error::new(e.kind(), format!("{}: {e}", p.display()));
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| with_path(e, dir))?;
    let backup = if existed {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let mut backup = dir.join(format!("{name}.bak-{now}"));
        let mut n = 1;
        while backup.exists() {
            backup = dir.join(format!("{name}.bak-{now}-{n}"));
            n += 1;
        }
        std::fs::copy(path, &backup).map_err(|e| with_path(e, &backup))?;
        Some(backup)
    } else {
        None
    };
    let temp = dir.join(format!(
        ".{}.pyro-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&temp, text).map_err(|e| with_path(e, &temp))?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&temp, meta.permissions());
    }
    std::fs::rename(&temp, path).map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        with_path(e, path)
    })?;
    Ok(Installed {
        path: path.to_path_buf(),
        backup,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PYRO: &str = "/opt/pyro/bin/pyro";

    fn server(profile: Profile) -> Server<'static> {
        Server::new(Path::new(PYRO), profile)
    }

    /// `mcp_servers.<name>.<key>` of a Codex config, as an integer.
    fn codex_int(doc: &toml_edit::DocumentMut, name: &str, key: &str) -> Option<i64> {
        doc["mcp_servers"][name][key].as_integer()
    }

    #[test]
    fn the_default_tool_timeout_is_half_an_hour_and_within_its_limit() {
        assert_eq!(TOOL_TIMEOUT_SECONDS.default, 1800);
        assert!(TOOL_TIMEOUT_SECONDS.contains(TOOL_TIMEOUT_SECONDS.default));
        assert_eq!(TOOL_TIMEOUT_SECONDS.min, 1);
        assert_eq!(TOOL_TIMEOUT_SECONDS.max, 86_400);
        assert_eq!(server(Profile::VmRun).tool_timeout_seconds, 1800);
    }

    #[test]
    fn claude_snippet() {
        assert_eq!(
            snippet(Host::Claude, &server(Profile::WorkspaceCore)),
            "claude mcp add-json pyro '{\"type\":\"stdio\",\"command\":\"/opt/pyro/bin/pyro\",\
             \"args\":[\"mcp\",\"serve\",\"--profile\",\"workspace-core\"],\"timeout\":1800000}'\n"
        );
        let quoted = Server {
            pyro: Path::new("/home/a b/it's/pyro"),
            profile: Profile::VmRun,
            tool_timeout_seconds: 900,
        };
        let argv = claude_argv(&quoted);
        assert_eq!(argv[..4], ["claude", "mcp", "add-json", "pyro"]);
        let entry: serde_json::Value = serde_json::from_str(&argv[4]).unwrap();
        assert_eq!(
            entry,
            serde_json::json!({
                "type": "stdio",
                "command": "/home/a b/it's/pyro",
                "args": ["mcp", "serve", "--profile", "vm-run"],
                "timeout": 900_000
            })
        );
        // The printed line is one shell word for the JSON, whatever the path.
        let line = snippet(Host::Claude, &quoted);
        assert!(
            line.starts_with("claude mcp add-json pyro '{\"type\":\"stdio\""),
            "{line}"
        );
        assert!(line.contains(r#""/home/a b/it'\''s/pyro""#), "{line}");
    }

    #[test]
    fn codex_snippet() {
        assert_eq!(
            snippet(Host::Codex, &server(Profile::WorkspaceFull)),
            "[mcp_servers.pyro]\n\
             command = \"/opt/pyro/bin/pyro\"\n\
             args = [\"mcp\", \"serve\", \"--profile\", \"workspace-full\"]\n\
             startup_timeout_sec = 60\n\
             tool_timeout_sec = 1800\n"
        );
    }

    #[test]
    fn opencode_snippet() {
        let text = snippet(Host::Opencode, &server(Profile::WorkspaceCore));
        assert_eq!(
            text,
            r#"{
  "$schema": "https://opencode.ai/config.json",
  "mcp": {
    "pyro": {
      "type": "local",
      "command": ["/opt/pyro/bin/pyro", "mcp", "serve", "--profile", "workspace-core"],
      "enabled": true,
      "timeout": 1800000
    }
  }
}
"#
        );
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            doc["mcp"]["pyro"],
            serde_json::Value::Object(opencode_entry(&server(Profile::WorkspaceCore)))
        );
    }

    #[test]
    fn the_tool_timeout_override_reaches_every_snippet() {
        let s = Server {
            tool_timeout_seconds: 86_400,
            ..server(Profile::WorkspaceCore)
        };
        assert!(snippet(Host::Claude, &s).contains("\"timeout\":86400000}"));
        let codex: toml_edit::DocumentMut = snippet(Host::Codex, &s).parse().unwrap();
        assert_eq!(codex_int(&codex, "pyro", "tool_timeout_sec"), Some(86_400));
        assert_eq!(codex_int(&codex, "pyro", "startup_timeout_sec"), Some(60));
        let opencode: serde_json::Value =
            serde_json::from_str(&snippet(Host::Opencode, &s)).unwrap();
        assert_eq!(opencode["mcp"]["pyro"]["timeout"], 86_400_000);
    }

    #[test]
    fn notes_name_what_the_entry_cannot_set() {
        let s = Server {
            tool_timeout_seconds: 900,
            ..server(Profile::WorkspaceCore)
        };
        let claude = notes(Host::Claude, &s).join("\n");
        assert!(
            claude.contains("MCP_TOOL_TIMEOUT=900000 claude"),
            "{claude}"
        );
        assert!(notes(Host::Codex, &s).is_empty());
        let opencode = notes(Host::Opencode, &s).join("\n");
        assert!(
            opencode.contains(r#""experimental": {"mcp_timeout": 900000}"#),
            "{opencode}"
        );
        let pull = pull_hint(Path::new("/home/a b/pyro"));
        assert!(
            pull.contains("'/home/a b/pyro' env pull debian:12 "),
            "{pull}"
        );
    }

    /// A Codex config with another server, comments, and an older pyro
    /// entry that has a key of the user's.
    const CODEX_OLD: &str = "# my settings\nmodel = \"o4\"   # keep this comment\n\n\
                             [mcp_servers.other]\ncommand = \"other-server\"\nargs = []\n\
                             tool_timeout_sec = 30 # theirs\n\n\
                             [mcp_servers.pyro]\ncommand = \"/old/pyro\"\n\
                             tool_timeout_sec = 60 # was too short\n\
                             enabled_tools = [\"vm_run\"]\n";

    #[test]
    fn codex_install_keeps_other_servers_and_sets_the_timeouts() {
        let home = tempfile::tempdir().unwrap();
        let path = codex_config_path(home.path(), None);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, CODEX_OLD).unwrap();

        let s = Server {
            tool_timeout_seconds: 900,
            ..server(Profile::WorkspaceCore)
        };
        let done = install_codex(&path, &s, 1700000000).unwrap();
        assert_eq!(done.path, home.path().join(".codex/config.toml"));
        let backup = done.backup.unwrap();
        assert_eq!(
            backup,
            home.path().join(".codex/config.toml.bak-1700000000")
        );
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), CODEX_OLD);

        let new = std::fs::read_to_string(&path).unwrap();
        assert!(
            new.starts_with("# my settings\nmodel = \"o4\"   # keep this comment\n"),
            "{new}"
        );
        assert!(
            new.contains(
                "[mcp_servers.other]\ncommand = \"other-server\"\nargs = []\n\
                 tool_timeout_sec = 30 # theirs\n"
            ),
            "{new}"
        );
        assert!(
            new.contains("tool_timeout_sec = 900 # was too short\n"),
            "{new}"
        );
        let doc: toml_edit::DocumentMut = new.parse().unwrap();
        let pyro = &doc["mcp_servers"]["pyro"];
        assert_eq!(pyro["command"].as_str(), Some(PYRO));
        assert_eq!(
            pyro["args"].as_array().unwrap().to_string().trim(),
            r#"["mcp", "serve", "--profile", "workspace-core"]"#
        );
        assert_eq!(pyro["startup_timeout_sec"].as_integer(), Some(60));
        assert_eq!(pyro["tool_timeout_sec"].as_integer(), Some(900));
        assert_eq!(
            pyro["enabled_tools"].as_array().unwrap().to_string().trim(),
            r#"["vm_run"]"#
        );
        assert!(!new.contains("/old/pyro"), "{new}");

        // Again in the same second, with the default: the values are
        // updated, and the backup is a second one, not an overwritten one.
        let again = install_codex(&path, &server(Profile::WorkspaceCore), 1700000000).unwrap();
        assert_eq!(
            again.backup.unwrap(),
            home.path().join(".codex/config.toml.bak-1700000000-1")
        );
        let doc: toml_edit::DocumentMut = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        assert_eq!(codex_int(&doc, "pyro", "tool_timeout_sec"), Some(1800));
        assert_eq!(codex_int(&doc, "other", "tool_timeout_sec"), Some(30));
        let once_more = std::fs::read_to_string(&path).unwrap();
        install_codex(&path, &server(Profile::WorkspaceCore), 1700000001).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), once_more);
    }

    #[test]
    fn codex_install_updates_an_inline_pyro_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "[mcp_servers]\npyro = { command = \"/old/pyro\", tool_timeout_sec = 5 }\n",
        )
        .unwrap();
        install_codex(&path, &server(Profile::VmRun), 1).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(" ,"), "{text}");
        let doc: toml_edit::DocumentMut = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        let pyro = &doc["mcp_servers"]["pyro"];
        assert_eq!(pyro["command"].as_str(), Some(PYRO));
        assert_eq!(pyro["tool_timeout_sec"].as_integer(), Some(1800));
        assert_eq!(pyro["startup_timeout_sec"].as_integer(), Some(60));
    }

    #[test]
    fn codex_install_creates_a_missing_file_and_refuses_a_broken_one() {
        let home = tempfile::tempdir().unwrap();
        let codex_home = home.path().join("codex-home");
        let path = codex_config_path(home.path(), Some(codex_home.as_os_str()));
        assert_eq!(path, codex_home.join("config.toml"));
        let s = server(Profile::VmRun);
        let done = install_codex(&path, &s, 1).unwrap();
        assert_eq!(done.backup, None);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            snippet(Host::Codex, &s)
        );

        std::fs::write(&path, "mcp_servers = 3\n").unwrap();
        let err = install_codex(&path, &s, 2).unwrap_err();
        assert!(err.to_string().contains("not a table"), "{err}");
        std::fs::write(&path, "[broken\n").unwrap();
        let err = install_codex(&path, &s, 3).unwrap_err();
        assert!(err.to_string().contains("not valid TOML"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[broken\n");
    }

    #[test]
    fn opencode_install_keeps_other_servers_and_sets_the_timeout() {
        let home = tempfile::tempdir().unwrap();
        let path = opencode_config_path(home.path(), None);
        assert_eq!(path, home.path().join(".config/opencode/opencode.json"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let old = r#"{"theme": "dark", "mcp": {
            "other": {"type": "remote", "url": "https://x", "timeout": 5000},
            "pyro": {"type": "local", "command": ["/old/pyro"], "timeout": 5000,
                     "environment": {"RUST_LOG": "info"}}}}"#;
        std::fs::write(&path, old).unwrap();

        let s = Server {
            tool_timeout_seconds: 900,
            ..server(Profile::WorkspaceFull)
        };
        let done = install_opencode(&path, &s, 42).unwrap();
        let backup = done.backup.unwrap();
        assert_eq!(backup, path.with_file_name("opencode.json.bak-42"));
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), old);
        let read = || -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
        };
        let doc = read();
        assert_eq!(doc["theme"], "dark");
        assert_eq!(
            doc["mcp"]["other"],
            serde_json::json!({"type": "remote", "url": "https://x", "timeout": 5000})
        );
        assert_eq!(doc["$schema"], OPENCODE_SCHEMA);
        assert_eq!(
            doc["mcp"]["pyro"],
            serde_json::json!({
                "type": "local",
                "command": [PYRO, "mcp", "serve", "--profile", "workspace-full"],
                "enabled": true,
                "timeout": 900_000,
                "environment": {"RUST_LOG": "info"}
            })
        );

        // Reinstalling with the default updates the value.
        install_opencode(&path, &server(Profile::WorkspaceFull), 43).unwrap();
        assert_eq!(read()["mcp"]["pyro"]["timeout"], 1_800_000);
        assert_eq!(read()["mcp"]["other"]["timeout"], 5000);

        std::fs::write(&path, "// comment\n{}").unwrap();
        let err = install_opencode(&path, &s, 44).unwrap_err();
        assert!(err.to_string().contains("not plain JSON"), "{err}");
    }

    #[test]
    fn claude_install_runs_claude_from_path_or_says_it_is_missing() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let s = server(Profile::WorkspaceCore);
        let err = install_claude(&s, dir.path().as_os_str()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.to_string().contains("claude"), "{err}");

        let args = dir.path().join("args");
        let claude = dir.path().join("claude");
        std::fs::write(
            &claude,
            format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\n", args.display()),
        )
        .unwrap();
        std::fs::set_permissions(&claude, std::fs::Permissions::from_mode(0o755)).unwrap();
        let found = install_claude(&s, dir.path().as_os_str()).unwrap();
        assert_eq!(found, claude);
        assert_eq!(
            std::fs::read_to_string(&args).unwrap(),
            "mcp\nadd-json\npyro\n{\"type\":\"stdio\",\"command\":\"/opt/pyro/bin/pyro\",\
             \"args\":[\"mcp\",\"serve\",\"--profile\",\"workspace-core\"],\"timeout\":1800000}\n"
        );
    }
}
