//! VM snapshots on real guests: a restored VM serves exec, file and
//! archive RPCs like a booted one, VMs restored from one snapshot are
//! each their own (hostname, random output), the guest clock is right,
//! and a damaged or mismatched snapshot is refused with a clear error.

mod common;

use pyro::vmm::{DeviceConfig, Disk, Vm, VmConfig, VsockConfig};
use pyro::workspace::{ExecRequest, GuestClient};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn config(dir: &Path) -> VmConfig {
    let mut config = VmConfig::new(common::kernel());
    config.add_disk(Disk {
        path: common::rootfs("debian:12"),
        read_only: true,
        direct_only: false,
    });
    config.set_vsock(VsockConfig {
        cid: 3,
        uds: dir.join("vsock.sock"),
    });
    config.serial_log = Some(dir.join("console.log"));
    config
}

/// Runs a shell line, returning (exit code, stdout).
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

fn console(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("console.log")).unwrap_or_default()
}

/// Restores `snap` into a fresh directory under `root` and makes it unique.
fn restore(snap: &Path, root: &Path, name: &str) -> (Vm, GuestClient, PathBuf, String) {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let vm = Vm::restore(&config(&dir), snap).expect("restore");
    let mut client = match GuestClient::wait_ready(&dir.join("vsock.sock"), Duration::from_secs(30))
    {
        Ok(c) => c,
        Err(e) => panic!("agent after restore: {e}\nconsole:\n{}", console(&dir)),
    };
    if let Err(e) = client.ping() {
        panic!("ping after restore: {e}\nconsole:\n{}", console(&dir));
    }
    let hostname = match client.restored(None, None) {
        Ok(h) => h,
        Err(e) => panic!("restored: {e}\nconsole:\n{}", console(&dir)),
    };
    (vm, client, dir, hostname)
}

#[test]
fn restored_vms_work_like_booted_ones_and_are_each_their_own() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let root = common::scratch();
    let boot_dir = root.path().join("boot");
    std::fs::create_dir_all(&boot_dir).unwrap();
    let mut vm = Vm::start(&config(&boot_dir)).expect("start");
    vm.wait_for_init(Duration::from_secs(120)).expect("init");
    let mut client =
        GuestClient::wait_ready(&boot_dir.join("vsock.sock"), Duration::from_secs(30)).unwrap();
    assert_eq!(sh(&mut client, "true").0, Some(0));
    drop(client);
    let snap = root.path().join("snap");
    vm.snapshot(&snap).expect("snapshot");
    vm.shutdown();
    drop(vm);

    // One restored VM does everything a booted one does.
    let (vm, mut client, dir, hostname) = restore(&snap, root.path(), "one");
    let (code, out) = sh(
        &mut client,
        "hostname; echo hi > /workspace/f; cat /workspace/f",
    );
    assert_eq!(code, Some(0), "{out}\n{}", console(&dir));
    assert_eq!(out, format!("{hostname}\nhi\n"));
    client
        .write("a/b.txt", None, true, &mut &b"restored\n"[..])
        .expect("write");
    let (bytes, _) = client.read_to_vec("a/b.txt", 1 << 20).expect("read");
    assert_eq!(bytes, b"restored\n");
    let mut tar = Vec::new();
    client.download("a", &mut tar).expect("download");
    let names: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.iter().any(|n| n.ends_with("b.txt")), "{names:?}");
    // The guest's wall clock is the host's (within a few seconds), not
    // the snapshot's.
    let (_, guest_now) = sh(&mut client, "date +%s");
    let host_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let guest_now: i64 = guest_now.trim().parse().expect("date");
    assert!(
        (guest_now - host_now).abs() <= 5,
        "guest {guest_now}, host {host_now}"
    );
    // Timers fire after a restore (a lost LAPIC deadline once left every
    // `sleep` hanging): checked from another thread with a host-side
    // deadline, so a regression fails instead of hanging the test.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(sh(&mut client, "sleep 1; echo slept"));
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok((code, out)) => assert_eq!((code, out.as_str()), (Some(0), "slept\n")),
        Err(_) => panic!("`sleep 1` did not end in a restored guest: its timers do not fire"),
    }
    drop(vm);

    // Ten in sequence, then four at once: all answer, and no two share a
    // hostname or a random stream.
    let mut seen = std::collections::HashSet::new();
    let mut check = |client: &mut GuestClient, hostname: &str| {
        let (code, out) = sh(client, "hostname; head -c 16 /dev/urandom | od -An -tx1");
        assert_eq!(code, Some(0));
        assert!(out.starts_with(hostname), "{out}");
        assert!(seen.insert(out.clone()), "two restored VMs printed {out:?}");
    };
    for i in 0..10 {
        let (_vm, mut client, _, hostname) = restore(&snap, root.path(), &format!("seq{i}"));
        check(&mut client, &hostname);
    }
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let (snap, root) = (snap.clone(), root.path().to_path_buf());
            std::thread::spawn(move || {
                let (vm, client, _, hostname) = restore(&snap, &root, &format!("par{i}"));
                (vm, client, hostname)
            })
        })
        .collect();
    let mut live: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (_, client, hostname) in &mut live {
        check(client, hostname);
    }
}

