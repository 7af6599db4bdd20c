//! `env_build_custom`: building a custom environment with three extra
//! packages (`debian:12` + jq, file, tree) and a one-line setup script,
//! from `env build` to a ready image: mmdebstrap on the host, the setup
//! script in a chroot, guest-init, mkfs, hashing. Each iteration's script
//! differs (a comment), so every build makes a new tree rather than
//! hitting the cache; the downloaded packages do come from pyro's deb
//! cache after the first build, as they would for a user's second
//! environment. Each environment is deleted after its iteration.

use criterion::{criterion_group, criterion_main, Criterion};
use pyro::images::Paths;
use pyro::workspace::{CustomRequest, NoProgress, Pyro, StderrProgress};
use std::time::{Duration, Instant};

fn env_build(c: &mut Criterion) {
    // Our own data dir, so the definitions never reach the user's list.
    let data = tempfile::tempdir().expect("temp dir");
    let pyro = Pyro::with_paths(Paths {
        cache: Paths::from_env().cache,
        data: data.path().to_path_buf(),
    });
    // The kernel and guest-init first, outside the measurement.
    pyro.env_pull(pyro::images::DEFAULT_ENV, &StderrProgress::new())
        .expect("default environment");
    let mut n = 0u32;
    let mut group = c.benchmark_group("env");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1));
    group.bench_function("env_build_custom", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let req = CustomRequest {
                    name: format!("bench-env-{}-{n}", std::process::id()),
                    from: "debian:12".into(),
                    packages: vec!["jq".into(), "file".into(), "tree".into()],
                    setup_script: Some(format!(
                        "# bench {} {n}\necho bench > /etc/pyro-bench\n",
                        std::process::id()
                    )),
                    description: None,
                };
                let t = Instant::now();
                pyro.env_build(&req, &NoProgress).expect("build");
                total += t.elapsed();
                pyro.env_delete(&req.name).expect("delete");
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, env_build);
criterion_main!(benches);
