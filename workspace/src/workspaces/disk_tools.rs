//! Disk tools (`pyro workspace disk list|read|export`): a stopped
//! workspace's /workspace disk, read on the host without starting its
//! VM (the reference product's offline surface).
//!
//! `list` and `read` parse the ext4 image with `ext4-view` (pure Rust,
//! read-only). The image is untrusted: the guest was root on it and could
//! write anything to its block device. So every result is bounded
//! (entries as `file list`'s, bytes by `max_bytes`, directory depth),
//! symlinks are reported and never followed (inside the image `/x` would
//! be `/workspace/x`, not the guest's `/x`), and a reader panic on a
//! damaged image becomes an error. It runs in the calling process; a
//! sandboxed reader is the hardening issue's. `export` copies the image
//! itself (sparse), as the reference does. Only /workspace's disk is
//! read: the system layer is an overlay upper, meaningless without the
//! environment's image under it.
//!
//! The workspace's lock is held throughout, so it cannot start meanwhile;
//! a stop syncs /workspace first, and the reader replays the journal, so
//! what it shows is what the guest had written.

use super::handle::WorkspaceHandle;
use super::host_read::ServedBy;
use super::image_reader::ImageReader;
use super::records::{FileList, FileRead};
use crate::detached::VmState;
use crate::{Error, Pyro};
use ext4_view::{Ext4, FileType, Metadata};
use pyro_proto::rpc::{self, ArtifactType, DownloadResult, FileInfo, ListBudget};
use serde::Serialize;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Deeper directories than this are not walked (a damaged image can
/// make a directory its own descendant).
const MAX_DEPTH: usize = 256;

/// What `disk export` returns.
#[derive(Debug, Clone, Serialize)]
pub struct DiskExport {
    pub workspace_id: String,
    pub output_path: PathBuf,
    /// Always `ext4`: the image is /workspace's file system.
    pub disk_format: &'static str,
    /// The image's size (it is copied sparse: holes stay holes).
    pub bytes_written: u64,
}

impl Pyro {
    /// Lists `path` (relative to /workspace, or absolute inside it) on
    /// the stopped workspace's disk; `recursive` walks directories.
    pub fn workspace_disk_list(
        &self,
        id: &str,
        path: &str,
        recursive: bool,
    ) -> Result<FileList, Error> {
        let rel = relative(path)?;
        let ws = self.stopped(id)?;
        let (entries, truncated) = reader(&ws)?.list(&rel, recursive)?;
        Ok(FileList {
            workspace_id: ws.id,
            path: rpc::workspace_absolute(&rel),
            recursive,
            entries,
            truncated,
            served_by: ServedBy::HostImage,
        })
    }

    /// The first `max_bytes` of a regular file on the stopped workspace's
    /// disk.
    pub fn workspace_disk_read(
        &self,
        id: &str,
        path: &str,
        max_bytes: u64,
    ) -> Result<FileRead, Error> {
        super::files::check_read_bytes(max_bytes)?;
        let rel = relative(path)?;
        let ws = self.stopped(id)?;
        let (content, size_bytes) = reader(&ws)?.read(&rel, max_bytes)?;
        Ok(FileRead {
            workspace_id: ws.id,
            path: rpc::workspace_absolute(&rel),
            size_bytes,
            max_bytes,
            truncated: size_bytes > content.len() as u64,
            content,
            served_by: ServedBy::HostImage,
        })
    }

    /// Copies the stopped workspace's /workspace disk image (ext4) to
    /// `output`, which must not exist.
    pub fn workspace_disk_export(&self, id: &str, output: &Path) -> Result<DiskExport, Error> {
        super::files::check_new_output(output)?;
        let ws = self.stopped(id)?;
        let bytes_written = super::disk::sparse_copy(&ws.dir.disk(), output)?;
        Ok(DiskExport {
            workspace_id: ws.id,
            output_path: output.to_path_buf(),
            disk_format: "ext4",
            bytes_written,
        })
    }

    /// Workspace `id`, locked, if its VM does not run.
    fn stopped(&self, id: &str) -> Result<WorkspaceHandle, Error> {
        let ws = self.workspace_locked(id)?;
        if matches!(ws.vm().state(), VmState::Running { .. }) {
            return Err(Error::Conflict(format!(
                "workspace {} is running: the disk tools read a stopped workspace's disk \
                 (`pyro workspace stop {}` first); while it runs, use `file list|read` and \
                 `export`",
                ws.given, ws.given
            )));
        }
        Ok(ws)
    }
}

/// `path` relative to /workspace (`..` and paths outside refused).
fn relative(path: &str) -> Result<String, Error> {
    rpc::workspace_relative(path).map_err(|e| Error::Agent {
        kind: "invalid_path".into(),
        message: e.to_string(),
    })
}

/// The damaged-image error of workspace (or disk) `given`.
fn damaged(given: &str, why: String) -> Error {
    Error::Io(format!(
        "workspace {given}: its disk cannot be read ({why}); `pyro workspace start` lets the \
         guest check it"
    ))
}

/// `f`, with a reader panic on a damaged image turned into an error.
pub(super) fn guarded<T>(given: &str, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the reader failed".into());
        Err(damaged(given, why))
    })
}

