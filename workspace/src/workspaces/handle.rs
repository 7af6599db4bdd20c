//! Finding a workspace and working on it: every workspace's directory
//! under `<data>/workspaces/`, a reference (id or unique name) resolved to
//! one, and [`WorkspaceHandle`], what each verb holds while it works (the
//! directory, the id, the lock when the verb changes the VM or the disk,
//! and the connection to the agent).

use super::records::{SuspendedBy, Workspace, WorkspaceRecord, WorkspaceState};
use super::store::{read_json, write_json, Lock, WsDir};
use crate::detached::{DetachedVm, VmState};
use crate::guest::{GuestClient, GuestError};
use crate::secrets::Redactor;
use crate::{Error, Pyro};
use pyro_proto::rpc::{Reply, Request};
use pyro_vmm::control::ExitReason;
use pyro_vmm::snapshot::STATE_FILE;
use std::cell::OnceCell;
use std::path::PathBuf;
use std::time::Duration;

/// How long the agent may take to flush /workspace (`syncfs`) for a verb
/// that holds the lock meanwhile (stop, suspend, checkpoint), unless
/// `PYRO_GUEST_SYNC_TIMEOUT_SECONDS` says otherwise: a guest's dirty
/// pages (up to a fifth of its memory) take minutes to write where guest
/// kernel work is emulated.
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a verb's call waits for the agent in silence (each read of
/// its reply), unless the call sets its own bound: a guest that stops
/// answering fails the verb instead of hanging it, and long transfers
/// are not cut short (a large push's flush takes minutes where guest
/// kernel work is emulated).
const REPLY_STALL: Duration = Duration::from_secs(30 * 60);

/// How long a verb waits for a VMM that is suspending its idle VM to be
/// done: it flushes /workspace (bounded by 120 s in the VMM) and writes
/// the guest memory in use.
const SUSPEND_WAIT: Duration = Duration::from_secs(180);

fn sync_timeout() -> Duration {
    std::env::var("PYRO_GUEST_SYNC_TIMEOUT_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(SYNC_TIMEOUT, Duration::from_secs)
}

/// One workspace, resolved: what a verb works through.
pub(super) struct WorkspaceHandle {
    pub dir: WsDir,
    /// The workspace's id (the name of its directory).
    pub id: String,
    /// How the caller named it (its id or its name): error messages say
    /// it back.
    pub given: String,
    /// Held, when the verb took it, until the handle is dropped.
    lock: Option<Lock>,
    /// Made from its secrets on first need.
    redactor: OnceCell<Redactor>,
    /// What resumes the VM when its VMM suspended it on idle.
    pyro: Pyro,
    /// How long this verb waited for such a resume, if it did.
    resumed_ms: std::cell::Cell<Option<u64>>,
}

impl Pyro {
    pub(super) fn workspaces_root(&self) -> PathBuf {
        self.paths().data.join("workspaces")
    }

    /// Every workspace with a readable record.
    pub(super) fn records(&self) -> Vec<(WsDir, WorkspaceRecord)> {
        let Ok(entries) = std::fs::read_dir(self.workspaces_root()) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let dir = WsDir(e.path());
                let record = read_json(&dir.record()).ok()?;
                Some((dir, record))
            })
            .collect()
    }

    /// Workspace `id` (or the one named `id`), not locked: for verbs that
    /// only read, or that several callers may run at once (exec).
    pub(super) fn workspace(&self, id: &str) -> Result<WorkspaceHandle, Error> {
        let dir = self.ws_dir(id)?;
        let name = dir.0.file_name().unwrap_or_default();
        Ok(WorkspaceHandle {
            id: name.to_string_lossy().into_owned(),
            given: id.to_string(),
            dir,
            lock: None,
            redactor: OnceCell::new(),
            pyro: self.clone(),
            resumed_ms: std::cell::Cell::new(None),
        })
    }

    /// Workspace `id`, its lock held (waiting for it) until the handle is
    /// dropped: for verbs that change its VM or its disk.
    pub(super) fn workspace_locked(&self, id: &str) -> Result<WorkspaceHandle, Error> {
        let mut ws = self.workspace(id)?;
        ws.lock = Some(ws.dir.lock()?);
        Ok(ws)
    }

    /// The directory of workspace `id` (or of the one named `id`).
    fn ws_dir(&self, id: &str) -> Result<WsDir, Error> {
        if !id.is_empty()
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            let dir = self.workspaces_root().join(id);
            if dir.join("workspace.json").is_file() {
                return Ok(WsDir(dir));
            }
            // A name: unique among live workspaces.
            let matches: Vec<_> = self
                .records()
                .into_iter()
                .filter(|(_, r)| r.name.as_deref() == Some(id))
                .collect();
            if matches.len() == 1 {
                return Ok(matches.into_iter().next().unwrap().0);
            }
        }
        Err(Error::NotFound(format!(
            "no workspace {id:?}: see `pyro workspace list` for ids"
        )))
    }
}

