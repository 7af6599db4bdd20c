//! The guest agent's RPC protocol over vsock.
//!
//! A connection carries frames; each frame is a JSON header followed by an
//! optional run of raw bytes (file bodies, command output), so binary data
//! is never inflated into JSON:
//!
//! ```text
//! u32 LE header length | header (JSON) | u32 LE data length | data
//! ```
//!
//! The host sends a [`rpc::Request`]. Requests that carry a body
//! ([`rpc::Request::Write`], [`rpc::Request::Upload`], an exec with
//! `stdin`) are followed by [`rpc::Request::Data`] frames, the bytes in the
//! data part, ended by one with an empty data part; the agent always reads
//! the whole body before it answers, even when the request fails, so the
//! connection stays in step. The agent answers with zero or more
//! [`rpc::Event::Output`] frames (command output as produced) or
//! [`rpc::Event::Data`] frames (file and archive bytes), then exactly one
//! final frame ([`rpc::Event::Done`] or [`rpc::Event::Error`]).
//!
//! Requests on one connection are served in order; a host that wants
//! several at once opens several connections (a connection costs one vsock
//! handshake, ~15 ms, which is cheaper than request ids and a
//! multiplexer in a guest whose every syscall is emulated).
//!
//! Paths in file and archive requests are confined to [`rpc::WORKSPACE`]:
//! relative paths resolve under it, absolute paths must lie inside it, `..`
//! components are refused, and the guest resolves every path with
//! `openat2(RESOLVE_BENEATH)`, so a symlink cannot lead outside either.

use crate::{service, shell};
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};

