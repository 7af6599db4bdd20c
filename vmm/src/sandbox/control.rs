//! What the control-socket thread of `pyro __vmm`, and the thread it
//! starts for each connection, may call. A connection reads one request
//! line and writes one reply; requests on the VM go to the main thread.
//! Publishing a port binds its listener here (127.0.0.1 only), then
//! hands it to the event thread.

use super::{any, Allow, Args};

pub const ALLOWED: &[Allow] = &[
    any(libc::SYS_accept4, "control connections"),
    Allow {
        call: libc::SYS_clone,
        args: Args::Thread,
        why: "a thread per connection (threads only: no process)",
    },
    any(libc::SYS_set_robust_list, "a new thread's start"),
    any(libc::SYS_rseq, "a new thread's start"),
    any(libc::SYS_sched_getaffinity, "a new thread's start"),
    any(libc::SYS_read, "requests"),
    any(libc::SYS_recvfrom, "requests"),
    any(libc::SYS_sendto, "replies"),
    any(
        libc::SYS_setsockopt,
        "a connection's read timeout; SO_REUSEADDR",
    ),
    any(libc::SYS_socket, "a published port's listener"),
    any(libc::SYS_bind, "the same"),
    any(libc::SYS_listen, "the same"),
    any(libc::SYS_getsockname, "the port it got"),
    any(libc::SYS_fcntl, "descriptor flags"),
    Allow {
        call: libc::SYS_ioctl,
        args: Args::Ioctl(&[libc::FIONBIO]),
        why: "a non-blocking listener",
    },
];
