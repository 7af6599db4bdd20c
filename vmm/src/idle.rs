//! Suspending an idle VM on its own (a workspace's `--idle-suspend-seconds`).
//!
//! No process watches workspaces from outside, so the VMM watches its own
//! VM. Idle means: no vsock stream open and none opened since the last
//! look (every exec, file call, shell read, service call and transfer of
//! the host is one), and no network connection open (a published port's
//! client, a download of the guest's). The owner looks each time it wakes
//! (at least every `OWNER_IDLE`, and when the idle time would be up), so
//! idle time is measured to within that.
//!
//! Once it has been idle long enough, the owner suspends the VM as `stop
//! --keep-memory` does, with the host's verbs kept out:
//!
//! 1. it takes the workspace's lock without waiting (a verb that changes
//!    the VM holds it: then it is not idle);
//! 2. it opens its own stream to the agent, then turns new host clients
//!    away (they read EOF before the `OK`, so the host knows nothing
//!    reached the guest and resumes the VM and retries; see the
//!    workspace crate's `agent`), and checks that no other stream opened
//!    meanwhile;
//! 3. unless the policy says otherwise, it asks the agent for its
//!    services and stays awake while one runs;
//! 4. it has the agent flush /workspace (the kept memory is only good
//!    until the next start; the disk must hold the files without it);
//! 5. it pauses the VM, writes the snapshot as `<into>.tmp` and renames it
//!    to `<into>`, and the process ends with `idle_suspended`.
//!
//! Anything that fails on the way (a busy lock, a new stream, a running
//! service, an agent that does not answer in time) undoes what was done
//! (the VM resumes, host clients are let in again) and the VM stays up,
//! idle time counted afresh. Everything the agent says is untrusted and
//! bounded: each reply has a deadline and a size limit.

use crate::Vm;
use pyro_proto::rpc::{self, Event, Reply, Request};
use serde::{Deserialize, Serialize};
use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// When and where a VMM suspends its idle VM.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdleSuspend {
    /// Idle this long, the VM is suspended (at least 1).
    pub after_seconds: u64,
    /// Suspend even while a service runs (by default a running service
    /// keeps the VM awake).
    #[serde(default)]
    pub with_services: bool,
    /// The kept memory's directory (a VM snapshot), written whole or not
    /// at all.
    pub into: PathBuf,
    /// A lock file that verbs changing the VM hold (`flock`): the VMM
    /// suspends only when it can take it without waiting.
    #[serde(default)]
    pub lock: Option<PathBuf>,
}

/// How long the agent may take to list its services.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the agent may take to flush /workspace: dirty pages take a
/// while where guest kernel work is emulated.
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);
/// Frames one reply may take before it counts as a guest misbehaving.
const MAX_FRAMES: usize = 64;

/// What the owner saw last time it looked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    opened: u64,
    open: u64,
    connections: u64,
}

/// The owner's idle clock.
pub(crate) struct IdleWatch {
    policy: Option<IdleSuspend>,
    last: Option<Sample>,
    /// Since when nothing happened.
    since: Instant,
}

impl IdleWatch {
    pub fn new(policy: Option<IdleSuspend>) -> IdleWatch {
        IdleWatch {
            policy,
            last: None,
            since: Instant::now(),
        }
    }

    /// A new policy (None: never suspend); idle time counts afresh.
    pub fn set(&mut self, policy: Option<IdleSuspend>) {
        self.policy = policy;
        self.rearm();
    }

    pub fn policy(&self) -> Option<&IdleSuspend> {
        self.policy.as_ref()
    }

    /// Something happened (a request to the VM, a suspend that did not
    /// go through): idle time counts from now.
    pub fn rearm(&mut self) {
        self.since = Instant::now();
    }

    /// How long until the idle time would be up, if there is a policy.
    pub fn remaining(&self) -> Option<Duration> {
        let after = Duration::from_secs(self.policy.as_ref()?.after_seconds.max(1));
        Some(after.saturating_sub(self.since.elapsed()))
    }

    /// Looks at the VM: anything open or opened since the last look
    /// restarts the idle time. True once it has been idle for the
    /// policy's time.
    pub fn idle_long_enough(&mut self, vm: &Vm) -> bool {
        let Some(activity) = vm.vsock_activity() else {
            return false;
        };
        let now = Sample {
            opened: activity.opened(),
            open: activity.open(),
            connections: vm.net().map_or(0, |n| n.connections()),
        };
        if self.last != Some(now) || now.open > 0 || now.connections > 0 {
            self.last = Some(now);
            self.rearm();
        }
        self.remaining().is_some_and(|left| left.is_zero())
    }
}

