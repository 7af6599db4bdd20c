//! VMs in their own processes (the base of workspaces): they serve the
//! agent, answer on their control socket from any later handle, stop on
//! request with a record of why, and a VMM killed with SIGKILL shows as
//! stopped (not running) with a reason.

use pyro_workspace::{DetachedVm, ExecRequest, ExitReason, NoProgress, Pyro, VmState, VMM_BIN_ENV};
use std::time::Duration;

fn spawn(pyro: &Pyro, dir: &std::path::Path) -> DetachedVm {
    std::env::set_var(VMM_BIN_ENV, env!("CARGO_BIN_EXE_pyro"));
    pyro.spawn_detached("debian:12", 128, 1, dir, None, &NoProgress)
        .expect("spawn")
}

#[test]
fn a_detached_vm_serves_stops_and_reports_a_killed_vmm() {
    let pyro = Pyro::from_env();
    let home = tempfile::tempdir().unwrap();

    // Two VMs at once; each answers from a fresh handle on its directory.
    let a = spawn(&pyro, &home.path().join("a"));
    let b = spawn(&pyro, &home.path().join("b"));
    for vm in [&a, &b] {
        let mut client = vm.wait_ready(Duration::from_secs(120)).expect("agent");
        let mut out = Vec::new();
        let r = client
            .exec(
                ExecRequest {
                    argv: vec!["uname".into(), "-r".into()],
                    ..Default::default()
                },
                |_, bytes| out.extend_from_slice(bytes),
            )
            .expect("exec");
        assert_eq!(r.exit_code, Some(0));
        assert!(!out.is_empty());
    }
    let VmState::Running { pid, .. } = DetachedVm::open(a.dir()).state() else {
        panic!("a is not running: {:?}", a.state());
    };

    // Paused: the guest does not answer, but nothing fails; resumed, the
    // same request completes.
    b.pause().expect("pause");
    assert!(matches!(b.state(), VmState::Running { paused: true, .. }));
    let uds = b.vsock();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let answer = pyro_workspace::GuestClient::connect(&uds)
            .and_then(|mut c| c.ping().map_err(|e| std::io::Error::other(e.to_string())));
        let _ = tx.send(answer.is_ok());
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(2)).is_err(),
        "a paused guest answered"
    );
    b.resume().expect("resume");
    assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok(true));
    assert!(matches!(b.state(), VmState::Running { paused: false, .. }));

    // Stopped on request: the record says so and the socket is gone.
    b.stop().expect("stop");
    assert_eq!(
        b.state(),
        VmState::Stopped {
            reason: ExitReason::Stopped,
            message: "stopped on request".into()
        }
    );

    // Killed outright: no record, but never shown as running.
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    std::thread::sleep(Duration::from_millis(300));
    match a.state() {
        VmState::Stopped { reason, .. } => assert_eq!(reason, ExitReason::VmmDied),
        other => panic!("a killed VMM shows as {other:?}"),
    }
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z ")),
        "the VMM process is still alive"
    );
}
