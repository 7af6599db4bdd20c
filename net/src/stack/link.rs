//! The stack's side of the virtio-net link: two bounded frame queues that
//! smoltcp reads and writes through its `phy::Device` trait.

use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use std::collections::VecDeque;

/// Frames waiting for the guest's RX buffers. A guest that posts none
/// cannot grow host memory past this: smoltcp holds its segments (and
/// TCP retransmits them later) once the queue is full.
pub const MAX_TO_GUEST: usize = 512;
/// Guest frames queued for smoltcp in one pass (it drains them at once).
pub const MAX_FROM_GUEST: usize = 1024;

pub struct Link {
    pub from_guest: VecDeque<Vec<u8>>,
    pub to_guest: VecDeque<Vec<u8>>,
    /// Largest frame on the link (Ethernet header included).
    pub max_frame: usize,
}

impl Link {
    pub fn new(mtu: usize) -> Self {
        Self {
            from_guest: VecDeque::new(),
            to_guest: VecDeque::new(),
            max_frame: mtu + 14,
        }
    }

    /// Queues a guest frame for smoltcp; false (dropped) when full.
    pub fn push_from_guest(&mut self, frame: Vec<u8>) -> bool {
        if self.from_guest.len() >= MAX_FROM_GUEST {
            return false;
        }
        self.from_guest.push_back(frame);
        true
    }

    /// Queues a frame the stack built itself (DNS, UDP); false when full.
    pub fn push_to_guest(&mut self, frame: Vec<u8>) -> bool {
        if self.to_guest.len() >= MAX_TO_GUEST {
            return false;
        }
        self.to_guest.push_back(frame);
        true
    }
}

pub struct RxToken(Vec<u8>);
pub struct TxToken<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let r = f(&mut frame);
        self.0.push_back(frame);
        r
    }
}

impl phy::Device for Link {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken, TxToken<'_>)> {
        if self.to_guest.len() >= MAX_TO_GUEST {
            return None; // no room for a reply: leave the frame queued
        }
        let frame = self.from_guest.pop_front()?;
        Some((RxToken(frame), TxToken(&mut self.to_guest)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        (self.to_guest.len() < MAX_TO_GUEST).then_some(TxToken(&mut self.to_guest))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.max_frame;
        // The guest may hand over TCP segments with a partial checksum
        // (VIRTIO_NET_F_CSUM), and it is told ours need no checking
        // (VIRTIO_NET_HDR_F_DATA_VALID): compute on send, never verify.
        let mut checksum = ChecksumCapabilities::default();
        checksum.ipv4 = Checksum::Tx;
        checksum.tcp = Checksum::Tx;
        checksum.udp = Checksum::Tx;
        checksum.icmpv4 = Checksum::Tx;
        caps.checksum = checksum;
        caps
    }
}
