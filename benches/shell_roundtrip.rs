//! `shell_roundtrip`: in a workspace's shell, write a line and read
//! until its echo is back (two agent connections at least: the write,
//! then reads that wait for the echo in the guest).

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use pyro::workspace::{ShellOptions, ShellReadOptions};
use std::time::Duration;

fn shell_roundtrip(c: &mut Criterion) {
    let data = tempfile::tempdir().expect("temp dir");
    let (pyro, ws) = common::pyro_with_workspace(data.path());
    let shell = pyro
        .workspace_shell_open(&ws, &ShellOptions::default())
        .expect("open")
        .shell_id;
    let mut cursor = 0;
    let mut n = 0u64;
    let mut roundtrip = || {
        n += 1;
        let line = format!("#rt{n}");
        pyro.workspace_shell_write(&ws, &shell, &line, true)
            .expect("write");
        let mut seen = String::new();
        while !seen.contains(&line) {
            let opts = ShellReadOptions {
                cursor,
                wait_for_idle_ms: Some(1),
                ..Default::default()
            };
            let r = pyro.workspace_shell_read(&ws, &shell, &opts).expect("read");
            seen.push_str(&r.output);
            cursor = r.next_cursor;
        }
    };
    roundtrip(); // the first pays for cold pages

    let mut group = c.benchmark_group("shell");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(20));
    group.bench_function("shell_roundtrip", |b| b.iter(&mut roundtrip));
    group.finish();
    let _ = pyro.workspace_delete(&ws);
}

criterion_group!(benches, shell_roundtrip);
criterion_main!(benches);
