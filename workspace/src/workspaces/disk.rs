//! The /workspace disk: an ext4 image made on the host with `mkfs.ext4
//! -d SEED` (native speed; seeding through the guest would cross the
//! emulated guest kernel at ~1 MiB/s on PVM hosts), and sparse copies of
//! it for snapshots and resets.

use super::store::io_err;
use crate::Error;
use rustix::fs::SeekFrom;
use std::fs::File;
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

/// Copies `from` to `to` (which must not exist), keeping holes: only the
/// allocated ranges are copied (`SEEK_DATA`/`SEEK_HOLE`, then
/// `copy_file_range`), so a 4 GiB image with 30 MiB in use copies 30 MiB.
/// Written to a temporary name, synced and renamed, so `to` is whole or
/// absent.
pub fn sparse_copy(from: &Path, to: &Path) -> Result<u64, Error> {
    let tmp = to.with_extension("tmp");
    let result = (|| {
        let src = File::open(from).map_err(|e| io_err(from, e))?;
        let len = src.metadata().map_err(|e| io_err(from, e))?.len();
        let dst = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
        dst.set_len(len).map_err(|e| io_err(&tmp, e))?;
        let mut copied = 0u64;
        let mut pos = 0u64;
        while pos < len {
            let start = match rustix::fs::seek(&src, SeekFrom::Data(pos)) {
                Ok(p) => p,
                Err(rustix::io::Errno::NXIO) => break, // only a hole remains
                Err(e) => return Err(io_err(from, e.into())),
            };
            let end = rustix::fs::seek(&src, SeekFrom::Hole(start))
                .map_err(|e| io_err(from, e.into()))?;
            let mut at = start;
            while at < end {
                let (mut src_off, mut dst_off) = (at, at);
                let n = rustix::fs::copy_file_range(
                    &src,
                    Some(&mut src_off),
                    &dst,
                    Some(&mut dst_off),
                    (end - at).min(1 << 30) as usize,
                )
                .map_err(|e| io_err(&tmp, e.into()))?;
                if n == 0 {
                    break;
                }
                at += n as u64;
                copied += n as u64;
            }
            pos = end;
        }
        dst.sync_all().map_err(|e| io_err(&tmp, e))?;
        std::fs::rename(&tmp, to).map_err(|e| io_err(to, e))?;
        Ok(copied)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, Write};
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn sparse_copy_keeps_data_and_holes() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let mut f = File::create(&a).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all(b"head").unwrap();
        f.seek(std::io::SeekFrom::Start(40 << 20)).unwrap();
        f.write_all(&[7u8; 100_000]).unwrap();
        drop(f);
        let b = dir.path().join("b");
        let copied = sparse_copy(&a, &b).unwrap();
        assert!(
            copied < 2 << 20,
            "copied {copied} bytes of a mostly empty file"
        );
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let blocks = std::fs::metadata(&b).unwrap().blocks() * 512;
        assert!(
            blocks < 4 << 20,
            "the copy is not sparse: {blocks} bytes allocated"
        );
        assert!(sparse_copy(&a, &dir.path().join("no/such/dir/c")).is_err());
    }
}
