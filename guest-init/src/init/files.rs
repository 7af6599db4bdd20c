//! File requests, confined to /workspace.
//!
//! Every path goes through `proto::rpc::workspace_relative` (no `..`,
//! nothing outside /workspace) and is then opened with
//! `openat2(RESOLVE_BENEATH)` from a descriptor of /workspace, so the
//! kernel refuses a symlink that leads outside, whenever it was made.
//! Walks (list, remove, archives) go descriptor to descriptor with
//! `O_NOFOLLOW` and never resolve a path at all.
//!
//! Syscalls cost ~160 us each in a PVM guest, so the code avoids the
//! convenient extra ones: `d_type` from `getdents` decides recursion, a
//! file's mode is set only when the umask would have changed it.
//!
//! Writes, patches and uploads are made in [`STAGING`] ([`Staging`]) and
//! renamed into place, never beside their target: a VM killed mid-write leaves its
//! half-made files there, and the next mount of /workspace sweeps them
//! ([`sweep_staging`]), so a crash never leaves staging where the user's
//! files are.

use super::RpcError;
use pyro_proto::rpc::{
    self, workspace_absolute, workspace_relative, ArtifactType, Event, FileInfo, ListLines,
    ListResult, ReadResult, Reply, WriteResult,
};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{
    fchmod, fdatasync, fstat, fsync, mkdirat, openat, openat2, readlinkat, renameat, statat,
    unlinkat, AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags, Stat,
};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};

/// The umask PID 1 runs with; modes with these bits need an explicit chmod.
const UMASK_BITS: u32 = 0o022;

/// Maps a path argument to its part below /workspace.
pub fn relative(path: &str) -> Result<String, RpcError> {
    workspace_relative(path).map_err(|e| RpcError::new("invalid_path", e.to_string()))
}

/// A failed syscall on `rel`, as an error a user can act on.
pub fn fs_error(e: Errno, rel: &str) -> RpcError {
    let path = workspace_absolute(rel);
    let (kind, what) = match e {
        Errno::NOENT => ("not_found", "no such file or directory"),
        Errno::XDEV => ("invalid_path", "leads outside /workspace through a symlink"),
        Errno::LOOP => (
            "invalid_path",
            "is a symlink where a file or directory was expected (or a symlink loop)",
        ),
        Errno::NOTDIR => ("not_a_directory", "has a component that is not a directory"),
        Errno::ISDIR => ("is_a_directory", "is a directory"),
        Errno::EXIST => ("exists", "already exists"),
        Errno::NOTEMPTY => ("not_empty", "is a directory that is not empty"),
        Errno::NOSPC | Errno::DQUOT => ("no_space", "no space left on the workspace disk"),
        Errno::ROFS => ("read_only", "is on a read-only file system"),
        Errno::ACCESS | Errno::PERM => ("permission_denied", "permission denied"),
        Errno::NAMETOOLONG => ("invalid_path", "name too long"),
        _ => ("io", "failed"),
    };
    RpcError::new(kind, format!("{path}: {what} ({e})"))
}

/// /workspace itself, as a directory descriptor to resolve beneath.
pub fn root() -> Result<OwnedFd, RpcError> {
    openat(
        rustix::fs::CWD,
        rpc::WORKSPACE,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fs_error(e, ""))
}

/// Opens `rel` below `dir`; the kernel refuses anything that resolves
/// outside `dir` (`..`, absolute or escaping symlinks, magic links).
pub fn open_beneath(
    dir: impl AsFd,
    rel: &str,
    flags: OFlags,
    mode: u32,
) -> Result<OwnedFd, RpcError> {
    let path = if rel.is_empty() { "." } else { rel };
    openat2(
        dir,
        path,
        flags | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| fs_error(e, rel))
}

/// `(parent directory descriptor, final name)` of a non-empty `rel`;
/// `parents` creates missing directories on the way (like `mkdir -p`).
pub fn open_parent<'a>(
    root: &OwnedFd,
    rel: &'a str,
    parents: bool,
) -> Result<(OwnedFd, &'a str), RpcError> {
    let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let flags = OFlags::PATH | OFlags::DIRECTORY;
    let fd = if parents {
        mkdir_all(root, dir)?
    } else {
        open_beneath(root, dir, flags, 0)?
    };
    Ok((fd, name))
}

