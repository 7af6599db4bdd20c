//! The virtio-net frontend. Each TX chain is one frame behind a 12-byte
//! `virtio_net_hdr`; each RX chain gets one frame. Frames are untrusted:
//! a chain shorter than a header, longer than the link's largest frame,
//! or asking for segmentation we did not offer is dropped, never passed
//! on. The guest-bound queue is bounded by the stack
//! (`pyro_net::stack`), so a guest that posts no RX buffers cannot grow
//! host memory.

use crate::virtio::persist::{DeviceState, Persist, RestoreContext, RestoreError};
use crate::virtio::{read_config_bytes, GuestMem, Interrupt, VirtioDevice, VIRTIO_F_VERSION_1};
use pyro_net::stack::{NetConfig, NetControl, NetError, Stack};
use pyro_proto::net::{GUEST_MAC, MTU};
use std::io::{Read, Write};
use virtio_queue::{Queue, QueueT, Reader, Writer};

pub const DEVICE_TYPE: u32 = 1;
pub(super) const QUEUE_SIZE: u16 = 256;
pub(super) const RX: usize = 0;
pub(super) const TX: usize = 1;

/// The driver may hand us partially checksummed frames.
pub(super) const F_CSUM: u64 = 1 << 0;
/// We may tell the driver our frames need no checksum check.
pub(super) const F_GUEST_CSUM: u64 = 1 << 1;
pub(super) const F_MTU: u64 = 1 << 3;
pub(super) const F_MAC: u64 = 1 << 5;
pub(super) const F_STATUS: u64 = 1 << 16;

/// `struct virtio_net_hdr` with `num_buffers` (virtio 1.x).
pub(super) const HDR_LEN: usize = 12;
const HDR_F_DATA_VALID: u8 = 2;
const GSO_NONE: u8 = 0;
const STATUS_LINK_UP: u16 = 1;
/// Largest frame either way: the advertised MTU plus the Ethernet header.
pub(super) const MAX_FRAME: usize = MTU as usize + 14;

pub(super) struct Active {
    pub mem: GuestMem,
    pub queues: Vec<Queue>,
    pub interrupt: Interrupt,
}

pub struct Net {
    pub(super) stack: Stack,
    pub(super) acked: u64,
    link_up: bool,
    pub(super) active: Option<Active>,
}

impl Net {
    /// A device whose frames end in a new stack set up by `config` (its
    /// published ports bound now: an error if one cannot be).
    pub fn new(config: &NetConfig) -> Result<Net, NetError> {
        let stack = Stack::new(config)?;
        let link_up = stack.link_up();
        Ok(Net {
            stack,
            acked: 0,
            link_up,
            active: None,
        })
    }

    /// The handle the VMM's control side changes and reads the network
    /// through.
    pub fn control(&self) -> NetControl {
        self.stack.control()
    }

    /// The stack (its poll fd and timers, for the event handler).
    pub fn stack(&mut self) -> &mut Stack {
        &mut self.stack
    }

    fn config(&self) -> [u8; 12] {
        let mut c = [0u8; 12];
        c[0..6].copy_from_slice(&GUEST_MAC);
        let status = if self.link_up { STATUS_LINK_UP } else { 0 };
        c[6..8].copy_from_slice(&status.to_le_bytes());
        c[8..10].copy_from_slice(&1u16.to_le_bytes()); // one queue pair
        c[10..12].copy_from_slice(&MTU.to_le_bytes());
        c
    }

    /// Takes the guest's TX frames into the stack.
    fn process_tx(&mut self, active: &mut Active) {
        let mem = active.mem.clone();
        let mut used = false;
        while let Some(chain) = active.queues[TX].pop_descriptor_chain(&mem) {
            let head = chain.head_index();
            if let Some(frame) = read_frame(&mem, chain) {
                self.stack.from_guest(frame);
            }
            let _ = active.queues[TX].add_used(&mem, head, 0);
            used = true;
        }
        if used && active.queues[TX].needs_notification(&mem).unwrap_or(true) {
            active.interrupt.signal_used();
        }
    }

