//! The ext4 reader of workspace disks in a process of its own, confined
//! (`pyro __image-reader DISK`): the image is untrusted (the guest was
//! root on it and could write anything to its block device), so the
//! parser runs where a bug cannot reach the host. The helper opens the
//! image, confines itself (`pyro_vmm::sandbox::confine_parser`: a system
//! call allowlist, no new privileges, memory and CPU limits), and then
//! answers requests on stdin, one at a time, with the functions of
//! `disk_tools.rs`. [`ImageReader`] is the caller's side: the disk tools
//! (a stopped workspace) and the host reads of a running one
//! (`host_read.rs`) go through it.
//!
//! Wire: a request is one JSON line; a reply is one JSON line (`ok`,
//! with `bytes` raw bytes after it, or `err`), a pack's tar stream comes
//! first as `chunk` lines each followed by its bytes. The caller bounds
//! every line and every byte count.

use super::disk_tools;
use crate::Error;
use ext4_view::Ext4;
use pyro_proto::rpc::{self, DownloadResult, FileInfo};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// The hidden `pyro` mode that runs [`serve`].
pub const IMAGE_READER_MODE: &str = "__image-reader";
/// Test hook: set, the helper tries to open a file once confined (the
/// sandbox must kill it).
pub const TEST_ESCAPE_ENV: &str = "PYRO_TEST_IMAGE_READER_ESCAPE";

/// Longest reply line the caller reads (listings and tar streams come
/// in chunks).
const MAX_LINE: u64 = 1 << 20;
/// Longest request line the helper reads.
const MAX_REQUEST: u64 = 64 << 10;
/// Bytes per chunk of a pack's tar stream or a listing's lines.
const CHUNK: usize = 1 << 20;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    List { path: String, recursive: bool },
    Read { path: String, max_bytes: u64 },
    Pack { path: String },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Ok {
        value: serde_json::Value,
        #[serde(default)]
        bytes: u64,
    },
    Chunk {
        bytes: u64,
    },
    Err {
        kind: String,
        message: String,
    },
}

/// The helper's main: serves requests on `disk` until stdin ends.
/// Returns the process's exit status.
pub fn serve(disk: &Path) -> i32 {
    let file = match std::fs::File::open(disk) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("image reader: {}: {e}", disk.display());
            return 2;
        }
    };
    // Its length bounds what its superblock may claim (read before the
    // sandbox, which has no fstat).
    let len = match file.metadata() {
        Ok(m) => m.len(),
        Err(e) => {
            eprintln!("image reader: {}: {e}", disk.display());
            return 2;
        }
    };
    // A panic comes back as an error; printing it (or a backtrace, which
    // opens files) is not for a confined process.
    std::panic::set_hook(Box::new(|_| {}));
    if let Err(e) = pyro_vmm::sandbox::confine_parser() {
        eprintln!("image reader: cannot confine itself: {e}");
        return 3;
    }
    if std::env::var_os(TEST_ESCAPE_ENV).is_some() {
        let _ = std::fs::File::open("/etc/hostname");
    }
    let given = disk.display().to_string();
    let fs = disk_tools::load(Box::new(file), len, &given);
    let mut input = std::io::stdin().lock();
    let mut out = std::io::BufWriter::with_capacity(CHUNK + 4096, std::io::stdout().lock());
    loop {
        let mut line = Vec::new();
        match (&mut input).take(MAX_REQUEST).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return 0,
            Ok(_) => {}
        }
        let request: Request = match serde_json::from_slice(&line) {
            Ok(r) => r,
            Err(e) => {
                let _ = send(
                    &mut out,
                    &error(&Error::Io(format!("bad request: {e}"))),
                    &[],
                );
                return 4;
            }
        };
        let sent = match &fs {
            Err(e) => send(&mut out, &error(e), &[]),
            Ok(fs) => answer(fs, &given, request, &mut out),
        };
        if sent.and_then(|_| out.flush()).is_err() {
            return 0; // the caller went away
        }
    }
}

fn error(e: &Error) -> Reply {
    Reply::Err {
        kind: e.kind().to_string(),
        message: e.to_string(),
    }
}

fn send(out: &mut impl Write, reply: &Reply, bytes: &[u8]) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, reply)?;
    out.write_all(b"\n")?;
    out.write_all(bytes)
}

