//! `pyro-devices`: every device a pyro guest sees, and the bus that routes
//! guest port and MMIO accesses to them.
//!
//! Owns the legacy devices (8250 serial via vm-superio, with its console
//! log capped and rotated so a guest cannot fill the host's disk; the
//! i8042 reset line; the guest-signal port bank that carries the boot
//! marker and the power-off status) and the virtio-mmio devices: the transport
//! (`virtio::mmio`) and one folder per device (`virtio::block`,
//! `virtio::vsock`), each with `device.rs`, `event_handler.rs` and
//! `persist.rs` (its own snapshot state, through `virtio::persist::Persist`;
//! a state that does not fit is a typed `RestoreError`). The vsock host
//! backend (`virtio::vsock::unix`) bounds what a guest can make the host
//! hold: streams are capped, and so is the queue of replies waiting for
//! the guest's receive buffers. Guest-controlled input (register writes,
//! queue contents) is untrusted: a device answers nonsense with an error
//! or by ignoring it, never by panicking.

pub mod bus;
pub mod console_log;
pub mod i8042;
pub mod serial;
pub mod signal;
pub mod virtio;

pub use bus::{Bus, BusDevice};
pub use signal::{GuestSignals, InitMark, StopReason};
