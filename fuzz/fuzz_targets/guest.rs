//! What the virtio targets share: a guest memory holding the fuzzer's
//! bytes, and queues at fixed places in it with the size it picks.

use pyro_devices::virtio::{GuestMem, Interrupt};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Guest memory: the fuzzer's bytes from address 0.
pub const MEM: usize = 64 * 1024;

/// Splits `data` into its first byte (the caller's flags; its low bits
/// pick the queue size, a power of two from 1 to 256 as a driver must)
/// and a guest memory holding the rest.
pub fn memory(data: &[u8]) -> Option<(u8, u16, GuestMem)> {
    let (&first, bytes) = data.split_first()?;
    let mem = GuestMem::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
    mem.write_slice(&bytes[..bytes.len().min(MEM)], GuestAddress(0))
        .unwrap();
    Some((first, 1u16 << (first % 9), mem))
}

/// A ready queue of `size` with its parts at (descriptor table,
/// available ring, used ring).
pub fn queue(size: u16, (desc, avail, used): (u32, u32, u32)) -> Queue {
    let mut q = Queue::new(256).unwrap();
    q.set_size(size);
    q.set_desc_table_address(Some(desc), Some(0));
    q.set_avail_ring_address(Some(avail), Some(0));
    q.set_used_ring_address(Some(used), Some(0));
    q.set_ready(true);
    q
}

/// An interrupt nobody listens to.
pub fn interrupt() -> Interrupt {
    Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap())
}
