//! virtio-vsock, host side in user space on Unix sockets (no vhost on PVM
//! hosts), with Firecracker's hybrid convention:
//!
//! - a host client connects to `<uds>` and writes `CONNECT <port>\n`; once
//!   the guest accepts, the VMM answers `OK <host port>\n` and the socket
//!   carries the stream;
//! - a guest connection to CID 2 port P is connected to `<uds>_P`.
//!
//! Flow control is the virtio credit scheme in both directions, with
//! bounded buffers per stream; all host sockets are non-blocking, so a
//! stream whose host peer stops reading (or whose guest stops giving
//! buffers) stalls alone. Queue contents are untrusted: malformed packets
//! are dropped or answered with RST, never trusted for sizes.

mod conn;
pub mod handler;
pub mod packet;

use super::{
    read_config_bytes, GuestMem, Interrupt, QueueSnapshot, VirtioDevice, VIRTIO_F_VERSION_1,
};
use conn::{Conn, State};
use packet::*;
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use virtio_queue::{Queue, QueueT, Reader, Writer};

pub const DEVICE_TYPE: u32 = 19;
const QUEUE_SIZE: u16 = 256;
const RX: usize = 0;
const TX: usize = 1;
const EVENT: usize = 2;
/// `struct virtio_vsock_event.id`: every connection is gone.
const EVENT_TRANSPORT_RESET: u32 = 0;
/// Largest payload we accept from the guest in one packet.
const MAX_PKT_PAYLOAD: u32 = 64 * 1024;
/// Host ports for host-initiated streams are allocated from here up.
const FIRST_HOST_PORT: u32 = 1 << 30;

type Key = (u32, u32); // (host port, guest port)

struct Active {
    mem: GuestMem,
    queues: Vec<Queue>,
    interrupt: Interrupt,
}

pub struct Vsock {
    cid: u64,
    uds: PathBuf,
    listener: UnixListener,
    conns: HashMap<Key, Conn>,
    /// Payload-less packets for the guest (RESPONSE, RST, credit, ...).
    control: VecDeque<Header>,
    next_host_port: u32,
    config: [u8; 8],
    active: Option<Active>,
    /// After a restore: TRANSPORT_RESET sent, the guest has not yet
    /// handed back an event buffer (it does so after handling the
    /// event). Nothing goes to the guest meanwhile, or a new host
    /// connection could be accepted first and then torn down by the reset.
    awaiting_reset: bool,
}

impl Vsock {
    /// Listens on `uds` (replacing a stale socket file).
    pub fn new(cid: u64, uds: &Path) -> std::io::Result<Vsock> {
        let _ = std::fs::remove_file(uds);
        let listener = UnixListener::bind(uds)?;
        listener.set_nonblocking(true)?;
        Ok(Vsock {
            cid,
            uds: uds.to_path_buf(),
            listener,
            conns: HashMap::new(),
            control: VecDeque::new(),
            next_host_port: FIRST_HOST_PORT,
            config: cid.to_le_bytes(),
            active: None,
            awaiting_reset: false,
        })
    }

    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    fn control_packet(&mut self, key: Key, op: u16, flags: u32) {
        let cid = self.cid;
        if let Some(c) = self.conns.get_mut(&key) {
            let mut h = c.header(cid, op, 0);
            h.flags = flags;
            self.control.push_back(h);
        }
    }

    fn reset(&mut self, key: Key) {
        self.control_packet(key, OP_RST, 0);
        if let Some(c) = self.conns.get_mut(&key) {
            c.state = State::Closed;
        }
    }

