//! The net device driven through mock queues: guest frames good and
//! malformed, answered by its real stack.

use super::device::*;
use crate::virtio::{GuestMem, Interrupt, VirtioDevice};
use pyro_net::policy::{NetRules, NetworkPolicy};
use pyro_net::stack::NetConfig;
use pyro_proto::net::{GATEWAY_IP, GATEWAY_MAC, GUEST_IP, GUEST_MAC};
use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const RX_Q: u64 = 0x0;
const TX_Q: u64 = 0x1_0000;
const RX_BUF: u64 = 0x10_0000;
const TX_BUF: u64 = 0x80_0000;
const BUF: u64 = 0x2_0000;

fn mem() -> GuestMem {
    GuestMem::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap()
}

fn config(policy: NetworkPolicy) -> NetConfig {
    NetConfig {
        rules: NetRules {
            policy,
            allow: vec!["api.test".parse().unwrap()],
            add_hosts: vec!["api.test:127.0.0.1".parse().unwrap()],
        },
        publish: Vec::new(),
    }
}

struct Rig<'a> {
    mem: &'a GuestMem,
    rx: MockSplitQueue<'a, GuestMem>,
    tx: MockSplitQueue<'a, GuestMem>,
    dev: Net,
    rx_next: u16,
    tx_next: u16,
}

impl<'a> Rig<'a> {
    fn new(mem: &'a GuestMem, policy: NetworkPolicy) -> Rig<'a> {
        let rx = MockSplitQueue::create(mem, GuestAddress(RX_Q), 16);
        let tx = MockSplitQueue::create(mem, GuestAddress(TX_Q), 16);
        let mut dev = Net::new(&config(policy)).unwrap();
        dev.ack_features(dev.features());
        let queues = vec![rx.create_queue().unwrap(), tx.create_queue().unwrap()];
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
        }
    }

    fn give_rx_buffer(&mut self, len: u32) {
        let d = RawDescriptor::from(SplitDescriptor::new(
            RX_BUF + u64::from(self.rx_next) * BUF,
            len,
            VRING_DESC_F_WRITE as u16,
            0,
        ));
        self.rx.add_desc_chains(&[d], self.rx_next).unwrap();
        self.rx_next += 1;
        self.dev.process_queue(RX);
    }

    /// The guest sends `bytes` (virtio header included) as one chain.
    fn guest_sends(&mut self, bytes: &[u8]) {
        let addr = TX_BUF + u64::from(self.tx_next) * BUF;
        self.mem.write_slice(bytes, GuestAddress(addr)).unwrap();
        let d = RawDescriptor::from(SplitDescriptor::new(addr, bytes.len() as u32, 0, 0));
        self.tx.add_desc_chains(&[d], self.tx_next).unwrap();
        self.tx_next += 1;
        self.dev.process_queue(TX);
    }

    /// (header, frame) of each used RX buffer so far; len 0 as None.
    fn received(&self) -> Vec<Option<([u8; HDR_LEN], Vec<u8>)>> {
        let used = self.rx.used();
        (0..used.idx().load())
            .map(|i| {
                let elem = used.ring().ref_at(i as usize).unwrap().load();
                if elem.len() == 0 {
                    return None;
                }
                let addr = RX_BUF + u64::from(elem.id()) * BUF;
                let mut bytes = vec![0u8; elem.len() as usize];
                self.mem.read_slice(&mut bytes, GuestAddress(addr)).unwrap();
                let mut hdr = [0u8; HDR_LEN];
                hdr.copy_from_slice(&bytes[..HDR_LEN]);
                Some((hdr, bytes[HDR_LEN..].to_vec()))
            })
            .collect()
    }

    fn udp_frames(&self) -> Vec<Vec<u8>> {
        self.received()
            .into_iter()
            .flatten()
            .filter(|(_, f)| f.len() > 23 && f[12..14] == [8, 0] && f[23] == 17)
            .map(|(_, f)| f)
            .collect()
    }
}

