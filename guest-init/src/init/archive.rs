//! Archive requests: unpack a tar stream into /workspace (all or nothing)
//! and pack a path as a tar stream. Both stream: neither holds more than a
//! chunk of the archive in guest memory.
//!
//! Upload unpacks into a directory of its own in /workspace's staging
//! directory ([`files::STAGING`], swept at every mount, so a VM killed
//! mid-upload leaves nothing in the destination), so a broken or refused
//! archive leaves the destination as it was, then moves it into place:
//! a destination that did not exist is the staged directory, renamed;
//! into an existing one the staged entries move with `rename`
//! (directories merge, files replace). Every entry is created beneath the staging directory
//! with `openat2(RESOLVE_BENEATH)`, so even a symlink planted by an
//! earlier entry cannot redirect a later one outside it; entries that
//! would need that are refused up front anyway.

use super::files::{self, fs_error, open_beneath, remove_tree, Walk};
use super::RpcError;
use pyro_proto::rpc::{
    self, workspace_absolute, ArtifactType, DownloadResult, Event, Reply, UploadResult,
};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{
    fchmod, fstat, linkat, mkdirat, openat, renameat, renameat_with, statat, symlinkat, unlinkat,
    AtFlags, Dir, FileType, Mode, OFlags, RenameFlags,
};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;

/// Checks an entry name: relative, no `..`; returns its clean form
/// (`""` for the archive root itself, which tar writes as `./`).
fn entry_name(raw: &[u8]) -> Result<String, RpcError> {
    let refuse = |why: &str| {
        Err(RpcError::new(
            "invalid_archive",
            format!("entry {:?} {why}", String::from_utf8_lossy(raw)),
        ))
    };
    let Ok(name) = std::str::from_utf8(raw) else {
        return refuse("is not valid UTF-8");
    };
    if name.starts_with('/') {
        return refuse("has an absolute path");
    }
    match rpc::clean_relative(name) {
        Some(clean) => Ok(clean),
        None => refuse("contains '..'"),
    }
}

/// Whether the symlink `target`, placed at `name`, stays inside the
/// archive root when resolved as written.
fn link_stays_inside(name: &str, target: &str) -> bool {
    if target.starts_with('/') || target.is_empty() {
        return false;
    }
    let mut depth = name.matches('/').count() as i64; // the link's directory
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => depth += 1,
        }
    }
    true
}

/// What one upload wrote.
#[derive(Default)]
struct Tally {
    entries: u64,
    bytes: u64,
}

pub fn upload(dest: &str, body: &mut impl Read) -> Result<Reply, RpcError> {
    let rel = files::relative(dest)?;
    let root = files::root()?;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY;
    let existing = match open_beneath(&root, &rel, flags, 0) {
        Ok(fd) => Some(fd),
        Err(e) if e.kind == "not_found" => None,
        Err(e) => return Err(e),
    };
    // A new destination is the staged tree itself, moved into place with
    // one rename; an existing one takes the staged entries one by one
    // (each rename ~50 ms of emulated ext4 work on PVM hosts).
    let (dest_fd, new_at) = match existing {
        Some(fd) => (fd, None),
        None => {
            let (parent, name) = files::open_parent(&root, &rel, true)?;
            (open_beneath(&parent, "", flags, 0)?, Some(name))
        }
    };
    let staging = files::Staging::open(&root)?;
    let stage_dir = staging.for_dir(&dest_fd)?;
    let staging = files::temp_name("upload");
    mkdirat(&stage_dir, staging.as_str(), Mode::from_raw_mode(0o755))
        .map_err(|e| fs_error(e, &rel))?;
    let mut moved = false;
    let result = (|| {
        let stage = open_beneath(&stage_dir, &staging, OFlags::PATH | OFlags::DIRECTORY, 0)?;
        let tally = unpack(&stage, body)?;
        if let Some(name) = new_at {
            // `dest_fd` is the new directory's parent here.
            match renameat_with(&stage_dir, &staging, &dest_fd, name, RenameFlags::NOREPLACE) {
                Ok(()) => {
                    moved = true;
                    return Ok(tally);
                }
                // Made meanwhile: merge into it as into any other.
                Err(Errno::EXIST) => {}
                Err(e) => return Err(fs_error(e, &rel)),
            }
        }
        // An existing destination is `dest_fd` itself (opened once).
        let made_meanwhile;
        let dest = match new_at {
            Some(_) => {
                made_meanwhile = open_beneath(&root, &rel, flags, 0)?;
                &made_meanwhile
            }
            None => &dest_fd,
        };
        // Check every clash before moving anything, then move.
        merge(&stage, dest, &rel, true)?;
        merge(&stage, dest, &rel, false)?;
        Ok(tally)
    })();
    let cleaned = match moved {
        true => Ok(()),
        false => remove_tree(stage_dir.as_fd(), &staging, files::STAGING),
    };
    let tally = result?;
    cleaned?;
    // Unpacked without a sync per file; one for all before the reply.
    files::sync_workspace()?;
    Ok(Reply::Upload(UploadResult {
        dest: workspace_absolute(&rel),
        entry_count: tally.entries,
        bytes_written: tally.bytes,
    }))
}