    /// Fills the guest's RX buffers with the stack's frames.
    fn deliver_rx(&mut self, active: &mut Active) {
        let mem = active.mem.clone();
        let flags = if self.acked & F_GUEST_CSUM != 0 {
            HDR_F_DATA_VALID
        } else {
            0
        };
        let mut used = false;
        while let Some(frame) = self.stack.to_guest() {
            let Some(chain) = active.queues[RX].pop_descriptor_chain(&mem) else {
                self.stack.unpop_to_guest(frame); // waits for a buffer
                break;
            };
            let head = chain.head_index();
            let mut len = 0;
            // A frame that does not fit the buffer is dropped, as a wire
            // would; the buffer goes back empty (the driver counts a
            // length error and posts it again).
            if let Ok(mut w) = Writer::new(&mem, chain) {
                if HDR_LEN + frame.len() <= w.available_bytes() {
                    let mut hdr = [0u8; HDR_LEN];
                    hdr[0] = flags;
                    hdr[10..12].copy_from_slice(&1u16.to_le_bytes());
                    if w.write_all(&hdr).is_ok() && w.write_all(&frame).is_ok() {
                        len = (HDR_LEN + frame.len()) as u32;
                    }
                }
            }
            let _ = active.queues[RX].add_used(&mem, head, len);
            used = true;
        }
        if used && active.queues[RX].needs_notification(&mem).unwrap_or(true) {
            active.interrupt.signal_used();
        }
    }

    /// Runs the stack and moves frames both ways until nothing moves;
    /// tells the guest if its link went up or down (a policy change).
    pub fn pump(&mut self) {
        let Some(mut active) = self.active.take() else {
            self.stack.run();
            while self.stack.to_guest().is_some() {} // no driver: nowhere to go
            return;
        };
        self.process_tx(&mut active);
        self.stack.run();
        self.deliver_rx(&mut active);
        let up = self.stack.link_up();
        if up != self.link_up {
            self.link_up = up;
            active.interrupt.signal_config();
        }
        self.active = Some(active);
    }
}

/// One TX chain's frame without its header; None if the chain is
/// malformed, too large, or asks for offloads we did not offer.
fn read_frame<M>(mem: &GuestMem, chain: virtio_queue::DescriptorChain<M>) -> Option<Vec<u8>>
where
    M: std::ops::Deref<Target = GuestMem>,
{
    let mut reader = Reader::new(mem, chain).ok()?;
    let total = reader.available_bytes();
    if total < HDR_LEN || total - HDR_LEN > MAX_FRAME {
        return None;
    }
    let mut hdr = [0u8; HDR_LEN];
    reader.read_exact(&mut hdr).ok()?;
    if hdr[1] != GSO_NONE {
        return None;
    }
    let mut frame = vec![0u8; total - HDR_LEN];
    reader.read_exact(&mut frame).ok()?;
    Some(frame)
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        DEVICE_TYPE
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | F_CSUM | F_GUEST_CSUM | F_MTU | F_MAC | F_STATUS
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE; 2]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config(), offset, data);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    fn ack_features(&mut self, features: u64) {
        self.acked = features;
    }

    fn activate(&mut self, mem: GuestMem, queues: Vec<Queue>, interrupt: Interrupt) {
        if queues.len() == 2 {
            self.active = Some(Active {
                mem,
                queues,
                interrupt,
            });
            self.pump();
        }
    }

    fn reset(&mut self) {
        self.active = None;
        self.stack.reset();
    }

    fn save_state(&self) -> DeviceState {
        DeviceState::Net(Persist::save(self))
    }

    fn restore_state(
        &mut self,
        ctx: RestoreContext,
        state: &DeviceState,
    ) -> Result<(), RestoreError> {
        match state {
            DeviceState::Net(s) => Persist::restore(self, ctx, s),
            other => Err(RestoreError::StateKind {
                saved: other.kind(),
                here: "net",
            }),
        }
    }

    fn process_queue(&mut self, _index: usize) {
        self.pump();
    }
}