    /// Accepts every pending host client.
    pub fn accept_all(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            // Until its CONNECT line arrives the stream has no ports; key
            // it by a fresh host port with guest port 0.
            let port = self.alloc_host_port();
            self.conns.insert(
                (port, 0),
                Conn::new(stream, State::AwaitConnectLine, port, 0),
            );
        }
    }

    fn alloc_host_port(&mut self) -> u32 {
        loop {
            let port = self.next_host_port;
            self.next_host_port = self
                .next_host_port
                .checked_add(1)
                .unwrap_or(FIRST_HOST_PORT);
            if !self.conns.keys().any(|k| k.0 == port) {
                return port;
            }
        }
    }

    /// A host stream is readable or writable (or hung up).
    pub fn stream_event(&mut self, key: Key, readable: bool, writable: bool, hangup: bool) {
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        match c.state {
            State::AwaitConnectLine => match c.read_connect_line() {
                Ok(None) => {}
                Ok(Some(guest_port)) => {
                    let mut c = self.conns.remove(&key).unwrap();
                    c.guest_port = guest_port;
                    c.state = State::Connecting;
                    let key = (c.host_port, guest_port);
                    let h = c.header(self.cid, OP_REQUEST, 0);
                    self.control.push_back(h);
                    self.conns.insert(key, c);
                }
                Err(()) => c.state = State::Closed,
            },
            State::Connecting => {
                if hangup {
                    self.reset(key);
                }
            }
            State::Established => {
                let mut broken = false;
                if writable {
                    broken |= c.flush_to_host().is_err();
                }
                if readable || hangup {
                    broken |= c.fill_from_host().is_err();
                }
                if broken {
                    self.reset(key);
                }
            }
            State::Closed => {}
        }
    }

    /// Drops closed streams; the handler has unregistered their fds.
    pub fn take_closed(&mut self) -> Vec<Conn> {
        let closed: Vec<Key> = self
            .conns
            .iter()
            .filter(|(_, c)| c.state == State::Closed)
            .map(|(k, _)| *k)
            .collect();
        closed
            .into_iter()
            .filter_map(|k| self.conns.remove(&k))
            .collect()
    }

    /// The streams to poll and for what: (key, fd, read, write). A stream
    /// waiting for the guest (CONNECT sent) is polled for hang-up only; a
    /// stalled established stream (no credit, nothing to write) is not
    /// polled at all, so a hang-up cannot spin the event loop.
    pub fn interest(&self) -> Vec<(Key, std::os::fd::RawFd, bool, bool)> {
        use std::os::fd::AsRawFd;
        self.conns
            .iter()
            .filter_map(|(k, c)| {
                let (read, write) = match c.state {
                    State::AwaitConnectLine => (true, false),
                    State::Connecting => (false, false),
                    State::Established if c.wants_read() || c.wants_write() => {
                        (c.wants_read(), c.wants_write())
                    }
                    State::Established | State::Closed => return None,
                };
                Some((*k, c.stream.as_raw_fd(), read, write))
            })
            .collect()
    }

    /// Handles one packet from the guest.
    fn on_guest_packet(&mut self, h: Header, payload: &[u8]) {
        if h.dst_cid != HOST_CID || h.src_cid != self.cid || h.kind != TYPE_STREAM {
            if h.op != OP_RST {
                self.control.push_back(reply_rst(&h));
            }
            return;
        }
        let key = (h.dst_port, h.src_port);
        if h.op == OP_REQUEST {
            self.guest_connect(key, &h);
            return;
        }
        let Some(c) = self.conns.get_mut(&key) else {
            if h.op != OP_RST {
                self.control.push_back(reply_rst(&h));
            }
            return;
        };
        c.update_credit(&h);
        match (h.op, c.state) {
            (OP_RESPONSE, State::Connecting) => {
                c.state = State::Established;
                let ok = format!("OK {}\n", c.host_port);
                c.queue_handshake(ok.as_bytes());
                if c.flush_to_host().is_err() {
                    self.reset(key);
                } else {
                    let _ = c.fill_from_host();
                }
            }
            (OP_RW, State::Established) => {
                if !c.queue_to_host(payload) || c.flush_to_host().is_err() {
                    self.reset(key);
                    return;
                }
                if c.owes_credit_update() {
                    self.control_packet(key, OP_CREDIT_UPDATE, 0);
                }
            }
            (OP_CREDIT_UPDATE, State::Established) => {
                let _ = c.fill_from_host();
            }
            (OP_CREDIT_REQUEST, State::Established) => {
                self.control_packet(key, OP_CREDIT_UPDATE, 0)
            }
            (OP_SHUTDOWN, State::Established) => {
                if h.flags & SHUTDOWN_SEND != 0 {
                    c.guest_done_sending();
                    if c.flush_to_host().is_err() {
                        self.reset(key);
                        return;
                    }
                }
                if h.flags & (SHUTDOWN_SEND | SHUTDOWN_RCV) == SHUTDOWN_SEND | SHUTDOWN_RCV {
                    self.reset(key);
                }
            }
            (OP_RST, _) => c.state = State::Closed,
            _ => self.reset(key),
        }
    }

    /// The guest connects to host port `key.0`: `<uds>_<port>`.
    fn guest_connect(&mut self, key: Key, h: &Header) {
        if self.conns.contains_key(&key) {
            self.control.push_back(reply_rst(h));
            return;
        }
        let path = format!("{}_{}", self.uds.display(), key.0);
        let stream = match UnixStream::connect(&path) {
            Ok(s) if s.set_nonblocking(true).is_ok() => s,
            _ => {
                self.control.push_back(reply_rst(h));
                return;
            }
        };
        let mut c = Conn::new(stream, State::Established, key.0, key.1);
        c.update_credit(h);
        let response = c.header(self.cid, OP_RESPONSE, 0);
        self.control.push_back(response);
        self.conns.insert(key, c);
    }

    /// Pops every tx chain and handles its packet.
    fn process_tx(&mut self, active: &mut Active) {
        let mem = active.mem.clone();
        let mut used = false;
        while let Some(chain) = active.queues[TX].pop_descriptor_chain(&mem) {
            let head = chain.head_index();
            if let Ok(mut reader) = Reader::new(&mem, chain) {
                let mut hdr = [0u8; HEADER_LEN];
                if reader.read_exact(&mut hdr).is_ok() {
                    let h = Header::parse(&hdr);
                    let len = if h.op == OP_RW { h.len } else { 0 };
                    let mut payload = vec![0u8; len.min(MAX_PKT_PAYLOAD) as usize];
                    if len <= MAX_PKT_PAYLOAD && reader.read_exact(&mut payload).is_ok() {
                        self.on_guest_packet(h, &payload);
                    } else if h.op != OP_RST {
                        // Claims more payload than it carries, or too much.
                        self.control.push_back(reply_rst(&h));
                    }
                }
            }
            let _ = active.queues[TX].add_used(&mem, head, 0);
            used = true;
        }
        if used && active.queues[TX].needs_notification(&mem).unwrap_or(true) {
            active.interrupt.signal_used();
        }
    }

    /// Fills rx buffers: control packets first, then data round the streams.
    fn deliver_rx(&mut self, active: &mut Active) {
        let mem = active.mem.clone();
        let mut used = false;
        while self.has_rx_packet() {
            let Some(chain) = active.queues[RX].pop_descriptor_chain(&mem) else {
                break;
            };
            let head = chain.head_index();
            let mut written = 0;
            if let Ok(mut w) = Writer::new(&mem, chain) {
                // Buffers smaller than a header are returned empty.
                let room = w.available_bytes().checked_sub(HEADER_LEN);
                if let Some((header, payload)) = room.and_then(|r| self.next_rx_packet(r)) {
                    if w.write_all(&header.encode()).is_ok() && w.write_all(&payload).is_ok() {
                        written = (HEADER_LEN + payload.len()) as u32;
                    }
                }
            }
            let _ = active.queues[RX].add_used(&mem, head, written);
            used = true;
        }
        if used && active.queues[RX].needs_notification(&mem).unwrap_or(true) {
            active.interrupt.signal_used();
        }
    }

    fn has_rx_packet(&self) -> bool {
        if self.awaiting_reset {
            return false;
        }
        !self.control.is_empty()
            || self.conns.values().any(|c| {
                c.state == State::Established
                    && ((!c.to_guest.is_empty() && c.guest_credit() > 0)
                        || (c.host_eof && c.to_guest.is_empty() && !c.host_eof_sent))
            })
    }

    /// The next packet for the guest with at most `room` payload bytes,
    /// taken out of a stream's buffer.
    fn next_rx_packet(&mut self, room: usize) -> Option<(Header, Vec<u8>)> {
        if let Some(h) = self.control.pop_front() {
            return Some((h, Vec::new()));
        }
        let cid = self.cid;
        for c in self.conns.values_mut() {
            if c.state != State::Established {
                continue;
            }
            let n = c.to_guest.len().min(c.guest_credit() as usize).min(room);
            if n > 0 {
                let payload: Vec<u8> = c.to_guest.drain(..n).collect();
                c.sent_to_guest(n as u32);
                let h = c.header(cid, OP_RW, n as u32);
                let _ = c.fill_from_host();
                return Some((h, payload));
            }
            if c.host_eof && c.to_guest.is_empty() && !c.host_eof_sent {
                c.host_eof_sent = true;
                let mut h = c.header(cid, OP_SHUTDOWN, 0);
                h.flags = SHUTDOWN_SEND;
                return Some((h, Vec::new()));
            }
        }
        None
    }

    /// Moves whatever can move: guest-bound packets into rx buffers.
    pub fn pump(&mut self) {
        if let Some(mut active) = self.active.take() {
            self.deliver_rx(&mut active);
            self.active = Some(active);
        }
    }
}

