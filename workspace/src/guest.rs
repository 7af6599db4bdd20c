//! Talking to guest-init's agent over the VMM's vsock socket (hybrid
//! convention: `CONNECT <port>\n` -> `OK <n>\n`, then the stream).

use crate::staging::Staging;
use crate::Cancel;
use pyro_proto::rpc::{
    self, DownloadResult, Event, ExecRequest, ExecResult, FileInfo, ListResult, PatchResult,
    ReadResult, Reply, Request, Stream, UploadResult, WriteResult,
};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Errors talking to the guest.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("the guest agent did not answer on {uds} within {seconds:.1}s (last error: {last})")]
    NotReady {
        uds: PathBuf,
        seconds: f64,
        last: String,
    },
    #[error("lost the connection to the guest agent: {0}")]
    Io(#[from] std::io::Error),
    #[error("the guest agent said {kind}: {message}")]
    Remote { kind: String, message: String },
    #[error("the guest agent sent an unexpected reply: {0}")]
    Protocol(String),
    #[error("writing what the guest sent failed: {0}")]
    Sink(std::io::Error),
    #[error("reading what to send to the guest failed: {0}")]
    Source(std::io::Error),
    /// The exec was cancelled; the guest killed the command's process
    /// group. Holds how the command ended, if the guest said so in time.
    #[error("the command was cancelled and killed")]
    Cancelled(Option<ExecResult>),
}