/// Creates every missing directory of `rel` (mode 0755) and opens it.
pub fn mkdir_all(root: impl AsFd, rel: &str) -> Result<OwnedFd, RpcError> {
    let flags = OFlags::PATH | OFlags::DIRECTORY;
    // The common case: it exists already, one syscall.
    match open_beneath(root.as_fd(), rel, flags, 0) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.kind != "not_found" => return Err(e),
        Err(_) => {}
    }
    let mut fd = open_beneath(root.as_fd(), "", flags, 0)?;
    let mut done = String::new();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        if !done.is_empty() {
            done.push('/');
        }
        done.push_str(part);
        match mkdirat(&fd, part, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(fs_error(e, &done)),
        }
        fd = open_beneath(&fd, part, flags, 0).map_err(|e| RpcError {
            message: e
                .message
                .replace(&workspace_absolute(part), &workspace_absolute(&done)),
            ..e
        })?;
    }
    Ok(fd)
}

pub fn artifact_type(st: &Stat) -> ArtifactType {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => ArtifactType::File,
        FileType::Directory => ArtifactType::Directory,
        FileType::Symlink => ArtifactType::Symlink,
        _ => ArtifactType::Other,
    }
}

/// What `st` (of `name` in `dir`) looks like on the wire.
fn info(dir: BorrowedFd<'_>, name: &OsStr, rel: &str, st: &Stat) -> FileInfo {
    let artifact_type = artifact_type(st);
    let link_target = (artifact_type == ArtifactType::Symlink)
        .then(|| readlinkat(dir, name, Vec::new()).ok())
        .flatten()
        .map(|t| t.to_string_lossy().into_owned());
    FileInfo {
        path: workspace_absolute(rel),
        artifact_type,
        size_bytes: st.st_size as u64,
        mode: st.st_mode & 0o7777,
        mtime: st.st_mtime,
        link_target,
    }
}

/// Stats `rel` without following a final symlink; returns the directory
/// holding it (`rel` itself for the workspace root) and its name there.
pub fn lstat(root: &OwnedFd, rel: &str) -> Result<(OwnedFd, String, Stat), RpcError> {
    if rel.is_empty() {
        let fd = open_beneath(root, "", OFlags::PATH | OFlags::DIRECTORY, 0)?;
        let st = fstat(&fd).map_err(|e| fs_error(e, rel))?;
        return Ok((fd, ".".into(), st));
    }
    let (dir, name) = open_parent(root, rel, false)?;
    let st = statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| fs_error(e, rel))?;
    Ok((dir, name.to_string(), st))
}

pub fn stat(path: &str) -> Result<Reply, RpcError> {
    let rel = relative(path)?;
    let root = root()?;
    let (dir, name, st) = lstat(&root, &rel)?;
    Ok(Reply::Stat(info(dir.as_fd(), OsStr::new(&name), &rel, &st)))
}

/// Streams the entries as JSON lines in data frames, in walk order (the
/// host sorts), so neither a header nor guest memory limits the size of
/// a listing (see `Request::List`).
pub fn list(path: &str, recursive: bool, out: &mut impl Write) -> Result<Reply, RpcError> {
    let rel = relative(path)?;
    let root = root()?;
    let (parent, name, st) = lstat(&root, &rel)?;
    let mut lines = ListLines::default();
    let mut send =
        |chunk: Vec<u8>| rpc::write_frame(out, &Event::Data, &chunk).map_err(RpcError::host_gone);
    let mut truncated = false;
    if artifact_type(&st) == ArtifactType::Directory {
        let dir = open_beneath(&root, &rel, OFlags::RDONLY | OFlags::DIRECTORY, 0)?;
        walk(dir, &rel, &mut |dir, name, child_rel, is_dir| {
            let st =
                statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| fs_error(e, child_rel))?;
            let entry = info(dir, OsStr::from_bytes(name.to_bytes()), child_rel, &st);
            match lines.push(&entry) {
                Ok(Some(chunk)) => send(chunk)?,
                Ok(None) => {}
                Err(rpc::ListFull) => {
                    truncated = true;
                    return Ok(Walk::Stop);
                }
            }
            Ok(if recursive && is_dir {
                Walk::Descend
            } else {
                Walk::Skip
            })
        })?;
    } else {
        // A file lists as itself, like `ls FILE`.
        let entry = info(parent.as_fd(), OsStr::new(&name), &rel, &st);
        // One entry always fits an empty listing.
        if let Ok(Some(chunk)) = lines.push(&entry) {
            send(chunk)?;
        }
    }
    let rest = lines.finish();
    if !rest.is_empty() {
        send(rest)?;
    }
    Ok(Reply::List(ListResult {
        entries: Vec::new(),
        truncated,
    }))
}

