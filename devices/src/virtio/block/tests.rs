//! Block requests built by hand, good and malformed, against a temp file.

use super::device::*;
use crate::virtio::{GuestMem, Interrupt, VirtioDevice};
use std::io::Seek;
use std::io::Write;
use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const HDR: u64 = 0x10_0000;
const DATA: u64 = 0x20_0000;
const STATUS: u64 = 0x30_0000;
const W: u16 = VRING_DESC_F_WRITE as u16;

fn mem() -> GuestMem {
    GuestMem::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap()
}

fn disk(sectors: u64) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    let bytes: Vec<u8> = (0..sectors * SECTOR)
        .map(|i| (i / SECTOR) as u8 + 1)
        .collect();
    f.write_all(&bytes).unwrap();
    f.rewind().unwrap();
    f
}

fn desc(addr: u64, len: u32, flags: u16) -> RawDescriptor {
    RawDescriptor::from(SplitDescriptor::new(addr, len, flags, 0))
}

fn header(mem: &GuestMem, kind: u32, sector: u64) {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&kind.to_le_bytes());
    h[8..16].copy_from_slice(&sector.to_le_bytes());
    mem.write_slice(&h, GuestAddress(HDR)).unwrap();
}

/// Runs one chain through a device; returns (used len, status byte).
fn run(mem: &GuestMem, dev: &mut Block, descs: &[RawDescriptor]) -> (u32, u8) {
    mem.write_obj(0xeeu8, GuestAddress(STATUS)).unwrap();
    let mock = MockSplitQueue::new(mem, 16);
    let chained: Vec<RawDescriptor> = descs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let d = SplitDescriptor::from(*d);
            let last = i == descs.len() - 1;
            let flags = if last { d.flags() } else { d.flags() | 1 };
            RawDescriptor::from(SplitDescriptor::new(
                d.addr().0,
                d.len(),
                flags,
                i as u16 + 1,
            ))
        })
        .collect();
    mock.add_desc_chains(&chained, 0).unwrap();
    let queue: Queue = mock.create_queue().unwrap();
    dev.activate(
        mem.clone(),
        vec![queue],
        Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()),
    );
    let used = mock.used().ring().ref_at(0).unwrap().load();
    dev.reset();
    (used.len(), mem.read_obj(GuestAddress(STATUS)).unwrap())
}

#[test]
fn read_returns_the_sector() {
    let (mem, f) = (mem(), disk(4));
    let mut dev = Block::open(f.path(), true, "root").unwrap();
    header(&mem, T_IN, 2);
    let (len, status) = run(
        &mem,
        &mut dev,
        &[desc(HDR, 16, 0), desc(DATA, 512, W), desc(STATUS, 1, W)],
    );
    assert_eq!((len, status), (513, S_OK));
    let mut got = [0u8; 512];
    mem.read_slice(&mut got, GuestAddress(DATA)).unwrap();
    assert!(got.iter().all(|&b| b == 3));
}

#[test]
fn write_then_flush_reaches_the_file() {
    let (mem, f) = (mem(), disk(4));
    let mut dev = Block::open(f.path(), false, "ws").unwrap();
    mem.write_slice(&[0xab; 1024], GuestAddress(DATA)).unwrap();
    header(&mem, T_OUT, 1);
    let (_, status) = run(
        &mem,
        &mut dev,
        &[desc(HDR, 16, 0), desc(DATA, 1024, 0), desc(STATUS, 1, W)],
    );
    assert_eq!(status, S_OK);
    header(&mem, T_FLUSH, 0);
    let (_, status) = run(&mem, &mut dev, &[desc(HDR, 16, 0), desc(STATUS, 1, W)]);
    assert_eq!(status, S_OK);
    let bytes = std::fs::read(f.path()).unwrap();
    assert!(bytes[512..1536].iter().all(|&b| b == 0xab));
    assert!(bytes[..512].iter().all(|&b| b == 1) && bytes[1536..].iter().all(|&b| b == 4));
}

#[test]
fn write_to_read_only_disk_fails_and_changes_nothing() {
    let (mem, f) = (mem(), disk(2));
    let before = std::fs::read(f.path()).unwrap();
    let mut dev = Block::open(f.path(), true, "root").unwrap();
    header(&mem, T_OUT, 0);
    let (_, status) = run(
        &mem,
        &mut dev,
        &[desc(HDR, 16, 0), desc(DATA, 512, 0), desc(STATUS, 1, W)],
    );
    assert_eq!(status, S_IOERR);
    assert_eq!(std::fs::read(f.path()).unwrap(), before);
}

#[test]
fn out_of_range_and_overflowing_sectors_fail() {
    let (mem, f) = (mem(), disk(2));
    let mut dev = Block::open(f.path(), false, "ws").unwrap();
    for sector in [2, 1 << 60, u64::MAX] {
        header(&mem, T_IN, sector);
        let (_, status) = run(
            &mem,
            &mut dev,
            &[desc(HDR, 16, 0), desc(DATA, 512, W), desc(STATUS, 1, W)],
        );
        assert_eq!(status, S_IOERR, "sector {sector}");
    }
    // Starts inside, ends outside.
    header(&mem, T_IN, 1);
    let (_, status) = run(
        &mem,
        &mut dev,
        &[desc(HDR, 16, 0), desc(DATA, 1024, W), desc(STATUS, 1, W)],
    );
    assert_eq!(status, S_IOERR);
}