impl WorkspaceHandle {
    /// Its VM (running or not).
    pub fn vm(&self) -> DetachedVm {
        DetachedVm::open(self.dir.vm())
    }

    pub fn record(&self) -> Result<WorkspaceRecord, Error> {
        read_json(&self.dir.record())
    }

    /// The workspace as reported now.
    pub fn view(&self) -> Result<Workspace, Error> {
        Ok(view(&self.dir, self.record()?))
    }

    /// A new connection to its running VM's agent, each wait for its
    /// replies bounded by [`REPLY_STALL`] (calls with a bound of their
    /// own set it). A VM its VMM suspended on idle is resumed first
    /// ([`WorkspaceHandle::wake`]); a stopped one is a conflict that
    /// says how to start it. The handshake is bounded
    /// (`GuestClient::connect`: 10 s).
    pub fn agent(&self) -> Result<GuestClient, Error> {
        let vm = self.vm();
        let id = &self.given;
        let mut agent = match GuestClient::connect(&vm.vsock()) {
            Ok(agent) => agent,
            Err(_) => self.wake()?.ok_or_else(|| match vm.state() {
                VmState::Running { .. } => Error::Guest(format!(
                    "workspace {id}: its VM runs but the agent does not answer"
                )),
                VmState::Stopped { .. } => Error::Conflict(format!(
                    "workspace {id} is stopped: start it with `pyro workspace start {id}`"
                )),
            })?,
        };
        agent
            .set_reply_timeout(Some(REPLY_STALL))
            .map_err(GuestError::from)?;
        if crate::staging::enabled() {
            agent.use_staging(vm.dir().join(crate::staging::STAGING_FILE));
        }
        Ok(agent)
    }

    /// After a refused connection: if the VMM is suspending its idle VM,
    /// waits for it to end; if it suspended it, resumes it (under the
    /// lock, so two callers resume it once) and returns a connection.
    /// `None`: neither (the caller says what the state is). A client the
    /// suspending VMM turned away read EOF before `OK`: nothing of its
    /// reached the guest, so it is safe to connect again.
    fn wake(&self) -> Result<Option<GuestClient>, Error> {
        let vm = self.vm();
        let waited = std::time::Instant::now();
        loop {
            match vm.state() {
                VmState::Running {
                    suspending: true, ..
                } if waited.elapsed() < SUSPEND_WAIT => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                // It changed its mind (a client came in first), or was
                // busy a moment: one more try.
                VmState::Running { .. } => return Ok(GuestClient::connect(&vm.vsock()).ok()),
                VmState::Stopped {
                    reason: ExitReason::IdleSuspended,
                    ..
                } => break,
                VmState::Stopped { .. } => return Ok(None),
            }
        }
        let _lock = match self.lock {
            Some(_) => None,
            None => Some(self.dir.lock()?),
        };
        // Another caller may have resumed it meanwhile.
        if let Ok(agent) = GuestClient::connect(&vm.vsock()) {
            return Ok(Some(agent));
        }
        let idle_suspended = matches!(
            vm.state(),
            VmState::Stopped {
                reason: ExitReason::IdleSuspended,
                ..
            }
        );
        if !idle_suspended || !self.dir.suspended().join(STATE_FILE).is_file() {
            return Ok(None);
        }
        let started = std::time::Instant::now();
        let mut record = self.record()?;
        let agent = self.pyro.boot(
            &self.dir,
            &mut record,
            false,
            None,
            &pyro_images::NoProgress,
        )?;
        self.resumed_ms
            .set(Some(started.elapsed().as_millis() as u64));
        Ok(Some(agent))
    }

    /// Whether its VM runs, once resumed if its VMM suspended it on idle
    /// (or is suspending it now): for verbs that act on a running VM and
    /// refuse a stopped one without asking the agent.
    pub fn running(&self) -> Result<bool, Error> {
        match self.vm().state() {
            VmState::Running {
                suspending: false, ..
            } => Ok(true),
            VmState::Running {
                suspending: true, ..
            }
            | VmState::Stopped {
                reason: ExitReason::IdleSuspended,
                ..
            } => Ok(self.wake()?.is_some()),
            VmState::Stopped { .. } => Ok(false),
        }
    }

    /// How long this verb waited for its VM to be resumed from an idle
    /// suspend, if it did.
    pub fn resumed_ms(&self) -> Option<u64> {
        self.resumed_ms.get()
    }