/// An RST answering `h`.
fn reply_rst(h: &Header) -> Header {
    Header {
        src_cid: h.dst_cid,
        dst_cid: h.src_cid,
        src_port: h.dst_port,
        dst_port: h.src_port,
        len: 0,
        kind: TYPE_STREAM,
        op: OP_RST,
        flags: 0,
        buf_alloc: 0,
        fwd_cnt: 0,
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        DEVICE_TYPE
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE; 3]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    fn activate(&mut self, mem: GuestMem, queues: Vec<Queue>, interrupt: Interrupt) {
        if queues.len() == 3 {
            self.active = Some(Active {
                mem,
                queues,
                interrupt,
            });
        }
    }

    fn reset(&mut self) {
        self.active = None;
        for c in self.conns.values_mut() {
            c.state = State::Closed;
        }
        self.control.clear();
    }

    fn queue_snapshots(&self) -> Vec<QueueSnapshot> {
        self.active
            .iter()
            .flat_map(|a| a.queues.iter().map(QueueSnapshot::of))
            .collect()
    }

    /// No connection survives a snapshot (their host ends belonged to
    /// another process): the guest drops them all on TRANSPORT_RESET and
    /// its listeners stay, so host clients simply connect again.
    fn restored(&mut self) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let mem = active.mem.clone();
        let Some(chain) = active.queues[EVENT].pop_descriptor_chain(&mem) else {
            return;
        };
        let head = chain.head_index();
        let mut written = 0;
        if let Ok(mut w) = Writer::new(&mem, chain) {
            if w.write_all(&EVENT_TRANSPORT_RESET.to_le_bytes()).is_ok() {
                written = 4;
            }
        }
        let _ = active.queues[EVENT].add_used(&mem, head, written);
        active.interrupt.signal_used();
        self.awaiting_reset = written > 0;
    }

    fn process_queue(&mut self, index: usize) {
        let Some(mut active) = self.active.take() else {
            return;
        };
        if index == TX {
            self.process_tx(&mut active);
        }
        if index == EVENT {
            self.awaiting_reset = false;
        }
        self.deliver_rx(&mut active);
        self.active = Some(active);
    }
}

#[cfg(test)]
mod tests;
