//! File and archive RPCs on one real booted guest: atomic writes, reads,
//! listings, paths that try to leave /workspace, archives in and out
//! (including hostile ones), stdin, and a file read served
//! while a long command runs on another connection.
//!
//! One VM serves every step (a boot costs ~10 s on PVM hosts); each step
//! runs on its own connection and a failing step does not hide the others.

mod common;

use pyro::workspace::{ArtifactType, ExecRequest, GuestClient, GuestError, Stream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn sh(script: &str) -> ExecRequest {
    ExecRequest {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        ..Default::default()
    }
}

/// Runs a shell script; returns (exit code, stdout, stderr).
fn run(c: &mut GuestClient, script: &str) -> (Option<i32>, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let r = c
        .exec(sh(script), |s, b| match s {
            Stream::Stdout => out.extend_from_slice(b),
            Stream::Stderr => err.extend_from_slice(b),
        })
        .expect("exec");
    (
        r.exit_code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

fn remote_kind(e: GuestError) -> String {
    match e {
        GuestError::Remote { kind, message } => format!("{kind}: {message}"),
        other => panic!("expected a refusal from the guest, got {other}"),
    }
}

fn write(c: &mut GuestClient, path: &str, bytes: &[u8]) {
    c.write(path, None, true, &mut &bytes[..]).expect("write");
}

/// A raw one-entry tar, bypassing the tar crate's own checks on names.
fn raw_tar(entries: &[(&str, tar::EntryType, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, data) in entries {
        let mut header = tar::Header::new_old();
        let raw = header.as_old_mut();
        raw.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            raw.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        header.set_entry_type(*kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

struct Guest {
    uds: PathBuf,
    host_dir: PathBuf,
}

impl Guest {
    fn client(&self) -> GuestClient {
        GuestClient::connect(&self.uds).expect("connect")
    }
}

fn atomic_writes_and_reads(g: &Guest) {
    let mut c = g.client();
    // Binary, several frames long, into a directory created on the way.
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let w = c
        .write("data/bin/blob", None, true, &mut &data[..])
        .expect("write");
    assert_eq!(
        (w.path.as_str(), w.bytes_written, w.mode),
        ("/workspace/data/bin/blob", 3_000_000, 0o644)
    );
    let (back, r) = c
        .read_to_vec("/workspace/data/bin/blob", 4 << 20)
        .expect("read");
    assert!(back == data, "read back differs");
    assert_eq!(
        (r.size_bytes, r.bytes_read, r.truncated),
        (3_000_000, 3_000_000, false)
    );

    // A byte range.
    let mut part = Vec::new();
    let r = c
        .read("data/bin/blob", 1000, Some(10), &mut part)
        .expect("range");
    assert_eq!(part, &data[1000..1010]);
    assert!(r.truncated);

    // A mode is kept on overwrite unless given; no temporary file stays.
    c.write(
        "run.sh",
        Some(0o755),
        false,
        &mut &b"#!/bin/sh\necho one\n"[..],
    )
    .expect("write script");
    let w = c
        .write("run.sh", None, false, &mut &b"#!/bin/sh\necho two\n"[..])
        .expect("overwrite");
    assert_eq!(w.mode, 0o755);
    let (code, out, err) = run(&mut c, "./run.sh && ls -a /workspace");
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("two\n"), "{out}");
    assert!(!out.contains("pyro-tmp"), "temporary file left: {out}");

    // Without `parents`, a missing directory is an error naming the path.
    let e = c.write("nope/f", None, false, &mut &b"x"[..]).unwrap_err();
    let msg = remote_kind(e);
    assert!(
        msg.starts_with("not_found") && msg.contains("/workspace/nope"),
        "{msg}"
    );
    // Writing over a directory is refused.
    let msg = remote_kind(c.write("data", None, false, &mut &b"x"[..]).unwrap_err());
    assert!(msg.starts_with("not_a_file"), "{msg}");
    // The connection is still in step after the refusals.
    c.ping().expect("ping after refusals");
}

fn stat_list_mkdir_remove(g: &Guest) {
    let mut c = g.client();
    c.mkdir("tree/a/b", true).expect("mkdir -p");
    write(&mut c, "tree/a/b/f.txt", b"hello");
    write(&mut c, "tree/top.txt", b"top");
    let (code, _, err) = run(&mut c, "cd /workspace/tree && ln -s a/b/f.txt link");
    assert_eq!(code, Some(0), "{err}");

    let info = c.stat("tree/link").expect("stat link");
    assert_eq!(info.artifact_type, ArtifactType::Symlink);
    assert_eq!(info.link_target.as_deref(), Some("a/b/f.txt"));
    let info = c.stat("tree/a/b/f.txt").expect("stat file");
    assert_eq!(
        (info.artifact_type, info.size_bytes),
        (ArtifactType::File, 5)
    );

    let flat = c.list("tree", false).expect("list");
    let names: Vec<_> = flat.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        names,
        [
            "/workspace/tree/a",
            "/workspace/tree/link",
            "/workspace/tree/top.txt"
        ]
    );
    let deep = c.list("/workspace/tree", true).expect("list -r");
    let names: Vec<_> = deep.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        names,
        [
            "/workspace/tree/a",
            "/workspace/tree/a/b",
            "/workspace/tree/a/b/f.txt",
            "/workspace/tree/link",
            "/workspace/tree/top.txt"
        ]
    );
    // A file lists as itself.
    assert_eq!(
        c.list("tree/top.txt", false)
            .expect("list file")
            .entries
            .len(),
        1
    );

    assert!(remote_kind(c.mkdir("tree/a", false).unwrap_err()).starts_with("exists"));
    let msg = remote_kind(c.remove("tree/a", false).unwrap_err());
    assert!(
        msg.starts_with("not_empty") && msg.contains("recursively"),
        "{msg}"
    );
    c.remove("tree/a", true).expect("rm -r");
    c.remove("tree/link", false).expect("rm link");
    assert!(remote_kind(c.stat("tree/a").unwrap_err()).starts_with("not_found"));
    assert!(remote_kind(c.remove("/workspace", true).unwrap_err()).starts_with("invalid_path"));
    let left = c.list("tree", true).expect("list");
    assert_eq!(left.entries.len(), 1, "{left:?}");
}

fn paths_cannot_leave_the_workspace(g: &Guest) {
    let mut c = g.client();
    let (code, _, err) = run(
        &mut c,
        "cd /workspace && ln -s /etc etc-link && ln -s ../etc up-link && ln -s /etc/hostname host-link",
    );
    assert_eq!(code, Some(0), "{err}");
    let mut sink = Vec::new();
    for path in [
        "../etc/passwd",
        "/etc/passwd",
        "/workspace/../etc/passwd",
        "etc-link/passwd",
        "up-link/passwd",
        "host-link",
    ] {
        let msg = remote_kind(c.read(path, 0, None, &mut sink).unwrap_err());
        assert!(msg.starts_with("invalid_path"), "{path}: {msg}");
        // Writing onto a symlink is refused as such, whatever it points at.
        let msg = remote_kind(c.write(path, None, false, &mut &b"pwned"[..]).unwrap_err());
        let expected = if path == "host-link" {
            "not_a_file"
        } else {
            "invalid_path"
        };
        assert!(msg.starts_with(expected), "write {path}: {msg}");
        if path == "host-link" {
            // Listing a symlink shows the link itself, not its target.
            let list = c.list(path, false).expect("list a symlink");
            assert_eq!(list.entries[0].artifact_type, ArtifactType::Symlink);
        } else {
            let msg = remote_kind(c.list(path, false).unwrap_err());
            assert!(msg.starts_with("invalid_path"), "list {path}: {msg}");
        }
    }
    assert!(sink.is_empty());
    // Listing the symlinks themselves is fine: they are entries of /workspace.
    assert_eq!(
        c.stat("etc-link").expect("stat").link_target.as_deref(),
        Some("/etc")
    );
    let (_, out, _) = run(&mut c, "cat /etc/hostname; ls /etc | grep -c pwned || true");
    assert!(!out.contains("pwned"), "{out}");
    // An archive cannot lead out through the planted link either.
    let tar = raw_tar(&[("etc-link/evil", tar::EntryType::Regular, None, b"x")]);
    let msg = remote_kind(c.upload("/workspace", &mut &tar[..]).unwrap_err());
    assert!(
        msg.starts_with("conflict") && msg.contains("symlink"),
        "{msg}"
    );
    let (_, out, _) = run(&mut c, "ls /etc/evil 2>&1; ls -a /workspace");
    assert!(out.contains("No such file"), "{out}");
    assert!(!out.contains("pyro-tmp"), "staging left behind: {out}");
}

fn archives_round_trip_and_hostile_ones_change_nothing(g: &Guest) {
    let mut c = g.client();
    // A host tree in, then out again, compared byte for byte.
    let src = g.host_dir.join("src");
    std::fs::create_dir_all(src.join("pkg/empty")).unwrap();
    std::fs::write(src.join("pkg/mod.py"), b"print('hi')\n").unwrap();
    // Past a chunk, not a whole number of sectors, each position its own
    // byte: the agent writes it with direct I/O in chunks plus a tail.
    let readme: Vec<u8> = (0..2_621_517u32).map(|i| (i * 13 % 251) as u8).collect();
    std::fs::write(src.join("README"), &readme).unwrap();
    std::os::unix::fs::symlink("pkg/mod.py", src.join("main.py")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(src.join("build.sh"), b"#!/bin/sh\necho built\n").unwrap();
        std::fs::set_permissions(src.join("build.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    let up = c.upload_dir(&src, "proj").expect("upload");
    assert_eq!((up.dest.as_str(), up.entry_count), ("/workspace/proj", 6));
    let (code, out, err) = run(&mut c, "cd /workspace/proj && ./build.sh && python3 --version >/dev/null 2>&1; readlink main.py; ls -a");
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("built\npkg/mod.py\n"), "{out}");
    assert!(!out.contains("pyro-tmp"), "{out}");

    let back = g.host_dir.join("back");
    let down = c.export("proj", &back).expect("export dir");
    assert_eq!(
        (down.artifact_type, down.entry_count),
        (ArtifactType::Directory, 6)
    );
    assert!(std::fs::read(back.join("README")).unwrap() == readme);
    assert_eq!(
        std::fs::read_link(back.join("main.py")).unwrap(),
        Path::new("pkg/mod.py")
    );
    assert!(back.join("pkg/empty").is_dir());
    // A single file exports as that file; an existing output is refused.
    let one = g.host_dir.join("one.py");
    c.export("proj/pkg/mod.py", &one).expect("export file");
    assert_eq!(std::fs::read(&one).unwrap(), b"print('hi')\n");
    assert!(c.export("proj/pkg/mod.py", &one).is_err());

    // Hostile archives: refused, and the destination is unchanged.
    use tar::EntryType as T;
    for (what, tar) in [
        (
            "dot-dot",
            raw_tar(&[
                ("ok", T::Regular, None, b"1"),
                ("../evil", T::Regular, None, b"x"),
            ]),
        ),
        (
            "absolute",
            raw_tar(&[
                ("ok", T::Regular, None, b"1"),
                ("/evil", T::Regular, None, b"x"),
            ]),
        ),
        (
            "device",
            raw_tar(&[("ok", T::Regular, None, b"1"), ("dev", T::Char, None, b"")]),
        ),
        (
            "fifo",
            raw_tar(&[("ok", T::Regular, None, b"1"), ("p", T::Fifo, None, b"")]),
        ),
        (
            "abs link",
            raw_tar(&[
                ("ok", T::Regular, None, b"1"),
                ("l", T::Symlink, Some("/etc"), b""),
            ]),
        ),
        (
            "escaping link",
            raw_tar(&[
                ("ok", T::Regular, None, b"1"),
                ("l", T::Symlink, Some("../../x"), b""),
            ]),
        ),
        ("cut short", {
            let mut t = raw_tar(&[("ok", T::Regular, None, &[b'z'; 5000])]);
            t.truncate(2048);
            t
        }),
        (
            "type clash",
            raw_tar(&[
                ("ok", T::Regular, None, b"1"),
                ("pkg", T::Regular, None, b"x"),
            ]),
        ),
    ] {
        let e = c.upload("proj", &mut &tar[..]).expect_err(what);
        let msg = remote_kind(e);
        assert!(
            msg.starts_with("invalid_archive") || msg.starts_with("conflict"),
            "{what}: {msg}"
        );
        let (_, out, _) = run(
            &mut c,
            "ls -a /workspace/proj; ls /workspace | grep evil || true",
        );
        assert_eq!(
            out, ".\n..\nREADME\nbuild.sh\nmain.py\npkg\n",
            "{what} changed the tree"
        );
    }
}

fn stdin_streams_into_a_command(g: &Guest) {
    let mut c = g.client();
    let input: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    let mut out = Vec::new();
    let r = c
        .exec_with_stdin(
            ExecRequest {
                argv: vec!["sha256sum".into()],
                ..Default::default()
            },
            Some(&mut &input[..]),
            |_, b| out.extend_from_slice(b),
        )
        .expect("exec with stdin");
    assert_eq!(r.exit_code, Some(0));
    let expected = {
        let mut h = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        h.stdin.take().unwrap().write_all(&input).unwrap();
        h.wait_with_output().unwrap().stdout
    };
    assert_eq!(out, expected);

    c.ping().expect("still serving");
}

fn a_read_is_served_while_a_command_runs(g: &Guest) {
    // A command that waits for a file only a file call can make: were
    // file calls to wait for running commands, neither would ever end,
    // and the calls' reply deadline fails the test.
    let uds = g.uds.clone();
    let long = std::thread::spawn(move || {
        let mut c = GuestClient::connect(&uds).expect("connect");
        run(
            &mut c,
            "touch /workspace/started; \
             while [ ! -e /workspace/go ]; do sleep 0.1; done; echo released",
        )
    });
    let mut c = g.client();
    c.set_reply_timeout(Some(Duration::from_secs(60))).unwrap();
    let start = Instant::now();
    while c.stat("started").is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the command did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    write(&mut c, "go", b"meanwhile");
    let (bytes, _) = c.read_to_vec("go", 1 << 20).expect("read");
    assert_eq!(bytes, b"meanwhile");
    let (code, out, _) = long.join().unwrap();
    assert_eq!((code, out.as_str()), (Some(0), "released\n"));
}

#[test]
fn files_and_archives_on_a_real_guest() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let dir = common::scratch();
    let (mut vm, uds) = common::serving_vm("debian:12", dir.path());
    let guest = Guest {
        uds,
        host_dir: dir.path().to_path_buf(),
    };

    type Step = (&'static str, fn(&Guest));
    let steps: &[Step] = &[
        ("atomic writes and reads", atomic_writes_and_reads),
        ("stat, list, mkdir, remove", stat_list_mkdir_remove),
        (
            "paths cannot leave /workspace",
            paths_cannot_leave_the_workspace,
        ),
        (
            "archives",
            archives_round_trip_and_hostile_ones_change_nothing,
        ),
        ("stdin", stdin_streams_into_a_command),
        ("concurrent requests", a_read_is_served_while_a_command_runs),
    ];
    let failed: Vec<_> = steps
        .iter()
        .filter(|(name, step)| {
            let ok = catch_unwind(AssertUnwindSafe(|| step(&guest))).is_ok();
            eprintln!("step {name}: {}", if ok { "ok" } else { "FAILED" });
            !ok
        })
        .map(|(name, _)| *name)
        .collect();
    vm.shutdown();
    assert!(failed.is_empty(), "failed steps: {failed:?}");
}
