//! `run_cold` and `run_warm`: the whole `pyro run -- true` through the
//! SDK, as a user pays for it: VMM start, cold boot or restore of the
//! environment's warm snapshot, agent connect, exec, teardown. Each
//! prints its median `timings` split once (boot or restore vs the rest)
//! and `run_warm` its ratio to `run_cold`.
//!
//! `PYRO_BENCH_VCPUS=2` measures 2-vCPU VMs instead (the SMP kernel; the
//! benches are then named `run_cold_2vcpus`, `run_warm_2vcpus`).

use criterion::{criterion_group, criterion_main, Criterion};
use pyro::workspace::{NoProgress, Pyro, RunOptions};
use std::time::Duration;

/// Median (boot_ms, total_ms) of `samples` runs measured as `name`.
fn bench_run(c: &mut Criterion, name: &str, cold: bool, vcpus: u8) -> (u64, u64) {
    let pyro = Pyro::from_env();
    let opts = RunOptions {
        cold,
        vcpus,
        ..RunOptions::default()
    };
    let argv = vec!["true".to_string()];
    let once = || {
        let r = pyro.run(&opts, &argv, &NoProgress, |_, _| {}).expect("run");
        assert_eq!(r.exit_code, Some(0));
        assert_eq!(r.timings.warm, !cold);
        r
    };
    // Builds images (and the warm snapshot) if missing; not measured.
    let first = once();
    eprintln!("{name}: first run timings {:?}", first.timings);

    let mut group = c.benchmark_group("run");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(if cold { 120 } else { 10 }));
    let mut boot_ms = Vec::new();
    let mut total_ms = Vec::new();
    group.bench_function(name, |b| {
        b.iter(|| {
            let r = once();
            boot_ms.push(r.timings.boot_ms);
            total_ms.push(r.timings.total_ms);
        })
    });
    group.finish();
    if boot_ms.is_empty() {
        // Left out by a filter (`cargo bench --bench run -- run_warm`).
        return (first.timings.boot_ms, first.timings.total_ms);
    }
    boot_ms.sort_unstable();
    total_ms.sort_unstable();
    let (b, t) = (boot_ms[boot_ms.len() / 2], total_ms[total_ms.len() / 2]);
    eprintln!(
        "{name}: median boot/restore {b} ms of median total {t} ms ({:.0} %)",
        100.0 * b as f64 / t as f64
    );
    (b, t)
}

/// `PYRO_BENCH_VCPUS`, else 1.
fn vcpus() -> u8 {
    std::env::var("PYRO_BENCH_VCPUS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1)
}

fn runs(c: &mut Criterion) {
    let vcpus = vcpus();
    let suffix = if vcpus == 1 {
        String::new()
    } else {
        format!("_{vcpus}vcpus")
    };
    let (_, cold) = bench_run(c, &format!("run_cold{suffix}"), true, vcpus);
    let (_, warm) = bench_run(c, &format!("run_warm{suffix}"), false, vcpus);
    eprintln!(
        "run_warm vs run_cold: {warm} ms vs {cold} ms, {:.1}x faster",
        cold as f64 / warm as f64
    );
}

criterion_group!(benches, runs);
criterion_main!(benches);
