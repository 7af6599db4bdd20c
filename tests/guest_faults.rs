//! A guest that misbehaves costs only itself: a request that panics in
//! guest-init's agent gets an error and the VM serves on, a service
//! whose helper thread panics is failed with the reason, and a guest
//! printing to its console without end cannot grow the host's log past
//! its cap.

mod common;

use common::{delete_on_drop, pyro_with_own_data};
use pyro::workspace::{CreateOptions, ExecRequest, GuestClient, GuestError, NoProgress, Stream};
use pyro_proto::rpc::{Reply, Request};
use pyro_proto::service::{StartRequest, State};
use std::time::Duration;

/// The exec argv that panics in the agent of a guest booted with
/// `pyro.test_panic=` it (`proto::cmdline::TEST_PANIC_KEY`).
const PANIC_WORD: &str = "pyro-test-panic";

fn exec(
    client: &mut GuestClient,
    argv: &[&str],
    stdin: Option<&[u8]>,
) -> Result<String, GuestError> {
    let req = ExecRequest {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        timeout_ms: Some(30_000),
        ..Default::default()
    };
    let mut out = Vec::new();
    let keep = |stream: Stream, bytes: &[u8]| {
        if stream == Stream::Stdout {
            out.extend_from_slice(bytes);
        }
    };
    let mut body = stdin;
    let body = body.as_mut().map(|b| b as &mut (dyn std::io::Read + Send));
    client.exec_with_stdin(req, body, keep)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn a_panicking_request_or_service_helper_costs_only_itself_and_the_vm_serves_on() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let dir = common::scratch();
    let trigger = format!("{}={PANIC_WORD}", pyro_proto::cmdline::TEST_PANIC_KEY);
    let (_vm, uds) = common::serving_vm_with("debian:12", dir.path(), &[&trigger]);
    let mut client = GuestClient::connect(&uds).expect("connect");
    client
        .set_reply_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    // Another connection, open across the panic.
    let mut other = GuestClient::connect(&uds).expect("connect");
    other
        .set_reply_timeout(Some(Duration::from_secs(60)))
        .unwrap();

    match exec(&mut client, &[PANIC_WORD], None) {
        Err(GuestError::Remote { kind, message }) => {
            assert_eq!(kind, "agent_panic", "{message}");
            assert!(message.contains("test panic"), "{message}");
        }
        other => panic!("expected agent_panic, got {other:?}"),
    }
    // The same connection is still in step, also after a panicking
    // request whose body the agent had to drain.
    assert_eq!(
        exec(&mut client, &["echo", "after"], None).unwrap(),
        "after\n"
    );
    let body = vec![b'x'; 300_000];
    let err = exec(&mut client, &[PANIC_WORD], Some(&body)).unwrap_err();
    assert!(
        matches!(&err, GuestError::Remote { kind, .. } if kind == "agent_panic"),
        "{err:?}"
    );
    assert_eq!(
        exec(&mut client, &["cat"], Some(b"in step")).unwrap(),
        "in step"
    );
    // Other connections, old and new, and PID 1 itself are untouched.
    assert_eq!(
        exec(&mut other, &["echo", "other"], None).unwrap(),
        "other\n"
    );
    let mut fresh = GuestClient::connect(&uds).expect("connect after the panics");
    fresh
        .set_reply_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    fresh.ping().expect("ping");
    assert_eq!(
        exec(&mut fresh, &["cat", "/proc/1/comm"], None).unwrap(),
        "pyro-init\n"
    );

    // A service whose helper thread panics is failed with the reason.
    let start = |name: &str, command: &str| {
        Request::ServiceStart(StartRequest {
            name: name.into(),
            command: command.into(),
            cwd: "/workspace".into(),
            env: Vec::new(),
            probe: None,
            ready_timeout_ms: 30_000,
            publish: Vec::new(),
        })
    };
    // Its command is the trigger: the thread that waits for its exit
    // panics. Without the isolation the service would read as running
    // for ever, its exit never seen.
    service(&mut fresh, &start("doomed", PANIC_WORD));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let failed = loop {
        let status = Request::ServiceStatus {
            name: "doomed".into(),
        };
        let info = service(&mut fresh, &status);
        if info.state == State::Failed {
            break info;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not failed within 60 s: {info:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let reason = failed.reason.unwrap_or_default();
    assert!(
        reason.contains("svc-wait thread failed") && reason.contains("test panic"),
        "{reason}"
    );
    // The agent, PID 1 and the next service are untouched.
    let next = service(&mut fresh, &start("fine", "sleep 100"));
    assert_eq!(next.state, State::Ready, "{next:?}");
    assert_eq!(
        exec(&mut fresh, &["cat", "/proc/1/comm"], None).unwrap(),
        "pyro-init\n"
    );

    // The console says what panicked and where.
    let console = std::fs::read_to_string(dir.path().join("console.log")).unwrap();
    assert!(
        console.contains("panic in thread rpc") && console.contains("agent.rs"),
        "{console}"
    );
    assert!(console.contains("panic in thread svc-wait"), "{console}");
}

/// A service's state, as the agent reports it.
fn service(client: &mut GuestClient, request: &Request) -> pyro_proto::service::Info {
    match client.call_collect(request, &[], 0) {
        Ok((Reply::Service(info), _)) => *info,
        other => panic!("expected a service, got {other:?}"),
    }
}

#[test]
fn a_guest_flooding_its_console_cannot_grow_the_host_log_past_its_cap() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    const CAP: u64 = 4 << 10;
    // Read where this process makes its VMs' configs.
    std::env::set_var(pyro::workspace::CONSOLE_LOG_MAX_ENV, CAP.to_string());
    let data = common::scratch();
    let pyro = pyro_with_own_data(data.path());
    let opts = CreateOptions {
        ttl_seconds: Some(1800),
        ..CreateOptions::default()
    };
    let id = pyro
        .workspace_create(&opts, &NoProgress)
        .unwrap()
        .record
        .workspace_id;
    let _cleanup = delete_on_drop(&pyro, &id);
    let vm_dir = data.path().join("workspaces").join(&id).join("vm");

    // Three caps' worth (the console takes 1-3 kB/s on a busy PVM host).
    let flood = format!("head -c {} /dev/zero | tr '\\0' x > /dev/console", 3 * CAP);
    let argv = ["sh".to_string(), "-c".into(), flood];
    let started = std::time::Instant::now();
    let r = pyro
        .workspace_exec(&id, &argv, Duration::from_secs(300), |_, _| {})
        .unwrap();
    assert_eq!(r.exit_code, Some(0), "{r:?}");
    eprintln!(
        "{} KiB to the console in {:?}",
        (3 * CAP) >> 10,
        started.elapsed()
    );

    let log = vm_dir.join("console.log");
    let old = vm_dir.join("console.log.1");
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    assert!(size(&log) <= CAP, "console.log: {} bytes", size(&log));
    assert_eq!(size(&old), CAP, "console.log.1 is full when it rotated");
    let rotated = std::fs::read(&old).unwrap();
    let xs = rotated.iter().filter(|&&b| b == b'x').count();
    assert!(
        xs as u64 > CAP / 2,
        "{xs} of the flood's bytes in console.log.1"
    );
    // Nothing else grew next to them.
    let names: Vec<String> = std::fs::read_dir(&vm_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("console"))
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    // The guest is fine.
    let r = pyro
        .workspace_exec(
            &id,
            &["echo".into(), "ok".into()],
            Duration::from_secs(60),
            |_, _| {},
        )
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "ok\n");
}