/// Bound on a `Restored` request: the guest waits up to 10 s for each
/// disk attached at restore, then sets up the writable system and
/// /workspace; far more than that is a guest that will not answer.
const RESTORED_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the agent may take to install the secrets (a few small
/// files on tmpfs).
const SECRETS_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to the agent. Requests on one connection run in order.
pub struct GuestClient {
    reader: BufReader<UnixStream>,
    writer: BufWriter<UnixStream>,
    /// The VM's staging disk file, for large bodies ([`crate::staging`]).
    staging: Option<PathBuf>,
    /// The staging disk while a body on it waits for the agent's answer.
    staged: Option<Staging>,
}

impl GuestClient {
    /// Connects once; fails if the agent is not listening.
    pub fn connect(uds: &Path) -> std::io::Result<GuestClient> {
        let stream = rpc::connect_agent(uds, Duration::from_secs(10))?;
        stream.set_read_timeout(None)?;
        Ok(GuestClient {
            reader: BufReader::with_capacity(rpc::CHUNK + 64, stream.try_clone()?),
            writer: BufWriter::with_capacity(rpc::CHUNK + 64, stream),
            staging: None,
            staged: None,
        })
    }

    /// Connects, retrying until the agent listens or `timeout` passes.
    pub fn wait_ready(uds: &Path, timeout: Duration) -> Result<GuestClient, GuestError> {
        let started = Instant::now();
        loop {
            let last = match GuestClient::connect(uds) {
                Ok(client) => return Ok(client),
                Err(e) => e.to_string(),
            };
            if started.elapsed() >= timeout {
                return Err(GuestError::NotReady {
                    uds: uds.into(),
                    seconds: timeout.as_secs_f64(),
                    last,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Bounds each wait for the agent's reply to `timeout` (`None`: no
    /// bound, as [`GuestClient::connect`] leaves it). A reply that does
    /// not come in time fails the call with [`GuestError::Io`].
    pub fn set_reply_timeout(&mut self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.reader.get_ref().set_read_timeout(timeout)
    }

    fn send(&mut self, request: &Request) -> Result<(), GuestError> {
        rpc::write_frame(&mut self.writer, request, &[])?;
        self.writer.flush()?;
        Ok(())
    }

    /// Sends large request bodies through the VM's staging disk, whose
    /// file is `path` ([`crate::staging`]); without it, or while another
    /// body holds it, they go inline.
    pub fn use_staging(&mut self, path: PathBuf) {
        self.staging = Some(path);
    }

    /// Sends a request body: `body` in data frames (or staged pieces),
    /// then the empty one.
    fn send_body(&mut self, body: &mut dyn Read) -> Result<(), GuestError> {
        let mut first = vec![0u8; rpc::MAX_DATA as usize];
        let n = rpc::read_full(body, &mut first).map_err(|e| self.source_failed(e))?;
        // A body that fits one frame gains nothing from the disk.
        let staging = (n == first.len())
            .then(|| self.staging.as_deref().and_then(Staging::try_lock))
            .flatten();
        let Some(mut staging) = staging else {
            rpc::write_frame(&mut self.writer, &Request::Data, &first[..n])?;
            if n == 0 {
                self.writer.flush()?;
                return Ok(());
            }
            return send_body(&mut self.writer, body);
        };
        let mut piece = first;
        let mut n = n;
        while n > 0 {
            match staging.put(&piece[..n]) {
                Some(staged) => rpc::write_frame(&mut self.writer, &staged, &[])?,
                None => rpc::write_frame(&mut self.writer, &Request::Data, &piece[..n])?,
            }
            n = match rpc::read_full(body, &mut piece) {
                Ok(n) => n,
                Err(e) => return Err(self.source_failed(e)),
            };
        }
        // Held until the answer ([`GuestClient::finish_with`]).
        self.staged = Some(staging);
        rpc::write_frame(&mut self.writer, &Request::Data, &[])?;
        self.writer.flush()?;
        Ok(())
    }

    /// The body's source failed: the connection is cut, so the agent
    /// fails the request instead of taking a short body as whole.
    fn source_failed(&mut self, e: std::io::Error) -> GuestError {
        cut(&mut self.writer, e)
    }

    /// Reads frames until the final one, passing output to `on_output`
    /// and file bytes to `on_data`.
    fn finish_with(
        &mut self,
        mut on_output: impl FnMut(Stream, &[u8]),
        mut on_data: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<Reply, GuestError> {
        // A failing sink must not leave the guest's frames unread: keep
        // reading to the final frame, then report the sink's error.
        let mut sink_error = None;
        loop {
            let Some((event, data)) = rpc::read_frame::<Event>(&mut self.reader)? else {
                return Err(GuestError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            };
            match event {
                Event::Output { stream } => on_output(stream, &data),
                Event::Data => {
                    if sink_error.is_none() {
                        sink_error = on_data(&data).err();
                    }
                }
                Event::Done(reply) => {
                    self.staged = None;
                    return match sink_error {
                        Some(e) => Err(GuestError::Sink(e)),
                        None => Ok(reply),
                    };
                }
                // The guest's words are data: they may quote an archive's
                // or a file's bytes.
                Event::Error { kind, message } => {
                    self.staged = None;
                    return Err(GuestError::Remote {
                        kind: crate::error::printable(&kind),
                        message: crate::error::printable(&message),
                    });
                }
            }
        }
    }

    fn finish(&mut self, on_output: impl FnMut(Stream, &[u8])) -> Result<Reply, GuestError> {
        self.finish_with(on_output, |_| {
            Err(std::io::Error::other("file data in a reply that has none"))
        })
    }

    /// One request without a body whose reply carries no data.
    fn call(&mut self, request: &Request) -> Result<Reply, GuestError> {
        self.send(request)?;
        self.finish(|_, _| {})
    }

    /// Round trip; returns the guest's uptime and hostname.
    pub fn ping(&mut self) -> Result<(u64, String), GuestError> {
        self.send(&Request::Ping)?;
        match self.finish(|_, _| {})? {
            Reply::Pong {
                uptime_ms,
                hostname,
            } => Ok((uptime_ms, hostname)),
            other => Err(GuestError::Protocol(format!("{other:?}"))),
        }
    }

    /// Runs a command, handing output to `on_output` as it arrives.
    pub fn exec(
        &mut self,
        request: ExecRequest,
        on_output: impl FnMut(Stream, &[u8]),
    ) -> Result<ExecResult, GuestError> {
        self.exec_with_stdin(request, None, on_output)
    }

    /// [`GuestClient::exec`] with `stdin` as the command's standard input.
    /// It is sent from a second thread while output streams back, so a
    /// command that writes a lot before reading all its input cannot
    /// deadlock against us.
    pub fn exec_with_stdin(
        &mut self,
        mut request: ExecRequest,
        stdin: Option<&mut (dyn Read + Send)>,
        on_output: impl FnMut(Stream, &[u8]),
    ) -> Result<ExecResult, GuestError> {
        request.stdin = stdin.is_some();
        self.send(&Request::Exec(request))?;
        let reply = match stdin {
            None => self.finish(on_output)?,
            Some(body) => {
                let mut writer =
                    BufWriter::with_capacity(rpc::CHUNK + 64, self.writer.get_ref().try_clone()?);
                std::thread::scope(|scope| {
                    let feeder = scope.spawn(move || send_body(&mut writer, body));
                    let reply = self.finish(on_output);
                    let fed = feeder.join().unwrap_or_else(|_| {
                        Err(GuestError::Protocol("the stdin thread panicked".into()))
                    });
                    // The reply says more than a broken pipe would.
                    reply.and_then(|r| fed.map(|_| r))
                })?
            }
        };
        match reply {
            Reply::Exec(result) => Ok(result),
            other => Err(unexpected(other)),
        }
    }

    /// [`GuestClient::exec_with_stdin`] that `cancel` can stop. Once it
    /// fires, this client shuts down its sending side; the guest agent
    /// sees the hang-up, kills the command's process group and reports
    /// how it ended, and this returns [`GuestError::Cancelled`] with that
    /// result (without it if the guest did not answer within 5 s). The
    /// connection is of no further use after a cancelled exec.
    pub fn exec_cancellable(
        &mut self,
        request: ExecRequest,
        stdin: Option<&mut (dyn Read + Send)>,
        cancel: &Cancel,
        on_output: impl FnMut(Stream, &[u8]),
    ) -> Result<ExecResult, GuestError> {
        let connection = self.writer.get_ref().try_clone()?;
        match cancel.watch(&connection, || {
            self.exec_with_stdin(request, stdin, on_output)
        }) {
            (outcome, false) => outcome,
            (outcome, true) => Err(GuestError::Cancelled(outcome.ok())),
        }
    }

    /// Flushes /workspace to its disk.
    pub fn sync(&mut self) -> Result<(), GuestError> {
        match self.call(&Request::Sync)? {
            Reply::Synced => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Freezes /workspace for at most `hold` so its disk image can be
    /// read on the host (see `Request::Freeze`); [`GuestClient::thaw`] on
    /// this connection ends it, and so does dropping the connection.
    pub fn freeze(&mut self, hold: Duration) -> Result<(), GuestError> {
        let hold_ms = hold.as_millis().min(u128::from(rpc::MAX_FREEZE_MS)) as u64;
        match self.call(&Request::Freeze { hold_ms })? {
            Reply::Frozen => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Ends this connection's freeze. An error means it ended without
    /// us (its deadline passed, the connection broke): what was read
    /// meanwhile may not be one instant.
    pub fn thaw(&mut self) -> Result<(), GuestError> {
        match self.call(&Request::Thaw)? {
            Reply::Thawed => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Makes a guest just restored from a snapshot its own VM: a fresh
    /// hostname (`pyro-` + 12 hex digits, returned), the kernel's RNG
    /// reseeded with 58 bytes of host entropy, the wall clock set to the
    /// host's; then, if `system` is given (`tmpfs`, or a disk `/dev/vdX`
    /// attached at restore), the system made writable over it; then, if
    /// `workspace` names a disk attached at restore, mounted on
    /// /workspace.
    pub fn restored(
        &mut self,
        workspace: Option<&str>,
        system: Option<&str>,
    ) -> Result<String, GuestError> {
        let entropy = host_entropy(64)?;
        let hostname = format!(
            "pyro-{}",
            entropy[..6]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        self.send_restored(
            Some(hostname.clone()),
            entropy[6..].to_vec(),
            workspace,
            system,
        )?;
        Ok(hostname)
    }

    /// For a guest resumed from its own suspended state: the same machine
    /// again (hostname kept), with the RNG reseeded and the wall clock
    /// set to the host's (it stood still while suspended).
    pub fn resumed(&mut self) -> Result<(), GuestError> {
        self.send_restored(None, host_entropy(58)?, None, None)
    }

    fn send_restored(
        &mut self,
        hostname: Option<String>,
        entropy: Vec<u8>,
        workspace: Option<&str>,
        system: Option<&str>,
    ) -> Result<(), GuestError> {
        let unix_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let request = Request::Restored {
            hostname,
            entropy,
            unix_ns,
            workspace: workspace.map(String::from),
            system: system.map(String::from),
        };
        // Bounded: a restored guest that never answers fails the start
        // (which falls back or stops the VM) instead of holding it.
        self.set_reply_timeout(Some(RESTORED_TIMEOUT))?;
        let reply = self.call(&request);
        self.set_reply_timeout(None)?;
        match reply? {
            Reply::Restored => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Applies a unified diff to /workspace, all or nothing.
    pub fn patch_apply(&mut self, text: &str) -> Result<PatchResult, GuestError> {
        if text.len() > rpc::MAX_DATA as usize {
            return Err(GuestError::Remote {
                kind: "too_large".into(),
                message: format!(
                    "patch: {} bytes; a patch may be at most {} bytes (1 MiB): split it, \
                     or send the files with `sync push`",
                    text.len(),
                    rpc::MAX_DATA
                ),
            });
        }
        rpc::write_frame(&mut self.writer, &Request::PatchApply, text.as_bytes())?;
        self.writer.flush()?;
        match self.finish(|_, _| {})? {
            Reply::Patched(result) => Ok(result),
            other => Err(unexpected(other)),
        }
    }

    /// Makes the guest's secrets exactly `secrets`
    /// ([`Request::Secrets`]); how many it holds.
    pub fn secrets(&mut self, secrets: &[crate::secrets::Secret]) -> Result<u32, GuestError> {
        let entries = secrets
            .iter()
            .map(|s| pyro_proto::secrets::Entry {
                name: s.name().into(),
                len: s.expose().len() as u32,
            })
            .collect();
        let mut data: Vec<u8> = secrets
            .iter()
            .flat_map(|s| s.expose().iter().copied())
            .collect();
        let sent = rpc::write_frame(&mut self.writer, &Request::Secrets { entries }, &data)
            .and_then(|()| self.writer.flush());
        // The values leave this process's memory with the call.
        data.fill(0);
        sent?;
        // Bounded: a guest that never answers fails the start or the
        // `secret set` (which hold the workspace's lock) instead of
        // holding them.
        self.set_reply_timeout(Some(SECRETS_TIMEOUT))?;
        let reply = self.finish(|_, _| {});
        self.set_reply_timeout(None)?;
        match reply? {
            Reply::Secrets { count } => Ok(count),
            other => Err(unexpected(other)),
        }
    }

    /// Facts about a path (symlinks are reported, not followed).
    pub fn stat(&mut self, path: &str) -> Result<FileInfo, GuestError> {
        match self.call(&Request::Stat { path: path.into() })? {
            Reply::Stat(info) => Ok(info),
            other => Err(unexpected(other)),
        }
    }

    /// A directory's entries (a file lists as itself), sorted by path.
    /// They stream in data frames, checked as untrusted
    /// ([`rpc::ListReader`]), so a listing of any size fits.
    pub fn list(&mut self, path: &str, recursive: bool) -> Result<ListResult, GuestError> {
        self.send(&Request::List {
            path: path.into(),
            recursive,
        })?;
        let mut entries = rpc::ListReader::default();
        match self.finish_with(|_, _| {}, |data| entries.push(data))? {
            Reply::List(list) => Ok(ListResult {
                entries: entries.finish().map_err(GuestError::Io)?,
                truncated: list.truncated,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Streams up to `max_bytes` of a regular file from `offset` into `sink`.
    pub fn read(
        &mut self,
        path: &str,
        offset: u64,
        max_bytes: Option<u64>,
        sink: &mut dyn Write,
    ) -> Result<ReadResult, GuestError> {
        self.read_with(path, offset, max_bytes, |data| sink.write_all(data))
    }

    /// Reads a file, up to `max_bytes` of it, into memory. The guest is
    /// untrusted: more than `max_bytes` is an error, not a bigger buffer.
    pub fn read_to_vec(
        &mut self,
        path: &str,
        max_bytes: u64,
    ) -> Result<(Vec<u8>, ReadResult), GuestError> {
        let mut bytes = Vec::new();
        let max = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        let result = self.read_with(path, 0, Some(max_bytes), collect_at_most(&mut bytes, max))?;
        Ok((bytes, result))
    }

    /// A `Read` request whose data frames go to `on_data`.
    fn read_with(
        &mut self,
        path: &str,
        offset: u64,
        max_bytes: Option<u64>,
        on_data: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<ReadResult, GuestError> {
        self.send(&Request::Read {
            path: path.into(),
            offset,
            max_bytes,
        })?;
        match self.finish_with(|_, _| {}, on_data)? {
            Reply::Read(result) => Ok(result),
            other => Err(unexpected(other)),
        }
    }

    /// Replaces a file atomically with `body`. `mode` defaults to the
    /// existing file's mode, else 0644; `parents` creates missing
    /// directories.
    pub fn write(
        &mut self,
        path: &str,
        mode: Option<u32>,
        parents: bool,
        body: &mut dyn Read,
    ) -> Result<WriteResult, GuestError> {
        self.send(&Request::Write {
            path: path.into(),
            mode,
            parents,
        })?;
        self.send_body(body)?;
        match self.finish(|_, _| {})? {
            Reply::Written(result) => Ok(result),
            other => Err(unexpected(other)),
        }
    }

    pub fn mkdir(&mut self, path: &str, parents: bool) -> Result<String, GuestError> {
        match self.call(&Request::Mkdir {
            path: path.into(),
            parents,
        })? {
            Reply::Done { path } => Ok(path),
            other => Err(unexpected(other)),
        }
    }

    pub fn remove(&mut self, path: &str, recursive: bool) -> Result<String, GuestError> {
        match self.call(&Request::Remove {
            path: path.into(),
            recursive,
        })? {
            Reply::Done { path } => Ok(path),
            other => Err(unexpected(other)),
        }
    }

    /// Unpacks the tar stream `tar` into the directory `dest`, all or
    /// nothing.
    pub fn upload(&mut self, dest: &str, tar: &mut dyn Read) -> Result<UploadResult, GuestError> {
        self.send(&Request::Upload { dest: dest.into() })?;
        self.send_body(tar)?;
        match self.finish(|_, _| {})? {
            Reply::Upload(result) => Ok(result),
            other => Err(unexpected(other)),
        }
    }

    /// Streams `path` as a tar archive into `sink` (a directory as its
    /// children, a file as one entry).
    pub fn download(
        &mut self,
        path: &str,
        sink: &mut dyn Write,
    ) -> Result<DownloadResult, GuestError> {
        self.send(&Request::Download { path: path.into() })?;
        match self.finish_with(|_, _| {}, |data| sink.write_all(data))? {
            Reply::Download(result) => Ok(result),
            other => Err(unexpected(other)),
        }
    }
}

impl GuestClient {
    /// A shell or service request (`Request::Shell*`,
    /// `Request::Service*`), with `input` as the frame's data part (a
    /// shell write's input; empty otherwise). Returns the reply and the
    /// output the guest sent before it in data frames, at most
    /// `max_output` bytes of it (the guest is untrusted: more is an
    /// error).
    pub fn call_collect(
        &mut self,
        request: &Request,
        input: &[u8],
        max_output: usize,
    ) -> Result<(Reply, Vec<u8>), GuestError> {
        rpc::write_frame(&mut self.writer, request, input)?;
        self.writer.flush()?;
        let mut output = Vec::new();
        let reply = self.finish_with(|_, _| {}, collect_at_most(&mut output, max_output))?;
        Ok((reply, output))
    }
}

/// A sink for data frames that keeps them in `output` and fails once the
/// guest sends more than `max` bytes in all.
fn collect_at_most(
    output: &mut Vec<u8>,
    max: usize,
) -> impl FnMut(&[u8]) -> std::io::Result<()> + '_ {
    move |data| {
        if output.len() + data.len() > max {
            return Err(std::io::Error::other(format!(
                "the guest sent more than the {max} bytes asked for"
            )));
        }
        output.extend_from_slice(data);
        Ok(())
    }
}

fn unexpected(reply: Reply) -> GuestError {
    GuestError::Protocol(format!("{reply:?}"))
}

/// Writes `body` as data frames and the closing empty frame. If `body`
/// fails part way, the connection is shut down instead of closing the
/// body, so the guest sees a cut-off stream and discards what it got
/// (a short body must never pass for a whole file).
fn send_body(writer: &mut BufWriter<UnixStream>, body: &mut dyn Read) -> Result<(), GuestError> {
    let mut buf = vec![0u8; rpc::CHUNK];
    loop {
        let n = match body.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(cut(writer, e)),
        };
        rpc::write_frame(writer, &Request::Data, &buf[..n])?;
        if n == 0 {
            break;
        }
    }
    writer.flush()?;
    Ok(())
}

/// A body's source failed: the connection is cut, so the agent fails
/// the request instead of taking a short body as whole.
fn cut(writer: &mut BufWriter<UnixStream>, e: std::io::Error) -> GuestError {
    let _ = writer.flush();
    let _ = writer.get_ref().shutdown(std::net::Shutdown::Both);
    GuestError::Source(e)
}

/// `n` bytes from the host's CSPRNG.
fn host_entropy(n: usize) -> Result<Vec<u8>, GuestError> {
    let mut bytes = vec![0u8; n];
    rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty())
        .map_err(|e| GuestError::Io(std::io::Error::other(format!("getrandom: {e}"))))?;
    Ok(bytes)
}
