//! Commands in a workspace: exec (streamed, cancellable, several at once)
//! and the history each one leaves (`logs`).

use super::handle::WorkspaceHandle;
use super::records::{CommandRecord, CommandStatus};
use super::secrets::resolve_env;
use super::store::{self, now_unix, read_json, rfc3339, write_json};
use crate::guest::GuestError;
use crate::process::ProcessId;
use crate::run::Kept;
use crate::secrets::Redactor;
use crate::{Cancel, Error, Pyro};
use pyro_proto::rpc::{self, ExecRequest, ExecResult, Stream};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Output kept per stream in a command's history record.
const HISTORY_OUTPUT_BYTES: usize = 1 << 20;

/// How to run a command in a workspace ([`Pyro::workspace_exec_with`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOptions {
    /// Program and arguments, run in /workspace.
    pub command: Vec<String>,
    /// Past it, the command's process group is killed.
    pub timeout: Duration,
    /// `--secret-env`: (secret name, variable) pairs; each variable gets
    /// the secret's value for this command only.
    pub secret_env: Vec<(String, String)>,
}

impl ExecOptions {
    pub fn new(command: &[String], timeout: Duration) -> Self {
        ExecOptions {
            command: command.to_vec(),
            timeout,
            secret_env: Vec::new(),
        }
    }
}

impl Pyro {
    /// Runs a command in /workspace, streaming output to `on_output`, and
    /// records it in the history. Several may run at once.
    pub fn workspace_exec(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
        on_output: impl FnMut(Stream, &[u8]),
    ) -> Result<CommandRecord, Error> {
        let opts = ExecOptions::new(command, timeout);
        self.workspace_exec_with(id, &opts, &Cancel::never(), on_output)
    }

    /// [`Pyro::workspace_exec`] with secrets in its environment, that
    /// `cancel` can stop: the command's process group is killed, the
    /// history records it as cancelled, and the call fails with
    /// [`Error::Cancelled`]. Secret values are redacted from the output
    /// as it streams (a value split across chunks included), from the
    /// history, and from errors.
    pub fn workspace_exec_with(
        &self,
        id: &str,
        opts: &ExecOptions,
        cancel: &Cancel,
        on_output: impl FnMut(Stream, &[u8]),
    ) -> Result<CommandRecord, Error> {
        self.workspace_exec_observed(id, opts, cancel, |_| {}, on_output)
    }

    /// [`Pyro::workspace_exec_with`] that tells `on_start` the command's
    /// sequence number in the history as soon as it has one (before the
    /// command runs): a caller that stops waiting can name the command
    /// whose record `workspace_logs` will hold.
    pub fn workspace_exec_observed(
        &self,
        id: &str,
        opts: &ExecOptions,
        cancel: &Cancel,
        on_start: impl FnOnce(u64),
        on_output: impl FnMut(Stream, &[u8]),
    ) -> Result<CommandRecord, Error> {
        crate::run::check_argv(&opts.command)?;
        // Not locked: the lock is taken only to count the command.
        let ws = self.workspace(id)?;
        exec_in(&ws, opts, cancel, on_start, on_output).map_err(|e| ws.redact_err(e))
    }

    /// The workspace's command history, oldest first.
    pub fn workspace_logs(&self, id: &str) -> Result<Vec<CommandRecord>, Error> {
        let ws = self.workspace(id)?;
        let history = ws.dir.history();
        let mut records: Vec<CommandRecord> = std::fs::read_dir(&history)
            .map_err(|e| store::io_err(&history, e))?
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| read_json::<Stored>(&e.path()).ok())
            .map(Stored::seen_now)
            .collect();
        records.sort_by_key(|r| r.sequence);
        // Stored redacted; again with today's secrets, for commands that
        // printed a value before it became a secret.
        let r = ws.redactor()?;
        Ok(records.into_iter().map(|c| redact_record(r, c)).collect())
    }
}

/// One output stream of a command: what the history keeps (redacted,
/// bounded) and the stream's redactor.
struct Captured {
    /// Redacted output, as much as the history keeps.
    kept: Kept,
    /// Raw bytes that arrived.
    received: u64,
    redactor: Redactor,
}

impl Captured {
    fn new(redactor: &Redactor) -> Self {
        Captured {
            kept: Kept::new(HISTORY_OUTPUT_BYTES),
            received: 0,
            redactor: redactor.clone(),
        }
    }

    /// Raw `bytes` in; what may be shown of them (and of what was held
    /// back before) out.
    fn take(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.received += bytes.len() as u64;
        let clean = self.redactor.push(bytes);
        self.kept.keep(&clean);
        clean
    }

    /// The end of the stream: what was held back.
    fn finish(&mut self) -> Vec<u8> {
        let clean = self.redactor.finish();
        self.kept.keep(&clean);
        clean
    }

    /// Whether the history lacks some of what the command wrote.
    fn truncated(&self, produced: u64) -> bool {
        self.kept.cut || produced > self.received
    }
}

/// A history record as stored: while the command runs, with the process
/// that waits for it, so that a record whose waiter died reads as
/// interrupted rather than running for ever.
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    record: CommandRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    runner: Option<ProcessId>,
}

impl Stored {
    fn seen_now(self) -> CommandRecord {
        let mut record = self.record;
        if record.status == CommandStatus::Running && !self.runner.is_some_and(|p| p.alive()) {
            record.status = CommandStatus::Interrupted;
        }
        record
    }
}

