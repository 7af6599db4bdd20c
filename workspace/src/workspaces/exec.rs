//! Commands in a workspace: exec (streamed, cancellable, several at once)
//! and the history each one leaves (`logs`).

use super::records::CommandRecord;
use super::store::{self, now_unix, read_json, rfc3339, write_json};
use crate::guest::GuestError;
use crate::{Cancel, Error, Pyro};
use pyro_proto::rpc::{self, ExecRequest, ExecResult, Stream};
use std::time::{Duration, Instant};

/// Output kept per stream in a command's history record.
const HISTORY_OUTPUT_BYTES: usize = 1 << 20;

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
        self.workspace_exec_cancellable(id, command, timeout, &Cancel::never(), on_output)
    }

    /// [`Pyro::workspace_exec`] that `cancel` can stop: the command's
    /// process group is killed, the history records it as cancelled, and
    /// the call fails with [`Error::Cancelled`].
    pub fn workspace_exec_cancellable(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
        cancel: &Cancel,
        mut on_output: impl FnMut(Stream, &[u8]),
    ) -> Result<CommandRecord, Error> {
        if command.is_empty() {
            return Err(Error::InvalidArgument(
                "command: give the command after `--`".into(),
            ));
        }
        // Not locked: the lock is taken only to count the command.
        let ws = self.workspace(id)?;
        let mut agent = ws.agent()?;
        let record = ws.touch(|r| r.command_count += 1)?;
        let sequence = record.command_count;
        let started = now_unix();
        let clock = Instant::now();
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let outcome = agent.exec_cancellable(
            ExecRequest {
                argv: command.to_vec(),
                cwd: Some(rpc::WORKSPACE.into()),
                timeout_ms: Some(timeout.as_millis() as u64),
                ..Default::default()
            },
            None,
            cancel,
            |stream, bytes| {
                let keep = match stream {
                    Stream::Stdout => &mut stdout,
                    Stream::Stderr => &mut stderr,
                };
                let room = HISTORY_OUTPUT_BYTES.saturating_sub(keep.len());
                keep.extend_from_slice(&bytes[..bytes.len().min(room)]);
                on_output(stream, bytes);
            },
        );
        let (result, cancelled) = match outcome {
            Ok(result) => (result, false),
            Err(GuestError::Cancelled(result)) => {
                let result = result.unwrap_or_else(|| ExecResult {
                    duration_ms: clock.elapsed().as_millis() as u64,
                    ..Default::default()
                });
                (result, true)
            }
            Err(e) => return Err(e.into()),
        };
        let entry = CommandRecord {
            workspace_id: record.workspace_id.clone(),
            sequence,
            command: command.to_vec(),
            started_at: rfc3339(started),
            exit_code: result.exit_code,
            signal: result.signal,
            timed_out: result.timed_out,
            duration_ms: result.duration_ms,
            stdout_truncated: result.stdout_bytes > stdout.len() as u64,
            stderr_truncated: result.stderr_bytes > stderr.len() as u64,
            stdout,
            stderr,
            cancelled,
        };
        write_json(
            &ws.dir.history().join(format!("{sequence:08}.json")),
            &entry,
        )?;
        if cancelled {
            return Err(Error::Cancelled(format!(
                "workspace {id}: command #{sequence} was cancelled and its process group \
                 killed (recorded in the history)"
            )));
        }
        Ok(entry)
    }

    /// The workspace's command history, oldest first.
    pub fn workspace_logs(&self, id: &str) -> Result<Vec<CommandRecord>, Error> {
        let history = self.workspace(id)?.dir.history();
        let mut records: Vec<CommandRecord> = std::fs::read_dir(&history)
            .map_err(|e| store::io_err(&history, e))?
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| read_json(&e.path()).ok())
            .collect();
        records.sort_by_key(|r| r.sequence);
        Ok(records)
    }
}
