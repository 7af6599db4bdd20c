//! The vsock device driven through mock queues: guest packets good and
//! malformed, against real Unix sockets on the host side.

use super::device::{RX, TX};
use super::packet::*;
use super::unix::muxer::{MAX_CONNECTIONS, MAX_PENDING_REPLIES};
use super::*;
use crate::virtio::{GuestMem, Interrupt, VirtioDevice};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const CID: u64 = 3;
const RX_Q: u64 = 0x0;
const TX_Q: u64 = 0x1_0000;
const EVT_Q: u64 = 0x2_0000;
const RX_BUF: u64 = 0x10_0000;
const TX_BUF: u64 = 0x20_0000;

struct Rig<'a> {
    mem: &'a GuestMem,
    rx: MockSplitQueue<'a, GuestMem>,
    tx: MockSplitQueue<'a, GuestMem>,
    dev: Vsock,
    rx_next: u16,
    tx_next: u16,
    _dir: tempfile::TempDir,
    uds: std::path::PathBuf,
}

fn mem() -> GuestMem {
    GuestMem::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap()
}

impl<'a> Rig<'a> {
    fn new(mem: &'a GuestMem) -> Rig<'a> {
        let dir = tempfile::tempdir().unwrap();
        let uds = dir.path().join("v.sock");
        let rx = MockSplitQueue::create(mem, GuestAddress(RX_Q), 16);
        let tx = MockSplitQueue::create(mem, GuestAddress(TX_Q), 16);
        let evt = MockSplitQueue::create(mem, GuestAddress(EVT_Q), 16);
        let mut dev = Vsock::new(CID, &uds).unwrap();
        let queues = vec![
            rx.create_queue().unwrap(),
            tx.create_queue().unwrap(),
            evt.create_queue().unwrap(),
        ];
        dev.activate(
            mem.clone(),
            queues,
            Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()),
        );
        Rig {
            mem,
            rx,
            tx,
            dev,
            rx_next: 0,
            tx_next: 0,
            _dir: dir,
            uds,
        }
    }

    /// Offers one 4 KiB receive buffer.
    fn give_rx_buffer(&mut self) {
        let d = RawDescriptor::from(SplitDescriptor::new(
            RX_BUF + u64::from(self.rx_next) * 0x1000,
            0x1000,
            VRING_DESC_F_WRITE as u16,
            0,
        ));
        self.rx.add_desc_chains(&[d], self.rx_next).unwrap();
        self.rx_next += 1;
    }

    /// The guest sends `bytes` (header and payload) as one descriptor.
    fn guest_sends(&mut self, bytes: &[u8]) {
        let addr = TX_BUF + u64::from(self.tx_next) * 0x1000;
        self.mem.write_slice(bytes, GuestAddress(addr)).unwrap();
        let d = RawDescriptor::from(SplitDescriptor::new(addr, bytes.len() as u32, 0, 0));
        self.tx.add_desc_chains(&[d], self.tx_next).unwrap();
        self.tx_next += 1;
        self.dev.process_queue(TX);
    }

    /// Packets the device has put in receive buffers so far.
    fn received(&self) -> Vec<(Header, Vec<u8>)> {
        let used = self.rx.used();
        let n = used.idx().load();
        (0..n)
            .map(|i| {
                let elem = used.ring().ref_at(i as usize).unwrap().load();
                let addr = RX_BUF + u64::from(elem.id()) * 0x1000;
                let mut hdr = [0u8; HEADER_LEN];
                self.mem.read_slice(&mut hdr, GuestAddress(addr)).unwrap();
                let mut payload = vec![0u8; elem.len() as usize - HEADER_LEN];
                self.mem
                    .read_slice(&mut payload, GuestAddress(addr + HEADER_LEN as u64))
                    .unwrap();
                (Header::parse(&hdr), payload)
            })
            .collect()
    }
}

fn guest_header(op: u16, src_port: u32, dst_port: u32, len: u32) -> Header {
    Header {
        src_cid: CID,
        dst_cid: HOST_CID,
        src_port,
        dst_port,
        len,
        kind: TYPE_STREAM,
        op,
        flags: 0,
        buf_alloc: 65536,
        fwd_cnt: 0,
    }
}