/// What a walk does after visiting an entry.
pub enum Walk {
    Descend,
    Skip,
    Stop,
}

/// `visit(dir, name, rel, is_dir)` of [`walk`].
pub type Visitor<'v> =
    dyn FnMut(BorrowedFd<'_>, &std::ffi::CStr, &str, bool) -> Result<Walk, RpcError> + 'v;

/// Visits the entries below the open directory `dir` (whose path is
/// `rel`), depth first, parents before children, never following a
/// symlink. `visit(dir, name, rel, is_dir)` says whether to descend.
/// The staging directory ([`STAGING`]) is pyro's, not the user's: walks
/// (listings, downloads, exports) never show it.
pub fn walk(dir: OwnedFd, rel: &str, visit: &mut Visitor<'_>) -> Result<bool, RpcError> {
    let mut entries = Dir::new(dir).map_err(|e| fs_error(e, rel))?;
    while let Some(entry) = entries.read() {
        let entry = entry.map_err(|e| fs_error(e, rel))?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        if rel.is_empty() && name.to_bytes() == STAGING.as_bytes() {
            continue;
        }
        let name_str = name.to_string_lossy();
        let child = if rel.is_empty() {
            name_str.into_owned()
        } else {
            format!("{rel}/{name_str}")
        };
        let fd = entries.fd().map_err(|e| fs_error(e, rel))?;
        let is_dir = is_dir(fd, name, entry.file_type());
        match visit(fd, name, &child, is_dir)? {
            Walk::Stop => return Ok(false),
            Walk::Skip => {}
            Walk::Descend => {
                let sub = openat(
                    fd,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| fs_error(e, &child))?;
                if !walk(sub, &child, visit)? {
                    return Ok(false);
                }
            }
        }
    }
    Ok(true)
}

pub fn read(
    path: &str,
    offset: u64,
    max_bytes: Option<u64>,
    out: &mut impl Write,
) -> Result<Reply, RpcError> {
    let rel = relative(path)?;
    let root = root()?;
    // O_NONBLOCK: opening a fifo must not hang the request.
    let fd = open_beneath(&root, &rel, OFlags::RDONLY | OFlags::NONBLOCK, 0)?;
    let st = fstat(&fd).map_err(|e| fs_error(e, &rel))?;
    if artifact_type(&st) != ArtifactType::File {
        return Err(RpcError::new(
            "not_a_file",
            format!("{}: is not a regular file", workspace_absolute(&rel)),
        ));
    }
    let size = st.st_size as u64;
    let want = max_bytes
        .unwrap_or(u64::MAX)
        .min(size.saturating_sub(offset));
    let mut file = File::from(fd);
    if offset > 0 {
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(offset))
            .map_err(|e| RpcError::io(&rel, e))?;
    }
    let mut sent = 0u64;
    let mut buf = vec![0u8; rpc::CHUNK];
    while sent < want {
        let n = (want - sent).min(buf.len() as u64) as usize;
        let got = file
            .read(&mut buf[..n])
            .map_err(|e| RpcError::io(&rel, e))?;
        if got == 0 {
            break; // The file shrank while we read it.
        }
        rpc::write_frame(out, &Event::Data, &buf[..got]).map_err(RpcError::host_gone)?;
        sent += got as u64;
    }
    Ok(Reply::Read(ReadResult {
        size_bytes: size,
        bytes_read: sent,
        truncated: offset + sent < size,
    }))
}

/// The directory at the top of /workspace where new content is made
/// before it is renamed into place ([`rpc::STAGING_DIR`]).
pub const STAGING: &str = rpc::STAGING_DIR;

/// The staging directory of one request, opened once (each syscall costs
/// ~160 us in a PVM guest): [`Staging::for_dir`] gives where to make
/// something that will be renamed into a directory.
pub struct Staging {
    /// The directory and its file system, unless it could not be opened
    /// (its name taken by something else: then everything is made
    /// beside its target).
    dir: Option<(OwnedFd, u64)>,
}

/// Where [`Staging::for_dir`] says to make new files: a real directory
/// descriptor either way, so it can also be `fsync`ed.
pub enum Stage<'a> {
    Shared(BorrowedFd<'a>),
    Beside(OwnedFd),
}

impl AsFd for Stage<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stage::Shared(fd) => *fd,
            Stage::Beside(fd) => fd.as_fd(),
        }
    }
}

