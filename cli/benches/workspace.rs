//! Workspace benches (SDK calls, VMs in their own processes):
//! `workspace_create_cold` / `workspace_create_warm` (empty seed; the VM
//! booted, or restored from the environment's warm workspace snapshot;
//! prints the median VM start inside each create and the ratio),
//! `workspace_create_warm_net` (the warm create with the network on),
//! `workspace_create` seeded with a 1,000-file tree (create + delete),
//! `workspace_exec` (`true` with history and the durability sync; its
//! ratio to the spawn floor measured in the same guest is printed), and
//! `snapshot_create` / `reset` on a 10,000-file, 200 MiB tree.
//!
//! Here (in the CLI package) because cargo hands benches the path of the
//! freshly built `pyro` binary, which runs the VM processes.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use pyro_workspace::{
    CreateOptions, NetConfig, NetRules, NetworkPolicy, NoProgress, PortMapping, Pyro, StartKind,
};
use std::path::Path;
use std::time::{Duration, Instant};

/// `count` files of `size` bytes in 10 directories.
fn tree(dir: &Path, count: usize, size: usize) {
    for i in 0..count {
        let sub = dir.join(format!("d{}", i % 10));
        std::fs::create_dir_all(&sub).unwrap();
        let body: Vec<u8> = (0..size).map(|j| ((i * 31 + j) % 251) as u8).collect();
        std::fs::write(sub.join(format!("f{i}.txt")), body).unwrap();
    }
}

/// Median (start_ms, create_ms) of the creates measured as `name`.
fn bench_create(
    c: &mut Criterion,
    pyro: &Pyro,
    name: &str,
    cold: bool,
    network: NetConfig,
) -> (u64, u64) {
    let opts = CreateOptions {
        cold,
        network,
        ..CreateOptions::default()
    };
    let once = || {
        let t = Instant::now();
        let w = pyro.workspace_create(&opts, &NoProgress).expect("create");
        let ms = t.elapsed().as_millis() as u64;
        let kind = if cold {
            StartKind::Cold
        } else {
            StartKind::Warm
        };
        assert_eq!(w.record.last_start, Some(kind));
        let start_ms = w.record.last_start_ms.expect("start time");
        pyro.workspace_delete(&w.record.workspace_id)
            .expect("delete");
        (start_ms, ms)
    };
    // Builds images and the warm snapshot if missing; not measured.
    let first = once();
    eprintln!("{name}: first create {first:?} (start ms, create ms)");

    let mut group = c.benchmark_group("workspace_start");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(if cold { 150 } else { 15 }));
    let mut starts = Vec::new();
    let mut creates = Vec::new();
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (start_ms, ms) = once();
                starts.push(start_ms);
                creates.push(ms);
                total += Duration::from_millis(ms);
            }
            total
        })
    });
    group.finish();
    if starts.is_empty() {
        // Left out by a filter (`cargo bench ... -- workspace_create_warm`).
        return first;
    }
    starts.sort_unstable();
    creates.sort_unstable();
    let (s, t) = (starts[starts.len() / 2], creates[creates.len() / 2]);
    eprintln!("{name}: median VM start {s} ms of median create {t} ms");
    (s, t)
}

