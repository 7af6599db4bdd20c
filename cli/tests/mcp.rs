//! `pyro mcp serve` as an MCP host uses it: the real binary over stdio,
//! driven by a real MCP client (rmcp), with real guests. Each profile
//! lists exactly its tools; bad calls are tool errors and the server keeps
//! serving; vm_run runs a command with progress; the repro-fix loop runs
//! through tools only; a cancelled request or a client that goes away
//! kills the command it was running; and a client that goes away mid-call
//! leaves no VM behind (the server undoes a create nobody will hear of,
//! then exits); bad network arguments are refused with the parsers'
//! messages before anything runs (no guest needed for that one).
//! Workspace state goes to a scratch `XDG_DATA_HOME`;
//! the image cache is the shared one. Boots are slow on PVM hosts
//! (~12 s), so the tests boot five VMs in all.
//!
//! Longer than ~600 lines on purpose: each test is one scenario read top
//! to bottom, in the order an agent works, and they share the set-up
//! helpers above them; splitting would scatter a scenario's steps.

use rmcp::model::{CallToolRequestParams, CallToolResult, ProgressNotificationParam};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const VM_RUN: &[&str] = &["vm_run"];
const WORKSPACE_CORE: &[&str] = &[
    "vm_run",
    "workspace_create",
    "workspace_delete",
    "workspace_diff",
    "workspace_exec",
    "workspace_export",
    "workspace_file_list",
    "workspace_file_read",
    "workspace_file_write",
    "workspace_list",
    "workspace_logs",
    "workspace_patch_apply",
    "workspace_reset",
    "workspace_status",
    "workspace_sync_push",
    "workspace_update",
];
/// `workspace-full` adds these to `workspace-core`.
const FULL_ONLY: &[&str] = &[
    "workspace_fork",
    "service_list",
    "service_logs",
    "service_start",
    "service_status",
    "service_stop",
    "shell_close",
    "shell_list",
    "shell_open",
    "shell_read",
    "shell_resize",
    "shell_signal",
    "shell_write",
    "snapshot_create",
    "snapshot_delete",
    "snapshot_list",
    "workspace_port_list",
    "workspace_port_publish",
    "workspace_disk_export",
    "workspace_disk_list",
    "workspace_disk_read",
    "workspace_port_unpublish",
    "workspace_secret_set",
    "workspace_secret_unset",
    "workspace_start",
    "workspace_stop",
];

/// An MCP client that keeps the progress notifications it gets, and
/// when each message arrived.
#[derive(Clone, Default)]
struct Recorder {
    progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
    arrivals: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl ClientHandler for Recorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let message = params.message.clone().unwrap_or_default();
        self.arrivals
            .lock()
            .unwrap()
            .push((Instant::now(), message));
        self.progress.lock().unwrap().push(params);
    }
}

/// A scratch data directory and the servers and CLI calls that use it.
struct Home(tempfile::TempDir);

impl Home {
    fn new() -> Home {
        Home(tempfile::tempdir().unwrap())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    /// `<XDG_DATA_HOME>/pyro`: workspaces and run directories.
    fn data(&self) -> PathBuf {
        self.path("data/pyro")
    }

    /// `pyro mcp serve --profile P` with this home; its stderr goes to
    /// `<home>/<log>`.
    fn server_command(&self, profile: &str, log: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pyro"));
        cmd.args(["mcp", "serve", "--profile", profile])
            .env("XDG_DATA_HOME", self.path("data"))
            .env_remove("PYRO_HOME")
            .stderr(std::fs::File::create(self.path(log)).unwrap());
        cmd
    }

    /// A server started the way hosts do (rmcp's child-process transport).
    async fn serve(&self, profile: &str) -> Server {
        let log = format!("server-{profile}.log");
        let (transport, _) = TokioChildProcess::builder(self.server_command(profile, &log))
            .stderr(std::fs::File::create(self.path(&log)).unwrap())
            .spawn()
            .expect("start pyro mcp serve");
        Server::connect(transport).await
    }

    /// `pyro ARGS --json` (the CLI, to check what the server did).
    fn cli_json(&self, args: &[&str]) -> Value {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pyro"))
            .args(args)
            .arg("--json")
            .env("XDG_DATA_HOME", self.path("data"))
            .env_remove("PYRO_HOME")
            .output()
            .expect("run pyro");
        assert!(out.status.success(), "pyro {args:?}: {out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn workspace_ids(&self) -> Vec<String> {
        self.cli_json(&["workspace", "list"])
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["workspace_id"].as_str().unwrap().to_string())
            .collect()
    }

    /// VM processes (`pyro __vmm`) of workspaces under this home.
    fn vmm_processes(&self) -> Vec<String> {
        let data = self.data();
        let data = data.to_string_lossy();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|p| std::fs::read(p.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains(" __vmm ") && c.contains(&*data))
            .collect()
    }

    /// Entries left in `<data>/<dir>` (workspaces, run directories).
    fn leftovers(&self, dir: &str) -> Vec<String> {
        std::fs::read_dir(self.data().join(dir))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        // Stop whatever a failed test left running.
        let list = std::process::Command::new(env!("CARGO_BIN_EXE_pyro"))
            .args(["workspace", "list", "--json"])
            .env("XDG_DATA_HOME", self.path("data"))
            .env_remove("PYRO_HOME")
            .output();
        let ids: Vec<String> = list
            .ok()
            .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|w| w["workspace_id"].as_str().map(String::from))
            .collect();
        for id in ids {
            let _ = std::process::Command::new(env!("CARGO_BIN_EXE_pyro"))
                .args(["workspace", "delete", &id])
                .env("XDG_DATA_HOME", self.path("data"))
                .env_remove("PYRO_HOME")
                .output();
        }
    }
}