#[test]
fn guest_connect_to_a_listening_host_port_carries_data() {
    let mem = mem();
    let mut rig = Rig::new(&mem);
    let host = UnixListener::bind(format!("{}_5000", rig.uds.display())).unwrap();
    rig.give_rx_buffer();
    rig.guest_sends(&guest_header(OP_REQUEST, 1234, 5000, 0).encode());
    let got = rig.received();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].0.op, got[0].0.src_port, got[0].0.dst_port),
        (OP_RESPONSE, 5000, 1234)
    );
    let (mut peer, _) = host.accept().unwrap();
    let mut pkt = guest_header(OP_RW, 1234, 5000, 5).encode().to_vec();
    pkt.extend_from_slice(b"hello");
    rig.guest_sends(&pkt);
    let mut buf = [0u8; 5];
    peer.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
}

#[test]
fn a_host_listener_that_does_not_accept_cannot_hold_the_device() {
    let mem = mem();
    let mut rig = Rig::new(&mem);
    // A listener that never accepts; its backlog fills.
    let path = format!("{}_5002", rig.uds.display());
    let _host = UnixListener::bind(&path).unwrap();
    let mut queued = Vec::new();
    while let Ok(s) = super::unix::muxer::connect_nonblocking(&path) {
        queued.push(s);
        assert!(queued.len() < 10_000, "the backlog never filled");
    }
    rig.give_rx_buffer();
    // A blocking connect would wait here for good: fail, not hang.
    let (done, watched) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if watched
            .recv_timeout(std::time::Duration::from_secs(10))
            .is_err()
        {
            eprintln!("the device is held by a host listener that does not accept");
            std::process::abort();
        }
    });
    rig.guest_sends(&guest_header(OP_REQUEST, 1234, 5002, 0).encode());
    let _ = done.send(());
    let got = rig.received();
    assert_eq!((got[0].0.op, got[0].0.dst_port), (OP_RST, 1234));
}

#[test]
fn connect_to_a_port_nobody_listens_on_is_reset() {
    let mem = mem();
    let mut rig = Rig::new(&mem);
    rig.give_rx_buffer();
    rig.guest_sends(&guest_header(OP_REQUEST, 1234, 5001, 0).encode());
    let got = rig.received();
    assert_eq!((got[0].0.op, got[0].0.dst_port), (OP_RST, 1234));
}

#[test]
fn malformed_packets_are_answered_or_dropped_never_trusted() {
    let mem = mem();
    let mut rig = Rig::new(&mem);
    for _ in 0..4 {
        rig.give_rx_buffer();
    }
    // Shorter than a header: dropped.
    rig.guest_sends(&[0u8; 20]);
    // Claims 1000 bytes of payload, carries none: reset.
    rig.guest_sends(&guest_header(OP_RW, 1, 2, 1000).encode());
    // Data for a stream that does not exist: reset.
    let mut pkt = guest_header(OP_RW, 7, 8, 2).encode().to_vec();
    pkt.extend_from_slice(b"hi");
    rig.guest_sends(&pkt);
    // Wrong source CID (spoofing another VM): reset.
    let mut spoof = guest_header(OP_REQUEST, 1, 2, 0);
    spoof.src_cid = 99;
    rig.guest_sends(&spoof.encode());
    let ops: Vec<u16> = rig.received().iter().map(|(h, _)| h.op).collect();
    assert_eq!(ops, vec![OP_RST, OP_RST, OP_RST]);
    // Nothing was connected on the host.
    assert!(rig.dev.muxer.conns.is_empty());
}

#[test]
fn host_connect_line_becomes_a_guest_request_and_ok_follows_response() {
    let mem = mem();
    let mut rig = Rig::new(&mem);
    rig.give_rx_buffer();
    let mut client = UnixStream::connect(&rig.uds).unwrap();
    client.write_all(b"CONNECT 10000\n").unwrap();
    rig.dev.muxer().accept_all();
    let key = *rig.dev.muxer.conns.keys().next().unwrap();
    rig.dev.muxer().stream_event(key, true, false, false);
    rig.dev.pump();
    let got = rig.received();
    assert_eq!(
        (got[0].0.op, got[0].0.dst_port, got[0].0.dst_cid),
        (OP_REQUEST, 10_000, CID)
    );
    let host_port = got[0].0.src_port;
    let mut response = guest_header(OP_RESPONSE, 10_000, host_port, 0);
    response.buf_alloc = 65536;
    rig.guest_sends(&response.encode());
    let mut line = [0u8; 16];
    let n = client.read(&mut line).unwrap();
    assert_eq!(
        std::str::from_utf8(&line[..n]).unwrap(),
        format!("OK {host_port}\n")
    );
    // The handshake line is the VMM's own: the guest sent nothing yet, so
    // the credit it sees must show nothing forwarded.
    client.write_all(b"ping").unwrap();
    rig.give_rx_buffer();
    let key = *rig.dev.muxer.conns.keys().next().unwrap();
    rig.dev.muxer().stream_event(key, true, false, false);
    rig.dev.pump();
    let got = rig.received();
    let (h, payload) = got.last().unwrap();
    assert_eq!(
        (h.op, h.fwd_cnt, payload.as_slice()),
        (OP_RW, 0, &b"ping"[..])
    );
}

