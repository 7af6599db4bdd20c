//! virtio-vsock, host side in user space on Unix sockets (no vhost on PVM
//! hosts). Laid out like every device here:
//!
//! - [`device`]: the virtio frontend (queues, packets in and out);
//! - [`event_handler`]: runs it on the VMM's event thread (queue kicks,
//!   the listening socket, host streams);
//! - [`persist`]: its snapshot state;
//! - [`unix`]: the host backend, guest streams multiplexed onto Unix
//!   sockets (Firecracker's hybrid `CONNECT <port>` convention), with
//!   bounded queues and a cap on connections;
//! - [`packet`]: the packet header.

pub mod device;
pub mod event_handler;
pub mod packet;
pub mod persist;
pub mod unix;

pub use device::{Vsock, DEVICE_TYPE};
pub use unix::muxer::StreamActivity;

#[cfg(test)]
mod tests;