impl Staging {
    /// Opens (making it if missing) the staging directory below `root`.
    pub fn open(root: &OwnedFd) -> Result<Staging, RpcError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let dir = match openat(root, STAGING, flags, Mode::empty()) {
            Err(Errno::NOENT) => match mkdirat(root, STAGING, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => openat(root, STAGING, flags, Mode::empty()),
                Err(e) => Err(e),
            },
            other => other,
        };
        match dir {
            Err(Errno::NOSPC) | Err(Errno::DQUOT) => Err(fs_error(Errno::NOSPC, STAGING)),
            Err(_) => Ok(Staging { dir: None }),
            Ok(dir) => {
                let dev = fstat(&dir).map_err(|e| fs_error(e, STAGING))?.st_dev;
                Ok(Staging {
                    dir: Some((dir, dev)),
                })
            }
        }
    }

    /// Where to make something that will be renamed into `dest_dir`: the
    /// staging directory, or `dest_dir` itself where a rename from
    /// staging cannot work (another file system mounted below
    /// /workspace) or there is no staging directory.
    pub fn for_dir(&self, dest_dir: &OwnedFd) -> Result<Stage<'_>, RpcError> {
        if let Some((dir, dev)) = &self.dir {
            if fstat(dest_dir).is_ok_and(|st| st.st_dev == *dev) {
                return Ok(Stage::Shared(dir.as_fd()));
            }
        }
        open_beneath(dest_dir, "", OFlags::RDONLY | OFlags::DIRECTORY, 0).map(Stage::Beside)
    }
}

/// Removes [`STAGING`] and whatever a killed VM left in it. Run when
/// /workspace is mounted, before any request can use it.
pub fn sweep_staging() -> Result<(), RpcError> {
    let root = root()?;
    match remove_tree(root.as_fd(), STAGING, STAGING) {
        Err(e) if e.kind == "not_found" => Ok(()),
        other => other,
    }
}

/// A name for a temporary copy of `name`, unique within this guest.
pub fn temp_name(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let short: String = name.chars().take(100).collect();
    format!(".{short}.pyro-tmp-{}-{n}", super::clock::monotonic_us())
}

pub fn write(
    path: &str,
    mode: Option<u32>,
    parents: bool,
    body: &mut impl Read,
) -> Result<Reply, RpcError> {
    let rel = relative(path)?;
    if rel.is_empty() {
        return Err(RpcError::new(
            "is_a_directory",
            "/workspace: is a directory; give a file path".into(),
        ));
    }
    let root = root()?;
    let (dir, name) = open_parent(&root, &rel, parents)?;
    let existing = match statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Some(st),
        Err(Errno::NOENT) => None,
        Err(e) => return Err(fs_error(e, &rel)),
    };
    if let Some(st) = &existing {
        if artifact_type(st) != ArtifactType::File {
            return Err(RpcError::new(
                "not_a_file",
                format!(
                    "{}: exists and is a {:?}, not a regular file; remove it first",
                    workspace_absolute(&rel),
                    artifact_type(st)
                )
                .to_lowercase(),
            ));
        }
    }
    let mode = mode
        .or(existing.map(|st| st.st_mode & 0o7777))
        .unwrap_or(0o644)
        & 0o7777;
    let staging = Staging::open(&root)?;
    let stage = staging.for_dir(&dir)?;
    let tmp = temp_name(name);
    let fd = openat(
        &stage,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )
    .map_err(|e| fs_error(e, &rel))?;
    let result = fill(fd, mode, body, &rel).and_then(|n| {
        renameat(&stage, tmp.as_str(), &dir, name).map_err(|e| fs_error(e, &rel))?;
        // The rename is durable only once committed: a reply means the
        // write survives a VM killed right after it. An fsync of either
        // directory commits ext4's journal transaction, which holds the
        // rename's change to both; the staging one is open already.
        fsync(&stage).map_err(|e| fs_error(e, &rel))?;
        Ok(n)
    });
    match result {
        Ok(bytes_written) => Ok(Reply::Written(WriteResult {
            path: workspace_absolute(&rel),
            bytes_written,
            mode,
        })),
        Err(e) => {
            let _ = unlinkat(&stage, tmp.as_str(), AtFlags::empty());
            Err(e)
        }
    }
}

