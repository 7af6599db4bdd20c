//! virtio-net whose other end is the VMM's own user-space stack
//! (`pyro-net`): no TAP, no host network set-up. Laid out like every
//! device here:
//!
//! - [`device`]: the virtio frontend (RX and TX queues, the link status
//!   the policy sets);
//! - [`event_handler`]: runs it on the VMM's event thread (queue kicks,
//!   the stack's host sockets, its timer);
//! - [`persist`]: its snapshot state (queues only: no connection
//!   survives a snapshot).

pub mod device;
pub mod event_handler;
pub mod persist;

pub use device::{Net, DEVICE_TYPE};

#[cfg(test)]
mod tests;
