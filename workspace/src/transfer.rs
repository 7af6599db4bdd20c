//! Moving trees between the host and a guest as tar streams: packing a
//! host directory for upload, and unpacking what a guest sends, which is
//! untrusted input (a guest could send `../../etc/passwd` or a symlink
//! followed by a file "inside" it).
//!
//! Both sides stream through a bounded channel between two threads (one
//! packs or unpacks, the other talks to the guest), so no transfer is
//! held whole in memory. Errors travel through the channel too: a packer
//! that fails makes the reader fail, never end early, so a half-packed
//! directory can never pass for a complete archive.

use crate::guest::{GuestClient, GuestError};
use pyro_proto::rpc::{ArtifactType, DownloadResult, UploadResult};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

const CHUNK: usize = 256 << 10;

/// The writing end of a [`pipe`].
pub(crate) struct PipeWriter {
    tx: SyncSender<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
}

/// The reading end of a [`pipe`].
pub(crate) struct PipeReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
}

/// A bounded in-process pipe whose writer can hand the reader an error.
pub(crate) fn pipe() -> (PipeWriter, PipeReader) {
    let (tx, rx) = sync_channel(4);
    (
        PipeWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        },
        PipeReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
        },
    )
}

impl PipeWriter {
    /// Ends the stream with `error` (the reader's next read fails).
    pub(crate) fn fail(self, error: io::Error) {
        let _ = self.tx.send(Err(error));
    }

    /// Ends the stream cleanly.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        self.flush()
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
            self.tx
                .send(Ok(chunk))
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the reader is gone"))?;
        }
        Ok(())
    }
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0), // the writer finished
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Counts from packing a host directory.
#[derive(Debug, Default, Clone, Copy)]
pub struct PackStats {
    pub entries: u64,
    pub bytes: u64,
}

/// Writes the children of `dir` as a tar stream (names relative to `dir`,
/// symlinks stored, not followed). Sockets, fifos and devices are refused:
/// silently leaving files out would surprise whoever relies on the copy.
pub fn pack_dir(dir: &Path, out: impl Write) -> io::Result<PackStats> {
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    let mut stats = PackStats::default();
    pack_children(&mut tar, dir, Path::new(""), &mut stats)?;
    tar.into_inner()?.flush()?;
    Ok(stats)
}

fn pack_children(
    tar: &mut tar::Builder<impl Write>,
    dir: &Path,
    rel: &Path,
    stats: &mut PackStats,
) -> io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| with_path(e, dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .map_err(|e| with_path(e, dir))?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let entry = rel.join(&name);
        let meta = std::fs::symlink_metadata(&path).map_err(|e| with_path(e, &path))?;
        let kind = meta.file_type();
        if kind.is_dir() {
            tar.append_dir(&entry, &path)
                .map_err(|e| with_path(e, &path))?;
            pack_children(tar, &path, &entry, stats)?;
        } else if kind.is_file() || kind.is_symlink() {
            tar.append_path_with_name(&path, &entry)
                .map_err(|e| with_path(e, &path))?;
            stats.bytes += if kind.is_file() { meta.len() } else { 0 };
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: is a socket, fifo or device; only files, directories and symlinks can be copied",
                    path.display()
                ),
            ));
        }
        stats.entries += 1;
    }
    Ok(())
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn refuse(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// A tar entry name as a clean relative path, or an error: absolute
/// names and `..` are refused.
fn clean_name(raw: &[u8]) -> io::Result<PathBuf> {
    let text = String::from_utf8_lossy(raw);
    let path = Path::new(text.as_ref());
    let mut clean = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => clean.push(p),
            Component::CurDir => {}
            _ => {
                return Err(refuse(format!(
                    "its name {text:?} leaves its directory (absolute, or `..`)"
                )))
            }
        }
    }
    Ok(clean)
}

/// Whether a symlink `target` at entry `name` resolves inside the archive.
fn link_inside(name: &Path, target: &Path) -> bool {
    let mut depth = name.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    !target.as_os_str().is_empty()
}