/// The file system on `image` of `len` bytes, or the damaged-image
/// error.
pub(super) fn load(
    mut image: Box<dyn ext4_view::Ext4Read>,
    len: u64,
    given: &str,
) -> Result<Ext4, Error> {
    check_geometry(&mut *image, len).map_err(|why| damaged(given, why))?;
    guarded(given, || {
        Ext4::load(image).map_err(|e| damaged(given, e.to_string()))
    })
}

/// Most block groups an image may claim. A 64 GiB disk of 4 KiB blocks
/// has 512; ext4 with 1 KiB blocks and full groups would need 8 TiB for
/// this many.
const MAX_BLOCK_GROUPS: u64 = 1 << 16;

/// Refuses a superblock whose geometry no real image of `len` bytes has,
/// before ext4-view sizes anything by it: it allocates a descriptor per
/// block group up front, by the superblock's count, and an allocation
/// that fails aborts the process instead of panicking (a fuzzed image
/// asked for 25 GB: `fuzz/regressions/ext4_image/`).
fn check_geometry(image: &mut dyn ext4_view::Ext4Read, len: u64) -> Result<(), String> {
    let mut sb = [0u8; 1024];
    image
        .read(1024, &mut sb)
        .map_err(|e| format!("its superblock cannot be read: {e}"))?;
    let at = |offset: usize| {
        let bytes = [sb[offset], sb[offset + 1], sb[offset + 2], sb[offset + 3]];
        u64::from(u32::from_le_bytes(bytes))
    };
    const INCOMPAT_64BIT: u64 = 0x80;
    let high = if at(0x60) & INCOMPAT_64BIT != 0 {
        at(0x150)
    } else {
        0
    };
    let blocks = high << 32 | at(0x04);
    let (first, log_block_size, per_group) = (at(0x14), at(0x18), at(0x20));
    if log_block_size > 6 || per_group == 0 {
        // ext4-view refuses these itself, with its own words.
        return Ok(());
    }
    let block_size = 1024u64 << log_block_size;
    let groups = blocks.saturating_sub(first).div_ceil(per_group);
    if groups > MAX_BLOCK_GROUPS {
        return Err(format!(
            "its superblock claims {groups} block groups, more than {MAX_BLOCK_GROUPS}"
        ));
    }
    if blocks.saturating_mul(block_size) > len {
        return Err(format!(
            "its superblock claims {blocks} blocks of {block_size} bytes, more than the \
             image's {len} bytes hold"
        ));
    }
    Ok(())
}

/// Everything the disk tools read of an untrusted image held in memory:
/// loads it, lists it recursively, reads each file's start and packs the
/// whole tree into a sink. Errors and caught reader panics are answers;
/// what a fuzzer looks for is a crash, a hang or unbounded memory
/// (`fuzz/fuzz_targets/ext4_image.rs`, through `testing`). Returns the
/// entries listed.
pub(crate) fn read_everything(image: Vec<u8>) -> Result<usize, Error> {
    let len = image.len() as u64;
    let fs = load(Box::new(image), len, "fuzz")?;
    guarded("fuzz", || {
        let (entries, _) = list(&fs, "", true)?;
        for entry in entries
            .iter()
            .filter(|e| e.artifact_type == ArtifactType::File)
        {
            let rel = entry.path.trim_start_matches("/workspace/");
            let _ = read(&fs, rel, 4096);
        }
        pack(&fs, "", std::io::sink())?;
        Ok(entries.len())
    })
}