#[test]
fn damaged_or_mismatched_snapshots_are_refused() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let root = common::scratch();
    let dir = root.path().join("boot");
    std::fs::create_dir_all(&dir).unwrap();
    let mut vm = Vm::start(&config(&dir)).expect("start");
    vm.wait_for_init(Duration::from_secs(120)).expect("init");
    let snap = root.path().join("snap");
    vm.snapshot(&snap).expect("snapshot");
    drop(vm);

    let target = root.path().join("t");
    std::fs::create_dir_all(&target).unwrap();
    let expect_refusal = |config: &VmConfig, snap: &Path, needle: &str| {
        let err = Vm::restore(config, snap)
            .err()
            .expect("restore must fail")
            .to_string();
        assert!(err.contains(needle), "{err:?} lacks {needle:?}");
    };
    // Another memory size.
    let mut bigger = config(&target);
    bigger.mem_mib = 256;
    expect_refusal(&bigger, &snap, "made for 128 MiB");
    // Another device layout (no vsock).
    let mut no_vsock = config(&target);
    no_vsock
        .devices
        .retain(|d| !matches!(d, DeviceConfig::Vsock(_)));
    expect_refusal(&no_vsock, &snap, "vsock");

    // Another root image (the guest's page cache holds the old one's
    // blocks).
    let other_root = root.path().join("other-root.img");
    std::fs::write(&other_root, vec![0u8; 4096]).unwrap();
    let mut rebuilt = config(&target);
    rebuilt.devices[0] = DeviceConfig::Block(Disk {
        path: other_root,
        read_only: true,
        direct_only: false,
    });
    expect_refusal(&rebuilt, &snap, "read-only disks");

    // A truncated memory file.
    let short = root.path().join("short");
    std::fs::create_dir_all(&short).unwrap();
    std::fs::copy(snap.join("snapshot.json"), short.join("snapshot.json")).unwrap();
    std::fs::write(short.join("memory.bin"), b"x").unwrap();
    expect_refusal(&config(&target), &short, "memory.bin is 1 bytes");
    // A damaged state file.
    let bad = root.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(snap.join("memory.bin"), bad.join("memory.bin")).unwrap();
    let mut text = std::fs::read(snap.join("snapshot.json")).unwrap();
    text.truncate(text.len() / 2);
    std::fs::write(bad.join("snapshot.json"), text).unwrap();
    expect_refusal(&config(&target), &bad, "damaged or not a pyro snapshot");
    // Another format version.
    let old = root.path().join("old");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::copy(snap.join("memory.bin"), old.join("memory.bin")).unwrap();
    let text = std::fs::read_to_string(snap.join("snapshot.json")).unwrap();
    let current = format!("\"version\":{}", pyro::vmm::snapshot::FORMAT_VERSION);
    assert!(text.contains(&current));
    let text = text.replacen(&current, "\"version\":999", 1);
    std::fs::write(old.join("snapshot.json"), text).unwrap();
    expect_refusal(&config(&target), &old, "format version 999");
    // The state of one take with the memory of another (same size, a
    // copy: another file), as when a snapshot is taken again between a
    // restore's two reads (review D7).
    let swapped = root.path().join("swapped");
    std::fs::create_dir_all(&swapped).unwrap();
    std::fs::copy(snap.join("memory.bin"), swapped.join("memory.bin")).unwrap();
    std::fs::copy(snap.join("snapshot.json"), swapped.join("snapshot.json")).unwrap();
    expect_refusal(
        &config(&target),
        &swapped,
        "not the memory file written with this state",
    );
    // No snapshot at all.
    expect_refusal(&config(&target), &root.path().join("none"), "snapshot.json");
}
