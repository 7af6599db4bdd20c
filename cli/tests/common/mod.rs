//! Shared by the CLI tests that run the real binary: [`pyro`] for those
//! without a guest, [`home::Home`] for those that boot guests.

#![allow(dead_code)]

pub mod home;

use std::process::{Command, Output};

/// CPU time (ns) every thread of process `pid` has used so far, from
/// their `schedstat` (0 once the process is gone): for a VMM, its vCPU
/// threads included, so a guest that wakes shows here.
pub fn cpu_ns(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Runs pyro with its workspace state in a scratch directory.
pub fn pyro(data: &tempfile::TempDir, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pyro"))
        .args(args)
        .env("XDG_DATA_HOME", data.path())
        .env_remove("PYRO_HOME")
        .output()
        .expect("run pyro")
}
