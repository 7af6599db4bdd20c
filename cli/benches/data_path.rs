//! Data-path benches (issue 13): reads of a running workspace seeded
//! with 10,000 small files (100 directories of 100) and one 10 MiB file,
//! served from its frozen disk image on the host (`served_by:
//! host_image`):
//! `file_list_recursive_10k`, `file_read_1MiB`, `export_10MiB`,
//! `export_tree_10k` and `diff_10k_100_changes` (100 files changed, 100
//! deleted, 1 added). `file_read_small` is served by the agent either
//! way (a small file costs it less than a freeze costs the host).
//!
//! Before the Criterion runs, each is timed once through the guest agent
//! (`PYRO_HOST_READS=0`, the path every read took before), and the ratio
//! is printed: on PVM hosts that path costs minutes where the host's
//! costs milliseconds.
//!
//! The write path: `sync_push_10MiB` (one 10 MiB file into a new
//! directory, its body through the staging disk), timed once with
//! `PYRO_STAGING=0` (vsock frames) for the ratio.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use pyro_workspace::{CreateOptions, NoProgress, ServedBy, HOST_READS_ENV, STAGING_ENV};
use std::path::Path;
use std::time::{Duration, Instant};

fn seed(dir: &Path) {
    pyro_workspace::testing::small_files_seed(dir, 100, 100);
    let big: Vec<u8> = (0..10u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("big.bin"), big).unwrap();
}

fn benches(c: &mut Criterion) {
    let (scratch, pyro) = common::scratch_pyro(env!("CARGO_BIN_EXE_pyro"));
    let tree = scratch.path().join("seed");
    seed(&tree);
    let opts = CreateOptions {
        seed_path: Some(tree),
        ..CreateOptions::default()
    };
    let id = pyro
        .workspace_create(&opts, &NoProgress)
        .expect("create")
        .record
        .workspace_id;
    let script =
        "cd /workspace && sed -i '$a changed' d7/f*.txt && rm -rf d8 && echo new > added.txt";
    let argv = ["sh".to_string(), "-c".into(), script.into()];
    let r = pyro
        .workspace_exec(&id, &argv, Duration::from_secs(600), |_, _| {})
        .expect("changes");
    assert_eq!(r.exit_code, Some(0));

    let mut n = 0u32;
    let mut out = || {
        n += 1;
        scratch.path().join(format!("out{n}"))
    };
    let list = |want: ServedBy| {
        let l = pyro.workspace_file_list(&id, "/workspace", true).unwrap();
        assert_eq!((l.served_by, l.entries.len() > 9_900), (want, true));
    };
    // A small file is the agent's in both runs (it costs the agent less
    // than a freeze costs the host); the 1 MiB read shows the two paths.
    let read = |_: ServedBy| {
        let r = pyro.workspace_file_read(&id, "d50/f50.txt", 1024).unwrap();
        assert_eq!((r.served_by, r.content.len()), (ServedBy::GuestAgent, 11));
    };
    let read_1mib = |want: ServedBy| {
        let r = pyro.workspace_file_read(&id, "big.bin", 1 << 20).unwrap();
        assert_eq!((r.served_by, r.content.len()), (want, 1 << 20));
    };
    let export_big = |want: ServedBy, to: &Path| {
        let e = pyro.workspace_export(&id, "big.bin", to).unwrap();
        assert_eq!((e.served_by, e.bytes_written), (want, 10 << 20));
    };
    let export_tree = |want: ServedBy, to: &Path| {
        let e = pyro.workspace_export(&id, "/workspace", to).unwrap();
        assert_eq!(e.served_by, want);
    };
    let diff = |want: ServedBy| {
        let d = pyro.workspace_diff(&id).unwrap();
        let s = &d.summary;
        assert_eq!(
            (d.served_by, s.modified, s.deleted, s.added),
            (want, 100, 100, 1)
        );
    };

    // Once each through the agent, for the ratio.
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed()
    };
    std::env::set_var(HOST_READS_ENV, "0");
    let g = ServedBy::GuestAgent;
    let guest = [
        ("file_list_recursive_10k", time(&mut || list(g))),
        ("file_read_small", time(&mut || read(g))),
        ("file_read_1MiB", time(&mut || read_1mib(g))),
        ("export_10MiB", time(&mut || export_big(g, &out()))),
        ("export_tree_10k", time(&mut || export_tree(g, &out()))),
        ("diff_10k_100_changes", time(&mut || diff(g))),
    ];
    std::env::remove_var(HOST_READS_ENV);

    let h = ServedBy::HostImage;
    let mut group = c.benchmark_group("data_path");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(10));
    let mut medians = Vec::new();
    let mut bench = |name: &str, f: &mut dyn FnMut()| {
        let mut times = Vec::new();
        group.bench_function(name, |b| {
            b.iter(|| {
                let t = Instant::now();
                f();
                times.push(t.elapsed());
            })
        });
        times.sort();
        medians.push(times[times.len() / 2]);
    };
    bench("file_list_recursive_10k", &mut || list(h));
    bench("file_read_small", &mut || read(h));
    bench("file_read_1MiB", &mut || read_1mib(h));
    bench("export_10MiB", &mut || export_big(h, &out()));
    bench("export_tree_10k", &mut || export_tree(h, &out()));
    bench("diff_10k_100_changes", &mut || diff(h));
    // After the reads: the pushes add files the diff would see.
    // A push source: one 10 MiB file, pushed into a new directory each
    // time.
    let push_src = scratch.path().join("push");
    std::fs::create_dir_all(&push_src).unwrap();
    let body: Vec<u8> = (0..10u32 << 20).map(|i| (i * 7 % 253) as u8).collect();
    std::fs::write(push_src.join("big.bin"), body).unwrap();
    let mut pushes = 0u32;
    let mut push = || {
        pushes += 1;
        let r = pyro
            .workspace_sync_push(&id, &push_src, &format!("/workspace/pushed{pushes}"))
            .unwrap();
        assert_eq!(r.upload.bytes_written, 10 << 20);
    };
    std::env::set_var(STAGING_ENV, "0");
    let push_inline = time(&mut push);
    std::env::remove_var(STAGING_ENV);
    bench("sync_push_10MiB", &mut push);
    group.finish();
    let staged = medians[medians.len() - 1];
    eprintln!(
        "sync_push_10MiB: staging disk {:.3} s (median) vs vsock frames {:.3} s (once): {:.1}x",
        staged.as_secs_f64(),
        push_inline.as_secs_f64(),
        push_inline.as_secs_f64() / staged.as_secs_f64()
    );
    for ((name, through_guest), on_host) in guest.iter().zip(&medians) {
        eprintln!(
            "{name}: host image {:.3} s (median) vs guest agent {:.3} s (once): {:.0}x",
            on_host.as_secs_f64(),
            through_guest.as_secs_f64(),
            through_guest.as_secs_f64() / on_host.as_secs_f64()
        );
    }
    pyro.workspace_delete(&id).expect("delete");
}

criterion_group!(data_path, benches);
criterion_main!(data_path);
