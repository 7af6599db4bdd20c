//! Shells in a workspace (`pyro workspace shell ...`): interactive
//! shells on a pseudo-terminal that the guest agent keeps, so they
//! outlive the client that opened them (docs/shells.md). The host keeps
//! no shell state: every call asks the running guest, so a stopped,
//! reset or deleted workspace (a new VM, or none) lists no shells.

mod plain;

use super::handle::WorkspaceHandle;
use crate::guest::GuestError;
use crate::{Error, Pyro};
use pyro_proto::rpc::{self, Reply, Request};
use pyro_proto::shell::{self as wire, Info};
use serde::Serialize;
use std::time::Duration;

pub use plain::render as render_plain;
pub use pyro_proto::shell::{Signal as ShellSignal, State as ShellState};
use pyro_proto::shell::{DEFAULT_COLS, DEFAULT_READ_BYTES, DEFAULT_ROWS, WAIT_CAP_MS};

/// Bound on a shell request's reply, beyond any wait it asked for (an
/// open starts two processes in the guest, ~1 s on PVM hosts).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// How to open a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellOptions {
    pub cols: u16,
    pub rows: u16,
    /// Where it starts, inside /workspace (relative paths resolve under
    /// it); default /workspace.
    pub cwd: Option<String>,
    /// Extra environment variables for the shell.
    pub env: Vec<(String, String)>,
    /// `--secret-env`: (secret name, variable) pairs; each variable gets
    /// the secret's value in the shell's environment.
    pub secret_env: Vec<(String, String)>,
}

impl Default for ShellOptions {
    fn default() -> Self {
        ShellOptions {
            cols: DEFAULT_COLS,
            rows: DEFAULT_ROWS,
            cwd: None,
            env: Vec::new(),
            secret_env: Vec::new(),
        }
    }
}

/// How to read a shell's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellReadOptions {
    /// Where to start: 0, or the `next_cursor` of the last read.
    pub cursor: u64,
    /// At most this many bytes of raw output (1..=[`wire::MAX_READ_BYTES`]).
    pub max_bytes: u64,
    /// Render through a terminal emulator: the text as a terminal shows
    /// it, not escape codes.
    pub plain: bool,
    /// First wait until the shell has been quiet this long (1..=
    /// [`wire::MAX_IDLE_MS`]; while a line typed has not brought the
    /// prompt back, 2 s at least and not while the foreground command
    /// runs), at most [`WAIT_CAP_MS`] in all.
    pub wait_for_idle_ms: Option<u64>,
}

impl Default for ShellReadOptions {
    fn default() -> Self {
        ShellReadOptions {
            cursor: 0,
            max_bytes: DEFAULT_READ_BYTES,
            plain: false,
            wait_for_idle_ms: None,
        }
    }
}

/// A shell of a workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shell {
    pub workspace_id: String,
    pub shell_id: String,
    pub state: ShellState,
    /// The shell process in the guest.
    pub pid: u32,
    pub cwd: String,
    pub cols: u16,
    pub rows: u16,
    /// Seconds since the epoch (guest clock).
    pub started_at: u64,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
    /// Bytes of output so far: reading from here waits for new output.
    pub output_bytes: u64,
}

/// What `shell read` returns.
#[derive(Debug, Clone, Serialize)]
pub struct ShellRead {
    #[serde(flatten)]
    pub shell: Shell,
    /// Where `output` starts (the cursor asked for, or the oldest byte
    /// kept if that was dropped).
    pub cursor: u64,
    /// Pass this as the cursor of the next read.
    pub next_cursor: u64,
    /// Output before `cursor` was dropped (each shell keeps its last
    /// 1 MiB).
    pub truncated: bool,
    /// More output is ready after `next_cursor` (`max_bytes` cut it).
    pub more: bool,
    pub plain: bool,
    pub wait_for_idle_ms: Option<u64>,
    /// The wait ended because the shell was quiet.
    pub idle: bool,
    pub waited_ms: u64,
    /// UTF-8 (invalid bytes replaced); rendered if `plain`.
    pub output: String,
}

/// What `shell write` returns.
#[derive(Debug, Clone, Serialize)]
pub struct ShellWrite {
    #[serde(flatten)]
    pub shell: Shell,
    /// Bytes typed, newline included.
    pub input_bytes: usize,
    pub append_newline: bool,
}

/// What `shell signal` returns.
#[derive(Debug, Clone, Serialize)]
pub struct ShellSignalSent {
    #[serde(flatten)]
    pub shell: Shell,
    pub signal: ShellSignal,
}

