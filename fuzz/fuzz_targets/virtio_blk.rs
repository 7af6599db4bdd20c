//! The virtio-blk device (`pyro-devices`), fed a guest memory the fuzzer
//! writes: descriptor table, available ring (its index included) and
//! request headers, with the queue size it picks. Whatever the chains
//! hold (loops, lengths past memory, sectors past the disk, a header or
//! status in the wrong direction), the device answers or skips, never a
//! crash or a hang, and never touches the disk outside its 64 KiB.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pyro_devices::virtio::block::Block;
use pyro_devices::virtio::{GuestMem, Interrupt, VirtioDevice};
use std::sync::OnceLock;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Guest memory: the fuzzer's bytes from address 0.
const MEM: usize = 64 * 1024;
const DESC: u64 = 0x0;
const AVAIL: u64 = 0x1000;
const USED: u64 = 0x2000;

fn disk() -> &'static tempfile::NamedTempFile {
    static DISK: OnceLock<tempfile::NamedTempFile> = OnceLock::new();
    DISK.get_or_init(|| {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(64 * 1024).unwrap();
        f
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&size_byte, memory)) = data.split_first() else {
        return;
    };
    // A power of two from 1 to 256, as a driver must pick.
    let size = 1u16 << (size_byte % 9);
    let mem = GuestMem::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
    mem.write_slice(&memory[..memory.len().min(MEM)], GuestAddress(0))
        .unwrap();
    let mut queue = Queue::new(256).unwrap();
    queue.set_size(size);
    queue.set_desc_table_address(Some(DESC as u32), Some(0));
    queue.set_avail_ring_address(Some(AVAIL as u32), Some(0));
    queue.set_used_ring_address(Some(USED as u32), Some(0));
    queue.set_ready(true);
    let mut block = Block::open(disk().path(), size_byte & 0x80 != 0, "fuzz").unwrap();
    // Activation runs every request the available ring holds.
    block.activate(
        mem,
        vec![queue],
        Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()),
    );
    block.reset();
});
