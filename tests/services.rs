//! Services end to end in a real guest, the way an agent uses them:
//! start one that becomes ready by its file, read its logs, stop it with
//! its children; one that exits early (exited, its code and logs), one
//! whose probe never succeeds (failed, the probe named, killed), one
//! that ignores SIGTERM (killed after the grace), one whose output
//! overflows its ring (bounded, the loss counted); and services ending
//! with a workspace stop (SIGTERM first: it can finish its work) and a
//! reset. HTTP probes and published ports are in tests/network.rs
//! (they need Python, which the small image lacks); MCP's service tools
//! in cli/tests/mcp.rs.

mod common;

use common::pyro_with_own_data;
use pyro::workspace::{
    CreateOptions, NoProgress, Pyro, ServiceOptions, ServiceProbe, ServiceState,
};
use std::time::Duration;

fn bash(script: &str) -> Vec<String> {
    vec!["/bin/bash".into(), "-c".into(), script.into()]
}

/// Counts the guest's `sleep 30N` processes (the services' markers),
/// with shell builtins only: a process spawn costs ~0.6 s in a PVM guest.
const SLEEPERS: &str = r#"n=0; for f in /proc/[0-9]*/cmdline; do
  { IFS= read -r -d "" a; IFS= read -r -d "" b; } < "$f" 2>/dev/null
  case "$a $b" in "sleep 30"[0-9]) n=$((n+1));; esac; done; echo $n"#;

fn exec(pyro: &Pyro, id: &str, script: &str) -> String {
    let r = pyro
        .workspace_exec(id, &bash(script), Duration::from_secs(120), |_, _| {})
        .expect("exec");
    assert_eq!(r.exit_code, Some(0), "{script}: {r:?}");
    String::from_utf8_lossy(&r.stdout).into_owned()
}

fn file(path: &str) -> Option<ServiceProbe> {
    Some(ServiceProbe::File { path: path.into() })
}

fn opts(command: &str, ready: Option<ServiceProbe>) -> ServiceOptions {
    ServiceOptions {
        ready,
        // Not the default 30 s: on a loaded host, a probe after 400 KB
        // through a guest pipe once took longer (the guest kernel is
        // emulated). Tests of the timeout set their own.
        ready_timeout: Duration::from_secs(120),
        ..ServiceOptions::new(command)
    }
}

