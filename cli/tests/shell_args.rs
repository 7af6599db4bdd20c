//! The shell flags as a user types them, through the real binary and no
//! guest: out-of-range sizes, reads and waits and unknown signals are
//! usage errors (exit 2) that name the flag and its range; a shell of an
//! unknown workspace is `not_found`; the help lists the verbs.

mod common;

use common::pyro;

#[test]
fn bad_shell_flags_are_usage_errors_that_name_the_rule() {
    let data = tempfile::tempdir().unwrap();
    for (args, says) in [
        (
            &["workspace", "shell", "open", "w", "--cols", "0"][..],
            "1 to 1000",
        ),
        (
            &["workspace", "shell", "open", "w", "--rows", "1001"],
            "1 to 1000",
        ),
        (
            &["workspace", "shell", "read", "w", "s", "--max-chars", "0"],
            "1 to 1048576",
        ),
        (
            &[
                "workspace",
                "shell",
                "read",
                "w",
                "s",
                "--wait-for-idle-ms",
                "20000",
            ],
            "1 to 10000",
        ),
        (
            &["workspace", "shell", "signal", "w", "s", "--signal", "STOP"],
            "HUP, INT, TERM or KILL",
        ),
        (&["workspace", "shell", "write", "w", "s"], "--input"),
    ] {
        let out = pyro(&data, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn a_shell_of_an_unknown_workspace_is_not_found() {
    let data = tempfile::tempdir().unwrap();
    let out = pyro(
        &data,
        &["--json", "workspace", "shell", "read", "nope", "sh-1"],
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(doc["error"]["kind"], "not_found", "{doc}");
    // Lowercase and SIG-prefixed signal names parse; the workspace is
    // what is missing.
    let out = pyro(
        &data,
        &[
            "workspace",
            "shell",
            "signal",
            "nope",
            "sh-1",
            "--signal",
            "sigterm",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no workspace \"nope\""));
}

#[test]
fn the_help_lists_the_shell_verbs() {
    let data = tempfile::tempdir().unwrap();
    let out = pyro(&data, &["workspace", "shell", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for verb in ["open", "read", "write", "resize", "signal", "close", "list"] {
        assert!(help.contains(verb), "{verb}: {help}");
    }
    let out = pyro(&data, &["workspace", "shell", "read", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--plain") && help.contains("--wait-for-idle-ms"),
        "{help}"
    );
}
