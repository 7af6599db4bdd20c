//! `idle_resume`: a workspace its VMM suspended on idle
//! (`idle_suspend_seconds` 1) answers an `exec -- true`, which resumes it
//! first. Each sample waits, untimed, until the VMM has suspended it
//! again; the time is the whole call. The resume part alone (the call's
//! `resumed_ms`) is printed as a median at the end.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use pyro::workspace::{SuspendedBy, UpdateOptions, WorkspaceState};
use std::time::{Duration, Instant};

fn idle_resume(c: &mut Criterion) {
    let data = tempfile::tempdir().expect("temp dir");
    let (pyro, ws) = common::pyro_with_workspace(data.path());
    let opts = UpdateOptions {
        idle_suspend_seconds: Some(1),
        ..Default::default()
    };
    pyro.workspace_update(&ws, &opts).expect("update");
    let suspended = || {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let w = pyro.workspace_status(&ws).expect("status");
            if w.state == WorkspaceState::Suspended && w.suspended_by == Some(SuspendedBy::Idle) {
                return;
            }
            assert!(Instant::now() < deadline, "not suspended within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let mut resumes = Vec::new();
    let mut exec_true = || {
        let r = pyro
            .workspace_exec(&ws, &["true".into()], Duration::from_secs(60), |_, _| {})
            .expect("exec");
        assert_eq!(r.exit_code, Some(0));
        resumes.push(r.resumed_ms.expect("the exec resumed the workspace"));
    };
    suspended();
    exec_true(); // the first pays for cold pages

    let mut group = c.benchmark_group("workspace");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(30));
    group.bench_function("idle_resume_exec_true", |b| {
        b.iter_custom(|iters| {
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                suspended();
                let t = Instant::now();
                exec_true();
                took += t.elapsed();
            }
            took
        })
    });
    group.finish();
    resumes.sort_unstable();
    eprintln!(
        "idle_resume: resumed_ms median {} over {} resumes (min {}, max {})",
        resumes[resumes.len() / 2],
        resumes.len(),
        resumes[0],
        resumes[resumes.len() - 1]
    );
    let _ = pyro.workspace_delete(&ws);
}

criterion_group!(benches, idle_resume);
criterion_main!(benches);
