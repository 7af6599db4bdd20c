//! `file_transfer`: 64 MiB into a booted guest (atomic `write`: vsock,
//! temporary file, fsync, rename) and back out (`read`), on one agent
//! connection. /workspace is the guest's tmpfs, so this measures the
//! transport and the agent, not a disk.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pyro::workspace::GuestClient;
use std::time::Duration;

const SIZE: usize = 64 << 20;

fn file_transfer(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    // The tmpfs holds half the RAM; an overwrite briefly holds two copies.
    let (vm, uds) = common::serving_vm(dir.path(), 512);
    let mut client = GuestClient::connect(&uds).expect("agent");
    let data: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();

    let mut group = c.benchmark_group("file_transfer");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(30))
        .throughput(Throughput::Bytes(SIZE as u64));
    group.bench_function("write_64MiB", |b| {
        b.iter(|| {
            let w = client
                .write("blob", None, false, &mut &data[..])
                .expect("write");
            assert_eq!(w.bytes_written, SIZE as u64);
        })
    });
    let mut sink = Vec::with_capacity(SIZE);
    group.bench_function("read_64MiB", |b| {
        b.iter(|| {
            sink.clear();
            let r = client.read("blob", 0, None, &mut sink).expect("read");
            assert_eq!(r.bytes_read, SIZE as u64);
        })
    });
    group.finish();
    assert!(sink == data, "read back differs");
    drop(vm);
}

criterion_group!(benches, file_transfer);
criterion_main!(benches);