/// Unpacks an untrusted tar stream into `dest`, a directory this process
/// just created and nobody else writes to. Refused: absolute names, `..`,
/// hard links, devices and fifos, symlinks pointing outside, and any
/// entry whose parent is a symlink (that is how an archive writes through
/// a link it planted). Symlinks are checked twice: each as written
/// ([`link_inside`]), then all of them at the end as they resolve in the
/// finished tree, following the others ([`resolves_inside`]): `c ->
/// a/b/..` stays inside as text but not when `a/b -> ..`.
///
/// An error names the entry it met (`archive entry 3 "src/a.rs"`, or the
/// entry after the last good one when a header does not read), and the
/// archive's bytes it quotes are escaped (`\u{1b}`, `\n`).
pub fn unpack_untrusted(tar: impl Read, dest: &Path) -> io::Result<PackStats> {
    let mut archive = tar::Archive::new(tar);
    let mut stats = PackStats::default();
    // Each symlink made: (entry number, name as the archive spells it,
    // path below `dest`), checked once the tree is whole.
    let mut links = Vec::new();
    // The last entry that read; its name as the archive spells it.
    let mut last = String::new();
    let fail = |which: String, e: io::Error| {
        let why = crate::error::printable(&e.to_string());
        io::Error::new(e.kind(), format!("{which}: {why}"))
    };
    let entries = archive
        .entries()
        .map_err(|e| fail("archive entry 1".into(), e))?;
    for (i, entry) in entries.enumerate() {
        let n = i + 1;
        let mut entry = entry.map_err(|e| match last.as_str() {
            "" => fail(format!("archive entry {n}"), e),
            last => fail(format!("archive entry {n} (after {last:?})"), e),
        })?;
        last = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let link = unpack_entry(&mut entry, dest, &mut stats)
            .map_err(|e| fail(format!("archive entry {n} {last:?}"), e))?;
        if let Some(link) = link {
            links.push((n, last.clone(), link));
        }
    }
    for (n, raw, link) in links {
        if !resolves_inside(dest, &link)? {
            return Err(fail(
                format!("archive entry {n} {raw:?}"),
                refuse("a symlink that leads outside the archive through other symlinks".into()),
            ));
        }
    }
    Ok(stats)
}

/// Hops through symlinks one resolution may take before it is refused
/// (the kernel's own limit is 40).
const MAX_LINK_HOPS: u32 = 40;

/// Whether the symlink at `link` (relative to `dest`) resolves inside
/// `dest`, following the symlinks of the tree it meets on the way, as
/// the kernel would. Missing components count as directories (a link
/// may dangle inside the tree). Reads only link metadata and targets
/// under `dest`; never follows a link outside it.
fn resolves_inside(dest: &Path, link: &Path) -> io::Result<bool> {
    let mut at: Vec<std::ffi::OsString> = link
        .parent()
        .into_iter()
        .flat_map(|p| p.components())
        .map(|c| c.as_os_str().to_owned())
        .collect();
    let target = std::fs::read_link(dest.join(link))?;
    let mut hops = 0;
    walk(dest, &mut at, &target, &mut hops)
}

/// Moves `at` (components below `dest`) along `target`; false once it
/// would leave `dest` or take more than [`MAX_LINK_HOPS`] hops.
fn walk(
    dest: &Path,
    at: &mut Vec<std::ffi::OsString>,
    target: &Path,
    hops: &mut u32,
) -> io::Result<bool> {
    for c in target.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if at.pop().is_none() {
                    return Ok(false);
                }
            }
            Component::RootDir | Component::Prefix(_) => return Ok(false),
            Component::Normal(part) => {
                let here: PathBuf = dest
                    .iter()
                    .chain(at.iter().map(|p| p.as_os_str()))
                    .collect();
                let next = here.join(part);
                match std::fs::symlink_metadata(&next) {
                    Ok(m) if m.file_type().is_symlink() => {
                        *hops += 1;
                        if *hops > MAX_LINK_HOPS {
                            return Ok(false);
                        }
                        let inner = std::fs::read_link(&next)?;
                        if !walk(dest, at, &inner, hops)? {
                            return Ok(false);
                        }
                    }
                    Ok(_) => at.push(part.to_owned()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => at.push(part.to_owned()),
                    Err(e) => return Err(with_path(e, &next)),
                }
            }
        }
    }
    Ok(true)
}

