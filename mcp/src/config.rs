//! `pyro mcp config`: what an MCP host needs to start `pyro mcp serve`,
//! printed as the host expects it, or installed into the host's config.
//!
//! - Claude Code: the `claude mcp add pyro -- ...` command; installing
//!   runs it.
//! - Codex: a `[mcp_servers.pyro]` table; installing merges it into
//!   `$CODEX_HOME/config.toml` (default `~/.codex/config.toml`) with
//!   `toml_edit`, so other tables, comments and formatting stay.
//! - OpenCode: an `opencode.json` document; installing merges `mcp.pyro`
//!   into the user's global config, `$XDG_CONFIG_HOME/opencode/opencode.json`
//!   (default `~/.config/opencode/opencode.json`), keeping other keys
//!   (JSON has no comments to keep; keys come out sorted).
//!
//! An install that changes an existing file first copies it to
//! `<file>.bak-<unix time>`, then replaces it atomically.

use crate::Profile;
use pyro_workspace::shell_join;
use std::ffi::OsStr;
use std::fmt;
use std::io::{Error, ErrorKind, Result};
use std::path::{Path, PathBuf};
use std::str::FromStr;

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

/// The server's arguments after the program.
fn serve_args(profile: Profile) -> [&'static str; 4] {
    ["mcp", "serve", "--profile", profile.name()]
}

/// The `claude` command that registers the server (argv).
pub fn claude_argv(pyro: &Path, profile: Profile) -> Vec<String> {
    let mut argv: Vec<String> = ["claude", "mcp", "add", "pyro", "--"]
        .map(String::from)
        .into();
    argv.push(pyro.display().to_string());
    argv.extend(serve_args(profile).map(String::from));
    argv
}

/// The `[mcp_servers.pyro]` table, alone in a document.
fn codex_document(pyro: &Path, profile: Profile) -> toml_edit::DocumentMut {
    let mut doc = toml_edit::DocumentMut::new();
    let mut servers = toml_edit::Table::new();
    servers.set_implicit(true);
    servers.insert("pyro", toml_edit::Item::Table(codex_table(pyro, profile)));
    doc.insert("mcp_servers", toml_edit::Item::Table(servers));
    doc
}

fn codex_table(pyro: &Path, profile: Profile) -> toml_edit::Table {
    let mut table = toml_edit::Table::new();
    table.insert("command", toml_edit::value(pyro.display().to_string()));
    let args: toml_edit::Array = serve_args(profile).into_iter().collect();
    table.insert("args", toml_edit::value(args));
    table
}

/// `mcp.pyro` of an OpenCode config.
fn opencode_entry(pyro: &Path, profile: Profile) -> serde_json::Value {
    let mut command = vec![pyro.display().to_string()];
    command.extend(serve_args(profile).map(String::from));
    serde_json::json!({ "type": "local", "command": command, "enabled": true })
}

const OPENCODE_SCHEMA: &str = "https://opencode.ai/config.json";

