//! The staging disk: how large request bodies (a push's archive, a big
//! file write) reach a workspace's guest.
//!
//! Every workspace VM has a fourth disk ([`STAGING_DEVICE`]), read-only
//! to the guest, backed by a sparse file in its VM directory
//! ([`STAGING_FILE`], [`STAGING_BYTES`] long). For a body of a megabyte
//! or more, the host writes each megabyte into that file and sends the
//! agent a [`Request::Staged`] frame naming the range instead of the
//! bytes; the agent reads the range with direct I/O. On PVM hosts this
//! is what makes a push fast: the vsock path costs the emulated guest
//! kernel a copy of every byte and a packet per 4 KiB (0.77 s per MiB),
//! a direct read of the disk about 0.1 s per MiB (measured 2026-11-30).
//!
//! One body at a time uses a VM's staging disk: [`Staging::try_lock`]
//! takes an exclusive `flock` on the file, and a body that finds it
//! taken goes inline. The ranges are freed (hole punched) once the
//! agent has answered, and when the lock's holder goes away. If the
//! holder went away while the agent still reads (a killed CLI), the
//! agent finds a piece whose [`rpc::staged_sum`] no longer matches and
//! fails the request, which changes nothing.

use pyro_proto::rpc::{self, Request, MAX_DATA, STAGED_ALIGN};
use rustix::fs::{fallocate, flock, FallocateFlags, FlockOperation};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The staging disk's file, in a workspace VM's directory.
pub(crate) const STAGING_FILE: &str = "staging.img";
/// The staging disk in the guest: the fourth disk, after the root
/// image, /workspace's disk and the system disk.
pub(crate) const STAGING_DEVICE: &str = "/dev/vdd";
/// The staging disk's size (sparse: it takes host space only while a
/// body is on it). A body larger than this goes inline past it.
pub(crate) const STAGING_BYTES: u64 = 4 << 30;

/// `PYRO_STAGING=0` sends every body inline: to compare the two paths,
/// or to rule the staging disk out.
pub const STAGING_ENV: &str = "PYRO_STAGING";
/// Test hook: when set, every staged piece goes with a wrong sum, as if
/// its range had been reused before the agent read it.
pub const STAGED_BAD_SUM_ENV: &str = "PYRO_TEST_STAGED_BAD_SUM";

/// Whether bodies may use the staging disk ([`STAGING_ENV`]).
pub(crate) fn enabled() -> bool {
    std::env::var(STAGING_ENV).as_deref() != Ok("0")
}

/// Creates the staging disk's file at `path`, or empties it: done before
/// its VM starts, so a body left there by a killed caller is gone.
pub(crate) fn reset(path: &Path) -> io::Result<()> {
    let file = File::create(path)?;
    file.set_len(STAGING_BYTES)
}

/// The staging disk, held for one body.
pub(crate) struct Staging {
    file: File,
    /// Bytes of the file in use from its start.
    used: u64,
    /// [`STAGED_BAD_SUM_ENV`]: sums are sent wrong.
    bad_sums: bool,
}

impl Staging {
    /// The staging disk at `path`, unless another body holds it (or it
    /// is missing: a VM started before staging existed has none).
    pub(crate) fn try_lock(path: &Path) -> Option<Staging> {
        let file = OpenOptions::new().read(true).write(true).open(path).ok()?;
        flock(&file, FlockOperation::NonBlockingLockExclusive).ok()?;
        Some(Staging {
            file,
            used: 0,
            bad_sums: std::env::var_os(STAGED_BAD_SUM_ENV).is_some(),
        })
    }

    /// Writes `data` (at most [`MAX_DATA`] bytes) to the next free range
    /// and returns the frame that names it; `None` when it does not fit
    /// or cannot be written (the caller sends it inline).
    pub(crate) fn put(&mut self, data: &[u8]) -> Option<Request> {
        let offset = self.used;
        let len = u32::try_from(data.len()).ok().filter(|&n| n <= MAX_DATA)?;
        let next = (offset + u64::from(len)).next_multiple_of(STAGED_ALIGN);
        if next > STAGING_BYTES {
            return None;
        }
        self.file.write_all_at(data, offset).ok()?;
        self.used = next;
        Some(Request::Staged {
            device: STAGING_DEVICE.to_string(),
            offset,
            len,
            sum: rpc::staged_sum(data) ^ u64::from(self.bad_sums),
        })
    }

    /// Frees the ranges in use (the agent has answered, or will find
    /// them changed).
    pub(crate) fn release(&mut self) {
        if self.used > 0 {
            let punch = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
            // Punching fails only on file systems without holes; the
            // file is emptied at the VM's next start then.
            let _ = fallocate(&self.file, punch, 0, self.used);
            self.used = 0;
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_land_aligned_with_their_sums_and_are_freed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STAGING_FILE);
        reset(&path).unwrap();
        let mut s = Staging::try_lock(&path).unwrap();
        assert!(Staging::try_lock(&path).is_none(), "held by the first");
        let (a, b) = (vec![7u8; 5000], vec![9u8; MAX_DATA as usize]);
        let Some(Request::Staged {
            offset, len, sum, ..
        }) = s.put(&a)
        else {
            panic!("not staged")
        };
        assert_eq!((offset, len, sum), (0, 5000, rpc::staged_sum(&a)));
        let Some(Request::Staged { offset, .. }) = s.put(&b) else {
            panic!("not staged")
        };
        assert_eq!(offset, 8192, "the next page after the first piece");
        let mut back = vec![0u8; b.len()];
        File::open(&path)
            .unwrap()
            .read_exact_at(&mut back, 8192)
            .unwrap();
        assert!(back == b);
        assert!(s.put(&vec![0u8; MAX_DATA as usize + 1]).is_none());
        drop(s);
        let file = File::open(&path).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(file.metadata().unwrap().len(), STAGING_BYTES);
        assert_eq!(file.metadata().unwrap().blocks(), 0, "punched");
        assert!(Staging::try_lock(&path).is_some(), "free again");
    }
}