/// One entry of [`unpack_untrusted`]; the path (below `dest`) of the
/// symlink it made, if it made one.
fn unpack_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    dest: &Path,
    stats: &mut PackStats,
) -> io::Result<Option<PathBuf>> {
    let name = clean_name(&entry.path_bytes())?;
    if name.as_os_str().is_empty() {
        return Ok(None);
    }
    // Every ancestor must be a real directory (or not exist yet).
    let mut at = dest.to_path_buf();
    for part in name.parent().into_iter().flat_map(|p| p.components()) {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(refuse("goes through a non-directory".into())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir(&at).map_err(|e| with_path(e, &at))?
            }
            Err(e) => return Err(with_path(e, &at)),
        }
    }
    let path = dest.join(&name);
    let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
    use std::os::unix::fs::PermissionsExt;
    match entry.header().entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| with_path(e, &path))?;
            stats.bytes += io::copy(entry, &mut file)?;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        tar::EntryType::Directory => match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => {}
            Err(e) => return Err(with_path(e, &path)),
        },
        tar::EntryType::Symlink => {
            let target = entry
                .link_name()?
                .map(|t| t.into_owned())
                .unwrap_or_default();
            if !link_inside(&name, &target) {
                return Err(refuse(format!(
                    "a symlink to {:?}, which points outside the archive",
                    target.display().to_string()
                )));
            }
            std::os::unix::fs::symlink(&target, &path).map_err(|e| with_path(e, &path))?;
            stats.entries += 1;
            return Ok(Some(name));
        }
        other => {
            return Err(refuse(format!(
                "has a type that is not copied out ({other:?})"
            )))
        }
    }
    stats.entries += 1;
    Ok(None)
}

/// Runs `pump(writer)` on a thread and `consume(reader)` here.
fn through_pipe<T, U>(
    pump: impl FnOnce(&mut PipeWriter) -> io::Result<T> + Send,
    consume: impl FnOnce(&mut PipeReader) -> Result<U, GuestError>,
) -> Result<(T, U), GuestError>
where
    T: Send,
{
    let (mut writer, mut reader) = pipe();
    std::thread::scope(|scope| {
        let pumped = scope.spawn(move || match pump(&mut writer) {
            Ok(t) => writer.finish().map(|_| t),
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                writer.fail(e);
                Err(copy)
            }
        });
        let consumed = consume(&mut reader);
        drop(reader); // unblocks a pump whose consumer stopped early
        let pumped = pumped
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("transfer thread panicked")));
        match (pumped, consumed) {
            (Ok(t), Ok(u)) => Ok((t, u)),
            (Err(e), _) => Err(GuestError::Source(e)),
            (_, Err(e)) => Err(e),
        }
    })
}

impl GuestClient {
    /// Copies the children of the host directory `dir` into the guest
    /// directory `dest` (created if missing), all or nothing.
    pub fn upload_dir(&mut self, dir: &Path, dest: &str) -> Result<UploadResult, GuestError> {
        let (_, result) = through_pipe(|w| pack_dir(dir, w), |r| self.upload(dest, r))?;
        Ok(result)
    }

    /// Copies a guest file, directory or symlink to the host path `out`,
    /// which must not exist. The copy is assembled beside `out` and
    /// renamed into place, so a failure leaves nothing at `out`.
    pub fn export(&mut self, path: &str, out: &Path) -> Result<DownloadResult, GuestError> {
        export_with(path, out, |w| self.download(path, w), || Ok(()))
    }
}

