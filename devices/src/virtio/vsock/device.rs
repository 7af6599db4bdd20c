//! The virtio-vsock frontend: the guest's three queues (RX, TX, event)
//! and the packets that cross them. What a packet means on the host side
//! is the backend's business ([`VsockMuxer`]); this file moves packets
//! between queues and backend, and stops taking guest packets while the
//! backend cannot queue another reply (so a guest that posts no RX
//! buffers cannot grow host memory). Queue contents are untrusted:
//! malformed packets are dropped or answered with RST, never trusted for
//! sizes.

use super::packet::*;
use super::unix::muxer::VsockMuxer;
use crate::virtio::persist::{DeviceState, Persist, RestoreContext, RestoreError};
use crate::virtio::{read_config_bytes, GuestMem, Interrupt, VirtioDevice, VIRTIO_F_VERSION_1};
use std::io::{Read, Write};
use std::path::Path;
use virtio_queue::{Queue, QueueT, Reader, Writer};

pub const DEVICE_TYPE: u32 = 19;
pub(super) const QUEUE_SIZE: u16 = 256;
pub(super) const RX: usize = 0;
pub(super) const TX: usize = 1;
pub(super) const EVENT: usize = 2;
/// `struct virtio_vsock_event.id`: every connection is gone.
const EVENT_TRANSPORT_RESET: u32 = 0;
/// Largest payload we accept from the guest in one packet.
const MAX_PKT_PAYLOAD: u32 = 64 * 1024;

pub(super) struct Active {
    pub mem: GuestMem,
    pub queues: Vec<Queue>,
    pub interrupt: Interrupt,
}

pub struct Vsock {
    pub(super) cid: u64,
    pub(super) muxer: VsockMuxer,
    config: [u8; 8],
    pub(super) active: Option<Active>,
    /// After a restore: TRANSPORT_RESET sent, the guest has not yet
    /// handed back an event buffer (it does so after handling the
    /// event). Nothing goes to the guest meanwhile, or a new host
    /// connection could be accepted first and then torn down by the reset.
    awaiting_reset: bool,
}

impl Vsock {
    /// A vsock device for guest `cid` whose host side listens on `uds`
    /// (replacing a stale socket file).
    pub fn new(cid: u64, uds: &Path) -> std::io::Result<Vsock> {
        Ok(Vsock {
            cid,
            muxer: VsockMuxer::new(cid, uds)?,
            config: cid.to_le_bytes(),
            active: None,
            awaiting_reset: false,
        })
    }

    /// The host backend (host sockets and their streams).
    pub fn muxer(&mut self) -> &mut VsockMuxer {
        &mut self.muxer
    }

    /// Its stream counts and host-client switch, read and set from other
    /// threads without the device's lock.
    pub fn activity(&self) -> std::sync::Arc<super::StreamActivity> {
        self.muxer.activity()
    }

    /// Pops guest TX chains while the backend can take their packets;
    /// returns how many were taken.
    fn process_tx(&mut self, active: &mut Active) -> usize {
        let mem = active.mem.clone();
        let mut taken = 0;
        while self.muxer.can_take_guest_packet() {
            let Some(chain) = active.queues[TX].pop_descriptor_chain(&mem) else {
                break;
            };
            let head = chain.head_index();
            if let Ok(mut reader) = Reader::new(&mem, chain) {
                let mut hdr = [0u8; HEADER_LEN];
                if reader.read_exact(&mut hdr).is_ok() {
                    let h = Header::parse(&hdr);
                    let len = if h.op == OP_RW { h.len } else { 0 };
                    let mut payload = vec![0u8; len.min(MAX_PKT_PAYLOAD) as usize];
                    if len <= MAX_PKT_PAYLOAD && reader.read_exact(&mut payload).is_ok() {
                        self.muxer.send_pkt(h, &payload);
                    } else {
                        // Claims more payload than it carries, or too much.
                        self.muxer.refuse(&h);
                    }
                }
            }
            let _ = active.queues[TX].add_used(&mem, head, 0);
            taken += 1;
        }
        if taken > 0 && active.queues[TX].needs_notification(&mem).unwrap_or(true) {
            active.interrupt.signal_used();
        }
        taken
    }

    /// Fills RX buffers with the backend's packets; returns how many
    /// buffers were used.
    fn deliver_rx(&mut self, active: &mut Active) -> usize {
        let mem = active.mem.clone();
        let mut used = 0;
        while !self.awaiting_reset && self.muxer.has_pending_rx() {
            let Some(chain) = active.queues[RX].pop_descriptor_chain(&mem) else {
                break;
            };
            let head = chain.head_index();
            let mut written = 0;
            if let Ok(mut w) = Writer::new(&mem, chain) {
                // Buffers smaller than a header are returned empty.
                let room = w.available_bytes().checked_sub(HEADER_LEN);
                if let Some((header, payload)) = room.and_then(|r| self.muxer.recv_pkt(r)) {
                    if w.write_all(&header.encode()).is_ok() && w.write_all(&payload).is_ok() {
                        written = (HEADER_LEN + payload.len()) as u32;
                    }
                }
            }
            let _ = active.queues[RX].add_used(&mem, head, written);
            used += 1;
        }
        if used > 0 && active.queues[RX].needs_notification(&mem).unwrap_or(true) {
            active.interrupt.signal_used();
        }
        used
    }

    /// Moves whatever can move, until nothing does: replies out frees
    /// room for guest packets in, whose replies go out in turn.
    fn run_queues(&mut self) {
        let Some(mut active) = self.active.take() else {
            return;
        };
        loop {
            let taken = self.process_tx(&mut active);
            let delivered = self.deliver_rx(&mut active);
            if taken == 0 && delivered == 0 {
                break;
            }
        }
        self.active = Some(active);
    }

    /// After host-side events: guest-bound packets into RX buffers (and
    /// guest packets that waited for reply room).
    pub fn pump(&mut self) {
        self.run_queues();
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
        self.muxer.reset_all();
    }

    fn save_state(&self) -> DeviceState {
        DeviceState::Vsock(Persist::save(self))
    }

    fn restore_state(
        &mut self,
        ctx: RestoreContext,
        state: &DeviceState,
    ) -> Result<(), RestoreError> {
        match state {
            DeviceState::Vsock(s) => Persist::restore(self, ctx, s),
            other => Err(RestoreError::StateKind {
                saved: other.kind(),
                here: "vsock",
            }),
        }
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
        if index == EVENT {
            self.awaiting_reset = false;
        }
        self.run_queues();
    }
}