fn answer(fs: &Ext4, given: &str, request: Request, out: &mut impl Write) -> std::io::Result<()> {
    let ok = |value: serde_json::Value, bytes: u64| Reply::Ok { value, bytes };
    match request {
        Request::List { path, recursive } => {
            match disk_tools::guarded(given, || disk_tools::list(fs, &path, recursive)) {
                // As the agent streams it: JSON lines in chunks (one JSON
                // value of a million entries would cost the caller a
                // gigabyte to parse), then whether it was cut short.
                Ok((entries, mut truncated)) => {
                    // The agent's format and bound (`rpc::ListLines`);
                    // the list above kept to the same bound already.
                    let mut lines = pyro_proto::rpc::ListLines::default();
                    let chunk = |out: &mut _, data: &[u8]| {
                        let reply = Reply::Chunk {
                            bytes: data.len() as u64,
                        };
                        send(out, &reply, data)
                    };
                    for entry in &entries {
                        match lines.push(entry) {
                            Ok(Some(full)) => chunk(&mut *out, &full)?,
                            Ok(None) => {}
                            Err(pyro_proto::rpc::ListFull) => {
                                truncated = true;
                                break;
                            }
                        }
                    }
                    let rest = lines.finish();
                    if !rest.is_empty() {
                        chunk(&mut *out, &rest)?;
                    }
                    send(out, &ok(serde_json::json!(truncated), 0), &[])
                }
                Err(e) => send(out, &error(&e), &[]),
            }
        }
        Request::Read { path, max_bytes } => {
            match disk_tools::guarded(given, || disk_tools::read(fs, &path, max_bytes)) {
                Ok((content, size)) => send(
                    out,
                    &ok(serde_json::json!(size), content.len() as u64),
                    &content,
                ),
                Err(e) => send(out, &error(&e), &[]),
            }
        }
        Request::Pack { path } => {
            let mut chunks = Chunks {
                out: &mut *out,
                buf: Vec::with_capacity(CHUNK),
            };
            let packed = disk_tools::guarded(given, || disk_tools::pack(fs, &path, &mut chunks));
            match packed {
                Ok(done) => {
                    chunks.flush_chunk()?;
                    send(out, &ok(serde_json::json!(done), 0), &[])
                }
                Err(e) => send(out, &error(&e), &[]),
            }
        }
    }
}

/// A pack's tar stream as `chunk` replies.
struct Chunks<'a, W: Write> {
    out: &'a mut W,
    buf: Vec<u8>,
}

