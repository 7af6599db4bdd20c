//! The vsock host backend: guest streams multiplexed onto Unix sockets,
//! with Firecracker's hybrid convention:
//!
//! - a host client connects to `<uds>` and writes `CONNECT <port>\n`; once
//!   the guest accepts, the VMM answers `OK <host port>\n` and the socket
//!   carries the stream;
//! - a guest connection to CID 2 port P is connected to `<uds>_P`.
//!
//! Flow control is the virtio credit scheme in both directions, with
//! bounded buffers per stream; all host sockets are non-blocking, so a
//! stream whose host peer stops reading (or whose guest stops giving
//! buffers) stalls alone. Host memory is bounded whatever the guest does:
//! at most [`MAX_CONNECTIONS`] streams (past it a new one is refused:
//! the host client is closed, the guest gets RST), and at most
//! [`MAX_PENDING_REPLIES`] payload-less replies (RST, credit updates,
//! responses) waiting for guest RX buffers: when that queue is full the
//! frontend stops taking guest packets until the guest takes replies.
//! (Host-side events add at most one REQUEST and one RST per stream on
//! top, so the queue never exceeds `MAX_PENDING_REPLIES + 2 *
//! MAX_CONNECTIONS`.)

use super::conn::{Conn, State};
use crate::virtio::vsock::packet::*;
use std::collections::{HashMap, VecDeque};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// What the VM's owner reads of the device from another thread, without
/// its lock: how many streams there are and have been (an idle VM has
/// neither open streams nor new ones), and a switch that turns new host
/// clients away while the owner suspends the VM.
#[derive(Debug, Default)]
pub struct StreamActivity {
    opened: AtomicU64,
    open: AtomicU64,
    refuse_host: AtomicBool,
}

impl StreamActivity {
    /// Streams opened since the device was made (host and guest ones).
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Acquire)
    }

    /// Streams open now (a host client waiting for its `CONNECT` line
    /// included).
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Acquire)
    }

    /// While set, a new host client is closed at once (it reads EOF
    /// before any `OK`, so it knows nothing was sent to the guest);
    /// streams already open go on.
    pub fn refuse_host_clients(&self, refuse: bool) {
        self.refuse_host.store(refuse, Ordering::Release);
    }
}

/// Host ports for host-initiated streams are allocated from here up.
const FIRST_HOST_PORT: u32 = 1 << 30;
/// Streams at once; a new one past this is refused.
pub const MAX_CONNECTIONS: usize = 1023;
/// Guest-bound replies queued while the guest posts no RX buffers.
pub const MAX_PENDING_REPLIES: usize = 256;

/// A stream's key: (host port, guest port).
pub type Key = (u32, u32);

pub struct VsockMuxer {
    cid: u64,
    uds: PathBuf,
    listener: UnixListener,
    pub(in crate::virtio::vsock) conns: HashMap<Key, Conn>,
    /// Payload-less packets for the guest (RESPONSE, RST, credit, ...).
    pub(in crate::virtio::vsock) replies: VecDeque<Header>,
    next_host_port: u32,
    /// [`MAX_CONNECTIONS`] and [`MAX_PENDING_REPLIES`]; tests lower them.
    pub(in crate::virtio::vsock) max_connections: usize,
    pub(in crate::virtio::vsock) max_replies: usize,
    activity: Arc<StreamActivity>,
}

impl VsockMuxer {
    /// Listens on `uds` (replacing a stale socket file).
    pub fn new(cid: u64, uds: &Path) -> std::io::Result<VsockMuxer> {
        let _ = std::fs::remove_file(uds);
        let listener = UnixListener::bind(uds)?;
        listener.set_nonblocking(true)?;
        Ok(VsockMuxer {
            cid,
            uds: uds.to_path_buf(),
            listener,
            conns: HashMap::new(),
            replies: VecDeque::new(),
            next_host_port: FIRST_HOST_PORT,
            max_connections: MAX_CONNECTIONS,
            max_replies: MAX_PENDING_REPLIES,
            activity: Arc::default(),
        })
    }

    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// The device's stream counts and host-client switch, for other
    /// threads.
    pub fn activity(&self) -> Arc<StreamActivity> {
        self.activity.clone()
    }

    /// A stream was added: counts it.
    fn opened_one(&self) {
        self.activity.opened.fetch_add(1, Ordering::AcqRel);
        self.count_open();
    }

    fn count_open(&self) {
        self.activity
            .open
            .store(self.conns.len() as u64, Ordering::Release);
    }

    /// Whether another guest packet may be taken: each one queues at most
    /// one reply, so this keeps the reply queue bounded.
    pub fn can_take_guest_packet(&self) -> bool {
        self.replies.len() < self.max_replies
    }

    fn control_packet(&mut self, key: Key, op: u16, flags: u32) {
        let cid = self.cid;
        if let Some(c) = self.conns.get_mut(&key) {
            let mut h = c.header(cid, op, 0);
            h.flags = flags;
            self.replies.push_back(h);
        }
    }

