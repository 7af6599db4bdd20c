//! The /workspace disk: an ext4 image made on the host with `mkfs.ext4
//! -d SEED` (native speed; seeding through the guest would cross the
//! emulated guest kernel at ~1 MiB/s on PVM hosts), and sparse copies of
//! it for snapshots and resets.

use crate::Error;
use std::path::Path;
use std::process::Command;

/// Makes `disk` (sparse, `size_mib`) holding the tree of `seed`.
pub fn make(disk: &Path, size_mib: u64, seed: &Path) -> Result<(), Error> {
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-m", "0", "-L", "workspace", "-E"])
        .arg("lazy_itable_init=1,lazy_journal_init=1")
        .arg("-d")
        .arg(seed)
        .arg(disk)
        .arg(format!("{size_mib}M"))
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Io(
                "mkfs.ext4 is missing: install e2fsprogs (apt-get install e2fsprogs)".into(),
            ),
            _ => Error::Io(format!("mkfs.ext4: {e}")),
        })?;
    if !out.status.success() {
        let _ = std::fs::remove_file(disk);
        return Err(Error::Io(format!(
            "mkfs.ext4 -d {} failed: {}",
            seed.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Copies `from` to `to` keeping holes, whole or absent: the VMM's
/// [`pyro_vmm::disk::sparse_copy`], for disks no VM is writing (a
/// running workspace's disk is copied by its VMM, in a freeze).
pub fn sparse_copy(from: &Path, to: &Path) -> Result<u64, Error> {
    pyro_vmm::disk::sparse_copy(from, to).map_err(|e| Error::Io(e.to_string()))
}