/// An export of `path` to the host path `out` (which must not exist)
/// from the tar stream `produce` writes, unpacked as untrusted
/// ([`unpack_untrusted`]) beside `out`. `commit` runs once the stream
/// is whole and before the copy is renamed into place; its error, like
/// any other, leaves nothing at `out`.
pub(crate) fn export_with(
    path: &str,
    out: &Path,
    produce: impl FnOnce(&mut PipeWriter) -> Result<DownloadResult, GuestError>,
    commit: impl FnOnce() -> Result<(), GuestError>,
) -> Result<DownloadResult, GuestError> {
    if std::fs::symlink_metadata(out).is_ok() {
        return Err(GuestError::Sink(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{}: already exists; choose another output path",
                out.display()
            ),
        )));
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let staging = tempfile_dir(&parent).map_err(GuestError::Sink)?;
    let result = (|| {
        let (_, result) = through_pipe_sink(|r| unpack_untrusted(r, &staging), produce)?;
        commit()?;
        let from = if result.artifact_type == ArtifactType::Directory {
            staging.clone()
        } else {
            let base = path.rsplit('/').find(|p| !p.is_empty()).unwrap_or(path);
            staging.join(base)
        };
        std::fs::rename(&from, out).map_err(|e| GuestError::Sink(with_path(e, out)))?;
        Ok(result)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// Like [`through_pipe`], but the guest side writes and a thread reads.
fn through_pipe_sink<T: Send, U>(
    drain: impl FnOnce(&mut PipeReader) -> io::Result<T> + Send,
    produce: impl FnOnce(&mut PipeWriter) -> Result<U, GuestError>,
) -> Result<(T, U), GuestError> {
    let (mut writer, mut reader) = pipe();
    std::thread::scope(|scope| {
        let drained = scope.spawn(move || {
            let r = drain(&mut reader);
            // Keep reading so the producer never blocks on a full pipe.
            let _ = io::copy(&mut reader, &mut io::sink());
            r
        });
        let produced = produce(&mut writer);
        let produced = match produced {
            Ok(u) => writer.finish().map(|_| u).map_err(GuestError::Sink),
            Err(e) => {
                writer.fail(io::Error::other("the guest transfer failed"));
                Err(e)
            }
        };
        let drained = drained
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("transfer thread panicked")));
        match (produced, drained) {
            (Ok(u), Ok(t)) => Ok((t, u)),
            (Err(e), _) => Err(e),
            (_, Err(e)) => Err(GuestError::Sink(e)),
        }
    })
}

