//! The kernel filesystems every guest process expects.

use super::log;
use rustix::fs::{mkdir, Mode};
use rustix::io::Errno;
use rustix::mount::{mount, MountFlags};

struct Mount {
    target: &'static str,
    fstype: &'static str,
    flags: MountFlags,
    data: &'static std::ffi::CStr,
}

const NOSUID_NODEV: MountFlags = MountFlags::NOSUID.union(MountFlags::NODEV);
const NOSUID_NOEXEC: MountFlags = MountFlags::NOSUID.union(MountFlags::NOEXEC);

/// In order: later targets live inside earlier ones.
const MOUNTS: &[Mount] = &[
    Mount {
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV.union(MountFlags::NOEXEC),
        data: c"",
    },
    Mount {
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV.union(MountFlags::NOEXEC),
        data: c"",
    },
    // The kernel mounts devtmpfs itself (CONFIG_DEVTMPFS_MOUNT); EBUSY is fine.
    Mount {
        target: "/dev",
        fstype: "devtmpfs",
        flags: MountFlags::NOSUID,
        data: c"mode=0755",
    },
    Mount {
        target: "/dev/pts",
        fstype: "devpts",
        flags: NOSUID_NOEXEC,
        data: c"gid=5,mode=0620,ptmxmode=0666",
    },
    Mount {
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: c"mode=1777",
    },
    Mount {
        target: "/run",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: c"mode=0755",
    },
    Mount {
        target: "/tmp",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: c"mode=1777",
    },
];

/// Mounts [`MOUNTS`]; a failure is logged and start-up goes on.
pub fn mount_kernel_filesystems() {
    for m in MOUNTS {
        // Mount points under /dev live on devtmpfs and do not exist yet.
        if m.target.starts_with("/dev/") {
            let _ = mkdir(m.target, Mode::from_raw_mode(0o755));
        }
        match mount(m.fstype, m.target, m.fstype, m.flags, Some(m.data)) {
            Ok(()) | Err(Errno::BUSY) => {}
            Err(e) => log(&format!("mount {} ({}): {e}", m.target, m.fstype)),
        }
    }
}

/// Mounts /workspace: the ext4 disk `device` if given, else a tmpfs.
/// Failure is logged; file requests then fail with a clear error.
pub fn mount_workspace(device: Option<&str>) {
    let target = pyro_guest_init::proto::rpc::WORKSPACE;
    let result = match device {
        // noinit_itable: mkfs ran lazily on the host, and the guest must
        // not spend emulated kernel time zeroing inode tables behind our back.
        Some(dev) => mount(dev, target, "ext4", NOSUID_NODEV, Some(c"noinit_itable")),
        None => mount(
            "workspace",
            target,
            "tmpfs",
            NOSUID_NODEV,
            Some(c"mode=0755"),
        ),
    };
    if let Err(e) = result {
        log(&format!(
            "mount {target} ({}): {e}",
            device.unwrap_or("tmpfs")
        ));
    }
}