/// A connected MCP client.
struct Server {
    client: RunningService<RoleClient, Recorder>,
    progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
    arrivals: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Server {
    async fn connect<T, E, A>(transport: T) -> Server
    where
        T: rmcp::transport::IntoTransport<RoleClient, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let recorder = Recorder::default();
        let progress = recorder.progress.clone();
        let arrivals = recorder.arrivals.clone();
        let client = recorder.serve(transport).await.expect("MCP initialize");
        Server {
            client,
            progress,
            arrivals,
        }
    }

    async fn call(&self, tool: &'static str, args: Value) -> CallToolResult {
        let params = CallToolRequestParams::new(tool)
            .with_arguments(args.as_object().expect("arguments object").clone());
        self.client
            .call_tool(params)
            .await
            .unwrap_or_else(|e| panic!("{tool} {args}: {e}"))
    }

    /// A call that must succeed; its structured result.
    async fn ok(&self, tool: &'static str, args: Value) -> Value {
        let result = self.call(tool, args.clone()).await;
        assert_ne!(
            result.is_error,
            Some(true),
            "{tool} {args}: {}",
            text(&result)
        );
        let value = result
            .structured_content
            .clone()
            .expect("structured content");
        // The text rendering is the same document.
        assert_eq!(
            serde_json::from_str::<Value>(&text(&result)).unwrap(),
            value
        );
        value
    }

    /// A call that must be a tool error; its kind and text.
    async fn fails(&self, tool: &'static str, args: Value) -> (String, String) {
        let result = self.call(tool, args.clone()).await;
        assert_eq!(result.is_error, Some(true), "{tool} {args} did not fail");
        let doc = result.structured_content.clone().expect("structured error");
        assert_eq!(doc["ok"], false);
        (
            doc["error"]["kind"].as_str().unwrap().to_string(),
            text(&result),
        )
    }

    /// The progress notifications received, in progress order, once one
    /// whose message starts with `last` is among them (the client handles
    /// each notification in a task of its own, so they may land after the
    /// response and in any order).
    async fn progress_until(&self, last: &str) -> Vec<ProgressNotificationParam> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut all = self.progress.lock().unwrap().clone();
            if all
                .iter()
                .any(|p| p.message.as_deref().is_some_and(|m| m.starts_with(last)))
            {
                all.sort_by(|a, b| a.progress.total_cmp(&b.progress));
                return all;
            }
            assert!(Instant::now() < deadline, "no {last:?} progress: {all:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Calls about one workspace: `workspace_id` is added to the arguments.
struct On<'a> {
    server: &'a Server,
    id: String,
}

impl On<'_> {
    fn args(&self, mut args: Value) -> Value {
        args["workspace_id"] = self.id.clone().into();
        args
    }

    async fn ok(&self, tool: &'static str, args: Value) -> Value {
        self.server.ok(tool, self.args(args)).await
    }

    async fn fails(&self, tool: &'static str, args: Value) -> (String, String) {
        self.server.fails(tool, self.args(args)).await
    }

