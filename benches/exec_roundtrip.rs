//! `exec_roundtrip`: run `true` in an already booted VM, over one agent
//! connection (vsock + fork/exec + wait + reply).

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use pyro::workspace::{ExecRequest, GuestClient};
use std::time::Duration;

fn exec_roundtrip(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (vm, uds) = common::serving_vm(dir.path(), pyro::vmm::VmConfig::DEFAULT_MEM_MIB);
    let mut client = GuestClient::connect(&uds).expect("agent");
    let run_true = |client: &mut GuestClient| {
        let req = ExecRequest {
            argv: vec!["true".into()],
            ..Default::default()
        };
        let r = client.exec(req, |_, _| {}).expect("exec");
        assert_eq!(r.exit_code, Some(0));
    };
    run_true(&mut client); // first run pays for a cold page cache

    let mut group = c.benchmark_group("agent");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(20));
    group.bench_function("exec_roundtrip", |b| b.iter(|| run_true(&mut client)));
    group.bench_function("ping_roundtrip", |b| {
        b.iter(|| client.ping().expect("ping"))
    });
    group.finish();
    drop(vm);
}

criterion_group!(benches, exec_roundtrip);
criterion_main!(benches);
