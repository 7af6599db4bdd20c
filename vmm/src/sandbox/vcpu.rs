//! What a vCPU thread may call once it runs the guest. It handles every
//! exit the guest causes: port and MMIO accesses to the devices (serial,
//! i8042, the virtio transports' registers), and parks for pauses and
//! snapshots. Queue work happens on the event thread, not here.

use super::kvm::*;
use super::{any, Allow, Args};

pub const ALLOWED: &[Allow] = &[
    Allow {
        call: libc::SYS_ioctl,
        args: Args::Ioctl(&[
            KVM_RUN,
            // A snapshot saves each vCPU's state on its own thread.
            KVM_GET_REGS,
            KVM_GET_SREGS,
            KVM_GET_MSRS,
            KVM_GET_LAPIC,
            KVM_GET_MP_STATE,
            KVM_GET_VCPU_EVENTS,
            KVM_GET_XSAVE,
            KVM_GET_XCRS,
        ]),
        why: "running the guest; saving this vCPU's state for a snapshot",
    },
    any(
        libc::SYS_openat,
        "the console log's rotation (a new file at the cap)",
    ),
    any(libc::SYS_rename, "the console log's rotation"),
];
