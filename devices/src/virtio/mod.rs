//! virtio over MMIO: the transport, the devices, and the glue that runs
//! queue work on the VMM's event thread.
//!
//! The guest kicks a queue by writing its index to QueueNotify; KVM turns
//! that write into an ioeventfd signal (no exit to user space), the event
//! thread runs the device, and the device raises its interrupt through an
//! irqfd.
//!
//! Each device has a folder of the same shape: `device.rs` (the device),
//! `event_handler.rs` (its event-thread subscriber), `persist.rs` (its
//! snapshot state, through [`persist::Persist`]), `tests.rs`.

pub mod block;
pub mod mmio;
pub mod net;
pub mod persist;
pub mod vsock;

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use virtio_queue::{Queue, QueueState};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

pub type GuestMem = GuestMemoryMmap<()>;

/// Feature bit every device offers: virtio 1.x ("modern").
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Interrupt status bits (MMIO InterruptStatus register).
pub const INT_USED_RING: u32 = 1;
pub const INT_CONFIG: u32 = 2;

/// A device's interrupt line: status bits the guest reads and acks over
/// MMIO, and the irqfd that raises the line.
#[derive(Clone)]
pub struct Interrupt {
    status: Arc<AtomicU32>,
    irqfd: Arc<EventFd>,
}

impl Interrupt {
    pub fn new(irqfd: EventFd) -> Self {
        Self {
            status: Arc::default(),
            irqfd: Arc::new(irqfd),
        }
    }

    /// Tells the guest there are used buffers.
    pub fn signal_used(&self) {
        self.raise(INT_USED_RING);
    }

    /// Tells the guest the device's config space changed.
    pub fn signal_config(&self) {
        self.raise(INT_CONFIG);
    }

    fn raise(&self, bit: u32) {
        self.status.fetch_or(bit, Ordering::SeqCst);
        // A full eventfd counter already means "raise"; nothing to do.
        let _ = self.irqfd.write(1);
    }

    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    pub fn irqfd(&self) -> &EventFd {
        &self.irqfd
    }

    /// Sets the pending bits as a snapshot recorded them.
    pub fn restore(&self, bits: u32) {
        self.status.store(bits, Ordering::SeqCst);
    }

    /// Raises the line if any bit is pending (after a restore: the guest
    /// may not have seen it).
    pub fn raise_if_pending(&self) {
        if self.status() != 0 {
            let _ = self.irqfd.write(1);
        }
    }
}

/// One virtqueue's position and addresses, as a snapshot stores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSnapshot {
    pub max_size: u16,
    pub size: u16,
    pub ready: bool,
    pub next_avail: u16,
    pub next_used: u16,
    pub event_idx: bool,
    pub desc_table: u64,
    pub avail_ring: u64,
    pub used_ring: u64,
}

impl QueueSnapshot {
    pub fn of(queue: &Queue) -> Self {
        let s = queue.state();
        Self {
            max_size: s.max_size,
            size: s.size,
            ready: s.ready,
            next_avail: s.next_avail,
            next_used: s.next_used,
            event_idx: s.event_idx_enabled,
            desc_table: s.desc_table,
            avail_ring: s.avail_ring,
            used_ring: s.used_ring,
        }
    }

    /// The queue again; Err if the numbers cannot describe a queue (a
    /// damaged snapshot), so a restore fails instead of running on it.
    pub fn queue(&self) -> Result<Queue, persist::RestoreError> {
        Queue::try_from(QueueState {
            max_size: self.max_size,
            next_avail: self.next_avail,
            next_used: self.next_used,
            event_idx_enabled: self.event_idx,
            size: self.size,
            ready: self.ready,
            desc_table: self.desc_table,
            avail_ring: self.avail_ring,
            used_ring: self.used_ring,
        })
        .map_err(|e| persist::RestoreError::BadQueue(format!("{e:?}")))
    }
}

/// A virtio device behind a transport.
pub trait VirtioDevice: Send {
    /// virtio device id (2 = block, 19 = vsock).
    fn device_type(&self) -> u32;
    /// Feature bits offered, including [`VIRTIO_F_VERSION_1`].
    fn features(&self) -> u64;
    /// Maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    fn read_config(&self, offset: u64, data: &mut [u8]);
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// The features the driver accepted, told before [`activate`] (and
    /// before a restore): a device whose frames depend on them (net's
    /// checksum flags) keeps them.
    ///
    /// [`activate`]: VirtioDevice::activate
    fn ack_features(&mut self, _features: u64) {}
    /// The driver set DRIVER_OK: the device owns its queues from now on.
    fn activate(&mut self, mem: GuestMem, queues: Vec<Queue>, interrupt: Interrupt);
    /// The driver reset the device: forget the queues.
    fn reset(&mut self);
    /// Queue `index` was kicked (runs on the event thread).
    fn process_queue(&mut self, index: usize);
    /// The device's own state for a snapshot (its [`persist::Persist`]
    /// state, tagged by kind), queues included once it is active.
    fn save_state(&self) -> persist::DeviceState;
    /// Puts a fresh device where `state` left it (re-activated with its
    /// queues if it was active); an error if the state does not fit.
    fn restore_state(
        &mut self,
        ctx: persist::RestoreContext,
        state: &persist::DeviceState,
    ) -> Result<(), persist::RestoreError>;
    /// The device was re-activated from a snapshot: tell the guest what
    /// did not survive (vsock: every connection).
    fn restored(&mut self) {}
    /// Makes everything the guest wrote through this device durable on
    /// its host backend (block: fsync the file). Call with the VM frozen
    /// and the device locked, so no request is half done.
    fn sync_backend(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads `data.len()` bytes of a config space laid out in `bytes`;
/// out-of-range reads return zeros (the guest is untrusted).
pub fn read_config_bytes(bytes: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if start >= bytes.len() {
        return;
    }
    let end = (start + data.len()).min(bytes.len());
    data[..end - start].copy_from_slice(&bytes[start..end]);
}
