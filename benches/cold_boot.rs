//! `cold_boot`: VMM start to the guest's init marker, default environment,
//! 1 vCPU, 128 MiB. Also prints the guest's own clock at init (median).

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use pyro::vmm::Vm;
use std::time::Duration;

fn cold_boot(c: &mut Criterion) {
    let config = common::default_env_vm();

    let mut guest_ms = Vec::new();
    let mut group = c.benchmark_group("boot");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(100));
    group.bench_function("cold_boot", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut vm = Vm::start(&config).expect("start");
                let times = vm.wait_for_init(Duration::from_secs(120)).expect("init");
                total += Duration::from_secs_f64(times.to_init_ms / 1000.0);
                guest_ms.push(times.guest_init_ms);
            }
            total
        })
    });
    group.finish();
    guest_ms.sort_by(f64::total_cmp);
    if let Some(median) = guest_ms.get(guest_ms.len() / 2) {
        eprintln!(
            "cold_boot: guest clock at init, median of {}: {median:.0} ms",
            guest_ms.len()
        );
    }
}

criterion_group!(benches, cold_boot);
criterion_main!(benches);
