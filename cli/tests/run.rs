//! `pyro run` as a user types it: real guests, the real binary.

use std::process::{Command, Output};

fn pyro(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pyro"))
        .args(args)
        .output()
        .expect("run pyro")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Run directories this process's children could have left behind, in
/// the data directory the product itself uses (`PYRO_HOME`, XDG, `HOME`).
fn leftover_run_dirs(pids: &[u32]) -> Vec<String> {
    let root = pyro_images::Paths::from_env().data.join("vms");
    let entries = match std::fs::read_dir(&root) {
        Ok(entries) => entries,
        // No run ever made one: nothing is left.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return vec![],
        Err(e) => panic!("{}: {e}", root.display()),
    };
    entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| pids.iter().any(|p| name.starts_with(&format!("run-{p}-"))))
        .collect()
}

/// An installed `pyro` needs neither cargo nor this source tree:
/// guest-init is built into it (`images/build.rs`). Run as a user's
/// shell would run it, from `/`, with a `PATH` that has no cargo and no
/// `CARGO` set. (A hard link of the built binary: the same file, so the
/// warm snapshot made for it is reused; `.ci/run` also runs a copy that
/// `cargo install` made.)
#[test]
fn an_installed_pyro_needs_neither_cargo_nor_the_source_tree() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    let built = std::path::Path::new(env!("CARGO_BIN_EXE_pyro"));
    let dir = built.parent().unwrap().join("installed-test");
    std::fs::create_dir_all(&dir).unwrap();
    let installed = dir.join("pyro");
    let _ = std::fs::remove_file(&installed);
    std::fs::hard_link(built, &installed).unwrap();
    let mut cmd = Command::new(&installed);
    cmd.args(["run", "--", "sh", "-c", "echo installed"])
        .current_dir("/")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    for keep in ["HOME", "PYRO_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "CI"] {
        if let Some(v) = std::env::var_os(keep) {
            cmd.env(keep, v);
        }
    }
    let out = cmd.output().unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(text(&out.stdout), "installed\n");
    assert!(!err.contains("cargo"), "no cargo at run time: {err}");
}

#[test]
fn exit_code_and_separate_streams_reach_the_caller() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    let child = Command::new(env!("CARGO_BIN_EXE_pyro"))
        // The cap is on what --json keeps; the terminal gets everything.
        .args([
            "run",
            "--max-output-bytes",
            "1",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 7",
        ])
        .output()
        .unwrap();
    assert_eq!(
        child.status.code(),
        Some(7),
        "stderr: {}",
        text(&child.stderr)
    );
    assert_eq!(text(&child.stdout), "out\n");
    let err = text(&child.stderr);
    assert!(err.contains("err\n"), "{err}");
    assert!(
        err.contains("[run] environment=debian:12 exit_code=7"),
        "{err}"
    );
}

#[test]
fn json_is_one_document_and_nothing_is_left_behind() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    let child = Command::new(env!("CARGO_BIN_EXE_pyro"))
        .args([
            "run",
            "--json",
            "--max-output-bytes",
            "8",
            "debian:12",
            "--",
            "sh",
            "-c",
            "git --version; echo tiny >&2",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["exit_code"], 0);
    // Kept up to --max-output-bytes, and said so.
    assert_eq!(doc["stdout"], "git vers", "{doc}");
    assert_eq!(doc["stdout_truncated"], true, "{doc}");
    assert_eq!(doc["stderr"], "tiny\n", "{doc}");
    assert_eq!(doc["stderr_truncated"], false, "{doc}");
    assert!(doc["timings"]["boot_ms"].as_u64().unwrap() > 0);
    assert!(leftover_run_dirs(&[pid]).is_empty());
}

#[test]
fn a_timeout_kills_the_command_and_says_so() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    let out = pyro(&["run", "--timeout-seconds", "2", "--", "sleep", "60"]);
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("timed_out=true"));
}

#[test]
fn usage_errors_exit_2_and_unknown_environments_say_what_exists() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    assert_eq!(pyro(&["run"]).status.code(), Some(2), "no command");
    let out = pyro(&["run", "debian:9", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("valid names are debian:12-base, debian:12, debian:12-build")
    );
}

#[test]
fn ctrl_c_stops_the_run_and_removes_its_files() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    let child = Command::new(env!("CARGO_BIN_EXE_pyro"))
        .args(["run", "--", "sleep", "600"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Wait until the run exists (its directory), then interrupt it.
    let started = std::time::Instant::now();
    while leftover_run_dirs(&[pid]).is_empty() {
        assert!(started.elapsed().as_secs() < 120, "the run never started");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    let killed = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("interrupted"),
        "{}",
        text(&out.stderr)
    );
    assert!(leftover_run_dirs(&[pid]).is_empty());
}
