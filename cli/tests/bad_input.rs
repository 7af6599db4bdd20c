//! Bad input through the real `pyro` binary, as a table: each case is
//! refused with exit code 2 (a usage error), the error kind `--json`
//! reports, and a message that names the field and the rule; and after
//! the table, nothing changed. Cases that need no guest (the parser's,
//! an unknown environment, checks made before any guest is asked) run
//! without one; the others share one workspace (one warm start). Last, a
//! reader that stops early (`pyro ... | head -1`) ends pyro quietly.

mod common;

use serde_json::Value;
use std::path::Path;
use std::process::Output;

/// One refusal: the arguments (`--json` is added before any `--`), the
/// kind, and words the message must hold (the field, the rule).
struct Case {
    args: Vec<String>,
    kind: &'static str,
    says: &'static [&'static str],
}

fn case(args: &[&str], kind: &'static str, says: &'static [&'static str]) -> Case {
    Case {
        args: args.iter().map(|a| a.to_string()).collect(),
        kind,
        says,
    }
}

/// Runs every case; returns how many ran. Fails with every case that
/// did not hold, each named.
fn check(data: &tempfile::TempDir, cases: &[Case]) -> usize {
    let failed: Vec<String> = cases
        .iter()
        .filter_map(|c| refused(data, c).err())
        .collect();
    assert!(
        failed.is_empty(),
        "{} cases failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    cases.len()
}

/// Whether `c` is refused as it should be; `Err` says how it was not.
fn refused(data: &tempfile::TempDir, c: &Case) -> Result<(), String> {
    let mut args: Vec<&str> = c.args.iter().map(String::as_str).collect();
    let at = args.iter().position(|a| *a == "--").unwrap_or(args.len());
    args.insert(at, "--json");
    let out = common::pyro(data, &args);
    let stderr = text(&out.stderr);
    let fail = |why: String| Err(format!("{args:?}: {why}"));
    if stderr.contains("panicked") {
        return fail(format!("panicked: {stderr}"));
    }
    if out.status.code() != Some(2) {
        return fail(format!("exit {:?}: {stderr}", out.status.code()));
    }
    let Ok(doc) = serde_json::from_slice::<Value>(&out.stdout) else {
        return fail(format!("no JSON error: {stderr}"));
    };
    if doc["ok"] != false || doc["error"]["kind"] != c.kind {
        return fail(format!("not a {} error: {doc}", c.kind));
    }
    let message = doc["error"]["message"].as_str().unwrap_or_default();
    if let Some(word) = c.says.iter().find(|w| !message.contains(*w)) {
        return fail(format!("{message:?} lacks {word:?}"));
    }
    if message.chars().any(char::is_control) {
        return fail(format!("raw control characters in {message:?}"));
    }
    Ok(())
}

fn json(data: &tempfile::TempDir, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = common::pyro(data, &all);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Cases refused before any guest is asked: the parser's, the SDK's
/// checks made before a workspace is looked up, unknown environments.
fn without_a_guest(files: &Path) -> Vec<Case> {
    let plain = files.join("notes.txt");
    std::fs::write(&plain, "hello\n").unwrap();
    let big = files.join("big.txt");
    std::fs::write(&big, vec![b'a'; (1 << 20) + 1]).unwrap();
    let taken = files.join("taken");
    std::fs::write(&taken, "").unwrap();
    let missing_dir = files.join("no-such-dir").join("out");
    let (plain, big, taken, missing_dir) =
        (path(&plain), path(&big), path(&taken), path(&missing_dir));
    vec![
        // Negative numbers: named, with the rule (not clap's "tip").
        case(
            &[
                "workspace",
                "exec",
                "w",
                "--timeout-seconds",
                "-5",
                "--",
                "true",
            ],
            "invalid_argument",
            &[
                "--timeout-seconds",
                "-5 is negative",
                "must be positive, 1 to",
            ],
        ),
        case(
            &["workspace", "create", "--ttl-seconds", "-1"],
            "invalid_argument",
            &["--ttl-seconds", "must be positive, at least 1"],
        ),
        case(
            &["workspace", "create", "--mem-mib", "-128"],
            "invalid_argument",
            &["--mem-mib", "-128 is negative"],
        ),
        case(
            &["workspace", "create", "--system-disk-mib", "-1"],
            "invalid_argument",
            &["--system-disk-mib", "must be positive"],
        ),
        case(
            &[
                "workspace",
                "file",
                "read",
                "w",
                "a.txt",
                "--max-bytes",
                "-1",
            ],
            "invalid_argument",
            &["--max-bytes", "must be positive, 1 to 1048576"],
        ),
        case(
            &["workspace", "shell", "read", "w", "sh-1", "--cursor", "-1"],
            "invalid_argument",
            &["--cursor", "must be zero or positive"],
        ),
        case(
            &["workspace", "shell", "open", "w", "--cols", "-80"],
            "invalid_argument",
            &["--cols", "-80 is negative"],
        ),
        case(
            &[
                "workspace",
                "service",
                "stop",
                "w",
                "web",
                "--grace-seconds",
                "-2",
            ],
            "invalid_argument",
            &["--grace-seconds", "must be zero or positive, 0 to"],
        ),
        case(
            &[
                "workspace",
                "service",
                "logs",
                "w",
                "web",
                "--tail-lines",
                "-3",
            ],
            "invalid_argument",
            &["--tail-lines", "must be positive"],
        ),
        case(
            &["workspace", "port", "unpublish", "w", "-80"],
            "invalid_argument",
            &["<GUEST_PORT>", "-80 is negative", "1 to 65535"],
        ),
        // Other numbers out of their range, or not numbers.
        case(
            &["run", "--timeout-seconds", "0", "--", "true"],
            "invalid_argument",
            &["--timeout-seconds", "0 is out of range", "1 to"],
        ),
        case(
            &["workspace", "create", "--vcpus", "0"],
            "invalid_argument",
            &["--vcpus", "1 to 32"],
        ),
        case(
            &["workspace", "create", "--vcpus", "two"],
            "invalid_argument",
            &["--vcpus", "\"two\" is not a whole number"],
        ),
        case(
            &["workspace", "create", "--disk-mib", "1"],
            "invalid_argument",
            &["--disk-mib", "it must be 64 to"],
        ),
        case(
            &[
                "workspace",
                "file",
                "read",
                "w",
                "a.txt",
                "--max-bytes",
                "0",
            ],
            "invalid_argument",
            &["--max-bytes", "1 to 1048576"],
        ),
        // The parser's other refusals, as JSON too.
        case(
            &["workspace", "frobnicate"],
            "invalid_argument",
            &["unrecognized subcommand 'frobnicate'"],
        ),
        case(
            &["workspace", "create", "--no-such-flag"],
            "invalid_argument",
            &["unexpected argument '--no-such-flag'"],
        ),
        case(
            &["workspace", "file", "read"],
            "invalid_argument",
            &["required arguments", "<ID>", "<PATH>"],
        ),
        case(
            &["workspace"],
            "invalid_argument",
            &["'pyro workspace' requires a subcommand", "create, list"],
        ),
        case(
            &["run"],
            "invalid_argument",
            &["required arguments", "<CMD>"],
        ),
        case(
            &["workspace", "create", "--id-only"],
            "invalid_argument",
            &["'--id-only' cannot be used with '--json'"],
        ),
        case(
            &["mcp", "config", "emacs"],
            "invalid_argument",
            &["invalid value 'emacs'"],
        ),
        // The SDK's checks, before any VM.
        case(
            &["workspace", "create", "--name", "bad name"],
            "invalid_argument",
            &["name \"bad name\" is not allowed", "1-64 characters"],
        ),
        case(
            &["workspace", "create", "--seed-path", "/no/such/seed"],
            "invalid_argument",
            &[
                "seed_path /no/such/seed",
                "no such file or directory",
                "a seed is",
            ],
        ),
        case(
            &["workspace", "create", "--seed-path", plain],
            "invalid_argument",
            &[
                "seed_path",
                "not a tar archive",
                "a seed is a host directory, or a tar archive",
            ],
        ),
        case(
            &["workspace", "create", "--seed-path", "/dev/null"],
            "invalid_argument",
            &["seed_path /dev/null", "not a directory or a regular file"],
        ),
        case(
            &["workspace", "create", "nosuch:1"],
            "unknown_environment",
            &["nosuch:1", "valid names are"],
        ),
        case(
            &["run", "nosuch:1", "--", "true"],
            "unknown_environment",
            &["nosuch:1", "valid names are"],
        ),
        case(
            &["env", "inspect", "nosuch:1"],
            "unknown_environment",
            &["nosuch:1", "valid names are"],
        ),
        case(
            &["workspace", "exec", "w", "--", ""],
            "invalid_argument",
            &["command", "the program name is empty"],
        ),
        case(
            &["workspace", "export", "w", "src", "--output", missing_dir],
            "invalid_argument",
            &[
                "output",
                "no-such-dir does not exist",
                "an existing directory",
            ],
        ),
        case(
            &["workspace", "export", "w", "src", "--output", taken],
            "invalid_argument",
            &["output", "exists already", "a new path"],
        ),
        case(
            &["workspace", "disk", "export", "w", "--output", missing_dir],
            "invalid_argument",
            &["output", "does not exist"],
        ),
        case(
            &[
                "workspace",
                "file",
                "write",
                "w",
                "a.txt",
                "--text-file",
                big,
            ],
            "invalid_argument",
            &["content is 1048577 bytes", "at most 1048576"],
        ),
        case(
            &["workspace", "file", "write", "w", "../a.txt", "--text", "x"],
            "invalid_path",
            &["../a.txt"],
        ),
    ]
}

#[test]
fn bad_input_is_refused_by_name_and_rule_and_changes_nothing() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let mut ran = check(&data, &without_a_guest(files.path()));
    assert_eq!(json(&data, &["workspace", "list"]), Value::Array(vec![]));
    assert!(!files.path().join("no-such-dir").exists());
    assert_eq!(std::fs::read(files.path().join("taken")).unwrap(), b"");

    if !pyro_workspace::testing::guests_available() {
        return;
    }
    let seed = files.path().join("seed");
    std::fs::create_dir_all(seed.join("src")).unwrap();
    std::fs::write(seed.join("src/keep.txt"), "kept\n").unwrap();
    let created = json(&data, &["workspace", "create", "--seed-path", path(&seed)]);
    let id = created["workspace_id"].as_str().unwrap().to_string();
    let _gone = Deleted(&data, &id);
    let before = json(&data, &["workspace", "list"]);

    // Archives and patches with hostile or broken bytes.
    let not_tar = files.path().join("junk.tar");
    std::fs::write(&not_tar, b"\x1b[31mred\nnot a header ".repeat(40)).unwrap();
    let big_patch = files.path().join("big.patch");
    std::fs::write(&big_patch, vec![b'+'; (1 << 20) + 1]).unwrap();
    let not_utf8 = files.path().join("latin1.patch");
    std::fs::write(&not_utf8, b"--- a/x\n+++ b/x\n\xe9\n").unwrap();
    let out = files.path().join("out");
    let gone = files.path().join("no-such-dir").join("out");
    let escape = "--- a/../x\n+++ b/../x\n@@ -0,0 +1 @@\n+x\n";
    let id = id.as_str();
    let w = |args: &[&str]| -> Vec<String> {
        args.iter()
            .map(|a| {
                if *a == "ID" {
                    id.to_string()
                } else {
                    a.to_string()
                }
            })
            .collect()
    };
    let with = |args: &[&str], kind: &'static str, says: &'static [&'static str]| Case {
        args: w(args),
        kind,
        says,
    };
    let cases = vec![
        with(
            &["workspace", "file", "read", "ID", "../etc/passwd"],
            "invalid_path",
            &["path \"../etc/passwd\"", "'..' (not allowed"],
        ),
        with(
            &["workspace", "file", "read", "ID", "/etc/passwd"],
            "invalid_path",
            &["/etc/passwd", "/workspace"],
        ),
        with(
            &[
                "workspace",
                "file",
                "write",
                "ID",
                ".pyro-staging/x",
                "--text",
                "x",
            ],
            "invalid_path",
            &[".pyro-staging/x", "staging directory"],
        ),
        with(
            &["workspace", "file", "list", "ID", "/etc"],
            "invalid_path",
            &["/etc"],
        ),
        with(
            &["workspace", "file", "write", "ID", "/etc/x", "--text", "x"],
            "invalid_path",
            &["/etc/x"],
        ),
        with(
            &[
                "workspace",
                "export",
                "ID",
                "../etc",
                "--output",
                path(&out),
            ],
            "invalid_path",
            &["../etc"],
        ),
        with(
            &[
                "workspace",
                "patch",
                "apply",
                "ID",
                "--patch",
                "this is not a patch\n",
            ],
            "invalid_patch",
            &["malformed patch"],
        ),
        with(
            &["workspace", "patch", "apply", "ID", "--patch", escape],
            "invalid_path",
            &["../x"],
        ),
        with(
            &[
                "workspace",
                "patch",
                "apply",
                "ID",
                "--patch-file",
                path(&big_patch),
            ],
            "too_large",
            &["patch: 1048577 bytes", "at most 1048576 bytes"],
        ),
        with(
            &[
                "workspace",
                "patch",
                "apply",
                "ID",
                "--patch-file",
                path(&not_utf8),
            ],
            "invalid_argument",
            &["the patch is not UTF-8 text"],
        ),
        with(
            &[
                "workspace",
                "sync",
                "push",
                "ID",
                path(&not_tar),
                "--dest",
                "src",
            ],
            "invalid_archive",
            &["not a valid tar stream"],
        ),
        with(
            &[
                "workspace",
                "sync",
                "push",
                "ID",
                "/no/such/tree",
                "--dest",
                "src",
            ],
            "invalid_argument",
            &["source /no/such/tree", "no such file or directory"],
        ),
        with(
            &["workspace", "exec", "ID", "--", ""],
            "invalid_argument",
            &["command", "the program name is empty"],
        ),
        with(
            &[
                "workspace",
                "exec",
                "ID",
                "--timeout-seconds",
                "-5",
                "--",
                "true",
            ],
            "invalid_argument",
            &["--timeout-seconds", "must be positive"],
        ),
        with(
            &["workspace", "export", "ID", "src", "--output", path(&gone)],
            "invalid_argument",
            &["does not exist"],
        ),
        with(
            &["workspace", "snapshot", "create", "ID", "baseline"],
            "invalid_argument",
            &["baseline"],
        ),
    ];
    ran += check(&data, &cases);
    assert!(ran >= 40, "{ran} cases");

    // Nothing changed: the same list, no command recorded, no file
    // changed since create, no output written.
    let mut after = json(&data, &["workspace", "list"]);
    let mut before = before;
    for doc in [&mut before, &mut after] {
        for w in doc.as_array_mut().unwrap() {
            let w = w.as_object_mut().unwrap();
            w.remove("last_activity_at");
            w.remove("last_activity_unix");
        }
    }
    assert_eq!(after, before);
    assert_eq!(
        json(&data, &["workspace", "logs", id]),
        Value::Array(vec![])
    );
    assert_eq!(json(&data, &["workspace", "diff", id])["changed"], false);
    assert!(!out.exists() && !gone.exists());

    a_closed_stdout_ends_pyro_quietly(&data, id);
}

/// Deletes the workspace when the test ends, passed or not (its VM is a
/// process of its own and would outlive the test).
struct Deleted<'a>(&'a tempfile::TempDir, &'a str);

impl Drop for Deleted<'_> {
    fn drop(&mut self) {
        let _ = common::pyro(self.0, &["workspace", "delete", self.1]);
    }
}

/// `pyro ... | head -1`: pyro's exit code and stderr, through `sh -c`.
fn into_head(data: &tempfile::TempDir, args: &str, head: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = (dir.path().join("code"), dir.path().join("err"));
    let script = format!(
        "{{ \"$PYRO\" {args} 2>'{}'; echo $? >'{}'; }} | {head} >/dev/null",
        err.display(),
        code.display()
    );
    let out: Output = std::process::Command::new("sh")
        .args(["-c", &script])
        .env("PYRO", env!("CARGO_BIN_EXE_pyro"))
        .env("XDG_DATA_HOME", data.path())
        .env_remove("PYRO_HOME")
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}: {}", text(&out.stderr));
    let code = std::fs::read_to_string(code)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (code, std::fs::read_to_string(err).unwrap())
}