fn unpack(stage: &OwnedFd, body: &mut impl Read) -> Result<Tally, RpcError> {
    let bad = |e: std::io::Error| {
        RpcError::new("invalid_archive", format!("not a valid tar stream: {e}"))
    };
    let mut archive = tar::Archive::new(body);
    let mut tally = Tally::default();
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let name = entry_name(&entry.path_bytes())?;
        let header = entry.header();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let kind = header.entry_type();
        if name.is_empty() {
            continue; // "./": the destination itself
        }
        let (parent_rel, base) = name.rsplit_once('/').unwrap_or(("", &name));
        let parent = files::mkdir_all(stage, parent_rel)?;
        let at = |e: Errno| fs_error(e, &name);
        use tar::EntryType as T;
        match kind {
            T::Regular | T::Continuous => {
                let fd = create_file(&parent, base, mode).map_err(at)?;
                let mut file = File::from(fd);
                let size = entry.size();
                let n = super::direct::copy_to_new_file(&mut entry, &mut file, Some(size))
                    .map_err(|e| RpcError::io(&name, e))?;
                tally.bytes += n;
            }
            T::Directory => match mkdirat(&parent, base, Mode::from_raw_mode(mode | 0o700)) {
                Ok(()) | Err(Errno::EXIST) => {
                    let dir = open_beneath(&parent, base, OFlags::RDONLY | OFlags::DIRECTORY, 0)?;
                    if mode & 0o022 != 0 || mode & 0o700 != 0o700 {
                        fchmod(&dir, Mode::from_raw_mode(mode)).map_err(at)?;
                    }
                }
                Err(e) => return Err(at(e)),
            },
            T::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                if !link_stays_inside(&name, &target) {
                    return Err(RpcError::new(
                        "invalid_archive",
                        format!("symlink {name:?} -> {target:?} points outside the archive"),
                    ));
                }
                replace(&parent, base, |p, b| symlinkat(target.as_str(), p, b)).map_err(at)?;
            }
            T::Link => {
                let target = entry_name(&entry.link_name_bytes().unwrap_or_default())?;
                let (t_parent, t_base) = target.rsplit_once('/').unwrap_or(("", &target));
                let t_dir = open_beneath(stage, t_parent, OFlags::PATH | OFlags::DIRECTORY, 0)?;
                replace(&parent, base, |p, b| {
                    linkat(&t_dir, t_base, p, b, AtFlags::empty())
                })
                .map_err(at)?;
            }
            T::Char | T::Block | T::Fifo => {
                return Err(RpcError::new(
                    "invalid_archive",
                    format!("entry {name:?} is a device or fifo; archives may hold only files, directories and links"),
                ));
            }
            other => {
                return Err(RpcError::new(
                    "invalid_archive",
                    format!("entry {name:?} has an unsupported type {other:?}"),
                ));
            }
        }
        tally.entries += 1;
    }
    Ok(tally)
}