    fn reset(&mut self, key: Key) {
        if self
            .conns
            .get(&key)
            .is_some_and(|c| c.state == State::Closed)
        {
            return;
        }
        self.control_packet(key, OP_RST, 0);
        if let Some(c) = self.conns.get_mut(&key) {
            c.state = State::Closed;
        }
    }

    /// Every stream is gone (the driver reset the device).
    pub fn reset_all(&mut self) {
        for c in self.conns.values_mut() {
            c.state = State::Closed;
        }
        self.replies.clear();
    }

    /// Accepts every pending host client; past [`MAX_CONNECTIONS`] a
    /// client is closed at once (it reads EOF).
    pub fn accept_all(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            if self.conns.len() >= self.max_connections
                || self.activity.refuse_host.load(Ordering::Acquire)
                || stream.set_nonblocking(true).is_err()
            {
                continue;
            }
            // Until its CONNECT line arrives the stream has no ports; key
            // it by a fresh host port with guest port 0.
            let port = self.alloc_host_port();
            self.conns.insert(
                (port, 0),
                Conn::new(stream, State::AwaitConnectLine, port, 0),
            );
            self.opened_one();
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
                    self.replies.push_back(h);
                    self.conns.insert(key, c);
                }
                Err(_) => c.state = State::Closed,
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
        let taken = closed
            .into_iter()
            .filter_map(|k| self.conns.remove(&k))
            .collect();
        self.count_open();
        taken
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

    /// Answers a packet the frontend could not parse (unless it is an
    /// RST itself) with an RST.
    pub fn refuse(&mut self, h: &Header) {
        if h.op != OP_RST {
            self.replies.push_back(reply_rst(h));
        }
    }

    /// Handles one packet from the guest (queues at most one reply).
    pub fn send_pkt(&mut self, h: Header, payload: &[u8]) {
        if h.dst_cid != HOST_CID || h.src_cid != self.cid || h.kind != TYPE_STREAM {
            self.refuse(&h);
            return;
        }
        let key = (h.dst_port, h.src_port);
        if h.op == OP_REQUEST {
            self.guest_connect(key, &h);
            return;
        }
        let Some(c) = self.conns.get_mut(&key) else {
            self.refuse(&h);
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

    /// The guest connects to host port `key.0`: `<uds>_<port>`. Refused
    /// (RST) if the stream exists, nobody listens, or the VM has
    /// [`MAX_CONNECTIONS`] streams.
    fn guest_connect(&mut self, key: Key, h: &Header) {
        if self.conns.contains_key(&key) || self.conns.len() >= self.max_connections {
            self.refuse(h);
            return;
        }
        let path = format!("{}_{}", self.uds.display(), key.0);
        let Ok(stream) = connect_nonblocking(&path) else {
            self.refuse(h);
            return;
        };
        let mut c = Conn::new(stream, State::Established, key.0, key.1);
        c.update_credit(h);
        let response = c.header(self.cid, OP_RESPONSE, 0);
        self.replies.push_back(response);
        self.conns.insert(key, c);
        self.opened_one();
    }

    /// Whether a packet is waiting for the guest.
    pub fn has_pending_rx(&self) -> bool {
        !self.replies.is_empty()
            || self.conns.values().any(|c| {
                c.state == State::Established
                    && ((!c.to_guest.is_empty() && c.guest_credit() > 0)
                        || (c.host_eof && c.to_guest.is_empty() && !c.host_eof_sent))
            })
    }

    /// The next packet for the guest with at most `room` payload bytes:
    /// replies first, then data taken out of a stream's buffer.
    pub fn recv_pkt(&mut self, room: usize) -> Option<(Header, Vec<u8>)> {
        if let Some(h) = self.replies.pop_front() {
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

/// Connects to the Unix socket at `path` without waiting: a listener
/// whose backlog is full (its process busy, stopped or hostile) answers
/// EAGAIN at once, where a blocking connect would hold the event thread,
/// and every device with it, until the listener accepts. Found by the
/// `virtio_vsock` fuzz target (a timeout).
pub(in crate::virtio::vsock) fn connect_nonblocking(path: &str) -> std::io::Result<UnixStream> {
    use std::os::fd::FromRawFd;
    // sockaddr_un: the path and its NUL must fit sun_path.
    // SAFETY: a zeroed sockaddr_un is a valid value to fill in.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let bytes = path.as_bytes();
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: socket takes integers and returns a new descriptor or -1.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor that only we own; the stream
    // closes it on every path below.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    // SAFETY: `addr` is an initialised sockaddr_un that outlives the
    // call, and `len` does not exceed its size.
    let rc = unsafe {
        libc::connect(
            fd,
            (&addr as *const libc::sockaddr_un).cast(),
            len as libc::socklen_t,
        )
    };
    if rc != 0 {
        // EAGAIN: the backlog is full; a Unix connect never goes on in
        // the background (no EINPROGRESS), so anything else failed too.
        return Err(std::io::Error::last_os_error());
    }
    Ok(stream)
}
