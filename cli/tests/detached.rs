//! VMs in their own processes (the base of workspaces): they serve the
//! agent, answer on their control socket from any later handle, stop on
//! request with a record of why, and a VMM wedged (SIGSTOP) or killed
//! with SIGKILL shows as stopped (not running) with the reason. A running VM's writable disk can
//! be copied as it is at one instant.

use pyro_vmm::control::VmmSpec;
use pyro_vmm::{DeviceConfig, Disk};
use pyro_workspace::{
    DetachedVm, ExecRequest, ExitReason, GuestClient, NoProgress, Pyro, VmState, VMM_BIN_ENV,
};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn spawn(pyro: &Pyro, dir: &std::path::Path) -> DetachedVm {
    std::env::set_var(VMM_BIN_ENV, env!("CARGO_BIN_EXE_pyro"));
    pyro.spawn_detached("debian:12", 128, 1, dir, None, &NoProgress)
        .expect("spawn")
}

#[test]
fn a_detached_vm_serves_stops_and_reports_a_killed_vmm() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
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

    // Wedged (SIGSTOP: alive, silent): shown as stopped, and why, not
    // as gone (the status request waits out its reply timeout first).
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    match a.state() {
        VmState::Stopped { reason, message } => {
            assert_eq!(reason, ExitReason::VmmNotAnswering, "{message}");
            assert!(message.contains(&pid.to_string()), "{message}");
        }
        other => panic!("a wedged VMM shows as {other:?}"),
    }

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

/// Runs a shell line in the guest; returns (exit code, stdout).
fn sh(client: &mut GuestClient, line: &str) -> (Option<i32>, String) {
    let mut out = Vec::new();
    let r = client
        .exec(
            ExecRequest {
                argv: vec!["sh".into(), "-c".into(), line.into()],
                ..Default::default()
            },
            |_, bytes| out.extend_from_slice(bytes),
        )
        .expect("exec");
    (r.exit_code, String::from_utf8_lossy(&out).into_owned())
}

/// What `debugfs -R request` prints for the ext4 image `image`.
fn debugfs(image: &Path, request: &str) -> String {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(request)
        .arg(image)
        .output()
        .expect("debugfs (e2fsprogs)");
    assert!(out.status.success(), "debugfs: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Replays the journal of the copied image, as the kernel would on mount
/// (the copy of a mounted ext4 is crash-consistent: what the guest synced
/// may still be only in the journal).
fn recover(image: &Path) {
    let status = Command::new("e2fsck")
        .arg("-fy")
        .arg(image)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("e2fsck (e2fsprogs)");
    // 0: clean; 1: errors corrected (the journal replayed).
    assert!(matches!(status.code(), Some(0 | 1)), "e2fsck: {status:?}");
}

#[test]
fn a_running_vms_disk_copy_holds_what_the_guest_wrote() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    std::env::set_var(VMM_BIN_ENV, env!("CARGO_BIN_EXE_pyro"));
    let pyro = Pyro::from_env();
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("vm");

    // A workspace-like VM: root image, a writable ext4 disk on
    // /workspace, vsock.
    let disk = home.path().join("disk.ext4");
    let made = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-m", "0", "-L", "workspace"])
        .arg(&disk)
        .arg("64M")
        .status()
        .expect("mkfs.ext4 (e2fsprogs)");
    assert!(made.success());
    let mut config = pyro
        .detached_config("debian:12", 128, 1, &dir, &NoProgress)
        .expect("config");
    let root = config.root().expect("root disk").path.clone();
    config.devices.insert(
        1,
        DeviceConfig::Block(Disk {
            path: disk.clone(),
            read_only: false,
            direct_only: false,
        }),
    );
    config.cmdline_extra.push("pyro.workspace=/dev/vdb".into());
    let vm = DetachedVm::spawn(&VmmSpec {
        config,
        dir: dir.clone(),
        deadline_unix: None,
        boot_timeout_ms: 120_000,
        remove_on_expiry: None,
        restore_from: None,
        idle_suspend: None,
    })
    .expect("spawn");
    let mut client = vm.wait_ready(Duration::from_secs(120)).expect("agent");

    // The agent writes a file and syncs; the host copies the disk.
    let (code, _) = sh(
        &mut client,
        "echo point-in-time > /workspace/note.txt && sync",
    );
    assert_eq!(code, Some(0));
    let copy = home.path().join("copy.ext4");
    let bytes = vm.copy_disk(&disk, &copy).expect("copy_disk");
    assert!(bytes > 0 && bytes <= 64 << 20, "copied {bytes} bytes");
    recover(&copy);
    assert_eq!(debugfs(&copy, "cat /note.txt"), "point-in-time\n");
    assert!(!home.path().join("copy.ext4.tmp").exists());

    // The VM runs on, not paused, and a later write is not in the copy.
    assert!(matches!(vm.state(), VmState::Running { paused: false, .. }));
    let (code, out) = sh(
        &mut client,
        "echo later > /workspace/later.txt && sync && cat /workspace/note.txt",
    );
    assert_eq!((code, out.as_str()), (Some(0), "point-in-time\n"));
    assert!(!debugfs(&copy, "ls /").contains("later.txt"));

    // Only the VM's writable disks can be copied; nothing is left behind.
    let refused = vm.copy_disk(&root, &home.path().join("root-copy.ext4"));
    let err = refused
        .expect_err("the read-only root is not copied")
        .to_string();
    assert!(err.contains("writable disks"), "{err}");
    assert!(!home.path().join("root-copy.ext4").exists());
    let over = vm.copy_disk(&disk, &disk);
    let err = over.expect_err("a copy over the live disk").to_string();
    assert!(err.contains("one of this VM's disks"), "{err}");
    vm.stop().expect("stop");
}