    /// `workspace_logs` once it has `count` entries, the last one ended
    /// (a command is recorded as running when it starts; a call given up
    /// on ends on the server after the client stopped waiting).
    async fn logs_until(&self, count: usize) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let logs = self.ok("workspace_logs", json!({})).await;
            let last = &logs["entries"][count.saturating_sub(1)];
            if logs["count"] == count && last["status"] != "running" {
                return logs;
            }
            assert!(Instant::now() < deadline, "no entry {count}: {logs}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `entry` (a history record) is a command that was cancelled and
    /// killed, and no `sleep` is left in the guest (it has no pgrep).
    async fn was_killed(&self, entry: &Value) {
        assert_eq!(entry["cancelled"], true, "{entry}");
        assert_eq!(entry["exit_code"], Value::Null, "{entry}");
        assert_eq!(entry["signal"], 9, "{entry}");
        assert_eq!(entry["timed_out"], false, "{entry}");
        let count = "cat /proc/[0-9]*/comm 2>/dev/null | grep -cx sleep";
        let left = self.ok("workspace_exec", json!({ "command": count })).await;
        assert_eq!(left["stdout"], "0\n", "sleep processes left: {left}");
    }

    /// Types `input` into shell `shell_id`, then does one plain read from
    /// `cursor` that waits for quiet; the read's result.
    async fn type_and_read(&self, shell_id: &str, input: &str, cursor: Value) -> Value {
        let typed = json!({ "shell_id": shell_id, "input": input });
        self.ok("shell_write", typed).await;
        let read = json!({
            "shell_id": shell_id,
            "cursor": cursor,
            "plain": true,
            "wait_for_idle_ms": 500,
        });
        self.ok("shell_read", read).await
    }

    /// A file's content (`workspace_file_read`).
    async fn read(&self, path: &str) -> Value {
        self.ok("workspace_file_read", json!({ "path": path }))
            .await["content"]
            .clone()
    }
}

fn text(r: &CallToolResult) -> String {
    r.content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default()
}

/// Waits for `child` to exit by itself; its status.
async fn exits(child: &mut tokio::process::Child, within: Duration) -> std::process::ExitStatus {
    match tokio::time::timeout(within, child.wait()).await {
        Ok(status) => status.unwrap(),
        Err(_) => {
            let _ = child.start_kill();
            panic!("the server did not exit within {within:?}");
        }
    }
}

/// A server on plain pipes, so that the test decides when the client
/// goes away and can then watch the server process.
async fn serve_on_pipes(home: &Home, log: &str) -> (Server, tokio::process::Child) {
    let mut child = home
        .server_command("workspace-full", log)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stdin = child.stdin.take().unwrap();
    (Server::connect((stdout, stdin)).await, child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_profile_lists_exactly_its_tools_and_bad_calls_are_tool_errors() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    let home = Home::new();
    let mut full = [WORKSPACE_CORE, FULL_ONLY].concat();
    full.sort();
    for (profile, want) in [
        ("vm-run", VM_RUN),
        ("workspace-core", WORKSPACE_CORE),
        ("workspace-full", &full[..]),
    ] {
        let server = home.serve(profile).await;
        let info = server.client.peer_info().expect("server info");
        assert_eq!(info.server_info.as_ref().unwrap().name, "pyro");
        let instructions = info.instructions.clone().unwrap_or_default();
        assert!(
            instructions.contains("vm_run") && instructions.contains("workspace_create"),
            "{instructions}"
        );
        let tools = server.client.list_all_tools().await.unwrap();
        let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        names.sort();
        assert_eq!(names, want, "profile {profile}");
        for t in &tools {
            assert!(
                t.description.as_ref().is_some_and(|d| d.len() > 40),
                "{}",
                t.name
            );
            assert_eq!(t.input_schema["type"], "object", "{}", t.name);
        }
        if profile == "vm-run" {
            // A tool of another profile does not exist here.
            let call = CallToolRequestParams::new("workspace_list");
            assert!(server.client.call_tool(call).await.is_err());
        }
        if profile != "workspace-full" {
            server.client.cancel().await.unwrap();
            continue;
        }

        // Bad calls: tool errors naming the problem and what to do.
        let missing = home.path("missing");
        for (tool, args, want_kind, says) in [
            (
                "workspace_status",
                json!({"workspace_id": "nope"}),
                "not_found",
                "workspace_list",
            ),
            (
                "workspace_file_read",
                json!({"path": "a"}),
                "invalid_argument",
                "missing field `workspace_id`",
            ),
            (
                "workspace_exec",
                json!({"workspace_id": "w", "command": "ls", "timeout": 3}),
                "invalid_argument",
                "unknown field `timeout`",
            ),
            (
                "workspace_exec",
                json!({"workspace_id": "w", "command": []}),
                "invalid_argument",
                "command must be",
            ),
            (
                "vm_run",
                json!({"command": "true", "vcpus": 99}),
                "invalid_argument",
                "vcpus is 99",
            ),
            (
                "workspace_create",
                json!({"seed_path": missing}),
                "invalid_argument",
                "seed_path",
            ),
            (
                "shell_open",
                json!({"workspace_id": "w", "cols": 0}),
                "invalid_argument",
                "cols is 0",
            ),
            (
                "shell_signal",
                json!({"workspace_id": "w", "shell_id": "s", "signal": "STOP"}),
                "invalid_argument",
                "HUP, INT, TERM or KILL",
            ),
            (
                "shell_read",
                json!({"workspace_id": "nope", "shell_id": "sh-1", "plain": true}),
                "not_found",
                "workspace_list",
            ),
        ] {
            let (kind, msg) = server.fails(tool, args.clone()).await;
            assert_eq!(kind, want_kind, "{tool} {args}: {msg}");
            assert!(
                msg.contains(says) && msg.contains("What to do:"),
                "{tool} {args}: {msg}"
            );
        }
        // Still serving, and nothing was made.
        let list = server.ok("workspace_list", json!({})).await;
        assert_eq!(list, json!({"count": 0, "workspaces": []}));
        server.client.cancel().await.unwrap();
    }
}

/// The network parameters parse with the parsers the CLI flags use: a
/// bad value is an `invalid_argument` tool error with the parser's
/// message, found before any VM or workspace is made, so no guest is
/// needed. `publish` without `network_policy` implies a policy that
/// publishes ports, as `--publish` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_network_arguments_are_tool_errors_before_anything_runs() {
    let home = Home::new();
    let server = home.serve("workspace-full").await;
    let missing = home.path("missing");
    for (tool, args, says) in [
        (
            "vm_run",
            json!({"command": "true", "network_policy": "everything"}),
            "network_policy: unknown network policy \"everything\"",
        ),
        (
            "vm_run",
            json!({"command": "true", "allow_hosts": ["pypi.org", "exa mple.com"]}),
            "allow_hosts: invalid --allow-host \"exa mple.com\"",
        ),
        (
            "workspace_create",
            json!({"add_hosts": ["db"]}),
            "add_hosts: invalid --add-host \"db\"",
        ),
        (
            "workspace_create",
            json!({"publish": ["0.0.0.0:80:80"]}),
            "published ports listen on 127.0.0.1 only (not 0.0.0.0)",
        ),
        (
            "workspace_create",
            json!({"publish": ["8000"], "network_policy": "egress"}),
            "needs a policy that publishes them",
        ),
        (
            // Implied egress+published-ports: the ports are fine, so
            // the missing seed is what fails.
            "workspace_create",
            json!({"publish": ["8000"], "seed_path": missing}),
            "seed_path",
        ),
        (
            "workspace_update",
            json!({"workspace_id": "w", "allow_hosts": ["*.*"]}),
            "allow_hosts: invalid --allow-host",
        ),
        (
            "workspace_port_publish",
            json!({"workspace_id": "w", "port": "0.0.0.0:8080:80"}),
            "port: invalid published port",
        ),
        (
            "workspace_port_unpublish",
            json!({"workspace_id": "w", "guest_port": 0}),
            "guest_port is 0",
        ),
    ] {
        let (kind, msg) = server.fails(tool, args.clone()).await;
        assert_eq!(kind, "invalid_argument", "{tool} {args}: {msg}");
        assert!(
            msg.contains(says) && msg.contains("What to do:"),
            "{tool} {args}: {msg}"
        );
    }
    let list = server.ok("workspace_list", json!({})).await;
    assert_eq!(list, json!({"count": 0, "workspaces": []}));
    server.client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_run_runs_a_command_in_a_fresh_vm_and_reports_progress() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    let home = Home::new();
    let server = home.serve("vm-run").await;
    let started = Instant::now();
    let run = server
        .ok(
            "vm_run",
            json!({"command": "echo via-shell && uname -r >&2", "max_output_bytes": 7}),
        )
        .await;
    eprintln!("vm_run took {:?}", started.elapsed());
    assert_eq!(run["exit_code"], 0, "{run}");
    assert_eq!(run["timed_out"], false);
    assert_eq!(run["environment"], "debian:12");
    // Each stream kept up to max_output_bytes, and said so.
    assert_eq!(run["stdout"], "via-she", "{run}");
    assert_eq!(run["stdout_truncated"], true, "{run}");
    let stderr = run["stderr"].as_str().unwrap();
    assert!(stderr.starts_with("6.") && stderr.len() <= 7, "{run}");
    assert_eq!(
        run["command"],
        json!(["/bin/sh", "-c", "echo via-shell && uname -r >&2"])
    );

    let progress = server.progress_until("vm_run: done").await;
    assert!(progress.len() >= 2, "{progress:?}");
    assert!(
        progress.windows(2).all(|w| w[0].progress < w[1].progress),
        "{progress:?}"
    );
    assert_eq!(progress[0].message.as_deref(), Some("vm_run: started"));
    let last = progress.last().unwrap();
    assert_eq!(last.total, Some(last.progress));
    assert!(
        last.message
            .as_deref()
            .unwrap()
            .starts_with("vm_run: done in "),
        "{last:?}"
    );
    // The VM and its files are gone.
    assert_eq!(home.leftovers("vms"), Vec::<String>::new());
    server.client.cancel().await.unwrap();
}

/// A seed with a failing check: `check.sh` passes once `message.txt`
/// says "fixed".
fn repro_seed(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("message.txt"), "broken\n").unwrap();
    let check = dir.join("check.sh");
    std::fs::write(&check, "#!/bin/sh\ngrep -qx fixed message.txt && echo ok\n").unwrap();
    std::fs::set_permissions(&check, std::fs::Permissions::from_mode(0o755)).unwrap();
}

