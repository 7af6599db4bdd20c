//! A workspace's disks: /workspace, an ext4 image made on the host with
//! `mkfs.ext4 -d SEED` (native speed; seeding through the guest would
//! cross the emulated guest kernel at ~1 MiB/s on PVM hosts), and the
//! system disk (an empty ext4 holding the writable system's upper layer);
//! and sparse copies of them for snapshots and resets.

use crate::Error;
use std::path::Path;
use std::process::Command;

/// Makes `disk` (sparse, `size_mib`) holding the tree of `seed`.
pub fn make(disk: &Path, size_mib: u64, seed: &Path) -> Result<(), Error> {
    mkfs(disk, size_mib, "workspace", Some(seed))
}

/// Makes `disk` (sparse, `size_mib`) with an empty /workspace, as
/// [`make`] does from an empty seed: the template new workspaces with no
/// seed copy (see `NewDisks` in `warm.rs`).
pub fn make_empty(disk: &Path, size_mib: u64) -> Result<(), Error> {
    let seed = disk.with_extension("empty-seed");
    let _ = std::fs::remove_dir_all(&seed);
    std::fs::create_dir(&seed).map_err(|e| Error::Io(format!("{}: {e}", seed.display())))?;
    let made = make(disk, size_mib, &seed);
    let _ = std::fs::remove_dir(&seed);
    made
}

/// Makes the empty system disk `disk` (sparse, `size_mib`): the guest
/// makes its `upper` and `work` directories on first use.
pub fn make_system(disk: &Path, size_mib: u64) -> Result<(), Error> {
    mkfs(disk, size_mib, "system", None)
}

fn mkfs(disk: &Path, size_mib: u64, label: &str, seed: Option<&Path>) -> Result<(), Error> {
    let mut cmd = Command::new("mkfs.ext4");
    // Keeps `metadata_csum`, although its crc32c is emulated guest-kernel
    // work on PVM hosts: ext4-view, which reads the disks on the host,
    // needs the journal checksums (`csum_v3`) that come with it.
    cmd.args(["-q", "-F", "-m", "0", "-L", label, "-E"])
        .arg("lazy_itable_init=1,lazy_journal_init=1");
    if let Some(seed) = seed {
        cmd.arg("-d").arg(seed);
    }
    let out = cmd
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
        let from = seed
            .map(|s| format!(" -d {}", s.display()))
            .unwrap_or_default();
        return Err(Error::Io(format!(
            "mkfs.ext4{from} ({label}) failed: {}",
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