/// Creates (or truncates) a regular file with `mode`, never through a
/// symlink: a link left by an earlier entry of the same name is replaced.
fn create_file(dir: &OwnedFd, name: &str, mode: u32) -> Result<OwnedFd, Errno> {
    let flags =
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match openat(dir, name, flags, Mode::from_raw_mode(mode)) {
        Err(Errno::LOOP) | Err(Errno::ISDIR) => {
            unlink_any(dir.as_fd(), name)?;
            openat(dir, name, flags, Mode::from_raw_mode(mode))?
        }
        other => other?,
    };
    if mode & 0o022 != 0 {
        fchmod(&fd, Mode::from_raw_mode(mode))?;
    }
    Ok(fd)
}

/// Runs `make(dir, name)`; if the name is taken, removes it and retries.
fn replace(
    dir: &OwnedFd,
    name: &str,
    make: impl Fn(BorrowedFd<'_>, &str) -> Result<(), Errno>,
) -> Result<(), Errno> {
    match make(dir.as_fd(), name) {
        Err(Errno::EXIST) => {
            unlink_any(dir.as_fd(), name)?;
            make(dir.as_fd(), name)
        }
        other => other,
    }
}

fn unlink_any(dir: BorrowedFd<'_>, name: &str) -> Result<(), Errno> {
    match unlinkat(dir, name, AtFlags::empty()) {
        Err(Errno::ISDIR) => remove_tree(dir, name, name).map_err(|_| Errno::NOTEMPTY),
        other => other,
    }
}

/// Moves the children of `from` into `to` (path `rel`): a directory onto
/// a directory merges, anything else replaces. `check` only looks for
/// clashes a rename cannot resolve (a directory against a non-directory).
fn merge(from: &OwnedFd, to: &OwnedFd, rel: &str, check: bool) -> Result<(), RpcError> {
    let src = open_beneath(from, "", OFlags::RDONLY | OFlags::DIRECTORY, 0)?;
    let mut entries = Dir::new(src).map_err(|e| fs_error(e, rel))?;
    while let Some(entry) = entries.read() {
        let entry = entry.map_err(|e| fs_error(e, rel))?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let child = format!("{rel}/{}", name.to_string_lossy());
        let child = child.trim_start_matches('/');
        if check && child == rpc::STAGING_DIR {
            return Err(RpcError::new(
                "invalid_archive",
                format!(
                    "entry {child:?}: /workspace/{child} is pyro's staging directory, \
                     emptied at every start; nothing was changed"
                ),
            ));
        }
        let src_dir = entry.file_type() == FileType::Directory;
        let existing = match statat(to, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Some(FileType::from_raw_mode(st.st_mode)),
            Err(Errno::NOENT) => None,
            Err(e) => return Err(fs_error(e, child)),
        };
        match existing {
            Some(FileType::Directory) if src_dir => {
                let s = openat(
                    from,
                    name,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| fs_error(e, child))?;
                let d = openat(
                    to,
                    name,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| fs_error(e, child))?;
                merge(&s, &d, child, check)?;
            }
            Some(t) if (t == FileType::Directory) != src_dir => {
                return Err(RpcError::new(
                    "conflict",
                    format!(
                        "{}: the archive has a {} where the workspace has a {}; nothing was changed",
                        workspace_absolute(child),
                        type_name(entry.file_type()),
                        type_name(t),
                    ),
                ));
            }
            _ if check => {}
            _ => renameat(from, name, to, name).map_err(|e| fs_error(e, child))?,
        }
    }
    Ok(())
}

fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::RegularFile => "file",
        _ => "special file",
    }
}

/// Sends tar bytes as `Data` frames of [`rpc::CHUNK`].
struct DataFrames<'a, W: Write> {
    out: &'a mut W,
    buf: Vec<u8>,
}