/// The vsock port the agent listens on.
pub const AGENT_PORT: u32 = 10_000;
/// Largest JSON header accepted.
pub const MAX_HEADER: u32 = 1 << 20;
/// Largest data part of one frame.
pub const MAX_DATA: u32 = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Liveness and guest facts.
    Ping,
    /// Run a command to completion, streaming its output.
    Exec(ExecRequest),
    /// Facts about one path (a symlink is reported, not followed).
    Stat { path: String },
    /// A directory's entries (a file lists as itself), at most
    /// [`MAX_LIST_ENTRIES`]. The entries come in [`Event::Data`]
    /// frames as JSON lines ([`ListLines`] writes them, [`ListReader`]
    /// reads them back with its bounds), in walk order, and the final
    /// [`Reply::List`] carries only `truncated`: a listing of any size
    /// fits, where one reply header holds at most [`MAX_HEADER`] bytes
    /// (about 7,000 entries). The host sorts.
    List { path: String, recursive: bool },
    /// A regular file's bytes from `offset`, at most `max_bytes`
    /// (default: all), as [`Event::Data`] frames.
    Read {
        path: String,
        #[serde(default)]
        offset: u64,
        max_bytes: Option<u64>,
    },
    /// Replace a file atomically (temporary file, fsync, rename) with
    /// the body. `mode` defaults to the existing file's mode, else 0644.
    /// `parents` creates missing parent directories. At most
    /// [`MAX_WRITE_BYTES`].
    Write {
        path: String,
        mode: Option<u32>,
        #[serde(default)]
        parents: bool,
    },
    /// Create a directory (`parents`: like `mkdir -p`).
    Mkdir {
        path: String,
        #[serde(default)]
        parents: bool,
    },
    /// Remove a file, symlink or empty directory; `recursive` removes a
    /// directory tree. The workspace root itself cannot be removed.
    Remove {
        path: String,
        #[serde(default)]
        recursive: bool,
    },
    /// Unpack the body (a tar stream) into the directory `dest`
    /// (created if missing). All or nothing: entries land in a staging
    /// directory first and move into place only if the whole archive
    /// is valid. Refused: absolute names, `..`, device and fifo
    /// entries, links whose target leaves the archive.
    Upload { dest: String },
    /// A path as a tar stream in [`Event::Data`] frames: a file as one
    /// entry, a directory as its children. Symlinks are stored, not
    /// followed; sockets, fifos and devices are skipped.
    Download { path: String },
    /// Flush /workspace to its disk (`syncfs`), before a snapshot or stop.
    Sync,
    /// Freeze /workspace (`FIFREEZE`: dirty data and the journal written
    /// out, new writes held), so the host can read the disk image as it
    /// is: [`Reply::Frozen`]. The freeze lasts until [`Request::Thaw`] on
    /// the same connection, the connection's end, or `hold_ms` (at most
    /// [`MAX_FREEZE_MS`]), whichever comes first; after the deadline the
    /// agent thaws and closes the connection, so a late `Thaw` fails and
    /// the host knows its read may be torn. Refused (`busy`) when more
    /// than [`FREEZE_MAX_DIRTY_BYTES`] wait to be written (the host reads
    /// through the guest then), and (`unsupported`) when /workspace is no
    /// disk of its own or has other file systems mounted below it (the
    /// image would not hold them).
    Freeze { hold_ms: u64 },
    /// Ends the freeze this connection holds: [`Reply::Thawed`].
    Thaw,
    /// The first request to a guest restored from a snapshot: make it
    /// this VM (hostname, the kernel's random state reseeded with the
    /// host's entropy, wall clock set to the host's), since every VM
    /// restored from one snapshot starts out identical.
    Restored {
        /// The new hostname; `None` keeps it (a VM resumed from its
        /// own suspended memory is the same machine).
        hostname: Option<String>,
        /// At least 32 bytes from the host's CSPRNG.
        entropy: Vec<u8>,
        /// The host's wall clock, nanoseconds since the epoch.
        unix_ns: u64,
        /// The disk (`/dev/vdX`) to mount on /workspace now, in a VM
        /// started with `pyro.workspace=later`: the disk was attached
        /// at restore, so the agent waits until the kernel has seen
        /// its size, then mounts it.
        #[serde(default)]
        workspace: Option<String>,
        /// Make the system writable now, before /workspace is mounted:
        /// the upper layer's disk (`/dev/vdX`, waited for as the
        /// workspace's is) or `tmpfs` (see [`crate::cmdline::SYSTEM_KEY`]).
        #[serde(default)]
        system: Option<String>,
    },
    /// Apply the unified diff in the frame's data part (at most
    /// [`MAX_DATA`]) to /workspace, all or nothing (see the `pyro-patch` crate).
    PatchApply,
    /// Make the guest's secrets ([`crate::secrets::DIR`]) exactly these:
    /// the values are the frame's data part, back to back in the order
    /// of `entries` (see [`crate::secrets::split`]); secrets not listed
    /// are removed. Sent after every boot, restore and resume, and on
    /// `secret set|unset`.
    Secrets { entries: Vec<crate::secrets::Entry> },
    /// Open a shell on a new pseudo-terminal ([`crate::shell`]).
    ShellOpen(shell::OpenRequest),
    /// A shell's output from a cursor, as [`Event::Data`] frames, then
    /// [`Reply::ShellRead`].
    ShellRead(shell::ReadRequest),
    /// Type the frame's data part (at most [`shell::MAX_INPUT_BYTES`])
    /// into a shell's terminal.
    ShellWrite { id: String },
    /// Change a shell's terminal size (its programs get SIGWINCH).
    ShellResize { id: String, cols: u16, rows: u16 },
    /// Send a signal to the shell's foreground process group.
    ShellSignal { id: String, signal: shell::Signal },
    /// End a shell (HUP, then KILL) and forget it.
    ShellClose { id: String },
    /// Every shell the agent keeps.
    ShellList,
    /// Start a service ([`crate::service`]); the reply comes once it is
    /// ready, failed or ended, or at once without a probe.
    ServiceStart(service::StartRequest),
    /// One service as it is now.
    ServiceStatus { name: String },
    /// A service's output kept so far (the last `tail_lines` lines of
    /// each stream, if given), as [`Event::Data`] frames, then
    /// [`Reply::ServiceLogs`].
    ServiceLogs {
        name: String,
        tail_lines: Option<u64>,
    },
    /// Stop a service: SIGTERM to its process group, SIGKILL after
    /// `grace_ms`; the reply comes once its main process is gone.
    ServiceStop { name: String, grace_ms: u64 },
    /// Every service the agent keeps.
    ServiceList,
    /// A piece of the current request's body; an empty one ends it.
    Data,
    /// A piece of the current request's body that waits on the staging
    /// disk `device` (read-only to the guest; the host writes it):
    /// `len` bytes (at most [`MAX_DATA`]) from `offset` (a multiple of
    /// [`STAGED_ALIGN`]), whose [`staged_sum`] is `sum`. The agent reads
    /// them with direct I/O, past its kernel's page cache and its vsock
    /// path, which on PVM hosts cost 0.8 s per MiB. A sum that does not
    /// match (the host reused the range meanwhile) fails the request, so
    /// it changes nothing. The body still ends with an empty
    /// [`Request::Data`], and may mix both kinds.
    Staged {
        device: String,
        offset: u64,
        len: u32,
        sum: u64,
    },
}

