//! Shared by the CLI tests that run the real binary: [`pyro`] for those
//! without a guest, [`home::Home`] for those that boot guests.

#![allow(dead_code)]

pub mod home;

use std::process::{Command, Output};

/// Runs pyro with its workspace state in a scratch directory.
pub fn pyro(data: &tempfile::TempDir, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pyro"))
        .args(args)
        .env("XDG_DATA_HOME", data.path())
        .env_remove("PYRO_HOME")
        .output()
        .expect("run pyro")
}
