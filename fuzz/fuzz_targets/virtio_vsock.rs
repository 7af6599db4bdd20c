//! The virtio-vsock device and its connection state machine
//! (`pyro-devices`), fed guest memory the fuzzer writes: the TX queue's
//! packets (headers, payloads, descriptor chains) and the RX queue's
//! buffers. A host socket listens on port 1234, so a guest REQUEST there
//! makes a real connection whose RW, SHUTDOWN, CREDIT and RST packets the
//! muxer then handles; other ports are refused. Whatever the packets
//! say, the device answers or drops them, never a crash or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pyro_devices::virtio::vsock::Vsock;
use pyro_devices::virtio::{GuestMem, Interrupt, VirtioDevice};
use std::os::unix::net::UnixListener;
use std::sync::OnceLock;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const MEM: usize = 64 * 1024;
/// Each queue's (descriptor table, available ring, used ring): RX, TX,
/// event.
const QUEUES: [(u32, u32, u32); 3] = [
    (0x0000, 0x0800, 0x0c00),
    (0x1000, 0x1800, 0x1c00),
    (0x2000, 0x2800, 0x2c00),
];

struct Host {
    dir: tempfile::TempDir,
    _listener: UnixListener,
}

fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        // Where a guest connection to host port 1234 goes.
        let listener = UnixListener::bind(dir.path().join("v.sock_1234")).unwrap();
        listener.set_nonblocking(true).unwrap();
        Host {
            dir,
            _listener: listener,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&size_byte, memory)) = data.split_first() else {
        return;
    };
    let size = 1u16 << (size_byte % 9);
    let mem = GuestMem::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
    mem.write_slice(&memory[..memory.len().min(MEM)], GuestAddress(0))
        .unwrap();
    let queues = QUEUES
        .iter()
        .map(|&(desc, avail, used)| {
            let mut q = Queue::new(256).unwrap();
            q.set_size(size);
            q.set_desc_table_address(Some(desc), Some(0));
            q.set_avail_ring_address(Some(avail), Some(0));
            q.set_used_ring_address(Some(used), Some(0));
            q.set_ready(true);
            q
        })
        .collect();
    let mut vsock = Vsock::new(3, &host().dir.path().join("v.sock")).unwrap();
    vsock.activate(
        mem,
        queues,
        Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()),
    );
    // TX in, replies into RX buffers, until nothing moves.
    vsock.pump();
    vsock.reset();
});