fn benches(c: &mut Criterion) {
    let (scratch, pyro) = common::scratch_pyro(env!("CARGO_BIN_EXE_pyro"));
    let off = NetConfig::default();
    let (_, cold) = bench_create(c, &pyro, "workspace_create_cold", true, off.clone());
    let (_, warm) = bench_create(c, &pyro, "workspace_create_warm", false, off);
    eprintln!(
        "workspace_create_warm vs workspace_create_cold: {warm} ms vs {cold} ms, {:.1}x faster",
        cold as f64 / warm as f64
    );
    // The same warm create with the network on (egress, an allowlist, a
    // published port): the snapshot is the same, only the VMM's stack
    // and the link state differ.
    let on = NetConfig {
        rules: NetRules {
            policy: NetworkPolicy::EgressPublishedPorts,
            allow: vec!["example.test".parse().unwrap()],
            add_hosts: vec!["example.test:127.0.0.1".parse().unwrap()],
        },
        publish: vec![PortMapping {
            host: None,
            guest: 8000,
        }],
    };
    let (_, warm_net) = bench_create(c, &pyro, "workspace_create_warm_net", false, on);
    eprintln!("workspace_create_warm_net vs workspace_create_warm: {warm_net} ms vs {warm} ms");

    let small = scratch.path().join("small");
    tree(&small, 1_000, 1_000);
    let big = scratch.path().join("big");
    tree(&big, 10_000, 20 << 10);

    let mut group = c.benchmark_group("workspace");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(60));

    let opts = CreateOptions {
        seed_path: Some(small.clone()),
        ..CreateOptions::default()
    };
    group.bench_function("workspace_create_1000_files", |b| {
        b.iter(|| {
            let w = pyro.workspace_create(&opts, &NoProgress).expect("create");
            pyro.workspace_delete(&w.record.workspace_id)
                .expect("delete");
        })
    });

    let w = pyro.workspace_create(&opts, &NoProgress).expect("create");
    let id = w.record.workspace_id.clone();
    let argv = vec!["true".to_string()];
    let exec = || {
        let r = pyro
            .workspace_exec(&id, &argv, Duration::from_secs(30), |_, _| {})
            .expect("exec");
        assert_eq!(r.exit_code, Some(0));
    };
    exec(); // a cold page cache is not what this measures
    let mut times = Vec::new();
    group.bench_function("workspace_exec", |b| {
        b.iter(|| {
            let t = Instant::now();
            exec();
            times.push(t.elapsed());
        })
    });
    times.sort();
    let median = times[times.len() / 2];
    // The spawn floor in the same guest: what one `/bin/true` costs a
    // small parent (dash). Ten spawns timed as the difference of a loop
    // of 20 and a loop of 10, so the `date` calls around them cancel.
    let script = "t0=$(date +%s%N); for i in 1 2 3 4 5 6 7 8 9 10; do /bin/true; done; \
                  t1=$(date +%s%N); for i in 1 2 3 4 5 6 7 8 9 10 1 2 3 4 5 6 7 8 9 10; \
                  do /bin/true; done; t2=$(date +%s%N); echo $(( (t2 - t1 - (t1 - t0)) / 10 ))";
    let argv_floor = vec!["sh".to_string(), "-c".into(), script.into()];
    let mut floors: Vec<u64> = (0..3)
        .map(|_| {
            let mut out = Vec::new();
            pyro.workspace_exec(&id, &argv_floor, Duration::from_secs(120), |_, b| {
                out.extend_from_slice(b)
            })
            .expect("floor");
            String::from_utf8_lossy(&out).trim().parse().expect("ns")
        })
        .collect();
    floors.sort();
    let floor = Duration::from_nanos(floors[1]);
    eprintln!(
        "workspace_exec: {:.3} s (median) vs spawn floor {:.3} s (in-guest `true` from sh, \
         median of 3): {:.2}x",
        median.as_secs_f64(),
        floor.as_secs_f64(),
        median.as_secs_f64() / floor.as_secs_f64()
    );
    pyro.workspace_delete(&id).expect("delete");

    let big_opts = CreateOptions {
        seed_path: Some(big.clone()),
        disk_mib: 1024,
        ..CreateOptions::default()
    };
    let w = pyro
        .workspace_create(&big_opts, &NoProgress)
        .expect("create big");
    let id = w.record.workspace_id.clone();
    let mut n = 0u32;
    group.bench_function("snapshot_create_10k_files_200MiB", |b| {
        b.iter(|| {
            n += 1;
            pyro.checkpoint_create(&id, &format!("s{n}"))
                .expect("snapshot");
        })
    });
    group.bench_function("reset_10k_files_200MiB", |b| {
        b.iter(|| {
            pyro.workspace_reset(&id, "baseline", &NoProgress)
                .expect("reset");
        })
    });
    group.finish();
    pyro.workspace_delete(&id).expect("delete");
}

criterion_group!(workspace, benches);
criterion_main!(workspace);
