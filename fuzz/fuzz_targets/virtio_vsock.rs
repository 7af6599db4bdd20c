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
use pyro_devices::virtio::VirtioDevice;
use std::os::unix::net::UnixListener;
use std::sync::OnceLock;

#[path = "guest.rs"]
mod guest;

/// Each queue's (descriptor table, available ring, used ring): RX, TX,
/// event.
const QUEUES: [(u32, u32, u32); 3] = [
    (0x0000, 0x0800, 0x0c00),
    (0x1000, 0x1800, 0x1c00),
    (0x2000, 0x2800, 0x2c00),
];

struct Host {
    dir: tempfile::TempDir,
    listener: UnixListener,
}

fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        // Where a guest connection to host port 1234 goes.
        let listener = UnixListener::bind(dir.path().join("v.sock_1234")).unwrap();
        listener.set_nonblocking(true).unwrap();
        Host { dir, listener }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((_, size, mem)) = guest::memory(data) else {
        return;
    };
    // Take what earlier inputs left in the backlog, so connections stay
    // possible (a full backlog is refused, and covered once it fills).
    while host().listener.accept().is_ok() {}
    let queues = QUEUES.iter().map(|&q| guest::queue(size, q)).collect();
    let mut vsock = Vsock::new(3, &host().dir.path().join("v.sock")).unwrap();
    vsock.activate(mem, queues, guest::interrupt());
    // TX in, replies into RX buffers, until nothing moves.
    vsock.pump();
    vsock.reset();
});
