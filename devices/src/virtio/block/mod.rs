//! virtio-blk backed by a host file, laid out like every device here:
//! [`device`] (requests, checked before they touch the file),
//! [`event_handler`] (runs it on the VMM's event thread), [`persist`]
//! (its snapshot state).

pub mod device;
pub mod event_handler;
pub mod persist;

pub use device::{Block, DEVICE_TYPE, SECTOR, S_IOERR, S_OK, S_UNSUPP};

#[cfg(test)]
mod tests;
