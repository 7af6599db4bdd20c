//! Bulk file data written with `O_DIRECT`, past the page cache.
//!
//! On PVM hosts the guest kernel's buffered write path is the slowest
//! thing a workspace does: about 6 ms of emulated kernel work per 4 KiB
//! page (`dd` of 10 MiB into /workspace: 17.8 s, measured 2026-11-30),
//! and the page cache is written out again at the next `syncfs` (another
//! 4 s). A direct write hands the buffer's pages to the disk as they are
//! (10 MiB: 2.0 s, with the blocks allocated first). So files of [`DIRECT_MIN`] bytes and more are
//! written in [`CHUNK`]-sized direct writes from one aligned buffer; the
//! last partial sector, and every file on a file system that refuses
//! direct I/O, go through the page cache as before.

use super::buffers;
use rustix::fs::{fallocate, fcntl_getfl, fcntl_setfl, FallocateFlags, OFlags};
use rustix::io::Errno;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

/// Smaller files are written through the page cache: for them the
/// per-write cost of a direct write is not worth it.
pub const DIRECT_MIN: u64 = 16 * 1024;
/// What a direct write's length and file offset must be a multiple of:
/// the disk's logical block size (virtio-blk without `blk_size`).
const SECTOR: usize = 512;
/// Bytes per direct write: a megabyte (10 MB/s) rather than the 256 KiB
/// of a body chunk (6.6 MB/s, measured with `dd` in a guest), from a
/// kept, aligned buffer (`buffers.rs`).
const CHUNK: usize = 1 << 20;

/// Copies `from` to the start of the new, empty `file`, whose final size
/// is `size` when known (an archive entry's header says it; a file
/// write's body is only known once read). Returns the bytes written.
pub fn copy_to_new_file(
    from: &mut impl Read,
    file: &mut File,
    size: Option<u64>,
) -> io::Result<u64> {
    if size.is_some_and(|n| n < DIRECT_MIN) {
        return super::copy_chunked(from, file);
    }
    let mut store = buffers::take();
    let copied = copy_through(from, file, size, buffers::aligned(&mut store, CHUNK).1);
    buffers::keep(store);
    copied
}

fn copy_through(
    from: &mut impl Read,
    file: &mut File,
    size: Option<u64>,
    buf: &mut [u8],
) -> io::Result<u64> {
    let mut filled = pyro_proto::rpc::read_full(from, buf)?;
    if size.is_none() && filled < buf.len() {
        // All of it, and small.
        file.write_all(&buf[..filled])?;
        return Ok(filled as u64);
    }
    if let Some(size) = size {
        // Blocks for the whole file in one go, rather than one
        // allocation per extending direct write (10 MiB: 2.0 s instead
        // of 3.1-3.7 s), and a full disk is found before any data is
        // written.
        match fallocate(&*file, FallocateFlags::empty(), 0, size) {
            Ok(()) | Err(Errno::OPNOTSUPP) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let flags = fcntl_getfl(&*file)?;
    let mut direct = fcntl_setfl(&*file, flags | OFlags::DIRECT).is_ok();
    let mut offset = 0u64;
    while filled > 0 {
        let mut done = 0;
        if direct {
            let whole = filled / SECTOR * SECTOR;
            match file.write_all_at(&buf[..whole], offset) {
                Ok(()) => done = whole,
                // Refused (a file system without direct I/O): the page
                // cache, from where the refused write began.
                Err(e) if e.raw_os_error() == Some(Errno::INVAL.raw_os_error()) => {}
                Err(e) => return Err(e),
            }
            if done < filled {
                fcntl_setfl(&*file, flags)?;
                direct = false;
            }
        }
        file.write_all_at(&buf[done..filled], offset + done as u64)?;
        offset += filled as u64;
        if filled < buf.len() {
            break;
        }
        filled = pyro_proto::rpc::read_full(from, buf)?;
    }
    if direct {
        fcntl_setfl(&*file, flags)?;
    }
    Ok(offset)
}