impl<W: Write> DataFrames<'_, W> {
    fn send(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            rpc::write_frame(self.out, &Event::Data, &self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

impl<W: Write> Write for DataFrames<'_, W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(rpc::CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == rpc::CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

pub fn download(path: &str, out: &mut impl Write) -> Result<Reply, RpcError> {
    let rel = files::relative(path)?;
    let root = files::root()?;
    let (parent, name, st) = files::lstat(&root, &rel)?;
    let artifact_type = files::artifact_type(&st);
    let abs = workspace_absolute(&rel);
    let mut tar = tar::Builder::new(DataFrames {
        out,
        buf: Vec::with_capacity(rpc::CHUNK),
    });
    let mut tally = Tally::default();
    let base = rel.rsplit('/').next().unwrap_or("").to_string();
    match artifact_type {
        ArtifactType::Directory => {
            let dir = open_beneath(&root, &rel, OFlags::RDONLY | OFlags::DIRECTORY, 0)?;
            let prefix_len = if rel.is_empty() { 0 } else { rel.len() + 1 };
            files::walk(dir, &rel, &mut |dir, name, child, is_dir| {
                let name = OsStr::from_bytes(name.to_bytes());
                append(&mut tar, dir, name, child, &child[prefix_len..], &mut tally)?;
                Ok(if is_dir { Walk::Descend } else { Walk::Skip })
            })?;
        }
        ArtifactType::Other => {
            return Err(RpcError::new(
                "not_a_file",
                format!("{abs}: is not a file, directory or symlink"),
            ))
        }
        _ => {
            append(
                &mut tar,
                parent.as_fd(),
                OsStr::new(&name),
                &rel,
                &base,
                &mut tally,
            )?;
        }
    }
    let mut frames = tar.into_inner().map_err(RpcError::host_gone)?;
    frames.flush().map_err(RpcError::host_gone)?;
    Ok(Reply::Download(DownloadResult {
        path: abs,
        artifact_type,
        entry_count: tally.entries,
        bytes_read: tally.bytes,
    }))
}

/// Adds `name` (in `dir`; workspace path `rel`) to the archive as
/// `entry`. Sockets, fifos and devices are skipped.
fn append<W: Write>(
    tar: &mut tar::Builder<DataFrames<'_, W>>,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    rel: &str,
    entry: &str,
    tally: &mut Tally,
) -> Result<(), RpcError> {
    let st = statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| fs_error(e, rel))?;
    let mut header = tar::Header::new_gnu();
    header.set_mode(st.st_mode & 0o7777);
    header.set_mtime(st.st_mtime.max(0) as u64);
    header.set_uid(st.st_uid as u64);
    header.set_gid(st.st_gid as u64);
    let sent = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => {
            let fd = openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| fs_error(e, rel))?;
            let size = fstat(&fd).map_err(|e| fs_error(e, rel))?.st_size as u64;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(size);
            // Exactly `size` bytes even if the file changes under us: a
            // short read is padded, a longer file is cut.
            let data = File::from(fd)
                .take(size)
                .chain(std::io::repeat(0))
                .take(size);
            tally.bytes += size;
            tar.append_data(&mut header, entry, data)
        }
        FileType::Directory => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            tar.append_data(&mut header, entry, std::io::empty())
        }
        FileType::Symlink => {
            let target =
                rustix::fs::readlinkat(dir, name, Vec::new()).map_err(|e| fs_error(e, rel))?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            tar.append_link(&mut header, entry, OsStr::from_bytes(target.as_bytes()))
        }
        _ => return Ok(()),
    };
    sent.map_err(RpcError::host_gone)?;
    tally.entries += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_cleaned_or_refused() {
        assert_eq!(entry_name(b"./a//b/").unwrap(), "a/b");
        assert_eq!(entry_name(b"./").unwrap(), "");
        for bad in [&b"/etc/passwd"[..], b"a/../../x", b"..", b"\xff"] {
            assert_eq!(entry_name(bad).unwrap_err().kind, "invalid_archive");
        }
    }

    #[test]
    fn links_must_stay_inside_the_archive() {
        assert!(link_stays_inside("a", "b"));
        assert!(link_stays_inside("d/a", "../b"));
        assert!(link_stays_inside("d/e/a", "../../b/c"));
        assert!(!link_stays_inside("a", "../b"));
        assert!(!link_stays_inside("d/a", "../../b"));
        assert!(!link_stays_inside("a", "/etc/passwd"));
        assert!(!link_stays_inside("a", ""));
        assert!(!link_stays_inside("d/a", "x/../../../y"));
    }
}
