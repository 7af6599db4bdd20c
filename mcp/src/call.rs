//! How one tool call runs: the SDK call on tokio's blocking pool, MCP
//! progress notifications while it runs, cancellation, and its result or
//! error as a tool result.
//!
//! SDK calls block (they boot VMs and wait on guests), so each runs on
//! `spawn_blocking`. A call is given up on ([`Job::cancelled`]) when the
//! client cancels the request (`notifications/cancelled`), closes the
//! connection, or the server gets SIGTERM. A command is what can run for
//! long, so that is what stops; the rest runs to its end, because
//! stopping halfway (a VM booting, a workspace half made) is what would
//! leak. What each call does then:
//!
//! - `vm_run` and `workspace_exec` hand [`Job::cancel`] to the SDK, which
//!   asks it every 100 ms: once it fires, the guest kills the command's
//!   process group and the call ends with a `cancelled` error.
//!   `workspace_exec` records the command in the history as cancelled;
//!   `vm_run` removes its VM, as it always does (a run given up on while
//!   its VM boots stops before the command starts).
//! - `workspace_create` finishes, sees that nobody will learn the new id
//!   and deletes the workspace again.
//! - `workspace_start` and `workspace_reset` finish; the workspace stays
//!   as they leave it (running), as listed by `workspace_list`.
//!
//! The server process exits only once no call is in flight (the runtime
//! waits for its blocking pool; the signal handler waits for the count).

use crate::server::PyroServer;
use pyro_workspace::{Cancel, Error, Progress, Pyro};
use rmcp::model::{CallToolResult, ContentBlock, ProgressNotificationParam, ProgressToken};
use rmcp::service::RequestContext;
use rmcp::{Peer, RoleServer};
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// What a blocking SDK call gets: the SDK, a progress sink and whether
/// its request has been given up on.
pub(crate) struct Job {
    pub pyro: Pyro,
    progress: ChannelProgress,
    cancel: Cancel,
    in_flight: Arc<AtomicUsize>,
    session_closed: Arc<AtomicBool>,
}

/// Work that goes on after its call returned (an exec past its
/// `wait_seconds`): counted in flight while it lives, so the server
/// exits only after it; cancelled when the session ends (the client went
/// away or the server got SIGTERM), or by its [`Stopper`].
pub(crate) struct Detached {
    _counted: InFlight,
    cancel: Cancel,
    now: Arc<AtomicBool>,
}

impl Detached {
    pub fn cancel(&self) -> &Cancel {
        &self.cancel
    }

    /// What cancels it from elsewhere (its call, cancelled before it
    /// returned), while the work itself owns the [`Detached`].
    pub fn stopper(&self) -> Stopper {
        Stopper(self.now.clone())
    }
}

pub(crate) struct Stopper(Arc<AtomicBool>);