/// What a [`Request::Staged`] offset is a multiple of: a page, so the
/// agent's direct reads are aligned on every block device.
pub const STAGED_ALIGN: u64 = 4096;

/// The check of a [`Request::Staged`] piece: a 64-bit hash, a word at a
/// time (about 1 ms per MiB in guest user code, which runs at native
/// speed). It catches a range the host reused or freed before the agent
/// read it; it is no defence against anyone, and needs none (the guest
/// cannot write the staging disk, and the host is trusted).
pub fn staged_sum(data: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (data.len() as u64).wrapping_mul(K);
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let v = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
        h = (h ^ v).wrapping_mul(K).rotate_left(29);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(K).rotate_left(29);
    }
    h ^ (h >> 32)
}

/// The directory file requests are confined to.
pub const WORKSPACE: &str = "/workspace";
/// Longest [`Request::Freeze`] the agent holds.
pub const MAX_FREEZE_MS: u64 = 120_000;
/// Most dirty and in-writeback bytes (`/proc/meminfo`) a freeze starts
/// with: writing more out through the emulated guest kernel costs more
/// than reading through the agent.
pub const FREEZE_MAX_DIRTY_BYTES: u64 = 16 << 20;
/// Most entries one `List` returns (the reply says `truncated`): a
/// tree of 100,000 files and their directories must fit, with room.
pub const MAX_LIST_ENTRIES: usize = 1_000_000;
/// Most bytes of JSON lines one `List` returns, whatever the entries
/// hold (the reply says `truncated`): with [`MAX_LIST_ENTRIES`], what
/// bounds the host's memory for a listing the guest feeds it.
pub const MAX_LIST_BYTES: usize = 256 << 20;
/// Largest file one `Write` accepts.
pub const MAX_WRITE_BYTES: u64 = 512 << 20;
/// Largest exec `stdin` body.
pub const MAX_STDIN_BYTES: u64 = 64 << 20;
/// Preferred size of the data part of body and [`Event::Data`] frames.
pub const CHUNK: usize = 256 << 10;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ExecRequest {
    /// Program and arguments (run directly, no shell).
    pub argv: Vec<String>,
    /// A shell command line instead of `argv`: runs `/bin/sh -c SHELL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// Working directory; default `/workspace` if it exists, else `/`.
    pub cwd: Option<String>,
    /// Extra environment, on top of a minimal default one.
    pub env: Vec<(String, String)>,
    /// Kill the whole process group after this long.
    pub timeout_ms: Option<u64>,
    /// Per-stream cap on captured bytes; output past it is drained and
    /// counted but not sent (`truncated` in the result).
    pub max_output_bytes: Option<u64>,
    /// The request has a body (see the module docs) that becomes the
    /// command's standard input; otherwise stdin is `/dev/null`.
    #[serde(default)]
    pub stdin: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Output bytes (in the frame's data part).
    Output { stream: Stream },
    /// File or archive bytes (in the frame's data part).
    Data,
    /// The request finished.
    Done(Reply),
    /// The request failed; nothing more comes for it.
    Error { kind: String, message: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Pong {
        uptime_ms: u64,
        hostname: String,
    },
    Exec(ExecResult),
    Stat(FileInfo),
    List(ListResult),
    Read(ReadResult),
    Written(WriteResult),
    /// Mkdir and Remove: the absolute path acted on.
    Done {
        path: String,
    },
    Upload(UploadResult),
    Download(DownloadResult),
    Synced,
    /// /workspace is frozen until [`Request::Thaw`] (or the deadline).
    Frozen,
    /// The freeze ended in time: what the host read was one instant.
    Thawed,
    Restored,
    /// The guest holds this many secrets now.
    Secrets {
        count: u32,
    },
    Patched(PatchResult),
    /// Shell open, write, resize, signal and close.
    Shell(shell::Info),
    ShellRead(shell::ReadResult),
    Shells {
        shells: Vec<shell::Info>,
    },
    /// Service start, status and stop.
    Service(Box<service::Info>),
    ServiceLogs(Box<service::LogsResult>),
    Services {
        services: Vec<service::Info>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct PatchResult {
    pub changed: bool,
    pub summary: PatchSummary,
    /// One entry per file touched, in patch order; paths are relative
    /// to /workspace.
    pub entries: Vec<PatchEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct PatchSummary {
    pub total: u64,
    pub added: u64,
    pub modified: u64,
    pub deleted: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PatchEntry {
    pub path: String,
    /// `added`, `modified` or `deleted` (a rename is the old path
    /// deleted and the new one added).
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ListResult {
    /// Sorted by path; a file lists as itself. On the wire the entries
    /// travel in data frames and the reply's list is empty (see
    /// [`Request::List`]).
    #[serde(default)]
    pub entries: Vec<FileInfo>,
    /// More than [`MAX_LIST_ENTRIES`] entries; the rest were left out.
    pub truncated: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReadResult {
    /// The file's size.
    pub size_bytes: u64,
    /// Bytes sent (in the `Data` frames before this reply).
    pub bytes_read: u64,
    /// Bytes after the part sent remain.
    pub truncated: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WriteResult {
    pub path: String,
    pub bytes_written: u64,
    pub mode: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UploadResult {
    pub dest: String,
    pub entry_count: u64,
    /// File bytes written (not the tar stream's length).
    pub bytes_written: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DownloadResult {
    pub path: String,
    pub artifact_type: ArtifactType,
    pub entry_count: u64,
    /// File bytes archived (not the tar stream's length).
    pub bytes_read: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactType {
    File,
    Directory,
    Symlink,
    /// Sockets, fifos, devices.
    Other,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileInfo {
    /// Absolute guest path (`/workspace/...`).
    pub path: String,
    pub artifact_type: ArtifactType,
    pub size_bytes: u64,
    /// Permission bits (`0o7777` part of `st_mode`).
    pub mode: u32,
    /// Seconds since the epoch.
    pub mtime: i64,
    pub link_target: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ExecResult {
    /// Exit status if the command exited.
    pub exit_code: Option<i32>,
    /// Signal number if it was killed by one.
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub duration_ms: u64,
    /// Bytes the command wrote to each stream, sent or not.
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
}

/// Why a path was refused before it reached the file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError {
    pub path: String,
    pub reason: &'static str,
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "path {:?} {}", self.path, self.reason)
    }
}

impl std::error::Error for PathError {}

/// The part of `path` below [`WORKSPACE`] (`""` for the workspace
/// itself), with `.` and empty components dropped. Relative paths
/// resolve under the workspace; absolute ones must lie inside it; `..`
/// is refused outright, even when it would stay inside, so what a
/// path names never depends on symlinks along it. The guest checks
/// again, against the real tree (`RESOLVE_BENEATH`).
pub fn workspace_relative(path: &str) -> Result<String, PathError> {
    let clean = workspace_relative_any(path)?;
    if clean.split('/').next() == Some(STAGING_DIR) {
        return Err(PathError {
            path: path.to_string(),
            reason: "is pyro's staging directory (reserved: emptied at every start)",
        });
    }
    Ok(clean)
}

/// The directory at the top of /workspace where the agent makes new
/// files and unpacks archives before renaming them into place. A user
/// may see it while such a request runs; every mount of /workspace
/// empties it, so a VM killed mid-write leaves nothing half-made where
/// the user's files are. Request paths may not name it.
pub const STAGING_DIR: &str = ".pyro-staging";

/// [`workspace_relative`] without the staging-directory rule.
fn workspace_relative_any(path: &str) -> Result<String, PathError> {
    let refuse = |reason| {
        Err(PathError {
            path: path.to_string(),
            reason,
        })
    };
    if path.contains('\0') {
        return refuse("contains a NUL byte");
    }
    let rest = if let Some(abs) = path.strip_prefix('/') {
        match abs.strip_prefix(&WORKSPACE[1..]) {
            Some(r) if r.is_empty() || r.starts_with('/') => r,
            _ => return refuse("is outside /workspace"),
        }
    } else {
        path
    };
    match clean_relative(rest) {
        Some(clean) => Ok(clean),
        None => refuse("contains '..' (not allowed in workspace paths)"),
    }
}

/// A relative path with `.` and empty components dropped, or `None`
/// if it has a `..` component.
pub fn clean_relative(path: &str) -> Option<String> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// `/workspace/<rel>`, the absolute form of a [`workspace_relative`] path.
pub fn workspace_absolute(rel: &str) -> String {
    if rel.is_empty() {
        WORKSPACE.to_string()
    } else {
        format!("{WORKSPACE}/{rel}")
    }
}

/// Writes one frame. A header or data part larger than the reader
/// accepts ([`MAX_HEADER`], [`MAX_DATA`]) is refused here, before
/// anything is written, so the connection stays in step and the
/// error names the sender's bug instead of the reader's limit.
pub fn write_frame<T: Serialize>(w: &mut impl Write, header: &T, data: &[u8]) -> io::Result<()> {
    let json = serde_json::to_vec(header).map_err(io::Error::other)?;
    if json.len() > MAX_HEADER as usize {
        return Err(too_large(format!(
            "frame header of {} bytes exceeds {MAX_HEADER}",
            json.len()
        )));
    }
    if data.len() > MAX_DATA as usize {
        return Err(too_large(format!(
            "frame data of {} bytes exceeds {MAX_DATA}",
            data.len()
        )));
    }
    let mut buf = Vec::with_capacity(8 + json.len() + data.len());
    buf.extend_from_slice(&(json.len() as u32).to_le_bytes());
    buf.extend_from_slice(&json);
    buf.extend_from_slice(&(data.len() as u32).to_le_bytes());
    buf.extend_from_slice(data);
    w.write_all(&buf)
}

/// Connects to the agent through a VMM's vsock socket `uds` (the hybrid
/// convention: `CONNECT <port>\n`, then `OK <n>\n`), the handshake's
/// reads bounded by `timeout`, which stays the stream's read timeout.
/// An answer other than `OK` (or none: the VMM closed the client) is an
/// error, and nothing was sent to the guest.
pub fn connect_agent(
    uds: &std::path::Path,
    timeout: std::time::Duration,
) -> io::Result<std::os::unix::net::UnixStream> {
    let mut stream = std::os::unix::net::UnixStream::connect(uds)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(format!("CONNECT {AGENT_PORT}\n").as_bytes())?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 32 {
        stream.read_exact(&mut byte)?;
        if byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
    }
    if !line.starts_with(b"OK ") {
        return Err(io::Error::other(format!(
            "vsock handshake: {:?}",
            String::from_utf8_lossy(&line)
        )));
    }
    Ok(stream)
}

/// Reads until `buf` is full or `from` ends; returns the bytes read.
/// Bodies are sent and written in whole chunks this way: their sources
/// (a tar entry, a body of frames) hand out data in smaller pieces.
pub fn read_full(from: &mut (impl Read + ?Sized), buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match from.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads one frame; `Ok(None)` on a clean end of stream before a frame.
pub fn read_frame<T: for<'de> Deserialize<'de>>(
    r: &mut impl Read,
) -> io::Result<Option<(T, Vec<u8>)>> {
    let mut data = Vec::new();
    Ok(read_frame_into(r, &mut data)?.map(|header| (header, data)))
}

/// [`read_frame`] into a buffer the caller keeps: `data` is replaced by
/// the frame's data part, in the memory it already has. The guest agent
/// reads bodies this way: a fresh megabyte per frame costs 256 page
/// faults, each milliseconds of emulated kernel work on PVM hosts.
pub fn read_frame_into<T: for<'de> Deserialize<'de>>(
    r: &mut impl Read,
    data: &mut Vec<u8>,
) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        other => other?,
    }
    let header_len = u32::from_le_bytes(len);
    if header_len > MAX_HEADER {
        return Err(invalid(format!(
            "frame header of {header_len} bytes exceeds {MAX_HEADER}"
        )));
    }
    let mut json = vec![0u8; header_len as usize];
    r.read_exact(&mut json)?;
    r.read_exact(&mut len)?;
    let data_len = u32::from_le_bytes(len);
    if data_len > MAX_DATA {
        return Err(invalid(format!(
            "frame data of {data_len} bytes exceeds {MAX_DATA}"
        )));
    }
    data.clear();
    data.resize(data_len as usize, 0);
    r.read_exact(data)?;
    let header =
        serde_json::from_slice(&json).map_err(|e| invalid(format!("bad frame header: {e}")))?;
    Ok(Some(header))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn too_large(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Longest JSON line one listed entry may take: two paths of up to
/// `PATH_MAX` (4,096) bytes, each byte escaped as `\u00XX` at worst.
pub const MAX_LIST_LINE: usize = 64 << 10;

/// What one listing may still hold: [`MAX_LIST_ENTRIES`] entries and
/// [`MAX_LIST_BYTES`] of their JSON lines. The one count behind every
/// lister (the agent's, the host's disk reader) and the host's reader of
/// what the guest sends.
#[derive(Default, Debug)]
pub struct ListBudget {
    entries: usize,
    bytes: usize,
}

impl ListBudget {
    /// Counts one more entry whose JSON line (newline included) is
    /// `line_len` bytes; false, counting nothing, if it does not fit.
    pub fn take(&mut self, line_len: usize) -> bool {
        if self.entries >= MAX_LIST_ENTRIES || self.bytes + line_len > MAX_LIST_BYTES {
            return false;
        }
        self.entries += 1;
        self.bytes += line_len;
        true
    }

    /// [`ListBudget::take`] for `info`, measuring its line.
    pub fn take_entry(&mut self, info: &FileInfo) -> bool {
        self.take(line_len(info))
    }
}

/// The length of `info`'s JSON line, newline included.
fn line_len(info: &FileInfo) -> usize {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(1);
    // FileInfo is plain data: serializing it cannot fail.
    serde_json::to_writer(&mut count, info).expect("FileInfo serializes");
    count.0
}

/// The listing is full ([`ListBudget`]): the entry was not added.
#[derive(Debug, PartialEq, Eq)]
pub struct ListFull;

/// The guest's side of a streamed listing: collects entries as JSON
/// lines and hands out a data part whenever [`CHUNK`] bytes are
/// ready, so guest memory stays flat however big the tree.
#[derive(Default)]
pub struct ListLines {
    buf: Vec<u8>,
    budget: ListBudget,
}

impl ListLines {
    /// Adds one entry; returns a full chunk to send, if one is ready, or
    /// [`ListFull`] (the entry left out) once the listing holds all a
    /// listing may.
    pub fn push(&mut self, info: &FileInfo) -> Result<Option<Vec<u8>>, ListFull> {
        let start = self.buf.len();
        // FileInfo is plain data: serializing it cannot fail.
        serde_json::to_writer(&mut self.buf, info).expect("FileInfo serializes");
        self.buf.push(b'\n');
        if !self.budget.take(self.buf.len() - start) {
            self.buf.truncate(start);
            return Err(ListFull);
        }
        Ok((self.buf.len() >= CHUNK).then(|| std::mem::take(&mut self.buf)))
    }

    /// What is left to send (empty if nothing is).
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// The host's side of a streamed listing: parses the data parts back
/// into entries. The guest is untrusted: more than a [`ListBudget`]
/// holds, a line over [`MAX_LIST_LINE`] bytes, or a line that is not a
/// [`FileInfo`] is an error, and memory stays bounded by those limits.
#[derive(Default)]
pub struct ListReader {
    partial: Vec<u8>,
    entries: Vec<FileInfo>,
    budget: ListBudget,
}

impl ListReader {
    /// Takes one data part.
    pub fn push(&mut self, mut data: &[u8]) -> io::Result<()> {
        while let Some(end) = data.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&data[..end]);
            data = &data[end + 1..];
            let line = std::mem::take(&mut self.partial);
            self.line(&line)?;
        }
        self.partial.extend_from_slice(data);
        if self.partial.len() > MAX_LIST_LINE {
            return Err(invalid(format!(
                "a listed entry longer than {MAX_LIST_LINE} bytes"
            )));
        }
        Ok(())
    }

    fn line(&mut self, line: &[u8]) -> io::Result<()> {
        if line.len() > MAX_LIST_LINE {
            return Err(invalid(format!(
                "a listed entry longer than {MAX_LIST_LINE} bytes"
            )));
        }
        if !self.budget.take(line.len() + 1) {
            return Err(invalid(format!(
                "more than {MAX_LIST_ENTRIES} listed entries or {MAX_LIST_BYTES} bytes of them"
            )));
        }
        let info =
            serde_json::from_slice(line).map_err(|e| invalid(format!("bad listed entry: {e}")))?;
        self.entries.push(info);
        Ok(())
    }

    /// The entries, sorted by path; an unfinished last line is an
    /// error.
    pub fn finish(self) -> io::Result<Vec<FileInfo>> {
        if !self.partial.is_empty() {
            return Err(invalid("a listing that ends mid-entry".into()));
        }
        let mut entries = self.entries;
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(entries)
    }
}

#[cfg(test)]
mod tests;
