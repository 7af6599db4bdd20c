//! How many idle workspaces one host holds (issue 20), through the real
//! binary and real guests. On demand, not in `.ci/run` (it takes tens of
//! minutes and most of the host):
//!
//! ```sh
//! cargo test --release -p pyro-cli --test density -- --ignored --nocapture
//! ```
//!
//! Two phases, each adding idle workspaces in batches up to a total:
//!
//! 1. **running**: `--idle-suspend-seconds 0`, every VM stays up;
//! 2. **suspending**: `--idle-suspend-seconds 5`, each batch is left
//!    until its VMMs have suspended the VMs.
//!
//! After each batch, once the guests have settled (a new guest writes
//! its dirty pages out for about 30 s), it reports: the CPU the VMM
//! processes used over 10 s (their threads' `schedstat`, vCPUs
//! included) as a share of one core, the host's idle share over the same
//! window (`/proc/stat`), the VMMs' mean PSS (`smaps_rollup`), the kept
//! memory on disk per suspended workspace, and the median of five
//! `exec -- true` in the first workspace (in phase 2 the first of them
//! also resumes it: reported apart). Every workspace must answer an exec
//! at the end of each phase. `PYRO_DENSITY_TOTAL` (default 200) and
//! `PYRO_DENSITY_BATCH` (25) change the sizes. The numbers of a run on
//! the development host are in `docs/workspaces.md`.

mod common;

use common::cpu_ns;
use common::home::Home;
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Process `pid`'s proportional set size, KiB.
fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// (idle, total) jiffies of the whole host.
fn host_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let cpu: Vec<u64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // idle + iowait
    (cpu[3] + cpu[4], cpu.iter().sum())
}

/// Bytes a directory's files take on disk.
fn du(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => du(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Wall time of `exec -- true` in `id`, and the resume it reported.
fn exec_true(home: &Home, id: &str) -> (f64, Option<u64>) {
    let started = Instant::now();
    let out = home.ok(&["workspace", "exec", id, "--json", "--", "true"]);
    let took = started.elapsed().as_secs_f64();
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["exit_code"], 0, "{doc}");
    (took, doc["resumed_ms"].as_u64())
}

fn phase(idle_suspend: u64, total: usize, batch: usize) {
    let home = Home::new();
    let name = if idle_suspend == 0 {
        "running"
    } else {
        "suspending"
    };
    let idle = idle_suspend.to_string();
    let mut ids: Vec<String> = Vec::new();
    let mut alone = None;
    println!(
        "| phase | workspaces | VMMs up | VMM CPU (% of a core) | host idle | PSS per VMM (MiB) | kept memory per workspace (MiB) | exec -- true median (s) | vs alone | resume (ms) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    while ids.len() < total {
        let created = Instant::now();
        for _ in 0..batch.min(total - ids.len()) {
            ids.push(home.create(&["--idle-suspend-seconds", &idle]));
        }
        let create_s = created.elapsed().as_secs_f64();
        // Settle: a new guest flushes what it wrote for about 30 s; with
        // suspends, every VMM of the batch has ended.
        let settle = Instant::now();
        loop {
            std::thread::sleep(Duration::from_secs(5));
            let up = ids
                .iter()
                .filter(|id| home.running_vmm(id).is_some())
                .count();
            let settled = settle.elapsed() >= Duration::from_secs(35);
            if settled && (idle_suspend == 0 || up == 0) {
                break;
            }
            assert!(
                settle.elapsed() < Duration::from_secs(600),
                "{up} VMMs still up after 10 minutes"
            );
        }
        let pids: Vec<u32> = ids.iter().filter_map(|id| home.running_vmm(id)).collect();
        let (cpu0, (idle0, all0)) = (pids.iter().map(|&p| cpu_ns(p)).sum::<u64>(), host_jiffies());
        let window = Instant::now();
        std::thread::sleep(Duration::from_secs(10));
        let (cpu1, (idle1, all1)) = (pids.iter().map(|&p| cpu_ns(p)).sum::<u64>(), host_jiffies());
        let secs = window.elapsed().as_secs_f64();
        let vmm_cpu = (cpu1.saturating_sub(cpu0)) as f64 / 1e9 / secs * 100.0;
        let host_idle = (idle1 - idle0) as f64 / (all1 - all0).max(1) as f64 * 100.0;
        let pss = if pids.is_empty() {
            0.0
        } else {
            pids.iter().map(|&p| pss_kib(p)).sum::<u64>() as f64 / pids.len() as f64 / 1024.0
        };
        let kept: Vec<u64> = ids
            .iter()
            .map(|id| du(&home.path("data/pyro/workspaces").join(id).join("suspended")))
            .filter(|&b| b > 0)
            .collect();
        let kept_mib = if kept.is_empty() {
            0.0
        } else {
            kept.iter().sum::<u64>() as f64 / kept.len() as f64 / (1 << 20) as f64
        };
        // The first exec in phase 2 resumes the workspace.
        let (first, resumed) = exec_true(&home, &ids[0]);
        let mut times = vec![first];
        times.extend((0..4).map(|_| exec_true(&home, &ids[0]).0));
        let exec = median(times);
        let alone_s = *alone.get_or_insert(exec);
        println!(
            "| {name} | {} | {} | {vmm_cpu:.2} | {host_idle:.1}% | {pss:.1} | {kept_mib:.1} | {exec:.3} | {:.2}x | {} |",
            ids.len(),
            pids.len(),
            exec / alone_s,
            resumed.map_or("-".into(), |ms| ms.to_string()),
        );
        eprintln!(
            "[density] {name}: {} workspaces; the batch took {create_s:.0} s to create",
            ids.len()
        );
    }
    // Every one still works (in phase 2: each is resumed).
    let checked = Instant::now();
    for id in &ids {
        exec_true(&home, id);
    }
    eprintln!(
        "[density] {name}: an exec in each of {} workspaces took {:.0} s",
        ids.len(),
        checked.elapsed().as_secs_f64()
    );
    for id in &ids {
        home.ok(&["workspace", "delete", id]);
    }
}

#[test]
#[ignore = "on demand: tens of minutes, most of the host"]
fn idle_workspaces_in_batches_running_then_suspending() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    let total = env_usize("PYRO_DENSITY_TOTAL", 200);
    let batch = env_usize("PYRO_DENSITY_BATCH", 25);
    phase(0, total, batch);
    phase(5, total, batch);
}
