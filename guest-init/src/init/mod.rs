//! The PID 1 duties, one module each.

pub mod agent;
pub mod archive;
pub mod body;
pub mod buffers;
pub mod clock;
pub mod cmdline;
pub mod direct;
pub mod exec;
pub mod files;
pub mod freeze;
pub mod marker;
pub mod mounts;
pub mod net;
pub mod patch_apply;
pub mod power;
pub mod reaper;
pub mod ring;
pub mod secrets;
pub mod service;
pub mod shell;
pub mod system;
pub mod workers;

use std::io::{Read, Write};

/// `std::io::copy` with chunks of `proto::rpc::CHUNK` instead of 8 KiB:
/// every `write` is an emulated syscall (~160 us) on PVM hosts, so a
/// 64 MiB file costs 256 writes instead of 8192.
pub fn copy_chunked(from: &mut impl Read, to: &mut impl Write) -> std::io::Result<u64> {
    let mut buf = vec![0u8; pyro_proto::rpc::CHUNK];
    let mut total = 0u64;
    loop {
        // Fill the buffer before writing: the source (a body of frames,
        // a tar entry) hands out data in pieces smaller than a chunk.
        let filled = pyro_proto::rpc::read_full(from, &mut buf)?;
        if filled == 0 {
            return Ok(total);
        }
        to.write_all(&buf[..filled])?;
        total += filled as u64;
    }
}

/// Where commands the agent starts look for programs.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment of every command the agent starts (exec, shells,
/// services, probes): a minimal one, not
/// the agent's, plus `extra` on top (a name given twice: the last wins).
pub fn command_env(extra: &[(String, String)]) -> Vec<(String, String)> {
    let base = [
        ("PATH".to_string(), PATH.to_string()),
        ("HOME".into(), "/root".into()),
        ("LANG".into(), "C.UTF-8".into()),
    ];
    // glibc CPU features to avoid, from the kernel command line (see
    // vmm/src/kernel_cmdline.rs).
    let tunables = std::env::vars().filter(|(k, _)| k == "GLIBC_TUNABLES");
    let mut env: Vec<(String, String)> = Vec::new();
    for (k, v) in base
        .into_iter()
        .chain(tunables)
        .chain(extra.iter().cloned())
    {
        match env.iter_mut().find(|(name, _)| *name == k) {
            Some(slot) => slot.1 = v,
            None => env.push((k, v)),
        }
    }
    env
}

/// Writes one line to the console (the VMM's serial log).
pub fn log(msg: &str) {
    let _ = writeln!(std::io::stderr(), "pyro-init: {msg}");
}

/// A request that failed: `kind` is a stable word for programs, `message`
/// says what happened and, where it can, what to do.
#[derive(Debug)]
pub struct RpcError {
    pub kind: &'static str,
    pub message: String,
}

impl RpcError {
    pub fn new(kind: &'static str, message: String) -> Self {
        Self { kind, message }
    }

    /// An I/O error on the workspace path `rel`.
    pub fn io(rel: &str, e: std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(code) => files::fs_error(rustix::io::Errno::from_raw_os_error(code), rel),
            None => Self::new(
                "io",
                format!("{}: {e}", pyro_proto::rpc::workspace_absolute(rel)),
            ),
        }
    }

    /// The host connection broke while we answered.
    pub fn host_gone(e: std::io::Error) -> Self {
        Self::new("host_gone", format!("the host connection broke: {e}"))
    }
}
