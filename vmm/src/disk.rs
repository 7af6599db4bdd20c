//! Disk image files on the host: a sparse-aware copy that is whole or
//! absent. The VMM uses it for a point-in-time copy of a running VM's
//! disk ([`crate::Vm::copy_disk`]); the SDK can use the same function for
//! disks of stopped VMs.

use rustix::fs::SeekFrom;
use std::fs::File;
use std::io;
use std::path::Path;

/// Copies `from` to `to`, keeping holes: only the allocated ranges are
/// copied (`SEEK_DATA`/`SEEK_HOLE`, then `copy_file_range`), so a 4 GiB
/// image with 30 MiB in use copies 30 MiB. Written to `<to>.tmp`, synced
/// and renamed over `to` (the directory synced too), so `to` is whole or
/// absent: a failure removes the temporary file. Returns the bytes
/// copied. Errors name the file they are about.
pub fn sparse_copy(from: &Path, to: &Path) -> io::Result<u64> {
    let tmp = tmp_name(to);
    let result = copy_into(from, &tmp).and_then(|copied| {
        std::fs::rename(&tmp, to).map_err(|e| at(to, e))?;
        if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| at(dir, e))?;
        }
        Ok(copied)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn tmp_name(to: &Path) -> std::path::PathBuf {
    let mut name = to.as_os_str().to_owned();
    name.push(".tmp");
    name.into()
}

fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn copy_into(from: &Path, tmp: &Path) -> io::Result<u64> {
    let src = File::open(from).map_err(|e| at(from, e))?;
    let len = src.metadata().map_err(|e| at(from, e))?.len();
    let dst = File::create(tmp).map_err(|e| at(tmp, e))?;
    dst.set_len(len).map_err(|e| at(tmp, e))?;
    let mut copied = 0u64;
    let mut pos = 0u64;
    while pos < len {
        let start = match rustix::fs::seek(&src, SeekFrom::Data(pos)) {
            Ok(p) => p,
            Err(rustix::io::Errno::NXIO) => break, // only a hole remains
            Err(e) => return Err(at(from, e.into())),
        };
        let end = rustix::fs::seek(&src, SeekFrom::Hole(start)).map_err(|e| at(from, e.into()))?;
        let mut done = start;
        while done < end {
            let (mut src_off, mut dst_off) = (done, done);
            let n = rustix::fs::copy_file_range(
                &src,
                Some(&mut src_off),
                &dst,
                Some(&mut dst_off),
                (end - done).min(1 << 30) as usize,
            )
            .map_err(|e| at(tmp, e.into()))?;
            if n == 0 {
                // The file shrank under us: what is left reads as zeros.
                break;
            }
            done += n as u64;
            copied += n as u64;
        }
        pos = end;
    }
    dst.sync_all().map_err(|e| at(tmp, e))?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, Write};
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_copy_keeps_data_and_holes() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.ext4");
        let mut f = File::create(&a).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all(b"head").unwrap();
        f.seek(io::SeekFrom::Start(40 << 20)).unwrap();
        f.write_all(&[7u8; 100_000]).unwrap();
        drop(f);
        let b = dir.path().join("b.ext4");
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
        assert!(!dir.path().join("b.ext4.tmp").exists());
    }

    #[test]
    fn a_failed_copy_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let err = sparse_copy(&dir.path().join("missing"), &dir.path().join("c")).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
        let a = dir.path().join("a");
        std::fs::write(&a, b"x").unwrap();
        assert!(sparse_copy(&a, &dir.path().join("no/such/dir/c")).is_err());
    }
}
