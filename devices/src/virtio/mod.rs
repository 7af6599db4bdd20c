//! virtio over MMIO: the transport, the devices, and the glue that runs
//! queue work on the VMM's event thread.
//!
//! The guest kicks a queue by writing its index to QueueNotify; KVM turns
//! that write into an ioeventfd signal (no exit to user space), the event
//! thread runs the device, and the device raises its interrupt through an
//! irqfd.

pub mod block;
pub mod mmio;
pub mod notifier;
pub mod vsock;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use virtio_queue::Queue;
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
        self.status.fetch_or(INT_USED_RING, Ordering::SeqCst);
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
    /// The driver set DRIVER_OK: the device owns its queues from now on.
    fn activate(&mut self, mem: GuestMem, queues: Vec<Queue>, interrupt: Interrupt);
    /// The driver reset the device: forget the queues.
    fn reset(&mut self);
    /// Queue `index` was kicked (runs on the event thread).
    fn process_queue(&mut self, index: usize);
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
