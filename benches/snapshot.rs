//! VM snapshots: `vm_snapshot_create` (pause, save state and 128 MiB of
//! guest memory, resume) and `snapshot_restore` (VMM start to agent-ready:
//! restore, reconnect, make the guest unique, one ping), next to
//! `cold_boot`. Also prints what one restored VM costs the host beyond the
//! guest memory it touched (the VMM's resident overhead).

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use pyro::vmm::{Vm, VsockConfig};
use pyro::workspace::GuestClient;
use std::path::Path;
use std::time::{Duration, Instant};

fn restore_ready(config: &pyro::vmm::VmConfig, snap: &Path, uds: &Path) -> (Vm, GuestClient) {
    let vm = Vm::restore(config, snap).expect("restore");
    let mut client = GuestClient::wait_ready(uds, Duration::from_secs(30)).expect("agent");
    client.restored(None, None).expect("restored");
    client.ping().expect("ping");
    (vm, client)
}

/// Resident kB of this process, and of mappings of `file` in it.
fn rss_kb(file: &Path) -> (u64, u64) {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let (mut total, mut of_file, mut in_file) = (0, 0, false);
    for line in smaps.lines() {
        if line.contains('-') && !line.starts_with(|c: char| c.is_ascii_uppercase()) {
            in_file = line.ends_with(&*file.to_string_lossy());
        } else if let Some(v) = line.strip_prefix("Rss:") {
            let kb: u64 = v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0);
            total += kb;
            if in_file {
                of_file += kb;
            }
        }
    }
    (total, of_file)
}

fn snapshots(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut vm, _uds) = common::serving_vm(dir.path(), 128);
    let snap = dir.path().join("snap");

    let mut group = c.benchmark_group("snapshot");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(20));
    group.bench_function("vm_snapshot_create", |b| {
        b.iter(|| vm.snapshot(&snap).expect("snapshot"))
    });
    drop(vm);

    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let uds = run.join("vsock.sock");
    let mut config = common::default_env_vm();
    config.set_vsock(VsockConfig {
        cid: 3,
        uds: uds.clone(),
    });
    group.bench_function("snapshot_restore", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let vm = restore_ready(&config, &snap, &uds);
                total += t.elapsed();
                drop(vm);
            }
            total
        })
    });
    group.finish();

    let memory = pyro::vmm::snapshot::memory_path(&snap);
    let (before, _) = rss_kb(&memory);
    let (vm, client) = restore_ready(&config, &snap, &uds);
    let (after, guest) = rss_kb(&memory);
    eprintln!(
        "snapshot_restore: one restored VM adds {} kB resident: {guest} kB of guest memory \
         touched, {} kB of VMM overhead",
        after.saturating_sub(before),
        after.saturating_sub(before).saturating_sub(guest)
    );
    drop((vm, client));
}

criterion_group!(benches, snapshots);
criterion_main!(benches);
