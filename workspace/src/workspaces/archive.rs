//! Host tar archives a caller gives: a seed (`create --seed-path`) or a
//! `sync push` source. Opened gunzipped when named `.gz` or `.tgz`; a
//! seed is checked before any workspace state is made.

use crate::error::printable;
use crate::Error;
use std::io::{self, Read};
use std::path::Path;

/// What a seed may be, for the messages that refuse one.
const SEED_RULE: &str =
    "a seed is a host directory, or a tar archive of one (.tar, .tar.gz or .tgz)";

/// The host tar file `path` as a stream, gunzipped if it is named so.
pub(super) fn open(path: &Path) -> io::Result<Box<dyn Read>> {
    let file = std::fs::File::open(path)?;
    let name = path.to_string_lossy();
    Ok(if name.ends_with(".gz") || name.ends_with(".tgz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(io::BufReader::new(file))
    })
}

/// `seed_path`: a directory, or a file whose first tar header reads
/// (an empty archive is an empty seed).
pub(super) fn check_seed(seed: &Path) -> Result<(), Error> {
    let refuse = |why: String| {
        Err(Error::InvalidArgument(format!(
            "seed_path {}: {why}; {SEED_RULE}",
            seed.display()
        )))
    };
    match std::fs::metadata(seed) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => refuse("no such file or directory".into()),
        Err(e) => refuse(e.to_string()),
        Ok(m) if m.is_dir() => Ok(()),
        Ok(m) if !m.is_file() => refuse("not a directory or a regular file".into()),
        Ok(_) => {
            let first = open(seed).and_then(|r| {
                let mut archive = tar::Archive::new(r);
                let first = archive.entries()?.next();
                first.transpose().map(|_| ())
            });
            match first {
                Ok(()) => Ok(()),
                Err(e) => refuse(format!(
                    "not a tar archive (reading its first header: {})",
                    printable(&e.to_string())
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_is_a_directory_or_a_tar_archive() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_seed(dir.path()).is_ok());
        let plain = dir.path().join("notes.txt");
        std::fs::write(&plain, "hello\n").unwrap();
        let e = check_seed(&plain).unwrap_err();
        assert_eq!(e.kind(), "invalid_argument");
        assert!(e.to_string().contains("not a tar archive"), "{e}");
        assert!(e.to_string().contains(SEED_RULE), "{e}");
        let e = check_seed(&dir.path().join("nope")).unwrap_err();
        assert!(e.to_string().contains("no such file or directory"), "{e}");

        let tar = dir.path().join("seed.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&tar).unwrap());
        b.append_path_with_name(&plain, "notes.txt").unwrap();
        b.finish().unwrap();
        drop(b);
        assert!(check_seed(&tar).is_ok());
        // Named .tgz but not gzip.
        let fake = dir.path().join("seed.tgz");
        std::fs::copy(&tar, &fake).unwrap();
        assert!(check_seed(&fake).is_err());
    }
}