/// Runs `f` on the image at `disk` in this process (the unit tests; the
/// product reads images through the confined `image_reader`).
#[cfg(test)]
fn with_image_at<T>(
    disk: &Path,
    given: &str,
    f: impl FnOnce(&Ext4) -> Result<T, Error>,
) -> Result<T, Error> {
    let file = std::fs::File::open(disk).map_err(|e| Error::Io(e.to_string()))?;
    let len = file.metadata().map_err(|e| Error::Io(e.to_string()))?.len();
    let fs = load(Box::new(file), len, given)?;
    guarded(given, || f(&fs))
}

/// A confined reader of `ws`'s /workspace disk.
fn reader(ws: &WorkspaceHandle) -> Result<ImageReader, Error> {
    ImageReader::open(&ws.dir.disk(), &ws.given)
}

/// The image path of `rel` (the image's root is /workspace).
fn image_path(rel: &str) -> String {
    format!("/{rel}")
}

fn reader_err(rel: &str, e: ext4_view::Ext4Error) -> Error {
    let path = rpc::workspace_absolute(rel);
    match e {
        ext4_view::Ext4Error::NotFound => Error::Agent {
            kind: "not_found".into(),
            message: format!("{path}: no such file or directory (on the stopped workspace's disk)"),
        },
        other => Error::Io(format!(
            "{path}: the disk cannot be read there ({other}); the image may be damaged"
        )),
    }
}

/// The metadata of `rel`, refusing a symlink on the way (the last
/// component may be one, reported as itself).
fn lstat_beneath(fs: &Ext4, rel: &str) -> Result<Metadata, Error> {
    let mut prefix = String::new();
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        prefix = if prefix.is_empty() {
            part.to_string()
        } else {
            format!("{prefix}/{part}")
        };
        let md = fs
            .symlink_metadata(image_path(&prefix).as_str())
            .map_err(|e| reader_err(&prefix, e))?;
        if md.is_symlink() && i + 1 < parts.len() {
            return Err(Error::Agent {
                kind: "invalid_path".into(),
                message: format!(
                    "{}: a symlink; the disk tools do not follow symlinks",
                    rpc::workspace_absolute(&prefix)
                ),
            });
        }
        if i + 1 == parts.len() {
            return Ok(md);
        }
    }
    fs.symlink_metadata("/").map_err(|e| reader_err(rel, e))
}

fn info(fs: &Ext4, rel: &str, md: &Metadata) -> FileInfo {
    let artifact_type = match md.file_type() {
        FileType::Regular => ArtifactType::File,
        FileType::Directory => ArtifactType::Directory,
        FileType::Symlink => ArtifactType::Symlink,
        _ => ArtifactType::Other,
    };
    let link_target = md.is_symlink().then(|| {
        fs.read_link(image_path(rel).as_str())
            .map(|t| String::from_utf8_lossy(t.as_ref()).into_owned())
            .unwrap_or_default()
    });
    FileInfo {
        path: rpc::workspace_absolute(rel),
        artifact_type,
        size_bytes: md.len(), // a directory's too, as the agent's stat gives it
        mode: u32::from(md.mode()) & 0o7777,
        mtime: md.modified().seconds(),
        link_target,
    }
}

/// Whether `name` in directory `dir` is pyro's staging directory, which
/// walks skip as the agent's do.
fn staging(dir: &str, name: &str) -> bool {
    dir.is_empty() && name == rpc::STAGING_DIR
}

