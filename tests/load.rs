//! Load: workspaces created and driven all at once, each running its own
//! commands back to back through the SDK, with no failure and every
//! command in its workspace's history, in order, with its own output.
//!
//! `.ci/run` runs a small load (3 workspaces, 5 commands each). The full
//! one runs on demand:
//!
//! ```sh
//! PYRO_LOAD_WORKSPACES=20 PYRO_LOAD_EXECS=50 \
//!   cargo test --release --test load -- --nocapture
//! ```

mod common;

use common::{delete_on_drop, pyro_with_own_data};
use pyro::workspace::{CommandStatus, CreateOptions, Pyro};
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One workspace's share: create, `execs` commands, its history checked.
/// Failures are returned, not panicked, so one workspace's failure does
/// not hide the others'.
fn drive(pyro: &Pyro, w: usize, execs: usize) -> Result<Duration, String> {
    let opts = CreateOptions {
        name: Some(format!("load-{w}")),
        ..CreateOptions::default()
    };
    let ws = pyro
        .workspace_create(&opts, &pyro::workspace::NoProgress)
        .map_err(|e| format!("workspace {w}: create: {e}"))?;
    let id = ws.record.workspace_id.clone();
    let _gone = delete_on_drop(pyro, &id);
    let started = Instant::now();
    for i in 1..=execs {
        let word = format!("w{w}-e{i}");
        let record = pyro
            .workspace_exec(
                &id,
                &["echo".to_string(), word.clone()],
                Duration::from_secs(300),
                |_, _| {},
            )
            .map_err(|e| format!("workspace {w}: exec {i}: {e}"))?;
        if record.exit_code != Some(0) || record.stdout != format!("{word}\n").as_bytes() {
            return Err(format!("workspace {w}: exec {i}: {record:?}"));
        }
    }
    let spent = started.elapsed();
    let logs = pyro
        .workspace_logs(&id)
        .map_err(|e| format!("workspace {w}: logs: {e}"))?;
    let seen: Vec<(u64, CommandStatus, String)> = logs
        .iter()
        .map(|r| {
            (
                r.sequence,
                r.status,
                String::from_utf8_lossy(&r.stdout).into_owned(),
            )
        })
        .collect();
    let want: Vec<(u64, CommandStatus, String)> = (1..=execs)
        .map(|i| (i as u64, CommandStatus::Finished, format!("w{w}-e{i}\n")))
        .collect();
    if seen != want {
        return Err(format!("workspace {w}: history {seen:?}, want {want:?}"));
    }
    Ok(spent)
}

#[test]
fn workspaces_at_once_run_every_command_and_log_each() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let workspaces = setting("PYRO_LOAD_WORKSPACES", 3);
    let execs = setting("PYRO_LOAD_EXECS", 5);
    let data = common::scratch();
    let pyro = pyro_with_own_data(data.path());
    let failures = Mutex::new(Vec::new());
    let times = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|s| {
        for w in 0..workspaces {
            let (pyro, failures, times) = (&pyro, &failures, &times);
            s.spawn(move || match drive(pyro, w, execs) {
                Ok(t) => times.lock().unwrap().push(t),
                Err(e) => failures.lock().unwrap().push(e),
            });
        }
    });
    let total = started.elapsed();
    let failures = failures.into_inner().unwrap();
    let mut times = times.into_inner().unwrap();
    times.sort();
    eprintln!(
        "load: {workspaces} workspaces x {execs} execs in {total:.1?} \
         ({:.2} execs/s); per workspace, its execs took median {:.1?}, max {:.1?}; \
         {} failures",
        (workspaces * execs) as f64 / total.as_secs_f64(),
        times.get(times.len() / 2).copied().unwrap_or_default(),
        times.last().copied().unwrap_or_default(),
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(pyro.workspace_list().is_empty(), "workspaces left behind");
}

/// The proportional set size of process `pid` in KiB (shared pages, such
/// as a snapshot's memory file, split among the processes mapping them).
fn pss_kib(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    rollup
        .lines()
        .find(|l| l.starts_with("Pss:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn mem_available_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap()
}

/// Density, on demand (`cargo test --release --test load -- --ignored
/// --nocapture`): idle workspaces are started one after another until
/// the host has less than `PYRO_DENSITY_RESERVE_MIB` (2048) available or
/// `PYRO_DENSITY_MAX` (150) run; reports how many fit and the VM
/// processes' memory (PSS) per workspace. The target is at least 100 on
/// a 24 GiB host.
#[test]
#[ignore = "on demand: starts workspaces until memory runs low"]
fn density_idle_workspaces_until_memory_says_stop() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let reserve = setting("PYRO_DENSITY_RESERVE_MIB", 2048) as u64 * 1024;
    let max = setting("PYRO_DENSITY_MAX", 150);
    let data = common::scratch();
    let pyro = pyro_with_own_data(data.path());
    let before = mem_available_kib();
    let mut ids = Vec::new();
    let started = Instant::now();
    while ids.len() < max && mem_available_kib() > reserve {
        let made = pyro.workspace_create(&CreateOptions::default(), &pyro::workspace::NoProgress);
        match made {
            Ok(ws) => ids.push(ws.record.workspace_id),
            Err(e) => {
                eprintln!("density: create {} failed: {e}", ids.len() + 1);
                break;
            }
        }
        if ids.len() % 10 == 0 {
            eprintln!(
                "density: {} running, {} MiB available, {:.0?}",
                ids.len(),
                mem_available_kib() / 1024,
                started.elapsed()
            );
        }
    }
    // Settled: idle for a while, as idle workspaces are.
    std::thread::sleep(Duration::from_secs(30));
    let pss: Vec<u64> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.contains("__vmm") && c.contains(&*data.path().to_string_lossy())
                })
                .unwrap_or(false)
        })
        .filter_map(pss_kib)
        .collect();
    let used = before.saturating_sub(mem_available_kib());
    let all = ids.len();
    let answer = pyro
        .workspace_exec(
            ids.last().expect("no workspace started"),
            &["true".to_string()],
            Duration::from_secs(300),
            |_, _| {},
        )
        .map(|r| r.exit_code);
    for id in &ids {
        let _ = pyro.workspace_delete(id);
    }
    let mut sorted = pss.clone();
    sorted.sort();
    eprintln!(
        "density: {all} idle workspaces ({} VM processes) in {:.0?}; host memory used {} MiB \
         ({} MiB each); VM process PSS median {} MiB, total {} MiB; the last one answers: {answer:?}",
        pss.len(),
        started.elapsed(),
        used / 1024,
        used / 1024 / all.max(1) as u64,
        sorted.get(sorted.len() / 2).copied().unwrap_or(0) / 1024,
        pss.iter().sum::<u64>() / 1024
    );
    assert_eq!(answer.ok().flatten(), Some(0));
}
