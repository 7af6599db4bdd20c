//! Builds guest-init (the guest's static PID 1, crate `pyro-guest-init`)
//! when pyro is built, and embeds it (`src/guest_init.rs`): an installed
//! `pyro` needs neither cargo nor this source tree at run time.
//!
//! A nested `cargo build`, with its own target directory (`<target>/guest`
//! beside the outer build's profiles): the outer cargo holds its own
//! target directory's lock while this script runs, so sharing it would
//! deadlock. Offline first (after `cargo fetch`, or any `--workspace`
//! build, every package is there); if packages are missing, online, with
//! a deadline so that a nested cargo waiting on a lock can never hang the
//! build. `PYRO_GUEST_INIT` names a prebuilt static binary to embed
//! instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The target guest-init is built for (static glibc via crt-static);
/// `src/guest_init.rs` names it too.
const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";
/// Longest the nested build may take.
const DEADLINE: Duration = Duration::from_secs(30 * 60);

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    println!("cargo:rerun-if-env-changed=PYRO_GUEST_INIT");
    // guest-init and the workspace crates it is built from.
    for input in [
        "guest-init",
        "proto",
        "patch",
        "devices/fsfreeze",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(input).display());
    }
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let built = match std::env::var_os("PYRO_GUEST_INIT").filter(|v| !v.is_empty()) {
        Some(prebuilt) => PathBuf::from(prebuilt),
        None => build(&root, &out_dir),
    };
    // A copy of our own: another build may replace the file meanwhile.
    let embedded = out_dir.join("pyro-init");
    std::fs::copy(&built, &embedded)
        .unwrap_or_else(|e| panic!("copy {} into OUT_DIR: {e}", built.display()));
    println!(
        "cargo:rustc-env=PYRO_EMBEDDED_GUEST_INIT={}",
        embedded.display()
    );
}

/// The outer build's target directory: `OUT_DIR` is
/// `<target>/[<triple>/]<profile>/build/<pkg>-<hash>/out`.
fn target_dir(out_dir: &Path) -> PathBuf {
    let profile_dir = out_dir.ancestors().nth(3).unwrap();
    let parent = profile_dir.parent().unwrap();
    if parent.file_name().is_some_and(|n| n == GUEST_TARGET) {
        parent.parent().unwrap().to_path_buf()
    } else {
        parent.to_path_buf()
    }
}

fn build(root: &Path, out_dir: &Path) -> PathBuf {
    let target = target_dir(out_dir).join("guest");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let attempt = |offline: bool| -> Result<(), String> {
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(root)
            .args(["build", "--release", "--locked", "-p", "pyro-guest-init"])
            .args(["--bin", "pyro-init", "--target", GUEST_TARGET])
            .arg("--target-dir")
            .arg(&target)
            // Static glibc, and not position-independent: a static-pie
            // binary relocates itself at start-up, touching pages that
            // each cost a page fault in the emulated guest kernel on PVM
            // hosts.
            .env(
                "RUSTFLAGS",
                "-C target-feature=+crt-static -C relocation-model=static",
            )
            // What the outer cargo set for its own compilers (clippy's
            // driver, the outer flags) is not for this build.
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .env_remove("CLIPPY_ARGS")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if offline {
            cmd.arg("--offline");
        }
        let mut child = cmd.spawn().map_err(|e| format!("run cargo: {e}"))?;
        let mut stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            text
        });
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                break status;
            }
            if started.elapsed() > DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the nested cargo build of guest-init took over {} minutes (waiting on a \
                     lock?); run `cargo fetch` first, or set PYRO_GUEST_INIT to a static \
                     pyro-init binary",
                    DEADLINE.as_secs() / 60
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let text = reader.join().unwrap_or_default();
        if status.success() {
            Ok(())
        } else {
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            Err(format!(
                "cargo build of guest-init failed:\n{}",
                tail.join("\n")
            ))
        }
    };
    if let Err(offline) = attempt(true) {
        println!("cargo:warning=guest-init: an offline build failed, building online");
        if let Err(online) = attempt(false) {
            panic!("{online}\n(offline, before: {offline})");
        }
    }
    target.join(GUEST_TARGET).join("release/pyro-init")
}