/// What `pyro mcp config HOST` prints: exactly what to run or paste.
pub fn snippet(host: Host, pyro: &Path, profile: Profile) -> String {
    match host {
        Host::Claude => {
            format!("{}\n", shell_join(&claude_argv(pyro, profile)))
        }
        Host::Codex => codex_document(pyro, profile).to_string(),
        Host::Opencode => {
            let quote = |s: &str| serde_json::Value::from(s).to_string();
            let mut command = vec![quote(&pyro.display().to_string())];
            command.extend(serve_args(profile).map(quote));
            format!(
                "{{\n  \"$schema\": {},\n  \"mcp\": {{\n    \"pyro\": {{\n      \"type\": \"local\",\n      \"command\": [{}],\n      \"enabled\": true\n    }}\n  }}\n}}\n",
                quote(OPENCODE_SCHEMA),
                command.join(", ")
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
/// if missing), replacing an older pyro entry and keeping everything else.
pub fn install_codex(path: &Path, pyro: &Path, profile: Profile, now: u64) -> Result<Installed> {
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
    servers.insert("pyro", toml_edit::Item::Table(codex_table(pyro, profile)));
    replace(path, old.is_some(), &doc.to_string(), now)
}

/// Merges `mcp.pyro` into the OpenCode config at `path` (created if
/// missing), replacing an older pyro entry and keeping every other key.
pub fn install_opencode(path: &Path, pyro: &Path, profile: Profile, now: u64) -> Result<Installed> {
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
    mcp.insert("pyro".into(), opencode_entry(pyro, profile));
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

/// Runs `claude mcp add pyro -- PYRO mcp serve --profile P` with the
/// `claude` found on `path_var`. `NotFound` if there is none.
pub fn install_claude(pyro: &Path, profile: Profile, path_var: &OsStr) -> Result<PathBuf> {
    let claude = find_program("claude", path_var).ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            "claude (Claude Code's CLI) was not found on PATH",
        )
    })?;
    let argv = claude_argv(pyro, profile);
    let status = std::process::Command::new(&claude)
        .args(&argv[1..])
        .status()
        .map_err(|e| Error::other(format!("cannot run {}: {e}", claude.display())))?;
    if !status.success() {
        return Err(Error::other(format!(
            "`{}` failed ({status}); if a server named pyro is configured already, remove it \
             with `claude mcp remove pyro` and run this again",
            argv.join(" ")
        )));
    }
    Ok(claude)
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

    #[test]
    fn claude_snippet() {
        assert_eq!(
            snippet(Host::Claude, Path::new(PYRO), Profile::WorkspaceCore),
            "claude mcp add pyro -- /opt/pyro/bin/pyro mcp serve --profile workspace-core\n"
        );
        assert_eq!(
            snippet(Host::Claude, Path::new("/home/a b/pyro"), Profile::VmRun),
            "claude mcp add pyro -- '/home/a b/pyro' mcp serve --profile vm-run\n"
        );
    }

    #[test]
    fn codex_snippet() {
        assert_eq!(
            snippet(Host::Codex, Path::new(PYRO), Profile::WorkspaceFull),
            "[mcp_servers.pyro]\n\
             command = \"/opt/pyro/bin/pyro\"\n\
             args = [\"mcp\", \"serve\", \"--profile\", \"workspace-full\"]\n"
        );
    }

    #[test]
    fn opencode_snippet() {
        let text = snippet(Host::Opencode, Path::new(PYRO), Profile::WorkspaceCore);
        assert_eq!(
            text,
            r#"{
  "$schema": "https://opencode.ai/config.json",
  "mcp": {
    "pyro": {
      "type": "local",
      "command": ["/opt/pyro/bin/pyro", "mcp", "serve", "--profile", "workspace-core"],
      "enabled": true
    }
  }
}
"#
        );
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            doc["mcp"]["pyro"],
            opencode_entry(Path::new(PYRO), Profile::WorkspaceCore)
        );
    }

    #[test]
    fn codex_install_keeps_other_tables_and_backs_up() {
        let home = tempfile::tempdir().unwrap();
        let path = codex_config_path(home.path(), None);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let old = "# my settings\nmodel = \"o4\"   # keep this comment\n\n\
                   [mcp_servers.other]\ncommand = \"other-server\"\nargs = []\n\n\
                   [mcp_servers.pyro]\ncommand = \"/old/pyro\"\n";
        std::fs::write(&path, old).unwrap();

        let done =
            install_codex(&path, Path::new(PYRO), Profile::WorkspaceCore, 1700000000).unwrap();
        assert_eq!(done.path, home.path().join(".codex/config.toml"));
        let backup = done.backup.unwrap();
        assert_eq!(
            backup,
            home.path().join(".codex/config.toml.bak-1700000000")
        );
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), old);

        let new = std::fs::read_to_string(&path).unwrap();
        assert!(
            new.starts_with("# my settings\nmodel = \"o4\"   # keep this comment\n"),
            "{new}"
        );
        assert!(
            new.contains("[mcp_servers.other]\ncommand = \"other-server\"\nargs = []\n"),
            "{new}"
        );
        let doc: toml_edit::DocumentMut = new.parse().unwrap();
        assert_eq!(doc["mcp_servers"]["pyro"]["command"].as_str(), Some(PYRO));
        assert_eq!(
            doc["mcp_servers"]["pyro"]["args"]
                .as_array()
                .unwrap()
                .to_string()
                .trim(),
            r#"["mcp", "serve", "--profile", "workspace-core"]"#
        );
        assert!(!new.contains("/old/pyro"), "{new}");

        // Again in the same second: a second backup, not an overwritten one.
        let again =
            install_codex(&path, Path::new(PYRO), Profile::WorkspaceCore, 1700000000).unwrap();
        assert_eq!(
            again.backup.unwrap(),
            home.path().join(".codex/config.toml.bak-1700000000-1")
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), new);
    }

    #[test]
    fn codex_install_creates_a_missing_file_and_refuses_a_broken_one() {
        let home = tempfile::tempdir().unwrap();
        let codex_home = home.path().join("codex-home");
        let path = codex_config_path(home.path(), Some(codex_home.as_os_str()));
        assert_eq!(path, codex_home.join("config.toml"));
        let done = install_codex(&path, Path::new(PYRO), Profile::VmRun, 1).unwrap();
        assert_eq!(done.backup, None);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            snippet(Host::Codex, Path::new(PYRO), Profile::VmRun)
        );

        std::fs::write(&path, "mcp_servers = 3\n").unwrap();
        let err = install_codex(&path, Path::new(PYRO), Profile::VmRun, 2).unwrap_err();
        assert!(err.to_string().contains("not a table"), "{err}");
        std::fs::write(&path, "[broken\n").unwrap();
        let err = install_codex(&path, Path::new(PYRO), Profile::VmRun, 3).unwrap_err();
        assert!(err.to_string().contains("not valid TOML"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[broken\n");
    }

    #[test]
    fn opencode_install_keeps_other_keys_and_backs_up() {
        let home = tempfile::tempdir().unwrap();
        let path = opencode_config_path(home.path(), None);
        assert_eq!(path, home.path().join(".config/opencode/opencode.json"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let old = r#"{"theme": "dark", "mcp": {"other": {"type": "remote", "url": "https://x"}}}"#;
        std::fs::write(&path, old).unwrap();

        let done = install_opencode(&path, Path::new(PYRO), Profile::WorkspaceFull, 42).unwrap();
        let backup = done.backup.unwrap();
        assert_eq!(backup, path.with_file_name("opencode.json.bak-42"));
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), old);
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(doc["theme"], "dark");
        assert_eq!(doc["mcp"]["other"]["url"], "https://x");
        assert_eq!(doc["$schema"], OPENCODE_SCHEMA);
        assert_eq!(
            doc["mcp"]["pyro"],
            serde_json::json!({
                "type": "local",
                "command": [PYRO, "mcp", "serve", "--profile", "workspace-full"],
                "enabled": true
            })
        );

        std::fs::write(&path, "// comment\n{}").unwrap();
        let err = install_opencode(&path, Path::new(PYRO), Profile::VmRun, 43).unwrap_err();
        assert!(err.to_string().contains("not plain JSON"), "{err}");
    }

    #[test]
    fn claude_install_runs_claude_from_path_or_says_it_is_missing() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let err = install_claude(
            Path::new(PYRO),
            Profile::WorkspaceCore,
            dir.path().as_os_str(),
        )
        .unwrap_err();
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
        let found = install_claude(
            Path::new(PYRO),
            Profile::WorkspaceCore,
            dir.path().as_os_str(),
        )
        .unwrap();
        assert_eq!(found, claude);
        assert_eq!(
            std::fs::read_to_string(&args).unwrap(),
            "mcp\nadd\npyro\n--\n/opt/pyro/bin/pyro\nmcp\nserve\n--profile\nworkspace-core\n"
        );
    }
}
