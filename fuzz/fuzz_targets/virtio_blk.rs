//! The virtio-blk device (`pyro-devices`), fed a guest memory the fuzzer
//! writes: descriptor table, available ring (its index included) and
//! request headers, with the queue size it picks. Whatever the chains
//! hold (loops, lengths past memory, sectors past the disk, a header or
//! status in the wrong direction), the device answers or skips, never a
//! crash or a hang, and never touches the disk outside its 64 KiB.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pyro_devices::virtio::block::Block;
use pyro_devices::virtio::VirtioDevice;
use std::sync::OnceLock;

#[path = "guest.rs"]
mod guest;

/// Where the queue's parts are (the fuzzer writes them).
const QUEUE: (u32, u32, u32) = (0x0, 0x1000, 0x2000);

fn disk() -> &'static tempfile::NamedTempFile {
    static DISK: OnceLock<tempfile::NamedTempFile> = OnceLock::new();
    DISK.get_or_init(|| {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(64 * 1024).unwrap();
        f
    })
}

fuzz_target!(|data: &[u8]| {
    // The first byte's top bit makes the disk read-only.
    let Some((flags, size, mem)) = guest::memory(data) else {
        return;
    };
    let mut block = Block::open(disk().path(), flags & 0x80 != 0, "fuzz").unwrap();
    // Activation runs every request the available ring holds.
    block.activate(mem, vec![guest::queue(size, QUEUE)], guest::interrupt());
    block.reset();
});