impl<W: Write> Chunks<'_, W> {
    fn flush_chunk(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let reply = Reply::Chunk {
                bytes: self.buf.len() as u64,
            };
            send(self.out, &reply, &self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

impl<W: Write> Write for Chunks<'_, W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.flush_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A confined reader of one disk image (see the module docs); the helper
/// ends when this is dropped.
pub(crate) struct ImageReader {
    child: Child,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
    given: String,
}

impl ImageReader {
    /// Starts the helper on `disk`, the disk of workspace `given`.
    pub fn open(disk: &Path, given: &str) -> Result<ImageReader, Error> {
        let mut child = Command::new(crate::detached::vmm_program()?)
            .arg(IMAGE_READER_MODE)
            .arg(disk)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Io(format!("start the disk reader: {e}")))?;
        let to = child.stdin.take().expect("piped");
        let from = BufReader::with_capacity(CHUNK, child.stdout.take().expect("piped"));
        Ok(ImageReader {
            child,
            to,
            from,
            given: given.to_string(),
        })
    }

    /// Why the helper stopped answering, from how it ended.
    fn gone(&mut self, what: String) -> Error {
        let _ = self.child.kill();
        let how = match self.child.wait() {
            Ok(status) => {
                use std::os::unix::process::ExitStatusExt;
                match status.signal() {
                    // SIGSYS
                    Some(31) => {
                        "killed by its sandbox: a system call outside its allowlist".to_string()
                    }
                    // SIGXCPU
                    Some(24) => "out of CPU time".to_string(),
                    Some(sig) => format!("killed by signal {sig}"),
                    None => format!("exit status {:?}", status.code()),
                }
            }
            Err(e) => e.to_string(),
        };
        Error::Io(format!(
            "workspace {}: the disk reader failed ({what}; it was {how})",
            self.given
        ))
    }

    fn reply(&mut self) -> Result<Reply, Error> {
        let mut line = Vec::new();
        let read = (&mut self.from).take(MAX_LINE).read_until(b'\n', &mut line);
        match read {
            Ok(0) => return Err(self.gone("no reply".into())),
            Err(e) => return Err(self.gone(e.to_string())),
            Ok(_) if !line.ends_with(b"\n") => {
                return Err(self.gone(format!("a reply line over {MAX_LINE} bytes")))
            }
            Ok(_) => {}
        }
        serde_json::from_slice(&line).map_err(|e| self.gone(format!("a bad reply: {e}")))
    }

    fn bytes(&mut self, n: u64, max: u64) -> Result<Vec<u8>, Error> {
        if n > max {
            return Err(self.gone(format!("{n} bytes where at most {max} were asked")));
        }
        let mut buf = vec![0u8; n as usize];
        if let Err(e) = self.from.read_exact(&mut buf) {
            return Err(self.gone(e.to_string()));
        }
        Ok(buf)
    }

    /// Sends `request`; the final reply's value and byte count.
    fn call(
        &mut self,
        request: &Request,
        mut on_chunk: impl FnMut(&[u8]) -> Result<(), Error>,
        max_bytes: u64,
    ) -> Result<(serde_json::Value, Vec<u8>), Error> {
        let mut line = serde_json::to_vec(request).expect("a request serializes");
        line.push(b'\n');
        if let Err(e) = self.to.write_all(&line).and_then(|_| self.to.flush()) {
            return Err(self.gone(e.to_string()));
        }
        loop {
            match self.reply()? {
                Reply::Chunk { bytes } => {
                    let chunk = self.bytes(bytes, CHUNK as u64)?;
                    on_chunk(&chunk)?;
                }
                Reply::Ok { value, bytes } => return Ok((value, self.bytes(bytes, max_bytes)?)),
                Reply::Err { kind, message } => {
                    return Err(match kind.as_str() {
                        "not_found" | "invalid_path" | "not_a_file" => Error::Agent {
                            kind,
                            message: crate::error::printable(&message),
                        },
                        _ => Error::Io(crate::error::printable(&message)),
                    })
                }
            }
        }
    }

    fn value<T: serde::de::DeserializeOwned>(&mut self, v: serde_json::Value) -> Result<T, Error> {
        serde_json::from_value(v).map_err(|e| self.gone(format!("a bad reply: {e}")))
    }

    /// As `disk_tools::list`.
    pub fn list(&mut self, rel: &str, recursive: bool) -> Result<(Vec<FileInfo>, bool), Error> {
        let request = Request::List {
            path: rel.into(),
            recursive,
        };
        // Bounded as a listing from the guest is: the helper reads what
        // the guest wrote to its disk.
        let mut lines = rpc::ListReader::default();
        let mut bad = None;
        let called = self.call(
            &request,
            |chunk| {
                lines.push(chunk).map_err(|e| {
                    let e = e.to_string();
                    bad = Some(e.clone());
                    Error::Io(e)
                })
            },
            0,
        );
        // Stopped mid-reply, the helper is out of step: end it.
        if let Some(e) = bad {
            return Err(self.gone(format!("a bad listing: {e}")));
        }
        let (value, _) = called?;
        match lines.finish() {
            Ok(entries) => Ok((entries, self.value(value)?)),
            Err(e) => Err(self.gone(format!("a bad listing: {e}"))),
        }
    }

    /// As `disk_tools::read`: at most `max_bytes` of the file, and its size.
    pub fn read(&mut self, rel: &str, max_bytes: u64) -> Result<(Vec<u8>, u64), Error> {
        let request = Request::Read {
            path: rel.into(),
            max_bytes,
        };
        let (value, content) = self.call(&request, |_| Ok(()), max_bytes)?;
        Ok((content, self.value(value)?))
    }

    /// As `disk_tools::pack`: `rel` as a tar stream into `out`.
    pub fn pack(&mut self, rel: &str, out: &mut impl Write) -> Result<DownloadResult, Error> {
        let request = Request::Pack { path: rel.into() };
        let sink = |chunk: &[u8]| {
            out.write_all(chunk)
                .map_err(|e| Error::Io(format!("export: {e}")))
        };
        let (value, _) = self.call(&request, sink, 0)?;
        self.value(value)
    }
}

impl Drop for ImageReader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
