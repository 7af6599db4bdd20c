//! `pyro-proto`: what pyro's host and guest agree on, and nothing else.
//!
//! - [`marker`]: the guest-signal device's register layout (boot and
//!   power-off markers the guest writes over `/dev/mem`).
//! - [`cmdline`]: kernel command-line keys guest-init reads.
//! - [`rpc`]: the agent's RPC frames and types over vsock.
//! - [`shell`]: shells (PTY sessions) the agent keeps, their bounds.
//! - [`secrets`]: secrets: names, bounds, where the guest keeps them.
//! - [`service`]: services (supervised commands) the agent keeps.
//! - [`net`]: the guest's addresses on the VMM's user-space network.
//!
//! Platform-neutral (serde and the standard library only): the guest's
//! PID 1, the VMM, the devices and the SDK all depend on it, and no host
//! crate depends on the guest's own crate.

#![forbid(unsafe_code)]

pub mod cmdline;
pub mod marker;
pub mod net;
pub mod rpc;
pub mod secrets;
pub mod service;
pub mod shell;