    /// Flushes /workspace to its disk through `agent`, which must answer
    /// within [`SYNC_TIMEOUT`]: a wedged agent fails the verb instead of
    /// holding the workspace's lock forever.
    pub fn sync(&self, mut agent: GuestClient) -> Result<(), Error> {
        let timeout = sync_timeout();
        agent
            .set_reply_timeout(Some(timeout))
            .map_err(GuestError::from)?;
        agent
            .sync()
            .map_err(|e| self.late(e, "flush /workspace", timeout))
    }

    /// `e` as the verb's error: a reply that did not come within
    /// `timeout` (the client's reply timeout) says that the agent did not
    /// `what` in time.
    pub fn late(&self, e: GuestError, what: &str, timeout: Duration) -> Error {
        match e {
            GuestError::Io(io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Error::Guest(format!(
                    "workspace {}: the agent did not {what} within {} s",
                    self.given,
                    timeout.as_secs()
                ))
            }
            other => other.into(),
        }
    }

    /// One shell or service request on a new connection (so it never
    /// waits behind an exec or a transfer), its reply bounded by
    /// `timeout`: see [`GuestClient::call_collect`].
    pub fn call_collect(
        &self,
        request: &Request,
        input: &[u8],
        max_output: usize,
        timeout: Duration,
    ) -> Result<(Reply, Vec<u8>), Error> {
        let mut agent = self.agent()?;
        agent
            .set_reply_timeout(Some(timeout))
            .map_err(GuestError::from)?;
        agent
            .call_collect(request, input, max_output)
            .map_err(|e| self.redact_err(self.late(e, "answer", timeout)))
    }

    /// `f` on a new connection to its agent, the guest's error redacted
    /// (a path, or a patch's quoted lines, can spell a secret out).
    pub fn guest<T>(
        &self,
        f: impl FnOnce(&mut GuestClient) -> Result<T, GuestError>,
    ) -> Result<T, Error> {
        let mut agent = self.agent()?;
        f(&mut agent).map_err(|e| self.redact_err(self.late(e, "answer", REPLY_STALL)))
    }

    /// What replaces this workspace's secret values in everything it
    /// returns or stores (the secrets as of the first call). A store
    /// that cannot be read fails the verb: output is never returned
    /// unredacted.
    pub fn redactor(&self) -> Result<&Redactor, Error> {
        if let Some(r) = self.redactor.get() {
            return Ok(r);
        }
        let made = super::secrets::redactor(&self.dir)?;
        Ok(self.redactor.get_or_init(|| made))
    }

    /// `e` with the workspace's secret values replaced; if the secrets
    /// cannot be read, an error that says so instead of `e`'s text.
    pub fn redact_err(&self, e: Error) -> Error {
        match self.redactor() {
            Ok(r) => e.redacted(r),
            Err(why) => Error::Io(format!(
                "workspace {}: a call failed, and its error cannot be shown without the \
                 secrets to redact it: {why}",
                self.given
            )),
        }
    }

    /// Records activity now, plus `f`'s change, under the lock (the held
    /// one, else taken for the write).
    pub fn touch(&self, f: impl FnOnce(&mut WorkspaceRecord)) -> Result<WorkspaceRecord, Error> {
        self.touch_with(|r| {
            f(r);
            Ok(())
        })
        .map(|(record, ())| record)
    }

    /// [`WorkspaceHandle::touch`] with a change that may fail, and does
    /// its own writes under the same lock first: if `f` fails, the
    /// record is left as it was.
    pub fn touch_with<T>(
        &self,
        f: impl FnOnce(&mut WorkspaceRecord) -> Result<T, Error>,
    ) -> Result<(WorkspaceRecord, T), Error> {
        let _lock = match self.lock {
            Some(_) => None,
            None => Some(self.dir.lock()?),
        };
        let mut record = self.record()?;
        record.mark_activity();
        let made = f(&mut record)?;
        write_json(&self.dir.record(), &record)?;
        Ok((record, made))
    }
}

/// Workspace `record` in `dir` as reported: its VM's state, and why it
/// stopped if it did not stop on request. A VM that died shows as
/// stopped, never as running.
pub(super) fn view(dir: &WsDir, record: WorkspaceRecord) -> Workspace {
    let (state, suspended_by, last_error) = match DetachedVm::open(dir.vm()).state() {
        VmState::Running { .. } => (WorkspaceState::Running, None, None),
        VmState::Stopped { reason, .. } if dir.suspended().join(STATE_FILE).is_file() => (
            WorkspaceState::Suspended,
            Some(match reason {
                ExitReason::IdleSuspended => SuspendedBy::Idle,
                _ => SuspendedBy::Request,
            }),
            None,
        ),
        VmState::Stopped { reason, message } => (
            WorkspaceState::Stopped,
            None,
            (reason != ExitReason::Stopped && dir.vm().exists())
                .then(|| format!("{reason}: {message}")),
        ),
    };
    Workspace {
        record,
        state,
        suspended_by,
        last_error,
        network_status: None,
        warnings: Vec::new(),
    }
}
