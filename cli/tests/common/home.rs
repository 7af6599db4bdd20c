//! A scratch pyro home for the CLI tests that boot guests
//! (`workspace.rs`, `soak.rs`): runs the real binary against it, with
//! helpers for JSON results, expected failures and the VM process.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

/// A scratch pyro home: workspace state in its own `XDG_DATA_HOME`
/// (the image cache is the shared one, unless [`Home::with_own_snapshots`]);
/// whatever a test leaves running is deleted when it is dropped.
pub struct Home(pub tempfile::TempDir, pub Option<PathBuf>);

impl Home {
    pub fn new() -> Home {
        Home(tempfile::tempdir().unwrap(), None)
    }

    /// A home whose cache shares the kernels and images of the shared
    /// cache but keeps its own warm-start snapshots (to damage and prune
    /// them).
    pub fn with_own_snapshots() -> Home {
        let dir = tempfile::tempdir().unwrap();
        let shared = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"))
            .join("pyro");
        let own = dir.path().join("cache");
        std::fs::create_dir_all(own.join("pyro")).unwrap();
        // Locks and build scratch too, so `env prune` sees the shared
        // cache's builds as they are.
        for part in ["kernels", "locks", "build"] {
            std::os::unix::fs::symlink(shared.join(part), own.join("pyro").join(part)).unwrap();
        }
        // Trees and images one link each, as they are now: this home's
        // `env prune` knows only the catalog's environments, and would
        // otherwise remove a custom one another test is building or using
        // (its definition is in that test's data directory). Pruning an
        // entry removes only its link here.
        for part in ["rootfs", "environments"] {
            let mine = own.join("pyro").join(part);
            std::fs::create_dir_all(&mine).unwrap();
            for entry in std::fs::read_dir(shared.join(part)).into_iter().flatten() {
                let entry = entry.unwrap();
                std::os::unix::fs::symlink(entry.path(), mine.join(entry.file_name())).unwrap();
            }
        }
        Home(dir, Some(own))
    }

    /// `pyro ARGS` in this home, to run or spawn.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pyro"));
        cmd.args(args)
            .env("XDG_DATA_HOME", self.0.path().join("data"))
            .env_remove("PYRO_HOME");
        if let Some(cache) = &self.1 {
            cmd.env("XDG_CACHE_HOME", cache);
        }
        cmd
    }

    pub fn pyro(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run pyro")
    }

    /// Runs `sh -c SCRIPT` in workspace `id`; must succeed; its stdout.
    pub fn sh(&self, id: &str, script: &str) -> String {
        self.ok(&["workspace", "exec", id, "--", "sh", "-c", script])
    }

    /// The pid of workspace `id`'s VMM process.
    pub fn vmm_pid(&self, id: &str) -> String {
        let pid = self.running_vmm(id);
        pid.unwrap_or_else(|| panic!("no VMM process found for {id}"))
            .to_string()
    }

    /// The pid of workspace `id`'s VMM process, if one runs.
    pub fn running_vmm(&self, id: &str) -> Option<u32> {
        let vm_dir = self.path("data/pyro/workspaces").join(id).join("vm");
        let out = Command::new("pgrep")
            .args([
                "-f",
                &format!("__vmm {}", vm_dir.join("vmm.json").display()),
            ])
            .output()
            .unwrap();
        text(&out.stdout).lines().next()?.trim().parse().ok()
    }

    /// Kills workspace `id`'s VMM with SIGKILL and waits until the
    /// process is gone (reaped), so what follows sees a dead VMM.
    pub fn kill_vmm(&self, id: &str) {
        let pid = self.vmm_pid(id);
        assert!(Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success());
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let started = std::time::Instant::now();
        while proc_dir.exists() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "the killed VMM {pid} was not reaped within 30 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.pyro(args);
        assert!(
            out.status.success(),
            "pyro {args:?} failed ({:?}):\n{}",
            out.status.code(),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Runs a `--json` command that must succeed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.ok(&all)).expect("one JSON document")
    }

    /// Runs a `--json` command that must fail with `code`; returns the
    /// error's kind and message.
    pub fn fails(&self, code: i32, args: &[&str]) -> (String, String) {
        let mut all = args.to_vec();
        // Before a `--`, which ends our options and starts the command.
        let at = all.iter().position(|a| *a == "--").unwrap_or(all.len());
        all.insert(at, "--json");
        let out = self.pyro(&all);
        assert_eq!(
            out.status.code(),
            Some(code),
            "pyro {args:?}: {}",
            text(&out.stderr)
        );
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "pyro {args:?}: no error document ({e}): {}",
                text(&out.stderr)
            )
        });
        assert_eq!(doc["ok"], false);
        (
            doc["error"]["kind"].as_str().unwrap().to_string(),
            doc["error"]["message"].as_str().unwrap().to_string(),
        )
    }

    pub fn create(&self, extra: &[&str]) -> String {
        let mut args = vec!["workspace", "create"];
        args.extend_from_slice(extra);
        let id = self.ok(&[&args[..], &["--id-only"]].concat());
        id.trim().to_string()
    }

    /// A workspace file's content (`file read --content-only`).
    pub fn read(&self, id: &str, path: &str) -> String {
        self.ok(&["workspace", "file", "read", id, path, "--content-only"])
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        // Stop whatever a failed test left running.
        if let Ok(list) =
            serde_json::from_slice::<Value>(&self.pyro(&["workspace", "list", "--json"]).stdout)
        {
            for w in list.as_array().into_iter().flatten() {
                let _ = self.pyro(&[
                    "workspace",
                    "delete",
                    w["workspace_id"].as_str().unwrap_or(""),
                ]);
            }
        }
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
