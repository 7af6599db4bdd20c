//! The PID 1 duties, one module each.

pub mod agent;
pub mod clock;
pub mod cmdline;
pub mod exec;
pub mod marker;
pub mod mounts;
pub mod power;
pub mod reaper;

use std::io::Write;

/// Writes one line to the console (the VMM's serial log).
pub fn log(msg: &str) {
    let _ = writeln!(std::io::stderr(), "pyro-init: {msg}");
}