const FIX: &str = "--- a/message.txt\n+++ b/message.txt\n@@ -1 +1 @@\n-broken\n+fixed\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repro_fix_loop_through_tools_and_cancelled_execs_are_killed() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    let home = Home::new();
    let seed = home.path("seed");
    repro_seed(&seed);
    let server = home.serve("workspace-full").await;

    let created = json!({"seed_path": seed, "name": "repro", "labels": {"task": "fix"}});
    let created = server.ok("workspace_create", created).await;
    assert_eq!(created["state"], "running", "{created}");
    let ws = On {
        server: &server,
        id: created["workspace_id"].as_str().unwrap().to_string(),
    };
    let progress = server.progress_until("workspace_create: done").await;
    let messages: Vec<&str> = progress
        .iter()
        .filter_map(|p| p.message.as_deref())
        .collect();
    assert_eq!(messages[0], "workspace_create: started", "{messages:?}");
    assert!(
        messages.iter().any(|m| m.starts_with("[boot]")),
        "{messages:?}"
    );

    assert_eq!(ws.read("message.txt").await, "broken\n");
    let check = ws
        .ok("workspace_exec", json!({"command": "./check.sh"}))
        .await;
    assert_eq!(
        check["exit_code"], 1,
        "the check fails before the fix: {check}"
    );

    // Paths that leave /workspace are refused; the server keeps serving.
    for (tool, args) in [
        ("workspace_file_read", json!({"path": "../etc/passwd"})),
        ("workspace_file_read", json!({"path": "/etc/passwd"})),
        (
            "workspace_file_write",
            json!({"path": "/etc/motd", "text": "x"}),
        ),
        ("workspace_file_list", json!({"path": "/workspace/../.."})),
    ] {
        let (kind, msg) = ws.fails(tool, args.clone()).await;
        assert_eq!(kind, "invalid_path", "{tool} {args}: {msg}");
        assert!(msg.contains("What to do:"), "{msg}");
    }

    // By name, as a model may.
    let fix = json!({"workspace_id": "repro", "patch": FIX});
    let patched = server.ok("workspace_patch_apply", fix).await;
    assert_eq!(patched["changed"], true, "{patched}");
    let check = ws
        .ok("workspace_exec", json!({"command": ["./check.sh"]}))
        .await;
    assert_eq!(check["exit_code"], 0, "{check}");
    assert_eq!(check["stdout"], "ok\n");

    let diff = ws.ok("workspace_diff", json!({})).await;
    assert_eq!(diff["changed"], true);
    assert_eq!(diff["summary"]["total"], 1, "{diff}");
    assert_eq!(diff["summary"]["modified"], 1, "{diff}");

    // A fork holds the fixed state, and goes without touching the source.
    let fork = json!({"workspace_id": "repro", "name": "repro-try", "labels": {"try": "1"}});
    let forked = server.ok("workspace_fork", fork).await;
    assert_eq!(forked["source_state"], "running", "{forked}");
    let child = &forked["children"][0];
    assert_eq!(child["forked_from"], ws.id.as_str(), "{forked}");
    assert_eq!(child["labels"]["try"], "1", "{forked}");
    let check = json!({"workspace_id": "repro-try", "command": ["./check.sh"]});
    assert_eq!(server.ok("workspace_exec", check).await["exit_code"], 0);
    let gone = json!({"workspace_id": "repro-try"});
    server.ok("workspace_delete", gone).await;
    let (kind, msg) = server
        .fails(
            "workspace_fork",
            json!({"workspace_id": "repro", "count": 0}),
        )
        .await;
    assert_eq!(kind, "invalid_argument", "{msg}");
    assert_eq!(diff["entries"][0]["path"], "message.txt");
    let patch = diff["patch"].as_str().unwrap();
    assert!(patch.contains("-broken\n+fixed\n"), "{patch}");

    let out = home.path("fixed.txt");
    let export = json!({"path": "message.txt", "output_path": out});
    let export = ws.ok("workspace_export", export).await;
    assert_eq!(export["artifact_type"], "file", "{export}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "fixed\n");

    let snap = ws
        .ok("snapshot_create", json!({"snapshot_name": "fixed"}))
        .await;
    assert_eq!(snap["name"], "fixed");
    let snaps = ws.ok("snapshot_list", json!({})).await;
    assert_eq!(snaps["count"], 2, "{snaps}");
    assert_eq!(snaps["workspace_id"], ws.id.as_str());
    assert_eq!(snaps["snapshots"][0]["name"], "baseline");
    ws.ok("snapshot_delete", json!({"snapshot_name": "fixed"}))
        .await;
    let baseline = json!({"snapshot_name": "baseline"});
    assert_eq!(
        ws.fails("snapshot_delete", baseline).await.0,
        "invalid_argument"
    );

    // A shell through the tools: type, read the answer in one call that
    // waits for quiet, resize, find it again by listing, interrupt, close.
    let opened = ws.ok("shell_open", json!({"cols": 80, "rows": 24})).await;
    let sh = opened["shell_id"].as_str().unwrap().to_string();
    let shell = |extra: Value| {
        let mut args = json!({ "shell_id": sh });
        args.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        args
    };
    let read = ws
        .type_and_read(&sh, "cat message.txt; echo $((6*7))", json!(0))
        .await;
    let output = read["output"].as_str().unwrap();
    assert!(output.contains("fixed\n42\n"), "{read}");
    let resized = ws
        .ok("shell_resize", shell(json!({"cols": 100, "rows": 40})))
        .await;
    assert_eq!(
        (resized["cols"].clone(), resized["rows"].clone()),
        (json!(100), json!(40))
    );
    let listed = ws.ok("shell_list", json!({})).await;
    assert_eq!(listed["shells"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["shells"][0]["shell_id"], sh.as_str());
    assert_eq!(listed["shells"][0]["cols"], 100);
    ws.ok("shell_write", shell(json!({"input": "sleep 300"})))
        .await;
    // Quiet (2 s, as no prompt came back) once sleep waits in the
    // foreground: the interrupt is for it.
    let waited = ws
        .ok(
            "shell_read",
            shell(json!({"cursor": read["next_cursor"], "wait_for_idle_ms": 300})),
        )
        .await;
    assert_eq!(waited["idle"], true, "{waited}");
    ws.ok("shell_signal", shell(json!({"signal": "INT"}))).await;
    let cursor = waited["next_cursor"].clone();
    let read = ws.type_and_read(&sh, "echo after-$((1+1))", cursor).await;
    assert!(
        read["output"].as_str().unwrap().contains("after-2"),
        "{read}"
    );
    let closed = ws.ok("shell_close", shell(json!({}))).await;
    assert_eq!(closed["closed"], true, "{closed}");
    let listed = ws.ok("shell_list", json!({})).await;
    assert_eq!(listed["shells"], json!([]), "{listed}");
    let (kind, _) = ws.fails("shell_read", shell(json!({}))).await;
    assert_eq!(kind, "not_found");

    // A service through the tools: started, ready by its file, its logs
    // read (which leaves it running), stopped; one whose probe never
    // succeeds fails and names the probe.
    let app = json!({
        "service_name": "app",
        "command": "echo service started; touch .app-ready; exec sleep 300",
        "ready_file": ".app-ready",
    });
    let started = ws.ok("service_start", app).await;
    assert_eq!(started["state"], "ready", "{started}");
    let app = json!({"service_name": "app", "tail_lines": 20});
    let logs = ws.ok("service_logs", app).await;
    assert_eq!(logs["stdout"], "service started\n", "{logs}");
    assert_eq!(logs["state"], "ready", "{logs}");
    let never = json!({
        "service_name": "never",
        "command": "exec sleep 300",
        "ready_tcp": "9",
        "ready_timeout_seconds": 1,
    });
    let failed = ws.ok("service_start", never).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("tcp 127.0.0.1:9"),
        "{failed}"
    );
    let listed = ws.ok("service_list", json!({})).await;
    let states: Vec<&Value> = listed["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["state"])
        .collect();
    assert_eq!(states, [&json!("ready"), &json!("failed")], "{listed}");
    let stopped = ws.ok("service_stop", json!({"service_name": "app"})).await;
    assert_eq!(stopped["state"], "stopped", "{stopped}");

    // A secret through the tools: set, given to a service as its
    // environment, redacted from its logs, and unset again (kept memory,
    // below, is refused while a workspace has secrets).
    let set = json!({"name": "API_TOKEN", "value": "mcp-s3cret-value-99"});
    let set = ws.ok("workspace_secret_set", set).await;
    assert_eq!(
        set["secrets"],
        json!([{"name": "API_TOKEN", "source_kind": "literal"}]),
        "{set}"
    );
    let leaky = json!({
        "service_name": "leaky",
        "command": "echo \"token=$TOKEN\"; touch .leaky; exec sleep 300",
        "ready_file": ".leaky",
        "secret_env": {"API_TOKEN": "TOKEN"},
    });
    let started = ws.ok("service_start", leaky).await;
    assert_eq!(started["state"], "ready", "{started}");
    let logs = ws
        .ok("service_logs", json!({"service_name": "leaky"}))
        .await;
    assert_eq!(logs["stdout"], "token=[REDACTED]\n", "{logs}");
    ws.ok("service_stop", json!({"service_name": "leaky"}))
        .await;
    let unset = json!({"name": "API_TOKEN"});
    let unset = ws.ok("workspace_secret_unset", unset).await;
    assert_eq!(unset["secrets"], json!([]), "{unset}");
    let (kind, _) = ws
        .fails("service_status", json!({"service_name": "nope"}))
        .await;
    assert_eq!(kind, "not_found");

    // Stopped keeping its memory, then resumed (what a resume keeps is
    // checked in cli/tests/workspace.rs; execs here would shift the
    // history the cancellations below are checked against).
    let stopped = ws.ok("workspace_stop", json!({"keep_memory": true})).await;
    assert_eq!(stopped["state"], "suspended", "{stopped}");
    let started = ws.ok("workspace_start", json!({})).await;
    assert_eq!(started["last_start"], "resumed", "{started}");
    assert_eq!(ws.read("message.txt").await, "fixed\n");

    // Left idle, it is suspended by its own VMM, and the next call (a
    // file read) resumes it (cli/tests/workspace.rs checks the rest).
    let idle = json!({"idle_suspend_seconds": 2});
    let updated = ws.ok("workspace_update", idle).await;
    assert_eq!(updated["idle_suspend_seconds"], 2, "{updated}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = ws.ok("workspace_status", json!({})).await;
        if status["state"] == "suspended" && status["suspended_by"] == "idle" {
            break;
        }
        assert!(Instant::now() < deadline, "not suspended on idle: {status}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(ws.read("message.txt").await, "fixed\n");
    let status = ws.ok("workspace_status", json!({})).await;
    assert_eq!(status["state"], "running", "{status}");
    assert_eq!(status["last_start"], "resumed", "{status}");
    let never = json!({"idle_suspend_seconds": 0});
    ws.ok("workspace_update", never).await;

    // A cancelled request kills its command (the whole process group:
    // the shell, its `sleep 300` and the job that would write late.txt),
    // and so does a client that goes away. Each command is recorded as
    // cancelled; the server stays up for the first and exits for the
    // second. Without the kill, each would run to its 120 s timeout.
    let slow = |marker: &str| {
        json!({
            "workspace_id": ws.id,
            "command": format!("(sleep 5; echo late > {marker}) & sleep 300"),
            "timeout_seconds": 120,
        })
    };
    let called = Instant::now();
    let call = server.call("workspace_exec", slow("late1.txt"));
    // Dropping the call sends notifications/cancelled.
    assert!(tokio::time::timeout(Duration::from_secs(3), call)
        .await
        .is_err());
    let logs = ws.logs_until(3).await;
    eprintln!(
        "the exec cancelled after 3 s was recorded {:?} after the call",
        called.elapsed()
    );
    assert!(called.elapsed() < Duration::from_secs(20), "{logs}");
    ws.was_killed(&logs["entries"][2]).await;

    let (gone, mut gone_process) = serve_on_pipes(&home, "server-gone-exec.log").await;
    let args = slow("late2.txt");
    let called = Instant::now();
    let call = tokio::spawn(async move {
        let _ = gone.call("workspace_exec", args).await;
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    call.abort(); // drops the client mid-call: the server's stdin closes
    let _ = call.await;
    let status = exits(&mut gone_process, Duration::from_secs(20)).await;
    assert!(status.success(), "{status:?}");
    let logs = ws.logs_until(5).await;
    ws.was_killed(&logs["entries"][4]).await;
    // Past the time the background jobs would have written their marks
    // (5 s after the command started, ~1 s after the call).
    tokio::time::sleep(Duration::from_secs(9).saturating_sub(called.elapsed())).await;
    for marker in ["late1.txt", "late2.txt"] {
        let (kind, msg) = ws
            .fails("workspace_file_read", json!({ "path": marker }))
            .await;
        assert_eq!(kind, "not_found", "{marker}: {msg}");
    }
    assert_eq!(
        home.workspace_ids(),
        [ws.id.as_str()],
        "nothing new was left"
    );

    // An exec that outlives its wait_seconds returns in time, naming its
    // sequence; it runs on, and workspace_logs has its output and exit
    // code once it ends. One that ends in time returns its record.
    let called = Instant::now();
    let long = json!({"command": "sleep 5; echo finished; exit 3", "wait_seconds": 1});
    let waiting = ws.ok("workspace_exec", long).await;
    assert!(called.elapsed() < Duration::from_secs(5), "{waiting}");
    assert_eq!(waiting["state"], "running", "{waiting}");
    let sequence = waiting["sequence"].as_u64().unwrap();
    let logs = ws.logs_until(sequence as usize).await;
    let entry = logs["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["sequence"] == sequence)
        .unwrap_or_else(|| panic!("no #{sequence}: {logs}"));
    assert_eq!(entry["stdout"], "finished\n", "{entry}");
    assert_eq!(entry["exit_code"], 3, "{entry}");
    let quick = json!({"command": "echo quick", "wait_seconds": 60});
    let quick = ws.ok("workspace_exec", quick).await;
    assert_eq!(quick["stdout"], "quick\n", "{quick}");

    // A long exec sends "running for N s" every 10 s (docs/mcp.md), so a
    // host that resets its timeout on progress keeps waiting.
    let called = Instant::now();
    let slow = json!({"command": "sleep 21; echo slept", "timeout_seconds": 120});
    assert_eq!(ws.ok("workspace_exec", slow).await["stdout"], "slept\n");
    let beat = |secs: u64| {
        let message = format!("workspace_exec: running for {secs} s");
        let arrivals = server.arrivals.lock().unwrap();
        arrivals
            .iter()
            .find(|(at, m)| *at > called && *m == message)
            .map(|(at, _)| at.duration_since(called))
            .unwrap_or_else(|| panic!("no {message:?}: {arrivals:?}"))
    };
    let (first, second) = (beat(10), beat(20));
    assert!(
        first >= Duration::from_secs(9) && first <= Duration::from_secs(13),
        "{first:?}"
    );
    let gap = second - first;
    assert!(
        gap >= Duration::from_secs(9) && gap <= Duration::from_secs(11),
        "{gap:?}"
    );

    let reset = ws.ok("workspace_reset", json!({})).await;
    assert_eq!(reset["snapshot"], "baseline");
    assert_eq!(reset["workspace"]["state"], "running", "{reset}");
    let diff = ws.ok("workspace_diff", json!({})).await;
    assert_eq!(diff["changed"], false, "{diff}");
    assert_eq!(ws.read("message.txt").await, "broken\n");

    let deleted = ws.ok("workspace_delete", json!({})).await;
    assert_eq!(deleted["deleted"], true);
    let list = server.ok("workspace_list", json!({})).await;
    assert_eq!(list["count"], 0);
    assert_eq!(home.vmm_processes(), Vec::<String>::new());
    server.client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_create_and_mid_run_leaves_no_vm_behind() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    let home = Home::new();
    let (server, mut process) = serve_on_pipes(&home, "server-gone.log").await;
    let server = Arc::new(server);
    let calls = [
        // Cancelled while it boots: it stops before its command (which
        // would otherwise keep the server up for its 120 s timeout).
        (
            "vm_run",
            json!({"command": "sleep 300", "timeout_seconds": 120}),
        ),
        ("workspace_create", json!({"name": "orphan"})),
    ]
    .map(|(tool, args)| {
        let server = server.clone();
        tokio::spawn(async move {
            let _ = server.call(tool, args).await;
        })
    });
    // Both calls are under way: a run directory and a workspace exist.
    let deadline = Instant::now() + Duration::from_secs(60);
    while home.leftovers("vms").is_empty() || home.leftovers("workspaces").is_empty() {
        assert!(Instant::now() < deadline, "the calls did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The client goes away.
    let gone = Instant::now();
    for call in calls {
        call.abort();
        let _ = call.await;
    }
    drop(Arc::into_inner(server).expect("one client"));

    let status = exits(&mut process, Duration::from_secs(100)).await;
    eprintln!(
        "the server exited {:?} after the client went away",
        gone.elapsed()
    );
    assert!(status.success(), "{status:?}");
    assert_eq!(
        home.leftovers("vms"),
        Vec::<String>::new(),
        "a run's files are left"
    );
    assert_eq!(
        home.leftovers("workspaces"),
        Vec::<String>::new(),
        "a workspace is left"
    );
    assert_eq!(home.workspace_ids(), Vec::<String>::new());
    assert_eq!(home.vmm_processes(), Vec::<String>::new(), "a VM is left");
    let log = std::fs::read_to_string(home.path("server-gone.log")).unwrap();
    eprintln!("server stderr:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        log.contains("the request was cancelled; deleting workspace"),
        "{log}"
    );
}