/// A reader that takes the first line and goes: no panic, no error, exit
/// 0. The outputs are made larger than a pipe holds (64 KiB), so pyro
/// is still writing when the reader leaves.
fn a_closed_stdout_ends_pyro_quietly(data: &tempfile::TempDir, id: &str) {
    // 229 kB of output, kept in the history (`logs` prints it).
    let make = common::pyro(
        data,
        &[
            "workspace",
            "exec",
            id,
            "--",
            "sh",
            "-c",
            "seq 1 40000 > lines.txt; cat lines.txt",
        ],
    );
    assert!(make.status.success(), "{}", text(&make.stderr));
    for (args, head) in [
        (format!("workspace logs {id}"), "head -1"),
        (format!("workspace logs {id} --json"), "head -c 200"),
        (format!("workspace diff {id} --json"), "head -c 200"),
        (format!("workspace diff {id}"), "head -1"),
        (
            format!("workspace file read {id} lines.txt --content-only --max-bytes 1048576"),
            "head -1",
        ),
    ] {
        let (code, stderr) = into_head(data, &args, head);
        assert_eq!((code, stderr.as_str()), (0, ""), "pyro {args} | {head}");
    }
    // A guest command's output streams; the command still ends normally
    // and its exit code is pyro's.
    let (code, stderr) = into_head(
        data,
        &format!("workspace exec {id} -- sh -c 'cat lines.txt; exit 3'"),
        "head -1",
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
