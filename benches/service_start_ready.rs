//! `service_start_ready`: in a workspace, start a service whose command
//! writes its ready file, and wait until the agent's file probe saw it
//! (one agent round trip: the probe runs in the guest). Each sample also
//! stops the service, outside the timed part.

mod common;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use pyro::workspace::{ServiceOptions, ServiceProbe, ServiceState};
use std::time::Duration;

fn service_start_ready(c: &mut Criterion) {
    let data = tempfile::tempdir().expect("temp dir");
    let (pyro, ws) = common::pyro_with_workspace(data.path());
    // Each start makes a ready file of its own (so no clean-up between
    // samples), with the shell's builtins only: `: > file` needs no other
    // process (a spawn is ~0.6 s in a PVM guest). Between samples, the
    // last one is stopped, untimed.
    let n = std::cell::Cell::new(0u32);
    let start = || {
        n.set(n.get() + 1);
        let ready = format!(".ready-{}", n.get());
        let opts = ServiceOptions {
            ready: Some(ServiceProbe::File {
                path: ready.clone(),
            }),
            ..ServiceOptions::new(format!(": > {ready}; exec sleep 3600"))
        };
        let s = pyro
            .workspace_service_start(&ws, "app", &opts)
            .expect("start");
        assert_eq!(s.state, ServiceState::Ready, "{s:?}");
    };
    let stop = || {
        pyro.workspace_service_stop(&ws, "app", None).expect("stop");
    };
    start(); // the first pays for cold pages

    let mut group = c.benchmark_group("service");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(30));
    group.bench_function("service_start_ready", |b| {
        b.iter_batched(&stop, |_| start(), BatchSize::PerIteration)
    });
    group.finish();
    let _ = pyro.workspace_delete(&ws);
}

criterion_group!(benches, service_start_ready);
criterion_main!(benches);
