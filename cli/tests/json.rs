//! `--json` as scripts use it, through the real binary and no guest: one
//! global flag, before or after the subcommand; in `--json` mode every
//! error is the `{"ok":false,"error":{..}}` document, usage errors clap
//! finds included, with the usual exit codes.

mod common;

use common::pyro;
use serde_json::Value;
use std::process::Output;

fn document(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not one JSON document ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn json_goes_before_or_after_the_subcommand() {
    let data = tempfile::tempdir().unwrap();
    let mut docs = Vec::new();
    for args in [
        &["--json", "workspace", "list"][..],
        &["workspace", "--json", "list"],
        &["workspace", "list", "--json"],
    ] {
        let out = pyro(&data, args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        docs.push(document(&out));
    }
    assert!(docs.iter().all(|d| *d == Value::Array(vec![])), "{docs:?}");
    let before = document(&pyro(&data, &["--json", "env", "list"]));
    let after = document(&pyro(&data, &["env", "list", "--json"]));
    assert_eq!(before, after);
    assert!(before.as_array().is_some_and(|a| a.len() == 3), "{before}");
}

#[test]
fn usage_errors_in_json_mode_are_the_json_error_with_exit_2() {
    let data = tempfile::tempdir().unwrap();
    for args in [
        &["--json", "workspace", "create", "--vcpus", "99"][..],
        &["workspace", "create", "--vcpus", "99", "--json"],
        &["--json", "run", "--mem-mib", "1", "--", "true"],
        &["--json", "workspace", "create", "--id-only"],
        &["--json", "workspace", "no-such-verb"],
        &["--json", "run"],
    ] {
        let out = pyro(&data, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let doc = document(&out);
        assert_eq!(doc["ok"], false, "{args:?}: {doc}");
        assert_eq!(doc["error"]["kind"], "invalid_argument", "{args:?}: {doc}");
        let message = doc["error"]["message"].as_str().unwrap();
        assert!(
            !message.is_empty() && !message.starts_with("error:"),
            "{message}"
        );
    }
    let out = pyro(&data, &["--json", "workspace", "create", "--vcpus", "99"]);
    assert_eq!(
        document(&out)["error"]["message"],
        "invalid value '99' for '--vcpus <VCPUS>': 99 is out of range; it must be 1 to 32"
    );
    // Without --json, clap's own report, exit 2.
    let out = pyro(&data, &["workspace", "create", "--vcpus", "99"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("99 is out of range; it must be 1 to 32"));
}

#[test]
fn runtime_errors_in_json_mode_exit_1() {
    let data = tempfile::tempdir().unwrap();
    for args in [
        &["--json", "workspace", "status", "nope123"][..],
        &["workspace", "status", "nope123", "--json"],
    ] {
        let out = pyro(&data, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let doc = document(&out);
        assert_eq!(doc["ok"], false);
        assert_eq!(doc["error"]["kind"], "not_found", "{doc}");
    }
}
