//! Freezing a mounted file system (`FIFREEZE`/`FITHAW`) for guest-init,
//! which forbids `unsafe` itself. It lives under `devices/` because
//! `unsafe` lives only there and in `vmm/`; it has no other dependency
//! than rustix, so the guest's static binary stays small.
//!
//! A freeze writes out the file system's dirty data and its journal and
//! then holds every new write (writers block in the kernel) until the
//! thaw. A write system call in progress finishes first, so the frozen
//! disk holds each write whole or not at all. pyro uses it so the host
//! can read a running workspace's disk image as one consistent instant.

use rustix::ioctl::{ioctl, opcode, NoArg, Opcode};
use std::os::fd::AsFd;

/// `_IOWR('X', 119, int)`: the argument is ignored by the kernel.
const FIFREEZE: Opcode = opcode::read_write::<i32>(b'X', 119);
/// `_IOWR('X', 120, int)`.
const FITHAW: Opcode = opcode::read_write::<i32>(b'X', 120);

/// Freezes the file system `dir` (an open directory on it) is on.
/// `EBUSY`: it is frozen already; `EOPNOTSUPP`: it cannot be frozen.
pub fn freeze(dir: impl AsFd) -> std::io::Result<()> {
    // SAFETY: FIFREEZE takes no argument the kernel reads or writes
    // (NoArg passes none), and `dir` is a valid open descriptor for the
    // call's length.
    unsafe { ioctl(dir, NoArg::<FIFREEZE>::new()) }.map_err(Into::into)
}

/// Thaws the file system `dir` is on. `EINVAL`: it was not frozen.
pub fn thaw(dir: impl AsFd) -> std::io::Result<()> {
    // SAFETY: as for `freeze`: FITHAW takes no argument.
    unsafe { ioctl(dir, NoArg::<FITHAW>::new()) }.map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opcodes_are_the_kernels() {
        // From <linux/fs.h>, as `fsfreeze(8)` uses them.
        assert_eq!(FIFREEZE as u64, 0xC004_5877);
        assert_eq!(FITHAW as u64, 0xC004_5878);
    }

    #[test]
    fn the_kernel_knows_the_thaw_request() {
        // Thawing is harmless to try: a file system that is not frozen
        // says EINVAL (EPERM without CAP_SYS_ADMIN); a wrong request
        // number would say ENOTTY. (Freezing the test host's own file
        // system is not harmless.)
        let dir = std::fs::File::open(std::env::temp_dir()).unwrap();
        let e = thaw(&dir).unwrap_err();
        assert!(matches!(e.raw_os_error(), Some(22) | Some(1)), "{e}");
    }
}
