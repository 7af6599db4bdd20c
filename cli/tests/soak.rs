//! Faults at random moments, through the real binary and real guests:
//! `kill -9` of the VM process or of the CLI while it creates a
//! workspace, runs a command, writes a file, applies a patch, pushes a
//! tree, takes a checkpoint or resets. After each trial, no write pyro
//! acknowledged is lost, nothing half-made shows in /workspace, and every
//! workspace either works or is cleanly gone.
//!
//! `.ci/run` runs the small version: one trial per operation (7). The
//! soak is the same test with more trials, run on demand:
//!
//! ```sh
//! PYRO_SOAK_TRIALS=100 cargo test --release -p pyro-cli --test soak -- --nocapture
//! ```
//!
//! `PYRO_SOAK_SEED` repeats a run (each run prints its seed).

mod common;

use common::home::Home;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A trial's operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Exec,
    FileWrite,
    Patch,
    Push,
    Checkpoint,
    Reset,
}

const OPS: [Op; 7] = [
    Op::Create,
    Op::Exec,
    Op::FileWrite,
    Op::Patch,
    Op::Push,
    Op::Checkpoint,
    Op::Reset,
];

/// xorshift64*: enough to spread kill moments, and repeatable by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Soak {
    home: Home,
    /// The workspace every trial but create works on.
    id: String,
    /// Files a write pyro acknowledged put in /workspace: path -> content.
    acked: BTreeMap<String, String>,
    /// What `acked` was when each checkpoint was taken (and at create:
    /// "baseline").
    checkpoints: BTreeMap<String, BTreeMap<String, String>>,
}

impl Soak {
    /// `pyro ARGS` to spawn, its output captured.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.home.command(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn ok(&self, args: &[&str]) -> String {
        self.home.ok(args)
    }

    fn json(&self, args: &[&str]) -> Value {
        self.home.json(args)
    }

    fn ids(&self) -> Vec<String> {
        self.json(&["workspace", "list"])
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["workspace_id"].as_str().unwrap().to_string())
            .collect()
    }

    /// Starts workspace `id` if its VM is not running.
    fn ensure_running(&self, id: &str) {
        let status = self.json(&["workspace", "status", id]);
        if status["state"] != "running" {
            self.ok(&["workspace", "start", id]);
        }
    }

    /// What /workspace holds of `paths`, read in one command, and what
    /// staging shows: anything in the staging directory (which stays,
    /// empty, between requests until the next mount empties it) or a
    /// temporary file anywhere.
    fn read_back(&self, id: &str, paths: &[&String]) -> (BTreeMap<String, String>, String) {
        let mut script = String::from(
            "ls -A /workspace/.pyro-staging 2>/dev/null; \
             find /workspace -name '*pyro-tmp*'; echo ==; ",
        );
        for p in paths {
            script.push_str(&format!(
                "if [ -f '{p}' ]; then printf '%s\\t%s\\n' '{p}' \"$(cat '{p}')\"; fi; "
            ));
        }
        let out = self.home.sh(id, &script);
        let (staging, files) = out.split_once("==\n").expect("marker");
        let got = files
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(p, c)| (p.to_string(), c.to_string()))
            .collect();
        (got, staging.trim().to_string())
    }

    /// After a trial: the workspace works, holds every acknowledged
    /// write, and shows no staging.
    fn check(&mut self, trial: usize, op: Op) {
        self.ensure_running(&self.id.clone());
        let mut paths: Vec<&String> = self.acked.keys().collect();
        // A reset may have gone either way: look for the files of every
        // state it could have left.
        let extra: Vec<String> = self
            .checkpoints
            .values()
            .flat_map(|c| c.keys().cloned())
            .collect();
        paths.extend(extra.iter());
        paths.sort();
        paths.dedup();
        // A request whose CLI was killed is cleaned up by the agent
        // once it sees the connection gone: give it a moment.
        let mut tries = 0;
        let (got, staging) = loop {
            let (got, staging) = self.read_back(&self.id, &paths);
            tries += 1;
            if staging.is_empty() || tries == 30 {
                break (got, staging);
            }
            std::thread::sleep(Duration::from_secs(1));
        };
        assert!(
            staging.is_empty(),
            "trial {trial} ({op:?}): staging left in /workspace: {staging}"
        );
        // Writes that were cut may or may not have landed; every
        // acknowledged one must have.
        let holds =
            |state: &BTreeMap<String, String>| state.iter().all(|(p, c)| got.get(p) == Some(c));
        if holds(&self.acked) {
            return;
        }
        // An interrupted reset leaves the old state or the checkpoint's.
        if op == Op::Reset {
            if let Some((name, state)) = self.checkpoints.iter().find(|(_, s)| holds(s)) {
                eprintln!("trial {trial}: the cut reset went through (to {name})");
                self.acked = state.clone();
                return;
            }
        }
        let lost: Vec<_> = self
            .acked
            .iter()
            .filter(|(p, c)| got.get(*p) != Some(c))
            .collect();
        panic!(
            "trial {trial} ({op:?}): acknowledged writes lost or changed: {lost:?} (found {got:?})"
        );
    }
}