impl Stopper {
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Job {
    /// SDK progress (environment builds, boot phases), forwarded to the
    /// client as progress notifications when it asked for them.
    pub fn progress(&self) -> &dyn Progress {
        &self.progress
    }

    /// One progress message.
    pub fn say(&self, message: String) {
        let _ = self.progress.0.send(message);
    }

    /// Whether nobody will read this call's result any more: the client
    /// cancelled the request, or closed the connection. A call that made
    /// something only its result would have named (a new workspace)
    /// removes it again.
    pub fn cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// [`Job::cancelled`] for the SDK's exec paths: they kill the command
    /// once it fires.
    pub fn cancel(&self) -> &Cancel {
        &self.cancel
    }

    /// What work that outlives this call holds (see [`Detached`]).
    pub fn detach(&self) -> Detached {
        let closed = self.session_closed.clone();
        let now = Arc::new(AtomicBool::new(false));
        let fired = now.clone();
        Detached {
            _counted: InFlight::enter(&self.in_flight),
            cancel: Cancel::when(move || {
                closed.load(Ordering::SeqCst) || fired.load(Ordering::SeqCst)
            }),
            now,
        }
    }
}

/// [`Progress`] that queues `[step] detail` lines for the notifier.
struct ChannelProgress(UnboundedSender<String>);

impl Progress for ChannelProgress {
    fn phase(&self, step: &str, detail: &str) {
        let _ = self.0.send(format!("[{step}] {detail}"));
    }
    fn tick(&self, step: &str, detail: &str) {
        self.phase(step, detail);
    }
    fn done(&self, step: &str, detail: &str) {
        self.phase(step, detail);
    }
}

/// One SDK call in [`PyroServer::in_flight`] while it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(count: &Arc<AtomicUsize>) -> InFlight {
        count.fetch_add(1, Ordering::SeqCst);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Sets its flag when dropped before [`DropFlag::disarm`]: the request's
/// future was dropped while its SDK call was running.
struct DropFlag(Arc<AtomicBool>, bool);

impl DropFlag {
    fn disarm(mut self) {
        self.1 = false;
    }
}

impl Drop for DropFlag {
    fn drop(&mut self) {
        if self.1 {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

/// Seconds between "still running" progress notifications.
const HEARTBEAT_SECS: u64 = 10;

impl PyroServer {
    /// Runs `work` on the blocking pool and turns its outcome into a tool
    /// result. With a progress token, the client gets a notification when
    /// the call starts, one per SDK progress step, one every 10 s while it
    /// runs, and one when it ends.
    pub(crate) async fn call<T, F>(
        &self,
        tool: &'static str,
        ctx: RequestContext<RoleServer>,
        work: F,
    ) -> CallToolResult
    where
        T: Serialize + Send + 'static,
        F: FnOnce(&Job) -> Result<T, Error> + Send + 'static,
    {
        if self.session_closed.load(Ordering::SeqCst) {
            return failure(
                tool,
                &Error::Conflict("the server is shutting down; start it again".into()),
            );
        }
        // Counted until the blocking work ends (or is dropped unrun).
        let counted = InFlight::enter(&self.in_flight);
        let started = Instant::now();
        let (tx, rx) = unbounded_channel();
        let notifier = ctx.meta.get_progress_token().map(|token| {
            (
                token.clone(),
                tokio::spawn(notify(ctx.peer.clone(), token, rx)),
            )
        });
        let _ = tx.send(format!("{tool}: started"));
        // A heartbeat, so that clients that time out quiet requests keep
        // waiting for a long build or command.
        let heartbeat = notifier.as_ref().map(|_| {
            let tx = tx.clone();
            tokio::spawn(async move {
                for secs in (HEARTBEAT_SECS..).step_by(HEARTBEAT_SECS as usize) {
                    tokio::time::sleep(std::time::Duration::from_secs(HEARTBEAT_SECS)).await;
                    if tx.send(format!("{tool}: running for {secs} s")).is_err() {
                        break;
                    }
                }
            })
        });

        let dropped = Arc::new(AtomicBool::new(false));
        let guard = DropFlag(dropped.clone(), true);
        let ct = ctx.ct.clone();
        let closed = self.session_closed.clone();
        let job = Job {
            pyro: self.pyro.clone(),
            progress: ChannelProgress(tx),
            cancel: Cancel::when(move || {
                ct.is_cancelled() || closed.load(Ordering::SeqCst) || dropped.load(Ordering::SeqCst)
            }),
            in_flight: self.in_flight.clone(),
            session_closed: self.session_closed.clone(),
        };
        let outcome = tokio::task::spawn_blocking(move || {
            let _counted = counted;
            work(&job).map(|v| serde_json::to_value(&v))
        })
        .await;
        guard.disarm();
        if let Some(task) = heartbeat {
            task.abort();
            let _ = task.await;
        }

        let result = match outcome {
            Ok(Ok(Ok(value))) => CallToolResult::structured(value),
            Ok(Ok(Err(e))) => failure(tool, &Error::Io(format!("cannot encode the result: {e}"))),
            Ok(Err(e)) => failure(tool, &e),
            Err(e) => failure(
                tool,
                &Error::Io(format!("the call failed inside pyro: {e}")),
            ),
        };
        if let Some((token, task)) = notifier {
            let steps = task.await.unwrap_or(0.0) + 1.0;
            let how = if result.is_error == Some(true) {
                "failed"
            } else {
                "done"
            };
            let end = ProgressNotificationParam::new(token, steps)
                .with_total(steps)
                .with_message(format!(
                    "{tool}: {how} in {} ms",
                    started.elapsed().as_millis()
                ));
            let _ = ctx.peer.notify_progress(end).await;
        }
        result
    }
}

/// Sends each queued message as a progress notification until the call's
/// sender is gone; returns how many it sent.
async fn notify(
    peer: Peer<RoleServer>,
    token: ProgressToken,
    mut rx: UnboundedReceiver<String>,
) -> f64 {
    let mut step = 0.0;
    while let Some(message) = rx.recv().await {
        step += 1.0;
        let param = ProgressNotificationParam::new(token.clone(), step).with_message(message);
        let _ = peer.notify_progress(param).await;
    }
    step
}

/// An SDK error as a tool error: text a model can act on (the kind, the
/// message, what to do), and `{"ok": false, "error": {kind, message,
/// hint}}` as structured content, like the CLI's `--json` errors.
pub(crate) fn failure(tool: &str, e: &Error) -> CallToolResult {
    let kind = e.kind();
    let message = e.to_string();
    let hint = hint(kind, &message);
    let mut text = format!("{tool} failed ({kind}): {message}");
    if let Some(h) = hint {
        text.push_str("\nWhat to do: ");
        text.push_str(h);
    }
    let mut result = CallToolResult::structured_error(json!({
        "ok": false,
        "error": { "kind": kind, "message": message, "hint": hint },
    }));
    result.content = vec![ContentBlock::text(text)];
    result
}

/// What to do about an error, in terms of the tools (the SDK's messages
/// sometimes name CLI commands).
fn hint(kind: &str, message: &str) -> Option<&'static str> {
    Some(match kind {
        "not_found" if message.contains("snapshot") => {
            "call snapshot_list to see this workspace's snapshots"
        }
        "not_found" if message.starts_with("no workspace") => {
            "call workspace_list to see workspace ids and names"
        }
        "not_found" => "check the path with workspace_file_list",
        "conflict" if message.contains("is stopped") => "call workspace_start, then retry",
        "invalid_argument" => "fix the parameter named in the message and call again",
        "invalid_path" => {
            "use a path relative to /workspace (or absolute under it); `..`, other absolute \
             paths and symlinks that lead out are refused"
        }
        "invalid_patch" => {
            "send a unified diff: `--- a/PATH` and `+++ b/PATH` lines, then `@@` hunks \
             (workspace_diff's patch is one)"
        }
        "invalid_archive" => "push a directory, or a tar archive (.tar, .tar.gz or .tgz)",
        "patch_failed" => {
            "read the file with workspace_file_read and make the unified diff against its \
             current content (context lines must match exactly)"
        }
        "too_large" => {
            "send at most 1 MiB per call; put bigger trees on the host and use \
             workspace_sync_push"
        }
        "no_space" => {
            "the /workspace disk is full: remove files, or create a workspace with a larger \
             disk_mib"
        }
        "exists" => "choose another path, or remove the existing one first",
        "cancelled" => {
            "the request was cancelled, so the command was killed; call again to rerun it"
        }
        "unknown_environment" => "use debian:12, debian:12-base or debian:12-build",
        "kvm_unavailable" | "missing_host_tools" => {
            "the host cannot run pyro VMs: run `pyro doctor` on it to see why"
        }
        "timeout" => {
            "the VM did not come up in time; retry, or run `pyro doctor --boot` on the host"
        }
        _ => return None,
    })
}

/// `{"count": N, key: items, ...}` for list results (MCP structured
/// content is an object; the CLI prints the bare list).
pub(crate) fn listing<T: Serialize>(key: &str, items: &[T], extra: &[(&str, &str)]) -> Value {
    let mut doc = serde_json::Map::new();
    for (k, v) in extra {
        doc.insert((*k).into(), Value::from(*v));
    }
    doc.insert("count".into(), Value::from(items.len()));
    doc.insert(
        key.into(),
        serde_json::to_value(items).unwrap_or(Value::Null),
    );
    Value::Object(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: &CallToolResult) -> String {
        r.content[0].as_text().unwrap().text.clone()
    }

    #[test]
    fn errors_carry_kind_message_and_what_to_do() {
        let e = Error::NotFound("no workspace \"nope\": see `pyro workspace list` for ids".into());
        let r = failure("workspace_status", &e);
        assert_eq!(r.is_error, Some(true));
        let t = text(&r);
        assert!(
            t.starts_with("workspace_status failed (not_found): no workspace"),
            "{t}"
        );
        assert!(t.contains("What to do: call workspace_list"), "{t}");
        let doc = r.structured_content.unwrap();
        assert_eq!(doc["ok"], false);
        assert_eq!(doc["error"]["kind"], "not_found");

        let e = Error::Agent {
            kind: "invalid_path".into(),
            message: "../etc/passwd: leaves /workspace".into(),
        };
        assert!(text(&failure("workspace_file_read", &e)).contains("relative to /workspace"));
    }

    #[test]
    fn listings_are_objects_with_a_count() {
        let doc = listing("snapshots", &["a", "b"], &[("workspace_id", "w1")]);
        assert_eq!(
            doc,
            json!({"workspace_id": "w1", "count": 2, "snapshots": ["a", "b"]})
        );
    }
}