#[test]
fn short_header_and_unknown_type_get_error_status() {
    let (mem, f) = (mem(), disk(2));
    let mut dev = Block::open(f.path(), false, "ws").unwrap();
    header(&mem, T_IN, 0);
    let (_, status) = run(&mem, &mut dev, &[desc(HDR, 8, 0), desc(STATUS, 1, W)]);
    assert_eq!(status, S_IOERR);
    header(&mem, 77, 0);
    let (_, status) = run(&mem, &mut dev, &[desc(HDR, 16, 0), desc(STATUS, 1, W)]);
    assert_eq!(status, S_UNSUPP);
}

#[test]
fn chains_without_status_or_outside_memory_are_returned_empty() {
    let (mem, f) = (mem(), disk(2));
    let mut dev = Block::open(f.path(), false, "ws").unwrap();
    header(&mem, T_IN, 0);
    let (len, status) = run(&mem, &mut dev, &[desc(HDR, 16, 0), desc(DATA, 512, 0)]);
    assert_eq!(
        (len, status),
        (0, 0xee),
        "no writable byte: nothing written"
    );
    let (len, status) = run(
        &mem,
        &mut dev,
        &[
            desc(HDR, 16, 0),
            desc(0x3f_ff00, 0x1000, W),
            desc(STATUS, 1, W),
        ],
    );
    assert_eq!(
        (len, status),
        (0, 0xee),
        "buffer past the end of guest memory"
    );
    // The device still works afterwards.
    let (len, status) = run(
        &mem,
        &mut dev,
        &[desc(HDR, 16, 0), desc(DATA, 512, W), desc(STATUS, 1, W)],
    );
    assert_eq!((len, status), (513, S_OK));
}

#[test]
fn get_id_fits_the_buffer() {
    let (mem, f) = (mem(), disk(1));
    let mut dev = Block::open(f.path(), true, "pyro-root").unwrap();
    header(&mem, T_GET_ID, 0);
    let (len, status) = run(
        &mem,
        &mut dev,
        &[desc(HDR, 16, 0), desc(DATA, 4, W), desc(STATUS, 1, W)],
    );
    assert_eq!((len, status), (5, S_OK));
    let mut id = [0u8; 4];
    mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
    assert_eq!(&id, b"pyro");
}

#[test]
fn config_offers_many_segments_per_request() {
    let f = disk(8);
    let dev = Block::open(f.path(), false, "ws").unwrap();
    assert_ne!(dev.features() & F_SEG_MAX, 0);
    let mut cfg = [0u8; 16];
    dev.read_config(0, &mut cfg);
    assert_eq!(u64::from_le_bytes(cfg[..8].try_into().unwrap()), 8);
    assert_eq!(u32::from_le_bytes(cfg[12..].try_into().unwrap()), SEG_MAX);
    const { assert!(SEG_MAX >= 64) };
}

#[test]
fn a_request_of_many_segments_reads_and_writes_them_in_order() {
    let (mem, f) = (mem(), disk(8));
    let mut dev = Block::open(f.path(), false, "ws").unwrap();
    // Four 512-byte segments scattered in memory, out of address order.
    let segs = [DATA + 0x3000, DATA, DATA + 0x1000, DATA + 0x2000];
    for (i, &a) in segs.iter().enumerate() {
        mem.write_slice(&[0x10 + i as u8; 512], GuestAddress(a))
            .unwrap();
    }
    header(&mem, T_OUT, 2);
    let mut chain = vec![desc(HDR, 16, 0)];
    chain.extend(segs.iter().map(|&a| desc(a, 512, 0)));
    chain.push(desc(STATUS, 1, W));
    assert_eq!(run(&mem, &mut dev, &chain).1, S_OK);
    let bytes = std::fs::read(f.path()).unwrap();
    for i in 0..4 {
        let s = (2 + i) * SECTOR as usize;
        assert!(bytes[s..s + 512].iter().all(|&b| b == 0x10 + i as u8));
    }
    // And back, into other scattered segments.
    let back = [DATA + 0x8000, DATA + 0x6000, DATA + 0x7000];
    header(&mem, T_IN, 3);
    let mut chain = vec![desc(HDR, 16, 0)];
    chain.extend(back.iter().map(|&a| desc(a, 512, W)));
    chain.push(desc(STATUS, 1, W));
    assert_eq!(run(&mem, &mut dev, &chain), (3 * 512 + 1, S_OK));
    for (i, &a) in back.iter().enumerate() {
        let mut got = [0u8; 512];
        mem.read_slice(&mut got, GuestAddress(a)).unwrap();
        assert!(got.iter().all(|&b| b == 0x11 + i as u8));
    }
}