/// Waits for `child` (bounded: a hung CLI is a failure).
fn wait(mut child: Child, what: &str) -> Output {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what}: still running 180 s after the fault");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill9(pid: u32) {
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
}

fn trials() -> usize {
    std::env::var("PYRO_SOAK_TRIALS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(OPS.len())
}

#[test]
fn kill_9_at_random_moments_loses_no_acknowledged_write() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    let seed = std::env::var("PYRO_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("soak: seed {seed} (PYRO_SOAK_SEED={seed} repeats this run)");
    let mut rng = Rng(seed);
    let mut soak = Soak {
        home: Home::new(),
        id: String::new(),
        acked: BTreeMap::new(),
        checkpoints: BTreeMap::new(),
    };
    soak.id = soak
        .ok(&["workspace", "create", "--name", "soak", "--id-only"])
        .trim()
        .to_string();
    soak.checkpoints.insert("baseline".into(), BTreeMap::new());
    let started = Instant::now();
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for trial in 0..trials() {
        // The first trials take each operation once; then at random.
        let op = match OPS.get(trial) {
            Some(op) => *op,
            None => OPS[rng.below(OPS.len() as u64) as usize],
        };
        let kill_vmm = op != Op::Create && rng.below(2) == 0;
        let delay = Duration::from_millis(rng.below(2500));
        let outcome = run_trial(&mut soak, trial, op, kill_vmm, delay);
        *counts.entry(format!("{op:?} {outcome}")).or_default() += 1;
        soak.check(trial, op);
    }
    eprintln!(
        "soak: {} trials in {:.0?}: {counts:?}",
        trials(),
        started.elapsed()
    );
    soak.ok(&["workspace", "delete", &soak.id.clone()]);
}

/// Runs one operation, kills the VMM or the CLI after `delay`, and
/// records what the operation acknowledged. Returns how it ended.
fn run_trial(soak: &mut Soak, trial: usize, op: Op, kill_vmm: bool, delay: Duration) -> String {
    let id = soak.id.clone();
    soak.ensure_running(&id);
    let before = soak.ids();
    let name = format!("t{trial}");
    let file = format!("/workspace/{name}.txt");
    let content = format!("trial {trial} wrote this");
    let patch_path = soak.home.path(&format!("{name}.patch"));
    let push_dir = soak.home.path(&format!("{name}-push"));
    let args: Vec<String> = match op {
        Op::Create => vec!["workspace".into(), "create".into(), "--id-only".into()],
        Op::Exec => vec![
            "workspace".into(),
            "exec".into(),
            id.clone(),
            "--".into(),
            "sh".into(),
            "-c".into(),
            "echo one; sleep 1; echo two".into(),
        ],
        Op::FileWrite => vec![
            "workspace".into(),
            "file".into(),
            "write".into(),
            id.clone(),
            file.clone(),
            "--text".into(),
            content.clone(),
        ],
        Op::Patch => {
            let p = format!("--- /dev/null\n+++ b/{name}.txt\n@@ -0,0 +1 @@\n+{content}\n");
            std::fs::write(&patch_path, p).unwrap();
            vec![
                "workspace".into(),
                "patch".into(),
                "apply".into(),
                id.clone(),
                "--patch-file".into(),
                patch_path.to_str().unwrap().into(),
            ]
        }
        Op::Push => {
            std::fs::create_dir_all(&push_dir).unwrap();
            for i in 0..20 {
                // 64 KiB each: seconds of guest work on a PVM host.
                let mut body = format!("{content} ({i})").into_bytes();
                body.resize(65536, b'.');
                std::fs::write(push_dir.join(format!("f{i:02}")), body).unwrap();
            }
            std::fs::write(push_dir.join("marker"), &content).unwrap();
            vec![
                "workspace".into(),
                "sync".into(),
                "push".into(),
                id.clone(),
                push_dir.to_str().unwrap().into(),
                "--dest".into(),
                format!("/workspace/{name}"),
            ]
        }
        Op::Checkpoint => vec![
            "workspace".into(),
            "snapshot".into(),
            "create".into(),
            id.clone(),
            name.clone(),
        ],
        Op::Reset => {
            let names: Vec<&String> = soak.checkpoints.keys().collect();
            // The first round's reset (trial 6) goes to the checkpoint of
            // trial 5 when it was taken: a named one, not the baseline.
            let to = names[(trial + 1) % names.len()].clone();
            vec![
                "workspace".into(),
                "reset".into(),
                id.clone(),
                "--snapshot".into(),
                to,
            ]
        }
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = soak.command(&args).spawn().expect("spawn pyro");
    let cli_pid = child.id();
    std::thread::sleep(delay);
    let victim = if kill_vmm {
        soak.home.running_vmm(&id).map(|p| ("vmm", p))
    } else {
        None
    }
    .unwrap_or(("cli", cli_pid));
    kill9(victim.1);
    let out = wait(child, &format!("trial {trial} ({op:?})"));
    let done = out.status.success();
    eprintln!(
        "trial {trial}: {op:?}, {} killed after {delay:?}: {}",
        victim.0,
        if done { "it had finished" } else { "cut short" }
    );
    match op {
        Op::Create => {
            // Nothing new, or a new workspace that works (then removed).
            let after = soak.ids();
            let new: Vec<&String> = after.iter().filter(|i| !before.contains(i)).collect();
            if done {
                assert_eq!(new.len(), 1, "trial {trial}: a finished create not listed");
            }
            assert!(new.len() <= 1, "trial {trial}: {new:?}");
            for n in new {
                soak.ensure_running(n);
                soak.ok(&["workspace", "exec", n, "--", "true"]);
                soak.ok(&["workspace", "delete", n]);
            }
        }
        Op::FileWrite | Op::Patch if done => {
            soak.acked.insert(file, content);
        }
        Op::Push if done => {
            soak.acked
                .insert(format!("/workspace/{name}/marker"), content.clone());
        }
        Op::Push => {
            // All or nothing, whichever it was.
            soak.ensure_running(&id);
            let marker = format!("/workspace/{name}/marker");
            let count = soak
                .home
                .sh(&id, &format!("ls /workspace/{name} 2>/dev/null | wc -l"));
            let count: u32 = count.trim().parse().unwrap();
            assert!(
                count == 0 || count == 21,
                "trial {trial}: a cut push left {count} of 21 files"
            );
            if count == 21 {
                soak.acked.insert(marker, content.clone());
            }
        }
        Op::Checkpoint if done => {
            soak.checkpoints.insert(name, soak.acked.clone());
        }
        Op::Checkpoint => {
            // Either taken (then it must be whole) or not there.
            soak.ensure_running(&id);
            let list = soak.json(&["workspace", "snapshot", "list", &id]);
            if list.to_string().contains(&format!("\"{name}\"")) {
                soak.checkpoints.insert(name, soak.acked.clone());
            }
        }
        Op::Reset if done => {
            let to = args[4];
            soak.acked = soak.checkpoints[to].clone();
        }
        _ => {}
    }
    format!("{} {}", victim.0, if done { "after" } else { "during" })
}
