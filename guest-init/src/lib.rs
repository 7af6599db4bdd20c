//! `pyro-guest-init`: the guest side of pyro.
//!
//! The binary (`pyro-init`, built static) is PID 1 inside every pyro guest:
//! it mounts the kernel filesystems, reaps orphans, tells the VMM when it
//! started, and powers the VM off. The RPC agent (exec, files, archives)
//! slots in as the `Serve` mode of `main.rs`.
//!
//! The library half is [`proto`]: everything the host and guest must agree
//! on, free of Linux-only dependencies, so the host crates import it.

pub mod patch;
pub mod proto;
