//! What the event thread may call. It runs every virtio queue (block
//! reads and writes on the disk images, vsock packets to and from host
//! sockets, network frames) and the user-space network stack, whose
//! connections out are host sockets it opens after the VM's rules
//! allowed them.

use super::{any, Allow, Args};

/// `FIONBIO`: std's and mio's `set_nonblocking`.
const FIONBIO: u64 = libc::FIONBIO;

pub const ALLOWED: &[Allow] = &[
    any(libc::SYS_epoll_wait, "waiting for queues and sockets"),
    any(
        libc::SYS_epoll_pwait,
        "waiting (the C library's other form)",
    ),
    any(libc::SYS_epoll_ctl, "watching sockets as they come and go"),
    any(
        libc::SYS_read,
        "eventfds (queue kicks, timers), host sockets",
    ),
    any(libc::SYS_readv, "host sockets"),
    any(libc::SYS_writev, "host sockets"),
    any(libc::SYS_pread64, "block reads from the disk images"),
    any(libc::SYS_pwrite64, "block writes to the disk images"),
    any(libc::SYS_fdatasync, "the guest's block flush"),
    any(libc::SYS_fsync, "the guest's block flush"),
    any(libc::SYS_timerfd_settime, "the network's timers"),
    any(
        libc::SYS_accept4,
        "host connections to the vsock socket and to published ports",
    ),
    any(
        libc::SYS_socket,
        "the network's connections out, the guest's vsock connections to host sockets",
    ),
    any(libc::SYS_connect, "the same"),
    any(libc::SYS_bind, "the network's UDP flows"),
    any(libc::SYS_sendto, "host sockets"),
    any(libc::SYS_recvfrom, "host sockets"),
    any(libc::SYS_sendmsg, "host sockets"),
    any(libc::SYS_recvmsg, "host sockets"),
    any(libc::SYS_shutdown, "half-closing a connection"),
    any(libc::SYS_getsockopt, "a dial's result (SO_ERROR)"),
    any(libc::SYS_setsockopt, "TCP_NODELAY on connections"),
    any(libc::SYS_getsockname, "socket addresses"),
    any(libc::SYS_getpeername, "socket addresses"),
    any(libc::SYS_fcntl, "descriptor flags"),
    Allow {
        call: libc::SYS_ioctl,
        args: Args::Ioctl(&[FIONBIO]),
        why: "non-blocking sockets",
    },
];