/// `rel` as `file list` gives it: a file as itself, a directory's
/// entries (all below it if `recursive`), sorted, at most what a
/// [`ListBudget`] holds (then `truncated`), as the agent lists.
pub(super) fn list(fs: &Ext4, rel: &str, recursive: bool) -> Result<(Vec<FileInfo>, bool), Error> {
    let md = lstat_beneath(fs, rel)?;
    if !md.is_dir() {
        return Ok((vec![info(fs, rel, &md)], false));
    }
    let mut entries = Vec::new();
    let mut budget = ListBudget::default();
    let mut truncated = false;
    let mut dirs = vec![(rel.to_string(), 0usize)];
    'walk: while let Some((dir, depth)) = dirs.pop() {
        let read = fs
            .read_dir(image_path(&dir).as_str())
            .map_err(|e| reader_err(&dir, e))?;
        for entry in read {
            let entry = entry.map_err(|e| reader_err(&dir, e))?;
            let name = entry.file_name();
            let name = String::from_utf8_lossy(name.as_ref()).into_owned();
            if name == "." || name == ".." || name.contains('/') || staging(&dir, &name) {
                continue;
            }
            let child = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            let md = entry.metadata().map_err(|e| reader_err(&child, e))?;
            let listed = info(fs, &child, &md);
            if !budget.take_entry(&listed) {
                truncated = true;
                break 'walk;
            }
            if recursive && md.is_dir() && depth < MAX_DEPTH {
                dirs.push((child, depth + 1));
            }
            entries.push(listed);
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((entries, truncated))
}

/// The first `max_bytes` of regular file `rel`, and its size.
pub(super) fn read(fs: &Ext4, rel: &str, max_bytes: u64) -> Result<(Vec<u8>, u64), Error> {
    let md = lstat_beneath(fs, rel)?;
    if md.file_type() != FileType::Regular {
        return Err(Error::Agent {
            kind: "invalid_path".into(),
            message: format!(
                "{}: not a regular file (a {:?}); disk read reads files",
                rpc::workspace_absolute(rel),
                md.file_type()
            ),
        });
    }
    let file = fs
        .open(image_path(rel).as_str())
        .map_err(|e| reader_err(rel, e))?;
    let mut content = Vec::new();
    file.take(max_bytes)
        .read_to_end(&mut content)
        .map_err(|e| Error::Io(format!("{}: {e}", rpc::workspace_absolute(rel))))?;
    Ok((content, md.len()))
}

/// Most entries one export packs from an image: a damaged image can
/// make a directory appear in itself, and the depth bound alone would
/// let that grow without end.
const MAX_PACK_ENTRIES: u64 = 10_000_000;

/// `rel` as a tar stream, as the agent's `Download` makes it: a
/// directory as its children (symlinks stored, never followed), a file
/// or symlink as one entry named by its last component; each entry with
/// its mode and mtime.
pub(super) fn pack(fs: &Ext4, rel: &str, out: impl Write) -> Result<DownloadResult, Error> {
    let md = lstat_beneath(fs, rel)?;
    let mut tar = tar::Builder::new(out);
    let mut done = DownloadResult {
        path: rpc::workspace_absolute(rel),
        artifact_type: info(fs, rel, &md).artifact_type,
        entry_count: 0,
        bytes_read: 0,
    };
    match md.file_type() {
        FileType::Directory => {
            let prefix = if rel.is_empty() { 0 } else { rel.len() + 1 };
            let mut dirs = vec![(rel.to_string(), 0usize)];
            while let Some((dir, depth)) = dirs.pop() {
                let read = fs
                    .read_dir(image_path(&dir).as_str())
                    .map_err(|e| reader_err(&dir, e))?;
                for entry in read {
                    let entry = entry.map_err(|e| reader_err(&dir, e))?;
                    let name = String::from_utf8_lossy(entry.file_name().as_ref()).into_owned();
                    if name == "." || name == ".." || name.contains('/') || staging(&dir, &name) {
                        continue;
                    }
                    let child = if dir.is_empty() {
                        name
                    } else {
                        format!("{dir}/{name}")
                    };
                    let md = entry.metadata().map_err(|e| reader_err(&child, e))?;
                    if md.is_dir() && depth < MAX_DEPTH {
                        dirs.push((child.clone(), depth + 1));
                    }
                    append(fs, &mut tar, &child, &child[prefix..], &md, &mut done)?;
                }
            }
        }
        FileType::Regular | FileType::Symlink => {
            let base = rel.rsplit('/').next().unwrap_or(rel);
            append(fs, &mut tar, rel, base, &md, &mut done)?;
        }
        other => {
            return Err(Error::Agent {
                kind: "not_a_file".into(),
                message: format!(
                    "{}: is not a file, directory or symlink (a {other:?})",
                    rpc::workspace_absolute(rel)
                ),
            })
        }
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| Error::Io(format!("export: {e}")))?;
    Ok(done)
}

/// One entry of [`pack`]: the image's `rel`, named `name` in the tar.
fn append(
    fs: &Ext4,
    tar: &mut tar::Builder<impl Write>,
    rel: &str,
    name: &str,
    md: &Metadata,
    done: &mut DownloadResult,
) -> Result<(), Error> {
    if done.entry_count >= MAX_PACK_ENTRIES {
        return Err(Error::Io(format!(
            "{}: more than {MAX_PACK_ENTRIES} entries; the image may be damaged",
            done.path
        )));
    }
    let sink = |e: std::io::Error| Error::Io(format!("export: {e}"));
    let mut header = tar::Header::new_gnu();
    header.set_mode(u32::from(md.mode()) & 0o7777);
    header.set_mtime(md.modified().seconds().max(0) as u64);
    header.set_uid(u64::from(md.uid()));
    header.set_gid(u64::from(md.gid()));
    header.set_size(0);
    match md.file_type() {
        FileType::Regular => {
            let size = md.len();
            let file = fs
                .open(image_path(rel).as_str())
                .map_err(|e| reader_err(rel, e))?;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(size);
            // Exactly `size` bytes: the tar stream must match its header
            // even if a damaged image yields fewer.
            let mut data = Exact {
                inner: file,
                left: size,
            };
            tar.append_data(&mut header, name, &mut data)
                .map_err(sink)?;
            done.bytes_read += size;
        }
        FileType::Directory => {
            header.set_entry_type(tar::EntryType::Directory);
            tar.append_data(&mut header, name, std::io::empty())
                .map_err(sink)?;
        }
        FileType::Symlink => {
            let target = fs
                .read_link(image_path(rel).as_str())
                .map_err(|e| reader_err(rel, e))?;
            header.set_entry_type(tar::EntryType::Symlink);
            let target: &[u8] = target.as_ref();
            let target = std::ffi::OsStr::from_bytes(target);
            tar.append_link(&mut header, name, target).map_err(sink)?;
        }
        _ => return Ok(()), // sockets, fifos and devices, as the agent skips them
    }
    done.entry_count += 1;
    Ok(())
}

/// `left` more bytes of `inner`, or an error if it ends before.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "a file on the image is shorter than its size says; the image may be damaged",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(tree: &Path, disk: &Path) -> Ext4 {
        super::super::disk::make(disk, 64, tree).unwrap();
        Ext4::load_from_path(disk).unwrap()
    }

    #[test]
    fn a_disk_lists_and_reads_like_the_guest_and_never_follows_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("src/deep")).unwrap();
        std::fs::write(tree.join("README"), "hello\n").unwrap();
        std::fs::write(tree.join("src/deep/big.bin"), vec![7u8; 100_000]).unwrap();
        std::os::unix::fs::symlink("/etc", tree.join("etc-link")).unwrap();
        let fs = image(&tree, &dir.path().join("disk.ext4"));

        let (top, truncated) = list(&fs, "", false).unwrap();
        let paths: Vec<&str> = top.iter().map(|e| e.path.as_str()).collect();
        assert!(!truncated);
        assert!(paths.contains(&"/workspace/README"), "{paths:?}");
        assert!(paths.contains(&"/workspace/etc-link"), "{paths:?}");
        assert!(!paths.contains(&"/workspace/src/deep"), "not recursive");
        let link = top.iter().find(|e| e.path.ends_with("etc-link")).unwrap();
        assert_eq!(link.artifact_type, ArtifactType::Symlink);
        assert_eq!(link.link_target.as_deref(), Some("/etc"));
        let (all, _) = list(&fs, "src", true).unwrap();
        let big = all.iter().find(|e| e.path.ends_with("big.bin")).unwrap();
        assert_eq!(big.size_bytes, 100_000);
        assert_eq!(big.artifact_type, ArtifactType::File);

        assert_eq!(read(&fs, "README", 100).unwrap(), (b"hello\n".to_vec(), 6));
        let (head, size) = read(&fs, "src/deep/big.bin", 10).unwrap();
        assert_eq!((head, size), (vec![7u8; 10], 100_000));
        // A file lists as itself.
        assert_eq!(list(&fs, "README", false).unwrap().0.len(), 1);
        // Through a symlink, a directory, a missing path: refused.
        let e = read(&fs, "etc-link/passwd", 10).unwrap_err();
        assert_eq!(e.kind(), "invalid_path", "{e}");
        assert_eq!(read(&fs, "src", 10).unwrap_err().kind(), "invalid_path");
        assert_eq!(read(&fs, "nope", 10).unwrap_err().kind(), "not_found");
    }

    #[test]
    fn an_image_packs_as_the_agent_packs_and_unpacks_byte_exact() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("src/deep")).unwrap();
        std::fs::create_dir_all(tree.join(rpc::STAGING_DIR)).unwrap();
        std::fs::write(tree.join(rpc::STAGING_DIR).join("half"), "x").unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(tree.join("src/deep/big.bin"), &big).unwrap();
        std::fs::write(tree.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(tree.join("run.sh"), std::fs::Permissions::from_mode(0o751))
            .unwrap();
        std::os::unix::fs::symlink("src/deep", tree.join("deep-link")).unwrap();
        let fs = image(&tree, &dir.path().join("disk.ext4"));

        let mut tar = Vec::new();
        let done = pack(&fs, "", &mut tar).unwrap();
        assert_eq!(done.artifact_type, ArtifactType::Directory);
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        crate::unpack_untrusted(&tar[..], &out).unwrap();
        assert_eq!(std::fs::read(out.join("src/deep/big.bin")).unwrap(), big);
        let mode = std::fs::metadata(out.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o751);
        let link = std::fs::read_link(out.join("deep-link")).unwrap();
        assert_eq!(link, Path::new("src/deep"));
        // pyro's staging directory never leaves the guest; lost+found
        // (made by mkfs) is the user's, as the agent sees it.
        assert!(!out.join(rpc::STAGING_DIR).exists());
        assert_eq!(done.bytes_read, big.len() as u64 + 10);

        // A file packs as one entry named by its last component.
        let mut tar = Vec::new();
        let done = pack(&fs, "src/deep/big.bin", &mut tar).unwrap();
        assert_eq!(
            (done.entry_count, done.artifact_type),
            (1, ArtifactType::File)
        );
        let mut archive = tar::Archive::new(&tar[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["big.bin"]);
    }

    #[test]
    fn a_damaged_image_is_an_error_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        for i in 0..50 {
            std::fs::write(tree.join(format!("a/b/f{i}")), format!("{i}\n")).unwrap();
        }
        let disk = dir.path().join("disk.ext4");
        drop(image(&tree, &disk));
        let good = std::fs::read(&disk).unwrap();
        // Garbage over the start of 4 KiB blocks (all but the first), in
        // a few patterns: each load, list and read ends in a result or an
        // error (a reader panic comes back as one), never a crash or a
        // hang; and the damage is noticed.
        let mut errors = 0;
        for seed in 0..8u64 {
            let mut bad = good.clone();
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            for block in (1..bad.len() / 4096).step_by(1 + seed as usize) {
                for byte in &mut bad[block * 4096..block * 4096 + 64] {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *byte = x as u8;
                }
            }
            let path = dir.path().join(format!("bad{seed}.ext4"));
            std::fs::write(&path, &bad).unwrap();
            let outcome = with_image_at(&path, "t", |fs| {
                list(fs, "", true)?;
                pack(fs, "", &mut Vec::new())?;
                read(fs, "a/b/f1", 100)
            });
            errors += usize::from(outcome.is_err());
        }
        assert!(errors > 0, "no damage noticed");
        // Truncated to its first 8 KiB: an error.
        std::fs::write(&disk, &good[..8192]).unwrap();
        let e = with_image_at(&disk, "t", |fs| list(fs, "", true)).unwrap_err();
        assert!(e.to_string().contains("cannot be read"), "{e}");
    }

    /// Fuzzing's finds (`fuzz/regressions/ext4_image/`): each is an
    /// error, not an abort.
    #[test]
    fn images_the_fuzzer_found_are_errors() {
        let huge = include_bytes!(
            "../../../fuzz/regressions/ext4_image/superblock-claims-25GB-of-descriptors"
        );
        let e = read_everything(huge.to_vec()).unwrap_err();
        assert!(e.to_string().contains("block"), "{e}");
        // The same lie in an image of the claimed size: the group count
        // alone refuses it.
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(&tree).unwrap();
        let disk = dir.path().join("disk.ext4");
        drop(image(&tree, &disk));
        let mut bytes = std::fs::read(&disk).unwrap();
        let sb = |field: usize| 1024 + field..1024 + field + 4;
        let log_block_size = u32::from_le_bytes(bytes[sb(0x18)].try_into().unwrap());
        let blocks = MAX_BLOCK_GROUPS as u32 + 2;
        // A group per block (s_blocks_per_group = 1), and as many blocks
        // as the image then holds.
        bytes[sb(0x04)].copy_from_slice(&blocks.to_le_bytes());
        bytes[sb(0x20)].copy_from_slice(&1u32.to_le_bytes());
        bytes.resize((blocks as usize) << (10 + log_block_size), 0);
        let e = read_everything(bytes).unwrap_err();
        assert!(e.to_string().contains("block groups"), "{e}");
    }
}
