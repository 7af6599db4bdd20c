//! An interrupted `pyro workspace create`, through the real binary and
//! real guests: killed (SIGKILL) or interrupted (SIGINT, as Ctrl-C) at 20
//! points spread over its run, it leaves either nothing or a workspace
//! that works, never a half-made one; and no VM process runs on for a
//! workspace that is gone.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

fn pyro(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pyro"))
        .args(args)
        .env("XDG_DATA_HOME", data)
        .env_remove("PYRO_HOME")
        .output()
        .expect("run pyro")
}

fn json(data: &Path, args: &[&str]) -> Value {
    let out = pyro(data, &[args, &["--json"]].concat());
    assert!(
        out.status.success(),
        "pyro {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

/// The ids `workspace list` shows (the call that sweeps abandoned creates).
fn listed(data: &Path) -> Vec<String> {
    let list = json(data, &["workspace", "list"]);
    list.as_array()
        .expect("a list")
        .iter()
        .map(|w| w["workspace_id"].as_str().unwrap().to_string())
        .collect()
}

/// VM processes (`pyro __vmm <dir>/vmm.json`) whose files are under `data`.
fn vm_processes(data: &Path) -> Vec<String> {
    let needle = data.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("__vmm") && c.contains(&needle))
        .collect()
}

#[test]
fn an_interrupted_create_leaves_nothing_or_a_working_workspace() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    // One whole create: its time spreads the interruptions over the run
    // (and the warm-start snapshots are built before any is timed).
    json(&data, &["workspace", "create"]);
    let started = Instant::now();
    let made = json(&data, &["workspace", "create"]);
    let whole = started.elapsed();
    for id in listed(&data) {
        json(&data, &["workspace", "delete", &id]);
    }
    assert_eq!(made["state"], "running");

    let root = data.join("pyro/workspaces");
    let (mut gone, mut working) = (0, 0);
    for i in 0..20u32 {
        // Every fourth a Ctrl-C, the others SIGKILL; from the start to
        // just past the whole create's time.
        let signal = if i % 4 == 3 { "-INT" } else { "-KILL" };
        let at = whole.mul_f64(f64::from(i) / 19.0 * 1.05);
        let child = Command::new(env!("CARGO_BIN_EXE_pyro"))
            .args(["workspace", "create", "--json"])
            .env("XDG_DATA_HOME", &data)
            .env_remove("PYRO_HOME")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(at);
        let _ = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        if signal == "-INT" && out.status.code() == Some(130) {
            assert!(
                stderr.contains("the workspace being made was stopped and removed"),
                "{stderr}"
            );
        }

        let ids = listed(&data);
        match ids.as_slice() {
            [] => gone += 1,
            [id] => {
                // Whole: its /workspace is mounted and writable.
                let run = pyro(
                    &data,
                    &[
                        "workspace",
                        "exec",
                        id,
                        "--",
                        "sh",
                        "-c",
                        "echo ok > /workspace/f && cat /workspace/f",
                    ],
                );
                assert_eq!(
                    (
                        run.status.code(),
                        String::from_utf8_lossy(&run.stdout).as_ref()
                    ),
                    (Some(0), "ok\n"),
                    "point {i} ({at:?}): {}",
                    String::from_utf8_lossy(&run.stderr)
                );
                json(&data, &["workspace", "delete", id]);
                working += 1;
            }
            more => panic!("point {i}: one create made {more:?}"),
        }
        // Nothing else is left: no directory, no VM process.
        let left: Vec<_> = std::fs::read_dir(&root)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "point {i} ({at:?}) left {left:?}");
        let vms = vm_processes(&data);
        assert!(
            vms.is_empty(),
            "point {i} ({at:?}) left VMs running: {vms:?}"
        );
    }
    eprintln!(
        "interrupted creates (whole create {whole:?}): {gone} left nothing, {working} a working workspace"
    );
    assert_eq!(gone + working, 20);
}
