//! Builds the guest kernel and one environment into the cache, showing
//! progress, then prints both as JSON.
//!
//! ```text
//! cargo run -p pyro-images --example build -- [ENV] [--kernel-only | --env-only] [--smp]
//! cargo run -p pyro-images --example build -- --prune
//! ```
//!
//! `--smp` builds the SMP kernel (the one VMs with more than one vCPU
//! boot) instead of the uniprocessor one. `PYRO_HOME` moves the cache; `PYRO_GUEST_INIT` names a prebuilt static
//! guest-init (otherwise it is built from this source tree).

use std::time::Instant;

use pyro_images::{Images, KernelVariant, Paths, StderrProgress, DEFAULT_ENV};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kernel_only = args.iter().any(|a| a == "--kernel-only");
    let env_only = args.iter().any(|a| a == "--env-only");
    let name = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or(DEFAULT_ENV, |s| s.as_str());
    let images = Images::new(Paths::from_env());
    let progress = StderrProgress::new();
    eprintln!("cache: {}", images.paths().cache.display());
    if args.iter().any(|a| a == "--prune") {
        match images.prune() {
            Ok(removed) => removed
                .iter()
                .for_each(|p| println!("removed {}", p.display())),
            Err(e) => fail(&e),
        }
        return;
    }

    let mut out = serde_json::Map::new();
    if !env_only {
        let t = Instant::now();
        let variant = if args.iter().any(|a| a == "--smp") {
            KernelVariant::Smp
        } else {
            KernelVariant::Up
        };
        match images.kernel_variant(variant, &progress) {
            Ok(k) => {
                eprintln!(
                    "kernel ready in {:.1}s: {}",
                    t.elapsed().as_secs_f64(),
                    k.path.display()
                );
                out.insert("kernel".into(), serde_json::to_value(&k).unwrap());
            }
            Err(e) => fail(&e),
        }
    }
    if !kernel_only {
        let t = Instant::now();
        match images.environment(name, &progress) {
            Ok(env) => {
                eprintln!(
                    "{name} ready in {:.1}s: {}",
                    t.elapsed().as_secs_f64(),
                    env.rootfs.display()
                );
                out.insert("environment".into(), serde_json::to_value(&env).unwrap());
            }
            Err(e) => fail(&e),
        }
    }
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}

fn fail(e: &pyro_images::Error) -> ! {
    eprintln!("error: {e}");
    std::process::exit(1);
}
