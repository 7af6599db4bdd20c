//! `pyro mcp config` through the real binary, with the user's home in a
//! scratch directory and no guest: an install into a Codex config that
//! already has another server keeps it (and the comments) and sets the
//! timeouts on `[mcp_servers.pyro]`; OpenCode's install does the same in
//! spirit; `--tool-timeout-seconds` reaches every host's snippet and is
//! refused outside 1..=86400; every run suggests `env pull`.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `pyro mcp config ARGS` with HOME (and every config and data
/// directory pyro or a host reads) inside `home`, and `PATH` as given.
fn mcp_config(home: &Path, path: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pyro"))
        .args(["mcp", "config"])
        .args(args)
        .env("HOME", home)
        .env("CODEX_HOME", home.join("codex"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("PATH", path)
        .env_remove("PYRO_HOME")
        .output()
        .expect("run pyro")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The pyro binary's absolute path, as the snippets name it.
fn pyro_path() -> String {
    Path::new(env!("CARGO_BIN_EXE_pyro"))
        .canonicalize()
        .unwrap()
        .display()
        .to_string()
}

const CODEX_CONFIG: &str = "\
# my Codex settings
model = \"o4\"  # keep this comment

[mcp_servers.other]
command = \"other-server\"
args = [\"--port\", \"4000\"]
tool_timeout_sec = 30  # theirs
";

#[test]
fn codex_install_keeps_another_server_and_sets_the_timeouts() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("codex/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, CODEX_CONFIG).unwrap();

    let out = mcp_config(
        home.path(),
        "/usr/bin:/bin",
        &["codex", "--install", "--tool-timeout-seconds", "900"],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("a tool call may run 900 s"), "{stdout}");
    assert!(
        stderr.contains("[mcp-config] host=codex profile=workspace-core tool_timeout_seconds=900"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: before first use"), "{stderr}");
    assert!(
        stderr.contains(&format!("{} env pull debian:12 ", pyro_path())),
        "{stderr}"
    );

    let new = std::fs::read_to_string(&config).unwrap();
    // The user's lines stay as they were, comments and all.
    assert!(new.starts_with(CODEX_CONFIG), "{new}");
    assert!(
        new.ends_with(&format!(
            "\n[mcp_servers.pyro]\n\
             command = \"{}\"\n\
             args = [\"mcp\", \"serve\", \"--profile\", \"workspace-core\"]\n\
             startup_timeout_sec = 60\n\
             tool_timeout_sec = 900\n",
            pyro_path()
        )),
        "{new}"
    );
    let backups: Vec<_> = std::fs::read_dir(config.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("config.toml.bak-"))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");

    // Reinstalling with the default updates pyro's values only.
    let out = mcp_config(home.path(), "/usr/bin:/bin", &["codex", "--install"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let again = std::fs::read_to_string(&config).unwrap();
    assert!(again.starts_with(CODEX_CONFIG), "{again}");
    assert!(again.ends_with("tool_timeout_sec = 1800\n"), "{again}");
    assert_eq!(again.matches("[mcp_servers.pyro]").count(), 1, "{again}");
}

#[test]
fn opencode_install_keeps_another_server_and_sets_the_timeout() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config/opencode/opencode.json");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(
        &config,
        r#"{"theme": "dark", "mcp": {"other": {"type": "local", "command": ["x"], "timeout": 5000}}}"#,
    )
    .unwrap();

    let out = mcp_config(
        home.path(),
        "/usr/bin:/bin",
        &[
            "opencode",
            "--install",
            "--profile",
            "vm-run",
            "--tool-timeout-seconds",
            "900",
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(r#""mcp_timeout": 900000"#), "{stderr}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(doc["theme"], "dark");
    assert_eq!(
        doc["mcp"]["other"],
        serde_json::json!({"type": "local", "command": ["x"], "timeout": 5000})
    );
    assert_eq!(
        doc["mcp"]["pyro"],
        serde_json::json!({
            "type": "local",
            "command": [pyro_path(), "mcp", "serve", "--profile", "vm-run"],
            "enabled": true,
            "timeout": 900_000
        })
    );
}

#[test]
fn claude_install_runs_add_json_with_the_timeout() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    let bin = home.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let args = home.path().join("claude-args");
    let claude = bin.join("claude");
    std::fs::write(
        &claude,
        format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\n", args.display()),
    )
    .unwrap();
    std::fs::set_permissions(&claude, std::fs::Permissions::from_mode(0o755)).unwrap();

    let path = format!("{}:/usr/bin:/bin", bin.display());
    let out = mcp_config(
        home.path(),
        &path,
        &["claude", "--install", "--tool-timeout-seconds", "900"],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("MCP_TOOL_TIMEOUT=900000 claude"),
        "{stderr}"
    );
    let argv = std::fs::read_to_string(&args).unwrap();
    let argv: Vec<&str> = argv.lines().collect();
    assert_eq!(argv[..3], ["mcp", "add-json", "pyro"]);
    let entry: serde_json::Value = serde_json::from_str(argv[3]).unwrap();
    assert_eq!(entry["timeout"], 900_000);
    assert_eq!(entry["command"], pyro_path());

    // Without claude on PATH: the command to run, and exit 1.
    let out = mcp_config(home.path(), "/nonexistent", &["claude", "--install"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).starts_with("claude mcp add-json pyro '{"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn the_tool_timeout_reaches_every_snippet_and_is_bounded() {
    let home = tempfile::tempdir().unwrap();
    let print = |host: &str, seconds: &str| {
        let out = mcp_config(
            home.path(),
            "/usr/bin:/bin",
            &[host, "--tool-timeout-seconds", seconds],
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains("env pull debian:12"));
        text(&out.stdout)
    };
    assert!(print("claude", "86400").contains(r#""timeout":86400000}'"#));
    assert!(print("codex", "1").contains("\ntool_timeout_sec = 1\n"));
    assert!(print("opencode", "600").contains("\"timeout\": 600000\n"));

    // Nothing is written, and the default is the half hour.
    let out = mcp_config(home.path(), "/usr/bin:/bin", &["codex"]);
    assert!(text(&out.stdout).ends_with("startup_timeout_sec = 60\ntool_timeout_sec = 1800\n"));
    assert!(!home.path().join("codex").exists());

    for bad in ["0", "86401", "ten"] {
        let out = mcp_config(
            home.path(),
            "/usr/bin:/bin",
            &["codex", "--tool-timeout-seconds", bad],
        );
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            text(&out.stderr).contains("--tool-timeout-seconds"),
            "{bad}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{bad}");
    }
}
