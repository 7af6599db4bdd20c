//! The network flags as a user types them, through the real binary and
//! no guest: bad values are usage errors (exit 2) with the SDK parsers'
//! messages, before anything is made; `--publish` without
//! `--network-policy` implies a policy that publishes ports; `update`'s
//! clear flags conflict with the flags they clear; the port commands
//! parse their mappings the same way; the help says all this.

mod common;

use common::pyro;
use serde_json::Value;

/// `pyro --json ARGS`: the exit code and the error message.
fn json_error(data: &tempfile::TempDir, args: &[&str]) -> (Option<i32>, String, String) {
    let out = pyro(data, &[&["--json"], args].concat());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not one JSON document ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(doc["ok"], false, "{args:?}: {doc}");
    (
        out.status.code(),
        doc["error"]["kind"].as_str().unwrap().to_string(),
        doc["error"]["message"].as_str().unwrap().to_string(),
    )
}

/// The workspaces under `data` (none may be left by a refused create).
fn workspaces(data: &tempfile::TempDir) -> Value {
    serde_json::from_slice(&pyro(data, &["--json", "workspace", "list"]).stdout).unwrap()
}

#[test]
fn bad_network_values_are_usage_errors_with_the_parsers_messages() {
    let data = tempfile::tempdir().unwrap();
    for (args, says) in [
        (
            &["workspace", "create", "--allow-host", "exa mple.com"][..],
            "invalid --allow-host \"exa mple.com\"",
        ),
        (
            &["run", "--allow-host", "*.*", "--", "true"],
            "invalid --allow-host \"*.*\"",
        ),
        (
            &["workspace", "create", "--add-host", "db"],
            "invalid --add-host \"db\"",
        ),
        (
            &["workspace", "create", "--network-policy", "everything"],
            "unknown network policy \"everything\"",
        ),
        (
            &["workspace", "create", "--publish", "0.0.0.0:80:80"],
            "published ports listen on 127.0.0.1 only (not 0.0.0.0)",
        ),
        (
            &["workspace", "create", "--publish", "70000"],
            "invalid published port \"70000\"",
        ),
        (
            &["workspace", "port", "publish", "w", "0.0.0.0:80:80"],
            "published ports listen on 127.0.0.1 only (not 0.0.0.0)",
        ),
        (&["workspace", "port", "unpublish", "w", "0"], "'0'"),
        (
            &["workspace", "update", "w", "--allow-host", "a b"],
            "invalid --allow-host \"a b\"",
        ),
    ] {
        let (code, kind, message) = json_error(&data, args);
        assert_eq!(code, Some(2), "{args:?}: {message}");
        assert_eq!(kind, "invalid_argument", "{args:?}");
        assert!(message.contains(says), "{args:?}: {message}");
    }
    // Without --json: clap's report on stderr, exit 2.
    let out = pyro(
        &data,
        &["workspace", "create", "--publish", "0.0.0.0:80:80"],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("127.0.0.1 only"), "{stderr}");
    assert_eq!(workspaces(&data), Value::Array(vec![]));
}

/// The SDK refuses ports under a policy that publishes none; `--publish`
/// alone gets `egress+published-ports`, so a create with it gets past
/// the ports (here to the missing seed, which fails before anything is
/// made).
#[test]
fn publish_implies_a_policy_that_publishes_ports() {
    let data = tempfile::tempdir().unwrap();
    let missing = data.path().join("missing");
    let missing = missing.to_str().unwrap();
    for extra in [&[][..], &["--allow-host", "pypi.org"]] {
        let args = [
            &[
                "workspace",
                "create",
                "--publish",
                "8080:8000",
                "--seed-path",
                missing,
            ][..],
            extra,
        ]
        .concat();
        let (code, kind, message) = json_error(&data, &args);
        assert_eq!((code, kind.as_str()), (Some(2), "invalid_argument"));
        assert!(message.starts_with("seed_path"), "{args:?}: {message}");
    }
    for policy in ["egress", "off"] {
        let args = [
            "workspace",
            "create",
            "--publish",
            "8000",
            "--network-policy",
            policy,
            "--seed-path",
            missing,
        ];
        let (code, _, message) = json_error(&data, &args);
        assert_eq!(code, Some(2));
        assert!(
            message.contains("needs a policy that publishes them"),
            "{policy}: {message}"
        );
    }
    assert_eq!(workspaces(&data), Value::Array(vec![]));
}

#[test]
fn update_clear_flags_conflict_with_the_flags_they_clear() {
    let data = tempfile::tempdir().unwrap();
    for args in [
        &[
            "workspace",
            "update",
            "w",
            "--allow-host",
            "pypi.org",
            "--clear-allow-hosts",
        ][..],
        &[
            "workspace",
            "update",
            "w",
            "--clear-add-hosts",
            "--add-host",
            "db:10.0.0.5",
        ],
    ] {
        let (code, kind, message) = json_error(&data, args);
        assert_eq!((code, kind.as_str()), (Some(2), "invalid_argument"));
        assert!(
            message.contains("cannot be used with"),
            "{args:?}: {message}"
        );
    }
    // Valid network flags get to the SDK: the workspace is unknown.
    let (code, kind, _) = json_error(
        &data,
        &[
            "workspace",
            "update",
            "nope",
            "--network-policy",
            "egress+published-ports",
            "--allow-host",
            "*.example.com:443",
            "--clear-add-hosts",
        ],
    );
    assert_eq!((code, kind.as_str()), (Some(1), "not_found"));
    for args in [
        &["workspace", "port", "list", "nope"][..],
        &["workspace", "port", "publish", "nope", "127.0.0.1:8080:80"],
        &["workspace", "port", "unpublish", "nope", "80"],
    ] {
        let (code, kind, _) = json_error(&data, args);
        assert_eq!((code, kind.as_str()), (Some(1), "not_found"), "{args:?}");
    }
}

#[test]
fn the_help_explains_the_network_flags() {
    let data = tempfile::tempdir().unwrap();
    let help = |args: &[&str]| {
        let out = pyro(&data, args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let create = help(&["workspace", "create", "--help"]);
    for says in [
        "--network-policy <POLICY>",
        "--allow-host <PATTERN>",
        "--add-host <NAME:IP>",
        "--publish <[HOST:]GUEST>",
        "implies egress+published-ports",
        "127.0.0.1",
    ] {
        assert!(
            create.contains(says),
            "create --help lacks {says:?}:\n{create}"
        );
    }
    let update = help(&["workspace", "update", "--help"]);
    for says in [
        "--network-policy <POLICY>",
        "--allow-host <PATTERN>",
        "--clear-allow-hosts",
        "--add-host <NAME:IP>",
        "--clear-add-hosts",
        "replaces",
    ] {
        assert!(
            update.contains(says),
            "update --help lacks {says:?}:\n{update}"
        );
    }
    let port = help(&["workspace", "port", "--help"]);
    for says in ["publish", "list", "unpublish"] {
        assert!(port.contains(says), "{port}");
    }
    let run = help(&["run", "--help"]);
    assert!(run.contains("--allow-host <PATTERN>"), "{run}");
    assert!(!run.contains("--publish <"), "run publishes nothing: {run}");
}