#[test]
fn a_bad_connect_line_closes_only_that_client() {
    let mem = mem();
    let mut rig = Rig::new(&mem);
    let mut client = UnixStream::connect(&rig.uds).unwrap();
    client.write_all(b"HELLO THERE\n").unwrap();
    rig.dev.muxer().accept_all();
    let key = *rig.dev.muxer.conns.keys().next().unwrap();
    rig.dev.muxer().stream_event(key, true, false, false);
    assert_eq!(rig.dev.muxer().take_closed().len(), 1);
    assert!(rig.dev.muxer.conns.is_empty());
}

/// Offers `n` receive buffers, then kicks the RX queue.
fn give_rx_buffers(rig: &mut Rig<'_>, n: usize) {
    for _ in 0..n {
        rig.give_rx_buffer();
    }
    rig.dev.process_queue(RX);
}

#[test]
fn a_guest_that_posts_no_rx_buffers_cannot_grow_the_reply_queue() {
    assert_eq!(MAX_PENDING_REPLIES, 256);
    let mem = mem();
    let mut rig = Rig::new(&mem);
    rig.dev.muxer.max_replies = 3;
    // Each packet to a stream that does not exist earns an RST; the
    // guest takes none of them.
    for port in 0..8 {
        let mut pkt = guest_header(OP_RW, 100 + port, 9, 1).encode().to_vec();
        pkt.push(b'x');
        rig.guest_sends(&pkt);
    }
    assert_eq!(rig.dev.muxer.replies.len(), 3, "the reply queue is capped");
    assert_eq!(
        rig.tx.used().idx().load(),
        3,
        "guest packets past the cap wait in the TX queue"
    );
    // Buffers arrive: the replies go out, and the waiting packets are
    // taken (and answered) in turn.
    give_rx_buffers(&mut rig, 8);
    assert_eq!(rig.tx.used().idx().load(), 8);
    let got = rig.received();
    assert_eq!(got.len(), 8);
    assert!(got.iter().all(|(h, _)| h.op == OP_RST));
    let ports: Vec<u32> = got.iter().map(|(h, _)| h.dst_port).collect();
    assert_eq!(ports, (100..108).collect::<Vec<_>>(), "in order, none lost");
}

#[test]
fn connections_past_the_cap_are_refused() {
    assert_eq!(MAX_CONNECTIONS, 1023);
    let mem = mem();
    let mut rig = Rig::new(&mem);
    rig.dev.muxer.max_connections = 2;
    let _a = UnixListener::bind(format!("{}_5000", rig.uds.display())).unwrap();
    rig.give_rx_buffer();
    rig.give_rx_buffer();
    rig.guest_sends(&guest_header(OP_REQUEST, 1, 5000, 0).encode());
    // A host client takes the second place.
    let _client = UnixStream::connect(&rig.uds).unwrap();
    rig.dev.muxer().accept_all();
    assert_eq!(rig.dev.muxer.conns.len(), 2);
    // A third from the guest: RST.
    rig.guest_sends(&guest_header(OP_REQUEST, 2, 5000, 0).encode());
    let ops: Vec<(u16, u32)> = rig
        .received()
        .iter()
        .map(|(h, _)| (h.op, h.dst_port))
        .collect();
    assert_eq!(ops, vec![(OP_RESPONSE, 1), (OP_RST, 2)]);
    // A third from the host: closed at once, the client reads EOF.
    let mut late = UnixStream::connect(&rig.uds).unwrap();
    rig.dev.muxer().accept_all();
    assert_eq!(rig.dev.muxer.conns.len(), 2);
    late.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(late.read(&mut buf).unwrap(), 0, "refused with EOF");
}
