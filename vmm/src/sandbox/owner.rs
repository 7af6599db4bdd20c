//! What the VMM process's main thread may call once its VM runs (`pyro
//! __vmm`). It owns the VM: it pauses and resumes it (kicking vCPUs out
//! of KVM_RUN), writes snapshots (state files and guest memory), copies
//! disks sparse-aware for checkpoints, stops the VM and writes its exit
//! record, removes a workspace that reached its time to live, and
//! suspends a VM that sat idle (`crate::idle`: the workspace's lock, a
//! stream of its own to the agent).

use super::kvm::*;
use super::{any, Allow, Args};

pub const ALLOWED: &[Allow] = &[
    Allow {
        call: libc::SYS_ioctl,
        args: Args::Ioctl(&[KVM_GET_IRQCHIP, KVM_GET_PIT2, KVM_GET_CLOCK]),
        why: "saving the VM's interrupt controller, timer and clock for a snapshot",
    },
    any(
        libc::SYS_openat,
        "snapshot and disk-copy files, the exit record",
    ),
    any(libc::SYS_read, "files"),
    any(libc::SYS_pread64, "files"),
    any(libc::SYS_pwrite64, "guest memory into a snapshot"),
    any(libc::SYS_lseek, "sparse copies (SEEK_DATA, SEEK_HOLE)"),
    any(libc::SYS_copy_file_range, "sparse copies of disks"),
    any(libc::SYS_ftruncate, "sizing a copy or a memory file"),
    any(libc::SYS_fallocate, "sizing a copy"),
    any(libc::SYS_fsync, "making a snapshot or a copy durable"),
    any(libc::SYS_fdatasync, "the same"),
    any(
        libc::SYS_rename,
        "putting a snapshot or a copy in place whole",
    ),
    any(libc::SYS_renameat, "the same"),
    any(libc::SYS_renameat2, "the same"),
    any(libc::SYS_mkdir, "a snapshot's directory"),
    any(libc::SYS_mkdirat, "the same"),
    any(
        libc::SYS_unlink,
        "scratch files, the control socket at exit",
    ),
    any(
        libc::SYS_unlinkat,
        "the same; removing an expired workspace",
    ),
    any(libc::SYS_rmdir, "removing an expired workspace"),
    any(libc::SYS_getdents64, "removing an expired workspace"),
    any(libc::SYS_fstat, "file sizes and identities"),
    any(libc::SYS_newfstatat, "the same"),
    any(libc::SYS_statx, "the same"),
    any(libc::SYS_fcntl, "descriptor flags"),
    any(libc::SYS_readlink, "the C library resolving paths"),
    any(
        libc::SYS_flock,
        "the workspace's lock, taken without waiting before an idle suspend",
    ),
    any(
        libc::SYS_socket,
        "a stream of its own to the agent (the vsock socket) before an idle suspend",
    ),
    any(libc::SYS_connect, "the same"),
    any(libc::SYS_setsockopt, "its deadlines"),
    any(libc::SYS_sendto, "its requests"),
    any(libc::SYS_recvfrom, "the agent's replies"),
];