/// Copies `body` into the new file `fd`, sets its mode, syncs it.
fn fill(fd: OwnedFd, mode: u32, body: &mut impl Read, rel: &str) -> Result<u64, RpcError> {
    if mode & UMASK_BITS != 0 {
        fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| fs_error(e, rel))?;
    }
    let mut file = File::from(fd);
    let mut limited = body.take(rpc::MAX_WRITE_BYTES + 1);
    let n = super::direct::copy_to_new_file(&mut limited, &mut file, None)
        .map_err(|e| RpcError::io(rel, e))?;
    if n > rpc::MAX_WRITE_BYTES {
        return Err(RpcError::new(
            "too_large",
            format!(
                "{}: more than the {} MiB a single write accepts; upload an archive instead",
                workspace_absolute(rel),
                rpc::MAX_WRITE_BYTES >> 20
            ),
        ));
    }
    fdatasync(&file).map_err(|e| fs_error(e, rel))?;
    Ok(n)
}

pub fn mkdir(path: &str, parents: bool) -> Result<Reply, RpcError> {
    let rel = relative(path)?;
    let root = root()?;
    if parents {
        mkdir_all(&root, &rel)?;
    } else if rel.is_empty() {
        return Err(fs_error(Errno::EXIST, &rel));
    } else {
        let (dir, name) = open_parent(&root, &rel, false)?;
        mkdirat(&dir, name, Mode::from_raw_mode(0o755)).map_err(|e| fs_error(e, &rel))?;
    }
    Ok(Reply::Done {
        path: workspace_absolute(&rel),
    })
}

pub fn remove(path: &str, recursive: bool) -> Result<Reply, RpcError> {
    let rel = relative(path)?;
    if rel.is_empty() {
        return Err(RpcError::new(
            "invalid_path",
            "/workspace itself cannot be removed".into(),
        ));
    }
    let root = root()?;
    let (dir, name, st) = lstat(&root, &rel)?;
    if artifact_type(&st) == ArtifactType::Directory {
        if recursive {
            remove_tree(dir.as_fd(), name.as_str(), &rel)?;
        } else {
            unlinkat(&dir, name.as_str(), AtFlags::REMOVEDIR).map_err(|e| {
                let mut err = fs_error(e, &rel);
                if e == Errno::NOTEMPTY {
                    err.message.push_str("; remove it recursively");
                }
                err
            })?;
        }
    } else {
        unlinkat(&dir, name.as_str(), AtFlags::empty()).map_err(|e| fs_error(e, &rel))?;
    }
    Ok(Reply::Done {
        path: workspace_absolute(&rel),
    })
}

/// Removes the directory `name` in `parent` and everything below it,
/// descriptor by descriptor (nothing is resolved by path, so a symlink
/// swapped in meanwhile is removed, not followed).
pub fn remove_tree(parent: BorrowedFd<'_>, name: &str, rel: &str) -> Result<(), RpcError> {
    let fd = openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fs_error(e, rel))?;
    let mut entries = Dir::new(fd).map_err(|e| fs_error(e, rel))?;
    while let Some(entry) = entries.read() {
        let entry = entry.map_err(|e| fs_error(e, rel))?;
        let child = entry.file_name();
        if child == c"." || child == c".." {
            continue;
        }
        let dir = entries.fd().map_err(|e| fs_error(e, rel))?;
        let child_rel = format!("{rel}/{}", child.to_string_lossy());
        if is_dir(dir, child, entry.file_type()) {
            remove_tree(dir, &child.to_string_lossy(), &child_rel)?;
        } else {
            unlinkat(dir, child, AtFlags::empty()).map_err(|e| fs_error(e, &child_rel))?;
        }
    }
    unlinkat(parent, name, AtFlags::REMOVEDIR).map_err(|e| fs_error(e, rel))
}

/// Whether a directory entry is a directory (not a symlink to one), asking
/// the file system only when `getdents` did not say.
fn is_dir(dir: BorrowedFd<'_>, name: &std::ffi::CStr, d_type: FileType) -> bool {
    match d_type {
        FileType::Unknown => statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory),
        t => t == FileType::Directory,
    }
}

/// Flushes /workspace's file system to its disk (`syncfs`): what a
/// request changed survives a VM killed once it has answered.
pub fn sync_workspace() -> Result<(), RpcError> {
    let dir = openat(
        rustix::fs::CWD,
        rpc::WORKSPACE,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fs_error(e, ""))?;
    rustix::fs::syncfs(&dir).map_err(|e| fs_error(e, ""))
}

/// Flushes the file system under /workspace to its disk, and the
/// writable system's upper layer to its own when that is a disk.
pub fn sync() -> Result<(), RpcError> {
    sync_workspace()?;
    // On the overlay, syncfs syncs its upper file system.
    match super::system::upper_on_disk() {
        Some(system) => rustix::fs::syncfs(system).map_err(|e| fs_error(e, "/")),
        None => Ok(()),
    }
}
