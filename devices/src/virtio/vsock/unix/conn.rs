//! One stream between a host Unix socket and a guest vsock port, with the
//! virtio-vsock credit accounting for both directions.

use crate::virtio::vsock::packet::*;
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;

/// Bytes of guest->host data we buffer per stream (our `buf_alloc`). The
/// guest may not send more than this beyond what we have forwarded, so a
/// host peer that stops reading costs at most this much memory.
pub const BUF_ALLOC: u32 = 256 * 1024;
/// Host->guest bytes read ahead per stream while the guest has no buffers.
const RX_AHEAD: usize = 64 * 1024;
/// Longest `CONNECT <port>\n` line accepted.
const MAX_CONNECT_LINE: usize = 32;

/// The host stream is unusable (closed, failed, or sent nonsense): the
/// stream is reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Broken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Host client connected; waiting for its `CONNECT <port>` line.
    AwaitConnectLine,
    /// REQUEST sent to the guest; waiting for RESPONSE or RST.
    Connecting,
    Established,
    /// Done; the handler unregisters and drops it.
    Closed,
}

pub struct Conn {
    pub stream: UnixStream,
    pub state: State,
    pub host_port: u32,
    pub guest_port: u32,
    line: Vec<u8>,
    /// Host-bound bytes not yet written to the stream.
    to_host: VecDeque<u8>,
    /// How many of the first bytes of `to_host` are the VMM's own (the
    /// `OK <port>` line): they must not count as forwarded guest bytes, or
    /// the guest would see more credit consumed than it sent and stall.
    own_bytes: usize,
    /// Guest-bound bytes read from the stream, not yet in the rx queue.
    pub to_guest: VecDeque<u8>,
    /// Bytes we have written to the stream (our fwd_cnt).
    fwd_cnt: u32,
    fwd_cnt_sent: u32,
    /// Bytes we have sent to the guest, and the guest's credit.
    rx_cnt: u32,
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    /// The host side sent EOF; tell the guest once `to_guest` is drained.
    pub host_eof: bool,
    pub host_eof_sent: bool,
    /// The guest will send no more: shut the stream's write side once
    /// `to_host` is drained.
    guest_done_sending: bool,
}

impl Conn {
    pub fn new(stream: UnixStream, state: State, host_port: u32, guest_port: u32) -> Conn {
        Conn {
            stream,
            state,
            host_port,
            guest_port,
            line: Vec::new(),
            to_host: VecDeque::new(),
            own_bytes: 0,
            to_guest: VecDeque::new(),
            fwd_cnt: 0,
            fwd_cnt_sent: 0,
            rx_cnt: 0,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            host_eof: false,
            host_eof_sent: false,
            guest_done_sending: false,
        }
    }

    /// A header for a packet from this stream's host end to its guest end.
    pub fn header(&mut self, guest_cid: u64, op: u16, len: u32) -> Header {
        self.fwd_cnt_sent = self.fwd_cnt;
        Header {
            src_cid: HOST_CID,
            dst_cid: guest_cid,
            src_port: self.host_port,
            dst_port: self.guest_port,
            len,
            kind: TYPE_STREAM,
            op,
            flags: 0,
            buf_alloc: BUF_ALLOC,
            fwd_cnt: self.fwd_cnt,
        }
    }

    pub fn update_credit(&mut self, h: &Header) {
        self.peer_buf_alloc = h.buf_alloc;
        self.peer_fwd_cnt = h.fwd_cnt;
    }

    /// How many more bytes the guest can take.
    pub fn guest_credit(&self) -> u32 {
        let in_flight = self.rx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    pub fn sent_to_guest(&mut self, n: u32) {
        self.rx_cnt = self.rx_cnt.wrapping_add(n);
    }

    /// Whether the guest should hear about our forwarding progress.
    pub fn owes_credit_update(&self) -> bool {
        self.fwd_cnt.wrapping_sub(self.fwd_cnt_sent) >= BUF_ALLOC / 4
    }

    /// Reads a `CONNECT <port>\n` line. Ok(Some(port)) when complete.
    pub fn read_connect_line(&mut self) -> Result<Option<u32>, Broken> {
        let mut byte = [0u8; 1];
        loop {
            match self.stream.read(&mut byte) {
                Ok(0) => return Err(Broken),
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) if self.line.len() < MAX_CONNECT_LINE => self.line.push(byte[0]),
                Ok(_) => return Err(Broken),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(Broken),
            }
        }
        let line = std::str::from_utf8(&self.line).map_err(|_| Broken)?;
        let port = line
            .trim_end_matches('\r')
            .strip_prefix("CONNECT ")
            .ok_or(Broken)?;
        port.trim().parse().map(Some).map_err(|_| Broken)
    }

    /// Queues bytes for the host; false if the guest overran its credit.
    pub fn queue_to_host(&mut self, bytes: &[u8]) -> bool {
        if self.to_host.len() + bytes.len() > BUF_ALLOC as usize + MAX_CONNECT_LINE {
            return false;
        }
        self.to_host.extend(bytes);
        true
    }

    /// Queues the VMM's own handshake bytes ahead of any guest data.
    pub fn queue_handshake(&mut self, line: &[u8]) {
        for b in line.iter().rev() {
            self.to_host.push_front(*b);
        }
        self.own_bytes += line.len();
    }

    pub fn guest_done_sending(&mut self) {
        self.guest_done_sending = true;
    }

    /// Writes what it can of `to_host`. Err on a broken stream.
    pub fn flush_to_host(&mut self) -> Result<(), Broken> {
        while !self.to_host.is_empty() {
            let (front, _) = self.to_host.as_slices();
            match self.stream.write(front) {
                Ok(0) => return Err(Broken),
                Ok(n) => {
                    self.to_host.drain(..n);
                    let own = n.min(self.own_bytes);
                    self.own_bytes -= own;
                    self.fwd_cnt = self.fwd_cnt.wrapping_add((n - own) as u32);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(Broken),
            }
        }
        if self.guest_done_sending {
            let _ = self.stream.shutdown(std::net::Shutdown::Write);
        }
        Ok(())
    }

    /// Reads from the host while the guest has credit and we have room.
    /// Err on a broken stream; sets `host_eof` at EOF.
    pub fn fill_from_host(&mut self) -> Result<(), Broken> {
        let mut buf = [0u8; 16 * 1024];
        while self.wants_read() {
            let room = RX_AHEAD - self.to_guest.len();
            let n = room
                .min(buf.len())
                .min(self.guest_credit() as usize - self.to_guest.len());
            if n == 0 {
                break;
            }
            match self.stream.read(&mut buf[..n]) {
                Ok(0) => self.host_eof = true,
                Ok(n) => self.to_guest.extend(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(Broken),
            }
        }
        Ok(())
    }

    /// Whether reading the host stream now would lead anywhere.
    pub fn wants_read(&self) -> bool {
        self.state == State::Established
            && !self.host_eof
            && self.to_guest.len() < RX_AHEAD
            && (self.guest_credit() as usize) > self.to_guest.len()
    }

    pub fn wants_write(&self) -> bool {
        !self.to_host.is_empty()
    }
}
