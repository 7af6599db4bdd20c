//! A writable system over the read-only root image: an overlay whose
//! lower layer is the image and whose upper layer is the workspace's
//! system disk (changes persist with the workspace, and checkpoints and
//! resets cover them) or a tmpfs (a one-shot run: changes go with the
//! VM). The overlay becomes `/` by `pivot_root`, with the kernel
//! filesystems, /run and /workspace moved over first.
//!
//! What stays out of reach: PID 1 (this program, the agent included) is
//! started by the kernel from the read-only image before the overlay
//! exists, and is never executed again from it; a command that replaces
//! `/opt/pyro/bin/pyro-init` changes only its own layer, which a reset
//! replaces wholesale, and no later boot runs it.

use super::mounts::{virtio_disk_name, wait_for_disk};
use rustix::fs::{mkdir, Mode};
use rustix::io::Errno;
use rustix::mount::{mount, mount_move, unmount, MountFlags, UnmountFlags};

/// Where the upper layer's filesystem is mounted (moves with /run).
const UPPER_MOUNT: &str = "/run/pyro/upper";
/// The new root is mounted on the image's /mnt, and the old root is put
/// on the overlay's /mnt by `pivot_root`, then detached.
const NEW_ROOT: &str = "/mnt";
/// Mount points carried into the new root, in order (submounts such as
/// /dev/pts move with their parent).
const CARRIED: &[&str] = &["/dev", "/proc", "/sys", "/run", "/tmp", "/workspace"];

/// The upper layer of the writable system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upper<'a> {
    /// An ext4 disk, `/dev/vdX`.
    Disk(&'a str),
    /// A tmpfs in guest memory.
    Tmpfs,
}

impl<'a> Upper<'a> {
    /// `tmpfs` or `/dev/vdX`; None for anything else.
    pub fn parse(value: &'a str) -> Option<Upper<'a>> {
        if value == pyro_proto::cmdline::SYSTEM_TMPFS {
            return Some(Upper::Tmpfs);
        }
        virtio_disk_name(value).map(|_| Upper::Disk(value))
    }
}

/// Whether the system has been made writable (once per boot).
static DONE: std::sync::Mutex<bool> = std::sync::Mutex::new(false);

/// The new root, open, when its upper layer is a disk: what
/// [`upper_on_disk`] hands the agent's sync. Opened once here, so a sync
/// costs one `syncfs` more, not an open and a close too.
static DISK_ROOT: std::sync::OnceLock<rustix::fd::OwnedFd> = std::sync::OnceLock::new();

/// The writable system's root when its upper layer is a disk (`syncfs`
/// on it flushes that disk); None on a read-only root or a tmpfs upper,
/// which have nothing to flush.
pub fn upper_on_disk() -> Option<rustix::fd::BorrowedFd<'static>> {
    use rustix::fd::AsFd;
    DISK_ROOT.get().map(|fd| fd.as_fd())
}

/// Makes `/` an overlay of the image and `upper`; a second call is a
/// no-op. On failure the root stays as it was (read-only) where it can.
pub fn make_writable(upper: Upper<'_>) -> Result<(), String> {
    let mut done = DONE.lock().unwrap_or_else(|p| p.into_inner());
    if *done {
        return Ok(());
    }
    let fail = |what: &str, e: Errno| format!("{what}: {e}");
    mkdir_p(UPPER_MOUNT)?;
    match upper {
        Upper::Disk(device) => {
            wait_for_disk(device)?;
            mount(
                device,
                UPPER_MOUNT,
                "ext4",
                MountFlags::NODEV,
                Some(c"noinit_itable"),
            )
            .map_err(|e| fail(&format!("mount {device} on {UPPER_MOUNT}"), e))?;
        }
        Upper::Tmpfs => mount(
            "system",
            UPPER_MOUNT,
            "tmpfs",
            MountFlags::NODEV,
            Some(c"mode=0755"),
        )
        .map_err(|e| fail("mount the tmpfs upper layer", e))?,
    }
    for dir in ["upper", "work"] {
        match mkdir(format!("{UPPER_MOUNT}/{dir}"), Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(fail(&format!("mkdir {UPPER_MOUNT}/{dir}"), e)),
        }
    }
    let options = std::ffi::CString::new(format!(
        "lowerdir=/,upperdir={UPPER_MOUNT}/upper,workdir={UPPER_MOUNT}/work"
    ))
    .map_err(|e| format!("overlay options: {e}"))?;
    mount(
        "overlay",
        NEW_ROOT,
        "overlay",
        MountFlags::empty(),
        Some(options.as_c_str()),
    )
    .map_err(|e| fail("mount the overlay", e))?;
    for point in CARRIED {
        match mount_move(*point, format!("{NEW_ROOT}{point}")) {
            // EINVAL: not a mount point here (no /workspace mounted yet).
            Ok(()) | Err(Errno::INVAL) => {}
            Err(e) => return Err(fail(&format!("move {point} into the new root"), e)),
        }
    }
    rustix::process::pivot_root(NEW_ROOT, format!("{NEW_ROOT}{NEW_ROOT}"))
        .map_err(|e| fail("pivot_root", e))?;
    rustix::process::chdir("/").map_err(|e| fail("chdir /", e))?;
    // The image stays referenced by the overlay as its lower layer.
    unmount(NEW_ROOT, UnmountFlags::DETACH).map_err(|e| fail("detach the old root", e))?;
    if let Upper::Disk(_) = upper {
        use rustix::fs::{open, OFlags};
        let root = open(
            "/",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail("open the new root", e))?;
        let _ = DISK_ROOT.set(root);
    }
    *done = true;
    Ok(())
}

fn mkdir_p(path: &str) -> Result<(), String> {
    std::fs::create_dir_all(path).map_err(|e| format!("mkdir {path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uppers_parse_and_nothing_else_does() {
        assert_eq!(Upper::parse("tmpfs"), Some(Upper::Tmpfs));
        assert_eq!(Upper::parse("/dev/vdc"), Some(Upper::Disk("/dev/vdc")));
        for bad in [
            "",
            "/dev/sda",
            "/dev/vd",
            "/dev/vdc1",
            "vdc",
            "/tmp/x",
            "later",
        ] {
            assert_eq!(Upper::parse(bad), None, "{bad}");
        }
    }
}