#[test]
fn services_start_ready_log_fail_and_stop_with_their_processes() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let data = common::scratch();
    let pyro = pyro_with_own_data(data.path());
    let ws = pyro
        .workspace_create(
            &CreateOptions {
                ttl_seconds: Some(1800),
                ..CreateOptions::default()
            },
            &NoProgress,
        )
        .expect("create");
    let id = ws.record.workspace_id.clone();
    let _cleanup = common::delete_on_drop(&pyro, &id);

    // Ready by its file; the start answers then, not before. A child of
    // its own (`sleep 301 &`) belongs to it too.
    let app = pyro
        .workspace_service_start(
            &id,
            "app",
            &opts(
                "echo service started; echo warming >&2; sleep 301 & sleep 1; \
                 echo service=ready > state.txt; touch .app-ready; exec sleep 300",
                file(".app-ready"),
            ),
        )
        .expect("start");
    assert_eq!(app.state, ServiceState::Ready, "{app:?}");
    assert!(app.ready_after_ms.unwrap() >= 1000, "{app:?}");
    let logs = pyro.workspace_service_logs(&id, "app", Some(20)).unwrap();
    assert_eq!(logs.stdout, "service started\n");
    assert_eq!(logs.stderr, "warming\n");
    assert_eq!(logs.service.state, ServiceState::Ready, "logs leave it be");
    let again = pyro.workspace_service_start(&id, "app", &opts("true", None));
    assert!(
        again.unwrap_err().to_string().contains("is running"),
        "a running name is taken"
    );
    assert_eq!(
        exec(&pyro, &id, &format!("cat state.txt; {SLEEPERS}")),
        "service=ready\n2\n"
    );
    let stopped = pyro.workspace_service_stop(&id, "app", None).unwrap();
    assert_eq!(stopped.state, ServiceState::Stopped, "{stopped:?}");
    assert_eq!(stopped.reason.as_deref(), Some("stopped: SIGTERM"));
    assert_eq!(exec(&pyro, &id, SLEEPERS), "0\n", "its child went with it");

    // Exits before it is ready: exited, with its code and its output.
    let early = pyro
        .workspace_service_start(
            &id,
            "early",
            &opts("echo missing config >&2; exit 3", file(".never")),
        )
        .unwrap();
    assert_eq!(early.state, ServiceState::Exited, "{early:?}");
    assert_eq!(early.exit_code, Some(3));
    let status = pyro.workspace_service_status(&id, "early").unwrap();
    assert_eq!(status.state, ServiceState::Exited);
    let logs = pyro.workspace_service_logs(&id, "early", None).unwrap();
    assert_eq!(logs.stderr, "missing config\n");

    // A probe that never succeeds: failed, the probe named, and the
    // service killed (not left running).
    let late = pyro
        .workspace_service_start(
            &id,
            "late",
            &ServiceOptions {
                ready_timeout: Duration::from_secs(2),
                ..opts(
                    "exec sleep 302",
                    Some(ServiceProbe::Command {
                        command: "test -e /workspace/.nope".into(),
                    }),
                )
            },
        )
        .unwrap();
    assert_eq!(late.state, ServiceState::Failed, "{late:?}");
    let reason = late.reason.unwrap();
    assert!(
        reason.contains("command \"test -e /workspace/.nope\"") && reason.contains("2.0 s"),
        "{reason}"
    );

    // Deaf to SIGTERM: killed after the grace. Output past the ring's
    // 256 KiB is dropped and counted.
    let deaf = pyro
        .workspace_service_start(
            &id,
            "deaf",
            &opts(
                "trap '' TERM; head -c 400000 /dev/zero | tr '\\0' x; echo; echo end; \
                 touch .deaf; while :; do sleep 1; done",
                file(".deaf"),
            ),
        )
        .unwrap();
    assert_eq!(deaf.state, ServiceState::Ready, "{deaf:?}");
    let stopped = pyro
        .workspace_service_stop(&id, "deaf", Some(Duration::from_secs(1)))
        .unwrap();
    assert_eq!(stopped.state, ServiceState::Stopped);
    assert_eq!(
        stopped.reason.as_deref(),
        Some("stopped: SIGTERM, then SIGKILL after 1.0 s")
    );
    let logs = pyro.workspace_service_logs(&id, "deaf", None).unwrap();
    assert_eq!(logs.service.stdout_bytes, 400_005);
    assert_eq!(logs.stdout.len(), 256 << 10);
    assert_eq!(logs.stdout_omitted, 400_005 - (256 << 10));
    assert!(logs.stdout.ends_with("x\nend\n"));
    let tail = pyro.workspace_service_logs(&id, "deaf", Some(1)).unwrap();
    assert_eq!(tail.stdout, "end\n");
    assert_eq!(
        exec(&pyro, &id, SLEEPERS),
        "0\n",
        "nothing left of failed or stopped services"
    );
    let names: Vec<(String, ServiceState)> = pyro
        .workspace_service_list(&id)
        .unwrap()
        .services
        .into_iter()
        .map(|s| (s.name, s.state))
        .collect();
    assert_eq!(
        names,
        [
            ("app".to_string(), ServiceState::Stopped),
            ("early".into(), ServiceState::Exited),
            ("late".into(), ServiceState::Failed),
            ("deaf".into(), ServiceState::Stopped),
        ]
    );

    // A workspace stop ends services with SIGTERM first, so one can
    // finish its work; the next start has none.
    let worker = pyro
        .workspace_service_start(
            &id,
            "worker",
            &opts(
                "trap 'echo finished > /workspace/worker.txt; exit 0' TERM; \
                 touch .worker-up; while :; do sleep 1; done",
                file(".worker-up"),
            ),
        )
        .unwrap();
    assert_eq!(worker.state, ServiceState::Ready);
    pyro.workspace_stop(&id).unwrap();
    assert!(pyro
        .workspace_service_list(&id)
        .unwrap()
        .services
        .is_empty());
    pyro.workspace_start(&id, &NoProgress).unwrap();
    assert!(pyro
        .workspace_service_list(&id)
        .unwrap()
        .services
        .is_empty());
    let read = pyro.workspace_file_read(&id, "worker.txt", 1024).unwrap();
    assert_eq!(read.content, b"finished\n");

    // A reset is a new machine: no services.
    pyro.workspace_service_start(&id, "again", &opts("exec sleep 303", None))
        .unwrap();
    pyro.workspace_reset(&id, "baseline", &NoProgress).unwrap();
    assert!(pyro
        .workspace_service_list(&id)
        .unwrap()
        .services
        .is_empty());
    let gone = pyro.workspace_service_status(&id, "again").unwrap_err();
    assert!(gone.to_string().contains("no service"), "{gone}");
}