/// What `shell close` returns: the shell as it ended.
#[derive(Debug, Clone, Serialize)]
pub struct ShellClosed {
    #[serde(flatten)]
    pub shell: Shell,
    pub closed: bool,
}

/// A workspace's shells.
#[derive(Debug, Clone, Serialize)]
pub struct ShellList {
    pub workspace_id: String,
    pub shells: Vec<Shell>,
}

impl Pyro {
    /// Opens a shell (bash if the environment has it, else sh) on a
    /// new pseudo-terminal in the running workspace.
    pub fn workspace_shell_open(&self, id: &str, opts: &ShellOptions) -> Result<Shell, Error> {
        wire::check_size(opts.cols, opts.rows).map_err(Error::InvalidArgument)?;
        let cwd = opts.cwd.as_deref().unwrap_or(rpc::WORKSPACE);
        let cwd = rpc::workspace_relative(cwd)
            .map(|rel| rpc::workspace_absolute(&rel))
            .map_err(|e| Error::InvalidArgument(format!("cwd: {e}")))?;
        wire::check_env(&opts.env).map_err(Error::InvalidArgument)?;
        let ws = self.workspace(id)?;
        let mut env = opts.env.clone();
        env.extend(super::secrets::resolve_env(&ws, &opts.secret_env)?);
        let request = Request::ShellOpen(wire::OpenRequest {
            id: new_shell_id()?,
            cols: opts.cols,
            rows: opts.rows,
            cwd,
            env,
        });
        let info = shell_reply(ws.call_collect(&request, &[], 0, REPLY_TIMEOUT)?.0)?;
        ws.touch(|_| {})?;
        Ok(shell(&ws, info))
    }

    /// Output of a shell from `opts.cursor`, after waiting for quiet if
    /// asked. Does not count as activity.
    pub fn workspace_shell_read(
        &self,
        id: &str,
        shell_id: &str,
        opts: &ShellReadOptions,
    ) -> Result<ShellRead, Error> {
        wire::check_read(opts.max_bytes, opts.wait_for_idle_ms).map_err(Error::InvalidArgument)?;
        check_shell_id(shell_id)?;
        let ws = self.workspace(id)?;
        let request = Request::ShellRead(wire::ReadRequest {
            id: shell_id.into(),
            cursor: opts.cursor,
            max_bytes: opts.max_bytes,
            wait_for_idle_ms: opts.wait_for_idle_ms,
        });
        let wait = opts
            .wait_for_idle_ms
            .map_or(Duration::ZERO, |_| Duration::from_millis(WAIT_CAP_MS));
        let (reply, bytes) =
            ws.call_collect(&request, &[], opts.max_bytes as usize, REPLY_TIMEOUT + wait)?;
        let Reply::ShellRead(r) = reply else {
            return Err(unexpected(reply));
        };
        let shell = shell(&ws, r.shell);
        // Secret values become [REDACTED]. Output that ends in what may
        // be the start of a value is held back (the next read starts
        // there) while the shell runs, so a value split across two reads
        // is still found; unless holding it back would leave this read
        // with nothing (`max_bytes` shorter than the value).
        let redactor = ws.redactor()?;
        let mut stream = redactor.clone();
        let mut clean = stream.push(&bytes);
        let held = stream.held();
        let hold = held > 0 && shell.state == ShellState::Running && held < bytes.len();
        if !hold {
            clean.extend(stream.finish());
        }
        let next_cursor = r.next_cursor - if hold { held as u64 } else { 0 };
        let output = if opts.plain {
            // Again after rendering: a value drawn with cursor moves.
            redactor.redact(&render_plain(&clean, shell.cols, shell.rows))
        } else {
            String::from_utf8_lossy(&clean).into_owned()
        };
        Ok(ShellRead {
            shell,
            cursor: r.cursor,
            next_cursor,
            truncated: r.truncated,
            more: r.more,
            plain: opts.plain,
            wait_for_idle_ms: opts.wait_for_idle_ms,
            idle: r.idle,
            waited_ms: r.waited_ms,
            output,
        })
    }

