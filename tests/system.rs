//! The writable system, end to end in real guests: a one-shot run writes
//! anywhere; a workspace's changes outside /workspace persist across
//! stop/start and suspend/resume, are covered by checkpoints and resets,
//! stay out of other workspaces, and never reach the shared image; and,
//! with the network, `pip install` into a venv from a package index on
//! this host's loopback.

mod common;

use common::pyro_with_own_data;
use pyro::workspace::{
    CreateOptions, NetConfig, NetRules, NetworkPolicy, NoProgress, Progress, Pyro, RunOptions,
    StartKind,
};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

/// Runs `script` in workspace `id`; its stdout (exit code 0 asserted).
fn exec(pyro: &Pyro, id: &str, script: &str) -> String {
    let r = pyro
        .workspace_exec(id, &sh(script), Duration::from_secs(300), |_, _| {})
        .expect("exec");
    let out = String::from_utf8_lossy(&r.stdout).into_owned();
    assert_eq!(
        r.exit_code,
        Some(0),
        "{script}: {out}{}",
        String::from_utf8_lossy(&r.stderr)
    );
    out
}

/// Records the progress phases reported.
#[derive(Default)]
struct Phases(Mutex<Vec<String>>);

impl Progress for Phases {
    fn phase(&self, step: &str, detail: &str) {
        self.0.lock().unwrap().push(format!("{step}: {detail}"));
    }
    fn tick(&self, _: &str, _: &str) {}
    fn done(&self, _: &str, _: &str) {}
}

/// A digest of a file's bytes (not cryptographic; enough to see a
/// change).
fn digest(path: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::fs::read(path).unwrap().hash(&mut h);
    h.finish()
}

#[test]
fn a_run_writes_anywhere_and_leaves_nothing() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let data = common::scratch();
    let pyro = pyro_with_own_data(data.path());
    let script = "echo x > /root/f && cat /root/f && echo y > /etc/pyro-run && cat /etc/pyro-run \
                  && mkdir -p /usr/local/lib/t && echo z > /usr/local/lib/t/z && cat /usr/local/lib/t/z";
    let r = pyro
        .run(&RunOptions::default(), &sh(script), &NoProgress, |_, _| {})
        .expect("run");
    assert_eq!(String::from_utf8_lossy(&r.stdout), "x\ny\nz\n", "{r:?}");
    // The next run starts clean.
    let r = pyro
        .run(
            &RunOptions::default(),
            &sh("test -e /root/f || echo clean"),
            &NoProgress,
            |_, _| {},
        )
        .expect("run");
    assert_eq!(String::from_utf8_lossy(&r.stdout), "clean\n");
}

