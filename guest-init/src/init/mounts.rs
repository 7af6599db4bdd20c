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

/// How old (centiseconds) written data may get in the page cache before
/// the kernel's flusher writes it out: 5 s, not the kernel's 30 s. The
/// flusher wakes every 5 s for as long as anything is dirty, and each
/// wake costs 20-50 ms of emulated kernel work on PVM hosts, so after a
/// write a guest otherwise idle woke six times over 30 s; now once or
/// twice. What a killed VMM can lose of writes outside /workspace (the
/// agent flushes /workspace itself) shrinks the same way.
const DIRTY_EXPIRE_CENTISECS: &str = "500";

/// Writeback settings (see [`DIRTY_EXPIRE_CENTISECS`]); needs /proc.
/// Failures are logged: the kernel's defaults still work.
pub fn tune_writeback() {
    let path = "/proc/sys/vm/dirty_expire_centisecs";
    if let Err(e) = std::fs::write(path, DIRTY_EXPIRE_CENTISECS) {
        log(&format!("{path}: {e}"));
    }
}

/// Mounts /workspace: the ext4 disk `device` if given, else a tmpfs.
/// On failure, file requests fail with a clear error later.
pub fn mount_workspace(device: Option<&str>) -> Result<(), String> {
    let target = pyro_proto::rpc::WORKSPACE;
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
    result.map_err(|e| format!("mount {target} ({}): {e}", device.unwrap_or("tmpfs")))?;
    if device.is_some() {
        // What a VM killed mid-write left half-made; before any request.
        // A failure is logged, not fatal: the disk is mounted and usable.
        if let Err(e) = super::files::sweep_staging() {
            log(&format!(
                "{target}: emptying {}: {}",
                super::files::STAGING,
                e.message
            ));
        }
    }
    Ok(())
}

/// Whether [`mount_attached_workspace`] has mounted its disk.
static ATTACHED: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Mounts the disk `device` (`/dev/vdX`), attached to this VM at restore
/// in place of the empty one the snapshot was taken with, on
/// /workspace. The kernel learns the disk's new size from a config
/// interrupt handled on a work queue, so this waits (bounded) until
/// `/sys/block/vdX/size` is no longer zero. Asking again for the same
/// disk is a no-op; for another one, an error.
pub fn mount_attached_workspace(device: &str) -> Result<(), String> {
    let mut attached = ATTACHED.lock().unwrap_or_else(|p| p.into_inner());
    match attached.as_deref() {
        Some(d) if d == device => return Ok(()),
        Some(d) => return Err(format!("/workspace already holds {d}")),
        None => {}
    }
    wait_for_disk(device)?;
    mount_workspace(Some(device))?;
    *attached = Some(device.to_string());
    Ok(())
}

/// Waits (bounded) until the virtio disk `device` (`/dev/vdX`), attached
/// at restore in place of an empty one, has a size: the kernel learns it
/// from a config interrupt handled on a work queue.
pub fn wait_for_disk(device: &str) -> Result<(), String> {
    let name = virtio_disk_name(device)
        .ok_or_else(|| format!("{device:?} is not a virtio disk (/dev/vdX)"))?;
    let size_file = format!("/sys/block/{name}/size");
    let started = std::time::Instant::now();
    loop {
        let size = std::fs::read_to_string(&size_file).map_err(|e| format!("{size_file}: {e}"))?;
        if size.trim() != "0" {
            return Ok(());
        }
        if started.elapsed() > std::time::Duration::from_secs(10) {
            return Err(format!(
                "{device} still has size 0 after 10 s: the host's disk was not seen"
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// `vdX` of a whole virtio disk `/dev/vdX`; None for anything else.
pub fn virtio_disk_name(device: &str) -> Option<&str> {
    device.strip_prefix("/dev/").filter(|n| {
        n.len() >= 3 && n.starts_with("vd") && n.bytes().all(|b| b.is_ascii_lowercase())
    })
}
