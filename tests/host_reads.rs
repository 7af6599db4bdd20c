//! Reads of a running workspace served from its frozen disk image on the
//! host (`workspace/src/workspaces/host_read.rs`), on one real workspace
//! seeded with 10,000 files: list, read, export and diff are served by
//! the host and agree byte for byte with the seed, the agent and `git
//! apply`; a write the guest has not flushed is seen (the freeze writes
//! it out); an export while the guest keeps rewriting a file gets the
//! old content or the new, never a mix; a checkpoint/reset round trip
//! reads back the same tree; and the freeze itself holds writers, ends
//! with its thaw, its connection or its deadline, and is refused twice.

mod common;

use pyro::workspace::{
    ArtifactType, ExecRequest, FileInfo, GuestClient, NoProgress, Pyro, ServedBy,
};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DIRS: usize = 100;
const FILES: usize = 100;

fn seed(dir: &Path) -> Vec<u8> {
    pyro::workspace::testing::small_files_seed(dir, DIRS, FILES);
    let big: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::write(dir.join("bin/big.bin"), &big).unwrap();
    std::fs::write(dir.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(dir.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("d1", dir.join("link")).unwrap();
    big
}

fn sh(pyro: &Pyro, id: &str, script: &str) -> String {
    let argv = ["sh".to_string(), "-c".into(), script.into()];
    let mut out = Vec::new();
    let r = pyro
        .workspace_exec(id, &argv, Duration::from_secs(300), |_, b| {
            out.extend_from_slice(b)
        })
        .expect("exec");
    assert_eq!(
        r.exit_code,
        Some(0),
        "{script}: {}",
        String::from_utf8_lossy(&out)
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// Starts `script` in the guest in a session of its own (the exec's end
/// kills its process group), its pid in `/tmp/<name>`.
fn background(pyro: &Pyro, id: &str, name: &str, script: &str) {
    sh(
        pyro,
        id,
        &format!(
            "setsid sh -c {} </dev/null >/dev/null 2>&1 & pid=$!; echo $pid > /tmp/{name}; \
             while [ \"$(cut -d' ' -f6 /proc/$pid/stat)\" != $pid ]; do sleep 0.05; done",
            pyro::workspace::shell_quote(script)
        ),
    );
}

fn by_path(entries: Vec<FileInfo>) -> BTreeMap<String, FileInfo> {
    entries.into_iter().map(|e| (e.path.clone(), e)).collect()
}

/// Every file, directory and symlink below `dir` (relative), except
/// `lost+found`: its type, mode, and content or target.
fn tree(dir: &Path) -> BTreeMap<String, (String, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        for entry in std::fs::read_dir(dir.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let child = rel.join(entry.file_name());
            let name = child.display().to_string();
            if name == "lost+found" || name == ".git" {
                continue;
            }
            let md = std::fs::symlink_metadata(dir.join(&child)).unwrap();
            let mode = md.permissions().mode() & 0o7777;
            let value = if md.is_symlink() {
                let target = std::fs::read_link(dir.join(&child)).unwrap();
                (
                    "symlink".into(),
                    0,
                    target.display().to_string().into_bytes(),
                )
            } else if md.is_dir() {
                todo.push(child.clone());
                ("dir".into(), mode, Vec::new())
            } else {
                (
                    "file".into(),
                    mode,
                    std::fs::read(dir.join(&child)).unwrap(),
                )
            };
            out.insert(name, value);
        }
    }
    out
}

fn agent(pyro: &Pyro, id: &str) -> GuestClient {
    let vsock = pyro
        .paths()
        .data
        .join("workspaces")
        .join(id)
        .join("vm/vsock.sock");
    let mut c = GuestClient::connect(&vsock).expect("connect to the agent");
    c.set_reply_timeout(Some(Duration::from_secs(120))).unwrap();
    c
}

fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(
            start.elapsed() < deadline,
            "{what}: not within {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_running_workspace_is_read_from_its_frozen_disk_on_the_host() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let scratch = common::scratch();
    let pyro = common::pyro_with_own_data(&scratch.path().join("data"));
    let seed_dir = scratch.path().join("seed");
    let big = seed(&seed_dir);
    let id = common::seeded_workspace(&pyro, &seed_dir);
    let _guard = common::delete_on_drop(&pyro, &id);

    // The reader runs confined: one that makes a system call outside its
    // allowlist is killed, and the agent serves the read instead.
    std::env::set_var(pyro::workspace::IMAGE_READER_ESCAPE_ENV, "1");
    let escaped = pyro.workspace_file_list(&id, "run.sh", false);
    std::env::remove_var(pyro::workspace::IMAGE_READER_ESCAPE_ENV);
    let escaped = escaped.unwrap();
    assert_eq!(escaped.served_by, ServedBy::GuestAgent);
    assert_eq!(escaped.entries.len(), 1);

    // List: every seeded entry, as the seed has it.
    let list = pyro.workspace_file_list(&id, "/workspace", true).unwrap();
    assert_eq!(list.served_by, ServedBy::HostImage);
    assert!(!list.truncated);
    let entries = by_path(list.entries);
    let files = entries
        .values()
        .filter(|e| e.artifact_type == ArtifactType::File)
        .count();
    assert_eq!(files, DIRS * FILES + 2, "every seeded file");
    let run = &entries["/workspace/run.sh"];
    assert_eq!((run.mode, run.size_bytes), (0o755, 18));
    let link = &entries["/workspace/link"];
    assert_eq!(link.artifact_type, ArtifactType::Symlink);
    assert_eq!(link.link_target.as_deref(), Some("d1"));
    assert_eq!(entries["/workspace/bin/big.bin"].size_bytes, 1 << 20);

    // The agent lists the same entries, mtimes and directory sizes too.
    let host_d1 = pyro.workspace_file_list(&id, "d1", true).unwrap();
    assert_eq!(host_d1.served_by, ServedBy::HostImage);
    let mut guest_d1 = agent(&pyro, &id).list("d1", true).unwrap().entries;
    guest_d1.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(host_d1.entries, guest_d1);

    // Read: exact bytes, bounded. A small file, or a small part of any,
    // is the agent's (it costs less than a freeze); more is the host's.
    let read = pyro.workspace_file_read(&id, "d50/f7.txt", 1024).unwrap();
    assert_eq!(read.served_by, ServedBy::GuestAgent);
    assert_eq!(read.content, b"file 50 7\n");
    let read = pyro.workspace_file_read(&id, "bin/big.bin", 1000).unwrap();
    assert_eq!(read.served_by, ServedBy::GuestAgent);
    assert_eq!((read.size_bytes, read.truncated), (1 << 20, true));
    assert_eq!(read.content, big[..1000]);
    let read = pyro
        .workspace_file_read(&id, "bin/big.bin", 1 << 20)
        .unwrap();
    assert_eq!(read.served_by, ServedBy::HostImage);
    assert_eq!((read.size_bytes, read.truncated), (1 << 20, false));
    assert!(read.content == big, "the host's read differs from the seed");
    let read = pyro
        .workspace_file_read(&id, "bin/big.bin", 100_000)
        .unwrap();
    assert_eq!(read.served_by, ServedBy::HostImage);
    assert_eq!((read.content.len(), read.truncated), (100_000, true));
    assert_eq!(read.content, big[..100_000]);

    // Export of the whole tree and of one file: byte for byte the seed.
    let out = scratch.path().join("export");
    let export = pyro.workspace_export(&id, "/workspace", &out).unwrap();
    assert_eq!(export.served_by, ServedBy::HostImage);
    assert_eq!(tree(&out), tree(&seed_dir));
    let one = scratch.path().join("big.bin");
    let export = pyro.workspace_export(&id, "bin/big.bin", &one).unwrap();
    assert_eq!(export.served_by, ServedBy::HostImage);
    assert_eq!(std::fs::read(&one).unwrap(), big);

    // A write the guest has not flushed: the freeze writes it out, so
    // the host serves it at once (were it missing from the image, the
    // agent would serve it instead, and `served_by` would say so).
    // (20,000 bytes: more than the agent serves itself.)
    background(
        &pyro,
        &id,
        "bg",
        "sleep 1; head -c 20000 /dev/zero | tr '\\0' x > /workspace/bg.txt",
    );
    // (Within 15 s: the guest's own writeback would take 30.)
    let fresh = wait_for("the background write", Duration::from_secs(15), || {
        let read = pyro.workspace_file_read(&id, "bg.txt", 65536).ok()?;
        // Created but not yet written is a state it passes through.
        (read.size_bytes == 20_000).then_some(read)
    });
    assert!(fresh.content == vec![b'x'; 20_000]);
    assert_eq!(fresh.served_by, ServedBy::HostImage);

    // An export while the guest keeps rewriting one file in place with
    // single 64 KiB writes: all of one or all of the other.
    sh(
        &pyro,
        &id,
        "head -c 65536 /dev/zero | tr '\\0' A > /tmp/A; head -c 65536 /dev/zero | tr '\\0' B > /tmp/B; \
         cp /tmp/A /workspace/flip.bin",
    );
    background(
        &pyro,
        &id,
        "flipper",
        "while :; do for x in A B; do \
           dd if=/tmp/$x of=/workspace/flip.bin bs=65536 count=1 conv=notrunc 2>/dev/null; \
         done; done",
    );
    // Exports until both contents have been seen (a spawn of `dd` takes
    // seconds on PVM hosts), each whole.
    let mut seen = Vec::new();
    let start = Instant::now();
    while !(seen.contains(&b'A') && seen.contains(&b'B')) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the guest stopped rewriting"
        );
        let out = scratch.path().join(format!("flip{}", seen.len()));
        let export = pyro.workspace_export(&id, "flip.bin", &out).unwrap();
        assert_eq!(export.served_by, ServedBy::HostImage);
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(bytes.len(), 65536);
        assert!(
            bytes.iter().all(|b| *b == bytes[0]) && (bytes[0] == b'A' || bytes[0] == b'B'),
            "export {} mixes the two writes",
            seen.len()
        );
        seen.push(bytes[0]);
    }
    sh(&pyro, &id, "kill $(cat /tmp/flipper)");
    eprintln!("exports saw {:?}", String::from_utf8_lossy(&seen));

    // Diff: 100 modified, 100 deleted, 3 added, served by the host; its
    // patch on a copy of the seed gives the live tree.
    sh(
        &pyro,
        &id,
        "cd /workspace && sed -i '$a changed' d7/f*.txt && rm -rf d8 && echo new > added.txt",
    );
    let diff = pyro.workspace_diff(&id).unwrap();
    assert_eq!(diff.served_by, ServedBy::HostImage);
    let s = &diff.summary;
    assert_eq!((s.modified, s.deleted, s.added), (100, 100, 3), "{s:?}");
    let copy = scratch.path().join("patched");
    let status = std::process::Command::new("cp")
        .args(["-a"])
        .arg(&seed_dir)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::write(scratch.path().join("diff.patch"), &diff.patch).unwrap();
    let applied = std::process::Command::new("git")
        .current_dir(&copy)
        .args(["apply", "--whitespace=nowarn"])
        .arg(scratch.path().join("diff.patch"))
        .output()
        .unwrap();
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let live = scratch.path().join("live");
    pyro.workspace_export(&id, "/workspace", &live).unwrap();
    assert_eq!(tree(&copy), tree(&live));

    // A checkpoint/reset round trip reads back the same tree.
    pyro.checkpoint_create(&id, "mid").unwrap();
    let before = pyro.workspace_file_list(&id, "/workspace", true).unwrap();
    sh(
        &pyro,
        &id,
        "rm -rf /workspace/d9 && echo later > /workspace/later.txt",
    );
    pyro.workspace_reset(&id, "mid", &NoProgress).unwrap();
    let after = pyro.workspace_file_list(&id, "/workspace", true).unwrap();
    assert_eq!(after.served_by, ServedBy::HostImage);
    assert_eq!(by_path(after.entries), by_path(before.entries));

    // The freeze itself. Held: a guest writer waits for the thaw.
    let mut holder = agent(&pyro, &id);
    holder.freeze(Duration::from_secs(30)).unwrap();
    let mut second = agent(&pyro, &id);
    let e = second.freeze(Duration::from_secs(30)).unwrap_err();
    assert!(e.to_string().contains("busy"), "a second freeze: {e}");
    let writer = std::thread::spawn({
        let mut c = agent(&pyro, &id);
        move || {
            let req = ExecRequest {
                argv: vec!["sh".into(), "-c".into(), "echo w > /workspace/w.txt".into()],
                ..Default::default()
            };
            c.exec(req, |_, _| {}).map(|r| r.exit_code)
        }
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !writer.is_finished(),
        "a write went through a frozen /workspace"
    );
    holder.thaw().unwrap();
    assert_eq!(writer.join().unwrap().unwrap(), Some(0));
    // The connection's end thaws it.
    let mut dropped = agent(&pyro, &id);
    dropped.freeze(Duration::from_secs(100)).unwrap();
    drop(dropped);
    sh(&pyro, &id, "echo after-drop > /workspace/w.txt");
    // So does the deadline; the late thaw then fails.
    let mut late = agent(&pyro, &id);
    late.freeze(Duration::from_millis(1500)).unwrap();
    sh(&pyro, &id, "echo after-deadline > /workspace/w.txt");
    assert!(late.thaw().is_err(), "a thaw after the deadline must fail");
    let read = pyro.workspace_file_read(&id, "w.txt", 100).unwrap();
    assert_eq!(read.content, b"after-deadline\n");
    // And the host reads again, the guest's last write included.
    let list = pyro.workspace_file_list(&id, "w.txt", false).unwrap();
    assert_eq!(list.served_by, ServedBy::HostImage);
    assert_eq!(list.entries[0].size_bytes, 15);
}