fn history_file(ws: &WorkspaceHandle, sequence: u64) -> std::path::PathBuf {
    ws.dir.history().join(format!("{sequence:08}.json"))
}

fn exec_in(
    ws: &WorkspaceHandle,
    opts: &ExecOptions,
    cancel: &Cancel,
    on_start: impl FnOnce(u64),
    mut on_output: impl FnMut(Stream, &[u8]),
) -> Result<CommandRecord, Error> {
    let env = resolve_env(ws, &opts.secret_env)?;
    let redactor = ws.redactor()?;
    let mut agent = ws.agent()?;
    // A command may be silent for all of its timeout; the guest kills it
    // then and answers, so a minute past that is a guest gone wrong.
    let reply_bound = opts.timeout + Duration::from_secs(60);
    agent
        .set_reply_timeout(Some(reply_bound))
        .map_err(GuestError::from)?;
    let started = now_unix();
    let command: Vec<String> = opts.command.iter().map(|a| redactor.redact(a)).collect();
    let base = |sequence, status| CommandRecord {
        workspace_id: ws.id.clone(),
        sequence,
        status,
        command: command.clone(),
        started_at: rfc3339(started),
        exit_code: None,
        signal: None,
        timed_out: false,
        duration_ms: 0,
        stdout: Vec::new(),
        stderr: Vec::new(),
        stdout_truncated: false,
        stderr_truncated: false,
        cancelled: false,
        resumed_ms: ws.resumed_ms(),
    };
    // Recorded as running before it runs, under the lock that numbers
    // it: however its caller or VM dies, `logs` shows it (interrupted),
    // and sequence numbers have no gaps.
    let (_, sequence) = ws.touch_with(|r| {
        let sequence = r.command_count + 1;
        let stored = Stored {
            record: base(sequence, CommandStatus::Running),
            runner: ProcessId::current(),
        };
        write_json(&history_file(ws, sequence), &stored)?;
        r.command_count = sequence;
        Ok(sequence)
    })?;
    on_start(sequence);
    let clock = Instant::now();
    let (mut stdout, mut stderr) = (Captured::new(redactor), Captured::new(redactor));
    let outcome = agent.exec_cancellable(
        ExecRequest {
            argv: opts.command.clone(),
            cwd: Some(rpc::WORKSPACE.into()),
            timeout_ms: Some(opts.timeout.as_millis() as u64),
            env,
            ..Default::default()
        },
        None,
        cancel,
        |stream, bytes| {
            let clean = match stream {
                Stream::Stdout => stdout.take(bytes),
                Stream::Stderr => stderr.take(bytes),
            };
            if !clean.is_empty() {
                on_output(stream, &clean);
            }
        },
    );
    for (stream, captured) in [(Stream::Stdout, &mut stdout), (Stream::Stderr, &mut stderr)] {
        let rest = captured.finish();
        if !rest.is_empty() {
            on_output(stream, &rest);
        }
    }
    let (result, cancelled) = match outcome {
        Ok(result) => (result, false),
        Err(GuestError::Cancelled(result)) => {
            let result = result.unwrap_or_else(|| ExecResult {
                duration_ms: clock.elapsed().as_millis() as u64,
                ..Default::default()
            });
            (result, true)
        }
        Err(GuestError::Remote { kind, message })
            if stdout.received == 0 && stderr.received == 0 =>
        {
            let refused = CommandRecord {
                stderr: redactor
                    .redact(&format!("{kind}: {message}\n"))
                    .into_bytes(),
                duration_ms: clock.elapsed().as_millis() as u64,
                ..base(sequence, CommandStatus::NotStarted)
            };
            let _ = write_json(&history_file(ws, sequence), &refused);
            return Err(GuestError::Remote { kind, message }.into());
        }
        Err(e) => {
            // The VM died or stopped answering: what arrived is kept.
            let interrupted = CommandRecord {
                duration_ms: clock.elapsed().as_millis() as u64,
                stdout_truncated: true,
                stderr_truncated: true,
                stdout: stdout.kept.bytes,
                stderr: stderr.kept.bytes,
                ..base(sequence, CommandStatus::Interrupted)
            };
            let _ = write_json(&history_file(ws, sequence), &interrupted);
            return Err(ws.late(e, "answer", reply_bound));
        }
    };
    let entry = CommandRecord {
        exit_code: result.exit_code,
        signal: result.signal,
        timed_out: result.timed_out,
        duration_ms: result.duration_ms,
        stdout_truncated: stdout.truncated(result.stdout_bytes),
        stderr_truncated: stderr.truncated(result.stderr_bytes),
        stdout: stdout.kept.bytes,
        stderr: stderr.kept.bytes,
        cancelled,
        ..base(sequence, CommandStatus::Finished)
    };
    write_json(&history_file(ws, sequence), &entry)?;
    if cancelled {
        return Err(Error::Cancelled(format!(
            "workspace {}: command #{sequence} was cancelled and its process group killed \
             (recorded in the history)",
            ws.given
        )));
    }
    Ok(entry)
}

/// A history record with today's secret values replaced.
fn redact_record(r: &Redactor, mut c: CommandRecord) -> CommandRecord {
    c.command = c.command.iter().map(|a| r.redact(a)).collect();
    for bytes in [&mut c.stdout, &mut c.stderr] {
        *bytes = r.redact_bytes(bytes);
    }
    c
}
