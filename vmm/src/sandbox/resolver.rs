//! What the network's name-lookup thread may call: the C library's
//! `getaddrinfo`, which reads /etc/hosts, /etc/nsswitch.conf,
//! /etc/resolv.conf and /etc/gai.conf, may ask nscd over a Unix socket
//! and the configured DNS servers over UDP or TCP, and may load an NSS
//! module. It reads nothing the guest sends except the name, and answers
//! only addresses.

use super::{any, Allow, Args};

pub const ALLOWED: &[Allow] = &[
    any(libc::SYS_openat, "the resolver's files, NSS modules"),
    any(libc::SYS_read, "the same"),
    any(libc::SYS_pread64, "loading an NSS module"),
    any(libc::SYS_lseek, "the same"),
    any(libc::SYS_fstat, "the same"),
    any(libc::SYS_newfstatat, "the same"),
    any(libc::SYS_statx, "the same"),
    any(libc::SYS_uname, "the resolver's set-up"),
    any(libc::SYS_socket, "nscd, DNS servers"),
    any(libc::SYS_connect, "the same"),
    any(libc::SYS_bind, "the same"),
    any(libc::SYS_getsockname, "the same"),
    any(libc::SYS_setsockopt, "the same"),
    any(libc::SYS_sendto, "the same"),
    any(libc::SYS_sendmmsg, "the same"),
    any(libc::SYS_recvfrom, "the same"),
    any(libc::SYS_recvmsg, "the same"),
    any(libc::SYS_poll, "waiting for an answer"),
    any(libc::SYS_ppoll, "waiting for an answer"),
    any(libc::SYS_fcntl, "descriptor flags"),
    Allow {
        call: libc::SYS_ioctl,
        args: Args::Ioctl(&[libc::FIONREAD]),
        why: "the size of a DNS answer",
    },
    any(
        libc::SYS_write,
        "wakes the event thread (mio's waker) with an answer",
    ),
];