#[test]
fn a_workspace_system_persists_is_checkpointed_and_stays_its_own() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let data = common::scratch();
    let pyro = pyro_with_own_data(data.path());
    let image = common::rootfs("debian:12");
    let image_before = digest(&image);
    let opts = CreateOptions {
        ttl_seconds: Some(1800),
        ..CreateOptions::default()
    };
    // New workspaces restore the snapshot that has the writable system
    // made, their system disks copied from its template: no fallback.
    let phases = Phases::default();
    let a = pyro.workspace_create(&opts, &phases).unwrap();
    let b = pyro.workspace_create(&opts, &phases).unwrap();
    let said = phases.0.lock().unwrap().join("\n");
    assert!(
        !said.contains("no snapshot") && !said.contains("no warm start"),
        "{said}"
    );
    assert_eq!(a.record.last_start, Some(StartKind::Warm));
    let (a, b) = (a.record.workspace_id, b.record.workspace_id);
    // A mount of a disk copied from one that was mounted (a template, a
    // checkpoint) replays its journal, and the kernel says so: neither
    // disk of a new workspace with no seed is mounted at create, both are
    // copies of the snapshot's mounted ones.
    let mounted = "dmesg | grep -c 'vdc): recovery' || true";
    let mounted_ws = "dmesg | grep -c 'vdb): recovery' || true";
    assert_eq!(exec(&pyro, &b, mounted), "0\n", "no system mount at create");
    assert_eq!(
        exec(&pyro, &b, mounted_ws),
        "0\n",
        "no /workspace mount at create"
    );
    let _cleanup = (
        common::delete_on_drop(&pyro, &a),
        common::delete_on_drop(&pyro, &b),
    );

    exec(
        &pyro,
        &a,
        "echo one > /etc/pyro-marker && echo note > /root/note && \
         printf '#!/bin/sh\\necho tool\\n' > /usr/local/bin/tool && chmod +x /usr/local/bin/tool && \
         echo w1 > /workspace/w",
    );
    let read = "cat /etc/pyro-marker /root/note; tool; cat /workspace/w";
    assert_eq!(exec(&pyro, &a, read), "one\nnote\ntool\nw1\n");
    assert_eq!(
        exec(
            &pyro,
            &b,
            "ls /etc/pyro-marker /root/note 2>&1 | wc -l; test -e /etc/pyro-marker || echo clean"
        ),
        "2\nclean\n",
        "another workspace sees none of it"
    );
    assert_eq!(
        exec(&pyro, &b, "ls -A /workspace"),
        "lost+found\n",
        "nor its /workspace, copied from the same template"
    );

    pyro.checkpoint_create(&a, "one").unwrap();
    exec(
        &pyro,
        &a,
        "echo two > /etc/pyro-marker && echo extra > /root/extra && echo w2 > /workspace/w",
    );

    pyro.workspace_stop(&a).unwrap();
    pyro.workspace_start(&a, &NoProgress).unwrap();
    assert_eq!(
        exec(&pyro, &a, "cat /etc/pyro-marker /root/extra /workspace/w"),
        "two\nextra\nw2\n",
        "stop/start"
    );
    pyro.workspace_suspend(&a).unwrap();
    pyro.workspace_start(&a, &NoProgress).unwrap();
    assert_eq!(
        exec(&pyro, &a, "cat /etc/pyro-marker /root/extra /workspace/w"),
        "two\nextra\nw2\n",
        "suspend/resume"
    );

    pyro.workspace_reset(&a, "one", &NoProgress).unwrap();
    assert_eq!(
        exec(
            &pyro,
            &a,
            "cat /etc/pyro-marker /workspace/w; test -e /root/extra || echo no-extra"
        ),
        "one\nw1\nno-extra\n",
        "reset to the checkpoint restores both"
    );
    // That one mounted its system disk after the restore (the sign the
    // check below looks for is there when it should be).
    assert_eq!(exec(&pyro, &a, mounted), "1\n");
    assert_eq!(exec(&pyro, &a, mounted_ws), "1\n");
    pyro.workspace_reset(&a, "baseline", &NoProgress).unwrap();
    assert_eq!(
        exec(
            &pyro,
            &a,
            "test -e /etc/pyro-marker || echo clean; test -e /workspace/w || echo empty"
        ),
        "clean\nempty\n",
        "baseline is the clean environment"
    );
    // The reset restored the new-workspace snapshot, as create did: the
    // guest never mounted the system disk (a copy of a disk mounted when
    // copied, so a mount would have replayed its journal).
    for sign in [mounted, mounted_ws] {
        assert_eq!(
            exec(&pyro, &a, sign),
            "0\n",
            "{}",
            exec(&pyro, &a, "dmesg | grep EXT4")
        );
    }
    assert_eq!(
        digest(&image),
        image_before,
        "the shared image is untouched"
    );
}

/// A wheel of package `pyrotest` 0.1 (one module), built by hand: what
/// pip needs of one, and nothing fetched.
fn write_wheel(dir: &Path) {
    let script = r#"
import base64, hashlib, sys, zipfile
out = sys.argv[1]
files = {
    "pyrotest/__init__.py": b"X = 'from-the-local-index'\n",
    "pyrotest-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: pyrotest\nVersion: 0.1\n",
    "pyrotest-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: pyro-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
with zipfile.ZipFile(out, "w") as z:
    for name, body in files.items():
        z.writestr(name, body)
        digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(body)}")
    record.append("pyrotest-0.1.dist-info/RECORD,,")
    z.writestr("pyrotest-0.1.dist-info/RECORD", "\n".join(record) + "\n")
"#;
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir.join("pyrotest-0.1-py3-none-any.whl"))
        .status()
        .expect("python3 on the host builds the test wheel");
    assert!(status.success());
}

#[test]
fn pip_installs_into_a_venv_from_a_local_index() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let data = common::scratch();
    let pyro = pyro_with_own_data(data.path());
    let index = common::scratch();
    write_wheel(index.path());
    let mut server = Server(
        std::process::Command::new("python3")
            .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"])
            .current_dir(index.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 -m http.server"),
    );
    let port = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(server.0.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 45678 (http://...) ..."
        line.split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"))
    };
    let ws = pyro
        .workspace_create(
            &CreateOptions {
                environment: "debian:12-build".into(),
                ttl_seconds: Some(1800),
                network: NetConfig {
                    rules: NetRules {
                        policy: NetworkPolicy::Egress,
                        allow: vec!["pkgs.test".parse().unwrap()],
                        add_hosts: vec!["pkgs.test:127.0.0.1".parse().unwrap()],
                    },
                    publish: Vec::new(),
                },
                ..CreateOptions::default()
            },
            &NoProgress,
        )
        .unwrap();
    let id = ws.record.workspace_id;
    let _cleanup = common::delete_on_drop(&pyro, &id);
    let out = exec(
        &pyro,
        &id,
        &format!(
            "python3 -m venv --without-pip --system-site-packages /root/venv && \
             /root/venv/bin/python -m pip install -q --no-index \
               --trusted-host pkgs.test --find-links http://pkgs.test:{port}/ pyrotest && \
             /root/venv/bin/python -c 'import pyrotest; print(pyrotest.X)'"
        ),
    );
    assert_eq!(out, "from-the-local-index\n");
}

/// A host process killed when dropped (also when a step failed).
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
