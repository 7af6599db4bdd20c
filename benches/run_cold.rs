//! `run_cold`: the whole `pyro run -- true` through the SDK, as a user
//! pays for it: VMM start, cold boot, agent connect, exec, teardown. The
//! report's `timings` split (boot vs the rest) is printed once.

use criterion::{criterion_group, criterion_main, Criterion};
use pyro::workspace::{NoProgress, Pyro, RunOptions};
use std::time::Duration;

fn run_cold(c: &mut Criterion) {
    let pyro = Pyro::from_env();
    let opts = RunOptions::default();
    let argv = vec!["true".to_string()];
    let once = || {
        let r = pyro.run(&opts, &argv, &NoProgress, |_, _| {}).expect("run");
        assert_eq!(r.exit_code, Some(0));
        r
    };
    let first = once(); // builds images if missing; not measured
    eprintln!("run_cold: first run timings {:?}", first.timings);

    let mut group = c.benchmark_group("run");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(120));
    let mut boot_ms = Vec::new();
    let mut total_ms = Vec::new();
    group.bench_function("run_cold", |b| {
        b.iter(|| {
            let r = once();
            boot_ms.push(r.timings.boot_ms);
            total_ms.push(r.timings.total_ms);
        })
    });
    group.finish();
    boot_ms.sort_unstable();
    total_ms.sort_unstable();
    if !total_ms.is_empty() {
        let (b, t) = (boot_ms[boot_ms.len() / 2], total_ms[total_ms.len() / 2]);
        eprintln!(
            "run_cold: median boot {b} ms of median total {t} ms ({:.0} %)",
            100.0 * b as f64 / t as f64
        );
    }
}

criterion_group!(benches, run_cold);
criterion_main!(benches);