/// Suspends `vm` into `policy.into` (see the module docs). Err says why
/// it stayed up; the VM then runs as before.
pub(crate) fn suspend(vm: &mut Vm, policy: &IdleSuspend) -> Result<(), String> {
    let activity = vm
        .vsock_activity()
        .cloned()
        .ok_or("the VM has no vsock device")?;
    let uds = vm
        .config()
        .devices
        .iter()
        .find_map(|d| match d {
            crate::DeviceConfig::Vsock(v) => Some(v.uds.clone()),
            _ => None,
        })
        .ok_or("the VM has no vsock device")?;
    let _lock = match &policy.lock {
        Some(path) => Some(try_lock(path)?),
        None => None,
    };
    let before = activity.opened();
    let mut agent = AgentLink::connect(&uds)?;
    activity.refuse_host_clients(true);
    let work = policy.into.with_extension("tmp");
    let mut paused = false;
    let done = (|| {
        // The stream that opened besides ours came in before the switch:
        // it may carry a request, so the VM stays up for it.
        if activity.open() != 1 || activity.opened() != before + 1 {
            return Err("a host client connected meanwhile".to_string());
        }
        if let Some(n) = vm.net().map(|n| n.connections()).filter(|&n| n > 0) {
            return Err(format!("{n} network connection(s) are open"));
        }
        if !policy.with_services {
            match agent.call(&Request::ServiceList, LIST_TIMEOUT)? {
                Reply::Services { services } => {
                    if let Some(s) = services.iter().find(|s| s.state.running()) {
                        return Err(format!("service {:?} runs", s.name));
                    }
                }
                other => return Err(format!("unexpected reply to a service list: {other:?}")),
            }
        }
        match agent.call(&Request::Sync, SYNC_TIMEOUT)? {
            Reply::Synced => {}
            other => return Err(format!("unexpected reply to a sync: {other:?}")),
        }
        vm.pause().map_err(|e| e.to_string())?;
        paused = true;
        let _ = std::fs::remove_dir_all(&work);
        let _ = std::fs::remove_dir_all(&policy.into);
        vm.snapshot(&work).map_err(|e| e.to_string())?;
        std::fs::rename(&work, &policy.into).map_err(|e| format!("{}: {e}", policy.into.display()))
    })();
    if done.is_err() {
        let _ = std::fs::remove_dir_all(&work);
        if paused {
            vm.resume();
        }
        activity.refuse_host_clients(false);
    }
    done
}

/// Takes `path`'s `flock` if no one holds it.
fn try_lock(path: &Path) -> Result<std::fs::File, String> {
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .map_err(|_| "a verb holds the workspace's lock".to_string())?;
    Ok(file)
}

/// The owner's own stream to the agent: requests without bodies, replies
/// read under a deadline and a frame budget.
struct AgentLink {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl AgentLink {
    fn connect(uds: &Path) -> Result<AgentLink, String> {
        let fail = |e: std::io::Error| format!("connecting to the agent: {e}");
        let stream = rpc::connect_agent(uds, LIST_TIMEOUT).map_err(fail)?;
        stream.set_write_timeout(Some(LIST_TIMEOUT)).map_err(fail)?;
        Ok(AgentLink {
            reader: BufReader::new(stream.try_clone().map_err(fail)?),
            writer: stream,
        })
    }

    /// Sends `request` and reads frames until its final one, each read
    /// bounded by what is left of `timeout`.
    fn call(&mut self, request: &Request, timeout: Duration) -> Result<Reply, String> {
        let deadline = Instant::now() + timeout;
        let fail = |e: std::io::Error| format!("the agent did not answer: {e}");
        rpc::write_frame(&mut self.writer, request, &[]).map_err(fail)?;
        for _ in 0..MAX_FRAMES {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.reader
                .get_ref()
                .set_read_timeout(Some(left))
                .map_err(fail)?;
            match rpc::read_frame::<Event>(&mut self.reader).map_err(fail)? {
                None => return Err("the agent closed the connection".into()),
                Some((Event::Done(reply), _)) => return Ok(reply),
                Some((Event::Error { kind, message }, _)) => {
                    return Err(format!("the agent said {kind:?}: {message:?}"))
                }
                Some(_) => {}
            }
        }
        Err(format!(
            "the agent did not answer within {} s",
            timeout.as_secs()
        ))
    }
}