    /// Types `input` into a shell (plus a newline if `append_newline`),
    /// as if at its keyboard: `\u{3}` is Ctrl-C, `\u{4}` Ctrl-D.
    pub fn workspace_shell_write(
        &self,
        id: &str,
        shell_id: &str,
        input: &str,
        append_newline: bool,
    ) -> Result<ShellWrite, Error> {
        let mut bytes = input.as_bytes().to_vec();
        if append_newline {
            bytes.push(b'\n');
        }
        wire::check_input(bytes.len()).map_err(Error::InvalidArgument)?;
        check_shell_id(shell_id)?;
        let ws = self.workspace(id)?;
        let request = Request::ShellWrite {
            id: shell_id.into(),
        };
        let info = shell_reply(ws.call_collect(&request, &bytes, 0, REPLY_TIMEOUT)?.0)?;
        ws.touch(|_| {})?;
        Ok(ShellWrite {
            shell: shell(&ws, info),
            input_bytes: bytes.len(),
            append_newline,
        })
    }

    /// Changes a shell's terminal size; its programs get SIGWINCH.
    pub fn workspace_shell_resize(
        &self,
        id: &str,
        shell_id: &str,
        cols: u16,
        rows: u16,
    ) -> Result<Shell, Error> {
        wire::check_size(cols, rows).map_err(Error::InvalidArgument)?;
        check_shell_id(shell_id)?;
        let ws = self.workspace(id)?;
        let request = Request::ShellResize {
            id: shell_id.into(),
            cols,
            rows,
        };
        let info = shell_reply(ws.call_collect(&request, &[], 0, REPLY_TIMEOUT)?.0)?;
        Ok(shell(&ws, info))
    }

    /// Sends `signal` to what runs in the foreground of a shell (the
    /// shell itself when it runs nothing).
    pub fn workspace_shell_signal(
        &self,
        id: &str,
        shell_id: &str,
        signal: ShellSignal,
    ) -> Result<ShellSignalSent, Error> {
        check_shell_id(shell_id)?;
        let ws = self.workspace(id)?;
        let request = Request::ShellSignal {
            id: shell_id.into(),
            signal,
        };
        let info = shell_reply(ws.call_collect(&request, &[], 0, REPLY_TIMEOUT)?.0)?;
        ws.touch(|_| {})?;
        Ok(ShellSignalSent {
            shell: shell(&ws, info),
            signal,
        })
    }

    /// Ends a shell (SIGHUP, then SIGKILL after 2 s) and forgets it.
    pub fn workspace_shell_close(&self, id: &str, shell_id: &str) -> Result<ShellClosed, Error> {
        check_shell_id(shell_id)?;
        let ws = self.workspace(id)?;
        let request = Request::ShellClose {
            id: shell_id.into(),
        };
        let info = shell_reply(ws.call_collect(&request, &[], 0, REPLY_TIMEOUT)?.0)?;
        ws.touch(|_| {})?;
        Ok(ShellClosed {
            shell: shell(&ws, info),
            closed: true,
        })
    }

    /// The workspace's shells, oldest first; none while it is stopped.
    pub fn workspace_shell_list(&self, id: &str) -> Result<ShellList, Error> {
        let ws = self.workspace(id)?;
        let shells = if matches!(ws.vm().state(), crate::VmState::Running { .. }) {
            match ws
                .call_collect(&Request::ShellList, &[], 0, REPLY_TIMEOUT)?
                .0
            {
                Reply::Shells { shells } => shells.into_iter().map(|i| shell(&ws, i)).collect(),
                other => return Err(unexpected(other)),
            }
        } else {
            Vec::new()
        };
        Ok(ShellList {
            workspace_id: ws.id.clone(),
            shells,
        })
    }
}

fn shell_reply(reply: Reply) -> Result<Info, Error> {
    match reply {
        Reply::Shell(info) => Ok(info),
        other => Err(unexpected(other)),
    }
}

fn unexpected(reply: Reply) -> Error {
    GuestError::Protocol(format!("{reply:?}")).into()
}

fn shell(ws: &WorkspaceHandle, info: Info) -> Shell {
    Shell {
        workspace_id: ws.id.clone(),
        shell_id: info.id,
        state: info.state,
        pid: info.pid,
        cwd: info.cwd,
        cols: info.cols,
        rows: info.rows,
        started_at: info.started_at,
        exit_code: info.exit_code,
        exit_signal: info.exit_signal,
        output_bytes: info.output_bytes,
    }
}

fn check_shell_id(shell_id: &str) -> Result<(), Error> {
    if wire::valid_id(shell_id) {
        Ok(())
    } else {
        Err(Error::NotFound(format!(
            "no shell {shell_id:?}: shell ids are as `shell open` printed them (see `pyro workspace shell list`)"
        )))
    }
}

/// A fresh shell id: `sh-` and 8 random hex digits.
fn new_shell_id() -> Result<String, Error> {
    Ok(format!("sh-{}", &super::store::new_id()?[..8]))
}
