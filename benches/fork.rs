//! `fork`: a running workspace (a process in it, so it is not the
//! environment's fresh machine) forked into 1 and into 4 children. The
//! time is from the call to every child answering an `exec -- true` (the
//! four execs run at once). Children are deleted after each sample,
//! untimed. Printed at the end: the fork call alone (its
//! `duration_ms`, to every child's agent answering), the source's pause
//! (median of `source_paused_ms`) and the memory each child's VMM process holds
//! after its exec (PSS, from `smaps_rollup`: pages shared with the other
//! children and the page cache count by their share).

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use pyro::workspace::{ForkOptions, NoProgress, Pyro};
use std::path::Path;
use std::time::{Duration, Instant};

fn exec_true(pyro: &Pyro, id: &str) {
    let r = pyro
        .workspace_exec(id, &["true".into()], Duration::from_secs(60), |_, _| {})
        .expect("exec");
    assert_eq!(r.exit_code, Some(0));
}

/// PSS in KiB of the VMM process of workspace `id`.
fn vmm_pss_kib(data: &Path, id: &str) -> u64 {
    let pid_file = data.join("workspaces").join(id).join("vm/vmm-pid.json");
    let pid: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&pid_file).expect("vmm-pid.json")).unwrap();
    let rollup = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", pid["pid"]))
        .expect("smaps_rollup");
    rollup
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("Pss line")
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn fork(c: &mut Criterion) {
    let data = tempfile::tempdir().expect("temp dir");
    let (pyro, ws) = common::pyro_with_workspace(data.path());
    let started = pyro
        .workspace_exec(
            &ws,
            &[
                "sh".into(),
                "-c".into(),
                "setsid sleep 100000 </dev/null >/dev/null 2>&1 & pid=$!; \
                 while [ \"$(cut -d' ' -f6 /proc/$pid/stat)\" != $pid ]; do sleep 0.05; done"
                    .into(),
            ],
            Duration::from_secs(60),
            |_, _| {},
        )
        .expect("exec");
    assert_eq!(started.exit_code, Some(0));

    let mut paused = Vec::new();
    let mut calls: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut pss = Vec::new();
    let mut group = c.benchmark_group("workspace");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(30));
    for (n, count) in [1u32, 4].into_iter().enumerate() {
        group.bench_function(format!("workspace_fork_{count}"), |b| {
            b.iter_custom(|iters| {
                let mut took = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    let forked = pyro
                        .workspace_fork(
                            &ws,
                            &ForkOptions {
                                count,
                                ..Default::default()
                            },
                            &NoProgress,
                        )
                        .expect("fork");
                    let children: Vec<String> = forked
                        .children
                        .iter()
                        .map(|c| c.record.workspace_id.clone())
                        .collect();
                    std::thread::scope(|s| {
                        for child in &children {
                            s.spawn(|| exec_true(&pyro, child));
                        }
                    });
                    took += t.elapsed();
                    paused.push(forked.source_paused_ms.expect("the source ran"));
                    calls[n].push(forked.duration_ms as f64);
                    for child in &children {
                        pss.push(vmm_pss_kib(data.path(), child) as f64);
                        pyro.workspace_delete(child).expect("delete");
                    }
                }
                took
            })
        });
    }
    group.finish();
    for (n, count) in [1, 4].into_iter().enumerate() {
        eprintln!(
            "fork: the fork call alone, {count} child(ren): median {:.0} ms",
            median(&mut calls[n])
        );
    }
    eprintln!(
        "fork: source paused median {:.0} ms over {} forks; child VMM PSS median {:.1} MiB over {} children",
        median(&mut paused),
        paused.len(),
        median(&mut pss) / 1024.0,
        pss.len()
    );
    let _ = pyro.workspace_delete(&ws);
}

criterion_group!(benches, fork);
criterion_main!(benches);
