//! The VMM's sandbox, seen from a workspace: every thread of a running
//! VMM is under its seccomp filter with its capabilities dropped; the
//! guest still works, through a warm start and a restart; a VMM made to
//! make a call outside its list (a test-only request) ends, and the
//! workspace says which thread and which call.

mod common;

use common::home::Home;
use pyro_vmm::control::{self, ControlReply, ControlRequest, TEST_HOOKS_ENV};
use std::path::Path;
use std::time::{Duration, Instant};

/// (thread name, seccomp mode, effective capabilities) of each thread.
fn threads(pid: u32) -> Vec<(String, u32, u64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap()
                .trim()
                .to_string()
        };
        out.push((
            field("Name:"),
            field("Seccomp:").parse().unwrap(),
            u64::from_str_radix(&field("CapEff:"), 16).unwrap(),
        ));
    }
    out
}

fn wait_gone(pid: u32) {
    let started = Instant::now();
    while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z ")) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "VMM {pid} did not end"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ask(vm_dir: &Path, req: &ControlRequest) -> Option<ControlReply> {
    control::request(vm_dir, req).ok()
}

#[test]
fn a_vmm_runs_confined_and_one_that_breaks_its_sandbox_ends_and_says_why() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    let home = Home::new();
    let out = home
        .command(&[
            "workspace",
            "create",
            "debian:12",
            "--id-only",
            "--network-policy",
            "egress+published-ports",
        ])
        .env(TEST_HOOKS_ENV, "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::home::text(&out.stderr));
    let id = common::home::text(&out.stdout).trim().to_string();
    let vm_dir = home.path("data/pyro/workspaces").join(&id).join("vm");
    assert_eq!(home.sh(&id, "echo hi > kept.txt && echo ok"), "ok\n");

    // Every thread is filtered (mode 2). Only the control thread keeps a
    // capability (CAP_NET_BIND_SERVICE, bit 10); vCPUs keep none.
    let pid = home.running_vmm(&id).expect("VMM");
    let seen = threads(pid);
    for (name, mode, caps) in &seen {
        assert_eq!(*mode, 2, "thread {name} is not filtered: {seen:?}");
        let allowed = if name == "vmm-control" { 1 << 10 } else { 0 };
        assert_eq!(caps & !allowed, 0, "thread {name} keeps {caps:#x}");
    }
    for name in ["vcpu0", "vmm-events", "vmm-control", "vmm-resolver"] {
        assert!(seen.iter().any(|(n, ..)| n == name), "{name}: {seen:?}");
    }
    // A port published now binds on a connection thread of the control
    // thread, under its filter.
    let published = home.json(&["workspace", "port", "publish", &id, "8080"]);
    assert!(
        published["host_port"].as_u64().is_some_and(|p| p > 0),
        "{published}"
    );

    // The test hook: the owner thread calls ptrace. The process ends;
    // the workspace shows as stopped, with the thread and the call.
    ask(&vm_dir, &ControlRequest::TestSandboxViolation);
    wait_gone(pid);
    let status = home.json(&["workspace", "status", &id]);
    assert_eq!(status["state"], "stopped", "{status}");
    let error = status["last_error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with(&format!(
            "sandbox_violation: the owner thread made system call {}",
            libc::SYS_ptrace
        )),
        "{status}"
    );

    // Started again (a warm start, without the hooks): the data is there,
    // and the hook is refused.
    home.ok(&["workspace", "start", &id]);
    assert_eq!(home.read(&id, "kept.txt"), "hi\n");
    match ask(&vm_dir, &ControlRequest::TestSandboxViolation) {
        Some(ControlReply::Error { message }) => {
            assert!(message.contains("test hooks are off"), "{message}")
        }
        other => panic!("the hook answered {other:?}"),
    }
    assert_eq!(home.sh(&id, "cat kept.txt"), "hi\n");
    home.ok(&["workspace", "delete", &id]);
}
