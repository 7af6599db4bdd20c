//! Megabyte buffers for bulk data, kept between requests: a request
//! body's (`body.rs`: staged pieces read with `O_DIRECT`) and a file's
//! direct writes (`direct.rs`). A fresh megabyte costs 256 page faults,
//! each ~3 ms of emulated kernel work on PVM hosts (a 10 MiB push took
//! 4.4 s the first time, 3.2 s with kept buffers), so buffers go back to
//! one pool when a request is done, and workspace VMs make two at boot
//! ([`prefault`]), which their snapshots then hold.

use pyro_proto::rpc::{MAX_DATA, STAGED_ALIGN};
use std::sync::Mutex;

/// A buffer's size: room for a [`MAX_DATA`]-byte slice that starts on an
/// [`STAGED_ALIGN`] boundary (what direct I/O needs), wherever the
/// allocation starts.
const SIZE: usize = MAX_DATA as usize + 2 * STAGED_ALIGN as usize;
/// Buffers kept, at most: an upload uses two at once (its body's and its
/// direct writes'), and a second one may run alongside.
const KEPT: usize = 4;

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A kept buffer, or an empty one ([`aligned`] makes it).
pub fn take() -> Vec<u8> {
    POOL.lock()
        .ok()
        .and_then(|mut pool| pool.pop())
        .unwrap_or_default()
}

/// Gives `buf` back for later requests (dropped if it is not a whole
/// buffer, or if enough are kept).
pub fn keep(buf: Vec<u8>) {
    // Capacity, not length: an inline body piece shortens a buffer's
    // length, not its allocation.
    if buf.capacity() < SIZE {
        return;
    }
    if let Ok(mut pool) = POOL.lock() {
        if pool.len() < KEPT {
            pool.push(buf);
        }
    }
}

/// The `len` bytes (at most [`MAX_DATA`]) of `buf` that start on an
/// [`STAGED_ALIGN`] boundary, and where they start; `buf` is made a
/// whole buffer first if it is not.
pub fn aligned(buf: &mut Vec<u8>, len: usize) -> (usize, &mut [u8]) {
    assert!(len <= MAX_DATA as usize, "an aligned slice of {len} bytes");
    if buf.len() < SIZE {
        buf.resize(SIZE, 0);
    }
    let start = buf.as_ptr().align_offset(STAGED_ALIGN as usize);
    (start, &mut buf[start..start + len])
}

/// Makes two buffers now, touched, so that they are in every snapshot of
/// this VM and the first push after a restore pays no page faults.
pub fn prefault() {
    if let Ok(mut pool) = POOL.lock() {
        while pool.len() < 2 {
            pool.push(vec![1u8; SIZE]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_kept_and_bounded() {
        let mut buf = take();
        let (start, slice) = aligned(&mut buf, MAX_DATA as usize);
        assert_eq!(slice.len(), MAX_DATA as usize);
        assert_eq!(slice.as_ptr() as usize % STAGED_ALIGN as usize, 0);
        assert!(start < 2 * STAGED_ALIGN as usize);
        let ptr = buf.as_ptr();
        keep(buf);
        // The same memory comes back (other tests may take from the
        // pool meanwhile; none runs here).
        let again = take();
        assert_eq!(again.as_ptr(), ptr);
        keep(again);
        // A part of a buffer is not kept; more than KEPT are dropped.
        keep(vec![0u8; 10]);
        for _ in 0..KEPT + 2 {
            keep(vec![0u8; SIZE]);
        }
        assert!(POOL.lock().unwrap().len() <= KEPT);
        assert!(POOL.lock().unwrap().iter().all(|b| b.capacity() >= SIZE));
    }
}
