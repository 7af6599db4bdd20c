//! The console log file, capped and rotated.
//!
//! The guest decides how much it prints, for as long as it runs: a loop
//! writing to /dev/console adds about 12 kB/s. So the log holds at most
//! `max_bytes`; the byte that would go past it first moves the file to
//! `<log>.1` (replacing the one before) and starts an empty one. On disk
//! a VM's console costs at most two files of `max_bytes`, whatever the
//! guest does. Writing never fails towards the guest and never waits on
//! anything but the local file: bytes the host cannot store are dropped.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The console log of one VM.
pub struct ConsoleLog {
    path: PathBuf,
    /// `None` after a rotation could not create the new file: bytes are
    /// dropped (and counted) until the next rotation tries again.
    file: Option<File>,
    /// Bytes in the current file.
    written: u64,
    max_bytes: u64,
}

impl ConsoleLog {
    /// The cap a VM gets unless its config says otherwise: 4 MiB (about
    /// 6 minutes of a guest printing without pause, many boots' worth).
    pub const DEFAULT_MAX_BYTES: u64 = 4 << 20;

    /// Creates (or truncates) `path`, holding at most `max_bytes` (at
    /// least 1), and removes a `<path>.1` left by an earlier VM.
    pub fn create(path: &Path, max_bytes: u64) -> std::io::Result<Self> {
        let file = File::create(path)?;
        let _ = std::fs::remove_file(rotated(path));
        Ok(Self {
            path: path.to_path_buf(),
            file: Some(file),
            written: 0,
            max_bytes: max_bytes.max(1),
        })
    }

    /// Appends `buf`, rotating as often as the cap requires.
    pub fn write(&mut self, mut buf: &[u8]) {
        while !buf.is_empty() {
            if self.written >= self.max_bytes {
                self.rotate();
            }
            let room = self.max_bytes - self.written;
            let n = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
            if let Some(file) = self.file.as_mut() {
                // A full disk must not stop the guest: drop the bytes.
                let _ = file.write_all(&buf[..n]);
            }
            self.written += n as u64;
            buf = &buf[n..];
        }
    }

    /// `<log>` becomes `<log>.1`, and `<log>` starts empty.
    fn rotate(&mut self) {
        self.file = None;
        // If the rename fails, the create below truncates the full file:
        // the bound holds either way.
        let _ = std::fs::rename(&self.path, rotated(&self.path));
        self.file = File::create(&self.path).ok();
        self.written = 0;
    }
}

/// Where a full log goes: `<path>.1`.
pub fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    #[test]
    fn rotates_at_the_cap_and_keeps_one_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let mut log = ConsoleLog::create(&path, 10).unwrap();
        log.write(b"0123456");
        assert_eq!(read(&path), "0123456");
        assert!(!rotated(&path).exists());
        // Fills the file to the cap, then rotates for the rest.
        log.write(b"789abc");
        assert_eq!(read(&rotated(&path)), "0123456789");
        assert_eq!(read(&path), "abc");
        // A write of several caps at once: only the last two stay.
        log.write(b"defghijklmnopqrstuvwxyz");
        assert_eq!(read(&rotated(&path)), "klmnopqrst");
        assert_eq!(read(&path), "uvwxyz");
        // One byte at a time, as the UART writes.
        for b in b"ABCDEFGHIJ" {
            log.write(&[*b]);
        }
        assert_eq!(read(&rotated(&path)), "uvwxyzABCD");
        assert_eq!(read(&path), "EFGHIJ");
    }

    #[test]
    fn a_new_log_starts_empty_without_an_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let mut log = ConsoleLog::create(&path, 4).unwrap();
        log.write(b"first boot");
        assert!(rotated(&path).exists());
        drop(log);
        let mut log = ConsoleLog::create(&path, 4).unwrap();
        assert!(!rotated(&path).exists());
        log.write(b"ok");
        assert_eq!(read(&path), "ok");
    }

    #[test]
    fn a_zero_cap_still_bounds_and_terminates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let mut log = ConsoleLog::create(&path, 0).unwrap();
        log.write(b"abc");
        assert_eq!(
            (read(&rotated(&path)), read(&path)),
            ("b".into(), "c".into())
        );
    }

    #[test]
    fn a_log_whose_directory_went_away_drops_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("vm");
        std::fs::create_dir(&sub).unwrap();
        let path = sub.join("console.log");
        let mut log = ConsoleLog::create(&path, 4).unwrap();
        std::fs::remove_dir_all(&sub).unwrap();
        // Rotations fail to create the file; writing goes on regardless.
        log.write(&[b'x'; 100]);
        assert!(!path.exists());
    }
}