/// A DNS query for `name` from the guest, behind a virtio header.
fn dns_query(name: &str) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut f = vec![0u8; HDR_LEN];
    f.extend_from_slice(&GATEWAY_MAC);
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
    f.extend_from_slice(&((28 + q.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&GUEST_IP);
    f.extend_from_slice(&GATEWAY_IP);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&53u16.to_be_bytes());
    f.extend_from_slice(&((8 + q.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&q);
    f
}

/// The DNS rcode in a reply frame.
fn rcode(frame: &[u8]) -> u8 {
    frame[14 + 20 + 8 + 3] & 0x0f
}

#[test]
fn a_dns_query_is_answered_through_the_queues() {
    let mem = mem();
    let mut rig = Rig::new(&mem, NetworkPolicy::Egress);
    for _ in 0..4 {
        rig.give_rx_buffer(BUF as u32);
    }
    rig.guest_sends(&dns_query("api.test"));
    let got = rig.received();
    let (hdr, _) = got.iter().flatten().next().unwrap();
    assert_eq!(hdr[0], 2, "DATA_VALID: the guest need not check checksums");
    assert_eq!(u16::from_le_bytes([hdr[10], hdr[11]]), 1, "num_buffers");
    let answers = rig.udp_frames();
    assert_eq!(answers.len(), 1);
    assert_eq!(rcode(&answers[0]), 0);
}

#[test]
fn a_name_off_the_allowlist_gets_nxdomain() {
    let mem = mem();
    let mut rig = Rig::new(&mem, NetworkPolicy::Egress);
    for _ in 0..4 {
        rig.give_rx_buffer(BUF as u32);
    }
    rig.guest_sends(&dns_query("evil.test"));
    assert_eq!(rcode(&rig.udp_frames()[0]), 3);
}

#[test]
fn malformed_chains_are_dropped_and_the_device_goes_on() {
    let mem = mem();
    let mut rig = Rig::new(&mem, NetworkPolicy::Egress);
    for _ in 0..4 {
        rig.give_rx_buffer(BUF as u32);
    }
    rig.guest_sends(&[1, 2, 3]); // shorter than a header
    rig.guest_sends(&[0u8; HDR_LEN]); // a header and no frame
    let mut gso = dns_query("api.test");
    gso[1] = 1; // GSO TCPv4: not offered
    rig.guest_sends(&gso);
    let mut huge = dns_query("api.test");
    huge.resize(HDR_LEN + MAX_FRAME + 1, 0);
    rig.guest_sends(&huge);
    assert!(rig.udp_frames().is_empty());
    rig.guest_sends(&dns_query("api.test"));
    assert_eq!(rig.udp_frames().len(), 1, "still answers");
}

#[test]
fn a_frame_larger_than_the_buffer_is_dropped_not_split() {
    let mem = mem();
    let mut rig = Rig::new(&mem, NetworkPolicy::Egress);
    rig.give_rx_buffer(40); // smaller than any reply
    rig.guest_sends(&dns_query("api.test"));
    assert!(rig.received().iter().all(Option::is_none));
}

#[test]
fn the_link_is_down_under_policy_off() {
    let mem = mem();
    let status = |dev: &Net| {
        let mut s = [0u8; 2];
        dev.read_config(6, &mut s);
        u16::from_le_bytes(s)
    };
    let off = Rig::new(&mem, NetworkPolicy::Off);
    assert_eq!(status(&off.dev), 0);
    let mut mac = [0u8; 6];
    off.dev.read_config(0, &mut mac);
    assert_eq!(mac, GUEST_MAC);
    let mem2 = self::mem();
    let on = Rig::new(&mem2, NetworkPolicy::Egress);
    assert_eq!(status(&on.dev), 1);
}

#[test]
fn a_policy_change_flips_the_link() {
    let mem = mem();
    let mut rig = Rig::new(&mem, NetworkPolicy::Off);
    let control = rig.dev.control();
    control.update(config(NetworkPolicy::Egress).rules).unwrap();
    rig.dev.pump();
    let mut s = [0u8; 2];
    rig.dev.read_config(6, &mut s);
    assert_eq!(u16::from_le_bytes(s), 1);
}