/// A new empty directory in `parent` with an unlikely name.
fn tempfile_dir(parent: &Path) -> io::Result<PathBuf> {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    for attempt in 0..100u32 {
        let dir = parent.join(format!(
            ".pyro-export-{}-{nanos:x}-{attempt}",
            std::process::id()
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(with_path(e, &dir)),
        }
    }
    Err(io::Error::other("could not create a staging directory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    /// A raw tar with one entry, bypassing the tar crate's own checks on
    /// names (an attacker's archive would).
    fn raw_tar(name: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]) -> Vec<u8> {
        raw_tars(&[(name, kind, link)], data)
    }

    /// A raw tar of `entries` (name, type, link target), each holding
    /// `data`, bypassing the tar crate's own checks on names.
    fn raw_tars(entries: &[(&str, tar::EntryType, Option<&str>)], data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(name, kind, link) in entries {
            out.extend(raw_entry(name, kind, link, data));
        }
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    fn raw_entry(name: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]) -> Vec<u8> {
        let mut header = tar::Header::new_old();
        let bytes = header.as_old_mut();
        bytes.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            bytes.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        let mut out = header.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    #[test]
    fn pack_then_unpack_round_trips_files_modes_links_and_empty_dirs() {
        use std::os::unix::fs::PermissionsExt;
        let src = tmp();
        std::fs::create_dir_all(src.path().join("a/b")).unwrap();
        std::fs::create_dir(src.path().join("empty")).unwrap();
        std::fs::write(src.path().join("a/b/f.txt"), b"hello").unwrap();
        std::fs::write(src.path().join("run.sh"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            src.path().join("run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::os::unix::fs::symlink("a/b/f.txt", src.path().join("link")).unwrap();
        let mut tar = Vec::new();
        let packed = pack_dir(src.path(), &mut tar).unwrap();
        assert_eq!(packed.entries, 6);
        assert_eq!(packed.bytes, 15);

        let dst = tmp();
        let out = unpack_untrusted(&tar[..], dst.path()).unwrap();
        assert_eq!(out.entries, 6);
        assert_eq!(
            std::fs::read(dst.path().join("a/b/f.txt")).unwrap(),
            b"hello"
        );
        assert!(dst.path().join("empty").is_dir());
        let mode = std::fs::metadata(dst.path().join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            std::fs::read_link(dst.path().join("link")).unwrap(),
            Path::new("a/b/f.txt")
        );
    }

    #[test]
    fn hostile_archives_are_refused() {
        use tar::EntryType as T;
        for (name, kind, link) in [
            ("../evil", T::Regular, None),
            ("/etc/evil", T::Regular, None),
            ("a/../../evil", T::Regular, None),
            ("l", T::Symlink, Some("/etc")),
            ("l", T::Symlink, Some("../outside")),
            ("h", T::Link, Some("/etc/passwd")),
            ("dev", T::Char, None),
            ("fifo", T::Fifo, None),
        ] {
            let dst = tmp();
            let tar = raw_tar(name, kind, link, b"x");
            let err = unpack_untrusted(&tar[..], dst.path()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{name}: {err}");
            assert!(
                std::fs::read_dir(dst.path()).unwrap().next().is_none(),
                "{name}: left something behind"
            );
        }
    }

    /// D5: each link stays inside as text; `c` leaves through `a/b`.
    #[test]
    fn a_symlink_leaving_through_another_symlink_is_refused() {
        use tar::EntryType as T;
        let tar = raw_tars(
            &[
                ("a/", T::Directory, None),
                ("c", T::Symlink, Some("a/b/..")),
                ("a/b", T::Symlink, Some("..")),
            ],
            b"",
        );
        let dst = tmp();
        let err = unpack_untrusted(&tar[..], dst.path()).unwrap_err();
        assert!(err.to_string().contains("\"c\""), "{err}");
        assert!(err.to_string().contains("through other symlinks"), "{err}");

        // Links that stay inside through others, a dangling one, and a
        // loop (refused: it never resolves).
        let ok = raw_tars(
            &[
                ("a/", T::Directory, None),
                ("a/up", T::Symlink, Some("..")),
                ("x", T::Symlink, Some("a/up/a")),
                ("dangling", T::Symlink, Some("a/missing/file")),
            ],
            b"",
        );
        let dst = tmp();
        unpack_untrusted(&ok[..], dst.path()).expect("links inside");
        let looped = raw_tars(
            &[
                ("p", T::Symlink, Some("q/x")),
                ("q", T::Symlink, Some("p/x")),
            ],
            b"",
        );
        let dst = tmp();
        assert!(unpack_untrusted(&looped[..], dst.path()).is_err());
    }

    #[test]
    fn a_file_through_a_planted_symlink_is_refused() {
        let mut tar = raw_tar("d", tar::EntryType::Symlink, Some("."), b"");
        tar.truncate(tar.len() - 1024);
        tar.extend(raw_tar("d/f", tar::EntryType::Regular, None, b"x"));
        let dst = tmp();
        let err = unpack_untrusted(&tar[..], dst.path()).unwrap_err();
        assert!(err.to_string().contains("non-directory"), "{err}");
        assert!(!dst.path().join("f").exists());
    }

    #[test]
    fn tar_errors_name_the_entry_and_escape_its_bytes() {
        let mut tar = raw_tar("ok.txt", tar::EntryType::Regular, None, b"x");
        tar.truncate(tar.len() - 1024);
        // A second header of text with a terminal escape in it.
        let mut junk = b"\x1b[31mred\nnot a header ".repeat(20);
        junk.truncate(512);
        tar.extend(junk);
        let err = unpack_untrusted(&tar[..], tmp().path())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("archive entry 2 (after \"ok.txt\"): "),
            "{err}"
        );
        assert!(!err.chars().any(char::is_control), "{err:?}");

        let tar = raw_tar("bad\x1b]0;x\x07", tar::EntryType::Fifo, None, b"");
        let err = unpack_untrusted(&tar[..], tmp().path())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("archive entry 1 \"bad\\u{1b}]0;x\\u{7}\": has a type"),
            "{err}"
        );
    }

    #[test]
    fn a_failing_writer_fails_the_reader_instead_of_ending_it() {
        let (mut w, mut r) = pipe();
        let t = std::thread::spawn(move || {
            w.write_all(b"partial").unwrap();
            w.flush().unwrap();
            w.fail(io::Error::other("disk gone"));
        });
        let mut got = Vec::new();
        let err = r.read_to_end(&mut got).unwrap_err();
        assert_eq!(got, b"partial");
        assert!(err.to_string().contains("disk gone"));
        t.join().unwrap();
    }
}
