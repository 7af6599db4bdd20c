//! The detached VMM process and its control socket.
//!
//! A VM that must outlive the command that started it (a workspace) runs
//! in a process of its own: a host binary (the `pyro` CLI's hidden
//! `__vmm` mode) calls [`serve`] with the path of a [`VmmSpec`]. The
//! process starts the VM, answers [`ControlRequest`]s on
//! `<dir>/control.sock` (one JSON line in, one JSON line out), and when
//! the VM ends, for whatever reason, writes `<dir>/exit.json` (an
//! [`ExitRecord`]) before it exits, so whoever looks later can say why.
//! A VMM killed with SIGKILL leaves no record; callers detect that by the
//! control socket refusing connections.
//!
//! Requests that act on the VM are served one at a time by the thread
//! that owns it; `Status` is answered by the connection's own thread, so
//! it stays quick while a long request (a [`ControlRequest::CopyDisk`]
//! of a large disk) runs.

use crate::idle::{self, IdleSuspend, IdleWatch};
use crate::sandbox::{self, Files, ThreadKind};
use crate::{DiskCopy, Error, Vm, VmConfig, VmExit};
use pyro_net::policy::{NetRules, PortMapping};
use pyro_net::stack::{NetControl, NetStatus, PublishedPort};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Arc;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the VM's owner thread (the main loop) waits for: a control
/// connection's request with where to send the answer, or `None` when a
/// vCPU ended (the guest powered off, reset or crashed).
type Command = Option<(ControlRequest, Sender<ControlReply>)>;

/// How long the owner blocks with nothing to do before it looks at the
/// VM anyway: a safety net; a vCPU's end and requests wake it at once.
const OWNER_IDLE: Duration = Duration::from_secs(10);

/// Why a VM ended, as `exit.json` (and the workspace's `last_error`)
/// spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// Asked to stop (the control socket's `stop`).
    Stopped,
    /// Its deadline (the workspace's time to live) passed.
    Expired,
    /// The guest powered off.
    PoweredOff,
    /// The guest reset (pyro VMs do not reboot).
    Reset,
    /// Boot failure, panic, crash.
    Failed,
    /// The VMM could not restore its snapshot (damaged, or made by another
    /// build or kernel): the caller may take it again.
    BadSnapshot,
    /// Never written by a VMM: what a reader concludes when the process
    /// is gone and left no record (killed with SIGKILL).
    VmmDied,
    /// Never written by a VMM either: the process still runs but does
    /// not answer its control socket (wedged). Its VM is treated as
    /// stopped; `stop` and the next start kill the process first.
    VmmNotAnswering,
    /// Never written by a VMM either: one of its threads made a system
    /// call its sandbox does not allow, and the process ended (the line
    /// it left in `vmm.log` is the message; see `pyro_vmm::sandbox`).
    SandboxViolation,
    /// Idle for its spec's time, the VM was suspended into the kept
    /// memory ([`crate::idle`]); the next call resumes it.
    IdleSuspended,
}

impl ExitReason {
    /// The word in `exit.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::Stopped => "stopped",
            ExitReason::Expired => "expired",
            ExitReason::PoweredOff => "powered_off",
            ExitReason::Reset => "reset",
            ExitReason::Failed => "failed",
            ExitReason::BadSnapshot => "bad_snapshot",
            ExitReason::VmmDied => "vmm_died",
            ExitReason::VmmNotAnswering => "vmm_not_answering",
            ExitReason::SandboxViolation => "sandbox_violation",
            ExitReason::IdleSuspended => "idle_suspended",
        }
    }

    /// An end the VMM process reports with exit code 0.
    pub fn is_clean(self) -> bool {
        matches!(
            self,
            ExitReason::Stopped
                | ExitReason::Expired
                | ExitReason::PoweredOff
                | ExitReason::IdleSuspended
        )
    }
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a VMM process runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmmSpec {
    pub config: VmConfig,
    /// Holds `control.sock` and `exit.json`.
    pub dir: PathBuf,
    /// Stop the VM at this time (seconds since the epoch), whoever is
    /// looking: the VMM enforces its own time to live.
    pub deadline_unix: Option<u64>,
    /// Bound on VMM start -> guest init.
    pub boot_timeout_ms: u64,
    /// When the deadline passes, remove this directory too (the whole
    /// workspace: a time to live means it is gone, whoever looks).
    #[serde(default)]
    pub remove_on_expiry: Option<PathBuf>,
    /// Restore this snapshot directory instead of booting.
    #[serde(default)]
    pub restore_from: Option<PathBuf>,
    /// Suspend the VM once it sits idle this long ([`crate::idle`]).
    #[serde(default)]
    pub idle_suspend: Option<IdleSuspend>,
}

impl VmmSpec {
    pub fn control_socket(dir: &Path) -> PathBuf {
        dir.join("control.sock")
    }

    pub fn exit_record(dir: &Path) -> PathBuf {
        dir.join("exit.json")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlRequest {
    Status,
    /// Stop running guest code; devices and sockets stay up.
    Pause,
    Resume,
    /// Stop the VM now (the guest is not asked; callers that care sync it
    /// first through the agent).
    Stop,
    /// Write a snapshot of the VM to `dir`; the VM is left as it was
    /// (paused or running). With `disks`, each is copied in the same
    /// freeze (as [`CopyDisk`](Self::CopyDisk) would), so the copies and
    /// the memory are of one instant: what a fork restores.
    Snapshot {
        dir: PathBuf,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        disks: Vec<DiskCopy>,
    },
    /// Copy `source`, one of the VM's writable disks, to `dest` as it is
    /// at one instant: the VM is frozen, the disk's writes are made
    /// durable, the file is copied sparse-aware (`dest` whole or absent),
    /// and the VM runs on. Send with [`CopyDisk`](Self::CopyDisk)'s
    /// [`ControlRequest::reply_timeout`]: a large disk takes a while.
    CopyDisk {
        source: PathBuf,
        dest: PathBuf,
    },
    /// The network: rules, published ports, refusals.
    Net,
    /// New network rules; they apply to new connections.
    NetUpdate {
        rules: NetRules,
    },
    /// Publish a guest port on the host's 127.0.0.1.
    PortPublish {
        mapping: PortMapping,
    },
    /// Stop publishing a guest port.
    PortUnpublish {
        guest: u16,
    },
    /// Suspend the VM when idle as `policy` says, or never (`None`).
    IdleSuspend {
        policy: Option<IdleSuspend>,
    },
    /// Tests only: the VM's owner makes a system call its sandbox does
    /// not allow, which ends the process. Refused unless the VMM runs
    /// with [`TEST_HOOKS_ENV`]`=1`.
    TestSandboxViolation,
}

/// Set to `1` in a VMM's environment to let it take test-only requests
/// ([`ControlRequest::TestSandboxViolation`]).
pub const TEST_HOOKS_ENV: &str = "PYRO_VMM_TEST_HOOKS";

impl ControlRequest {
    /// Whether the thread that owns the VM must answer: the rest (status
    /// and the network's requests) a control connection answers itself.
    pub fn needs_vm(&self) -> bool {
        matches!(
            self,
            ControlRequest::Pause
                | ControlRequest::Resume
                | ControlRequest::Stop
                | ControlRequest::Snapshot { .. }
                | ControlRequest::CopyDisk { .. }
                | ControlRequest::IdleSuspend { .. }
                | ControlRequest::TestSandboxViolation
        )
    }

    /// How long an answer to this request may take: the VMM waits this
    /// long for the VM's owner, and a client should too.
    pub fn reply_timeout(&self) -> Duration {
        match self {
            // Both write a VM's bytes to a file: a snapshot all of guest
            // memory that was touched, a disk copy every allocated block,
            // and either can be many GiB. A client that gave up first
            // would remove a file the VMM is still writing.
            ControlRequest::Snapshot { .. } | ControlRequest::CopyDisk { .. } => LONG_REPLY_TIMEOUT,
            _ => Duration::from_secs(10),
        }
    }
}

/// Bound on a [`ControlRequest::Snapshot`] or
/// [`ControlRequest::CopyDisk`], VMM side and client side.
pub const LONG_REPLY_TIMEOUT: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum ControlReply {
    Status {
        pid: u32,
        /// Milliseconds since the VMM started.
        uptime_ms: u64,
        /// Host wall time from VMM start to guest init.
        boot_ms: f64,
        paused: bool,
        /// Idle, it is being suspended: it ends soon, as
        /// `idle_suspended` (or, if that fails, runs on).
        #[serde(default)]
        suspending: bool,
    },
    Paused,
    Resumed,
    Stopping,
    Snapshotted {
        memory_bytes: u64,
        /// Bytes of the disks copied with it (allocated ranges).
        #[serde(default)]
        disk_bytes: u64,
        /// How long the VM was frozen for it.
        ms: f64,
    },
    DiskCopied {
        /// Bytes copied (the disk's allocated ranges).
        bytes: u64,
        ms: f64,
    },
    Net {
        status: NetStatus,
    },
    NetUpdated,
    PortPublished {
        port: PublishedPort,
    },
    PortUnpublished {
        port: PublishedPort,
    },
    IdleSuspendSet,
    Error {
        message: String,
    },
}

/// Why a VMM process ended, written to `exit.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExitRecord {
    pub reason: ExitReason,
    pub message: String,
    pub at_unix: u64,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Sends one request to the VMM whose directory is `dir` and waits up to
/// the request's [`ControlRequest::reply_timeout`] for the answer. A
/// refused connection means no VMM is serving there (it ended or was
/// killed).
pub fn request(dir: &Path, req: &ControlRequest) -> std::io::Result<ControlReply> {
    let mut stream = UnixStream::connect(VmmSpec::control_socket(dir))?;
    // A little longer than the VMM waits, so its own answer wins.
    stream.set_read_timeout(Some(req.reply_timeout() + Duration::from_secs(5)))?;
    let mut line = serde_json::to_vec(req).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    serde_json::from_str(&reply).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad control reply {reply:?}: {e}"),
        )
    })
}

/// Reads the exit record a VMM left in `dir`, if any.
pub fn exit_record(dir: &Path) -> Option<ExitRecord> {
    let text = std::fs::read_to_string(VmmSpec::exit_record(dir)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes the exit record atomically (temp file, fsync, rename). Also
/// for a caller that changes how a VM that ended stands (a `stop` of a
/// VM suspended on idle makes it stopped); errors go to stderr.
pub fn write_exit_record(dir: &Path, record: &ExitRecord) {
    let path = VmmSpec::exit_record(dir);
    let tmp = path.with_extension("json.tmp");
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = written {
        eprintln!("pyro vmm: cannot write {}: {e}", path.display());
    }
}

/// The VMM process: runs the VM of the spec at `spec_path` until it ends,
/// serving the control socket meanwhile. Returns the process exit code.
pub fn serve(spec_path: &Path) -> i32 {
    let spec: VmmSpec = match std::fs::read(spec_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("pyro vmm: cannot read {}: {e}", spec_path.display());
            return 2;
        }
    };
    let record = run(&spec);
    write_exit_record(&spec.dir, &record);
    let _ = std::fs::remove_file(VmmSpec::control_socket(&spec.dir));
    if record.reason == ExitReason::Expired {
        if let Some(dir) = &spec.remove_on_expiry {
            remove_contents(dir);
        }
    }
    if record.reason.is_clean() {
        0
    } else {
        1
    }
}

/// Removes everything in `dir`, then `dir` itself if the sandbox lets
/// it: under Landlock the owner may change only what is beneath the
/// workspace's directory, and the entry of that directory belongs to the
/// one above (a right there would reach every workspace). An empty
/// workspace directory, with no record, is swept by the next pyro
/// command.
fn remove_contents(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let _ = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
    }
    let _ = std::fs::remove_dir(dir);
}

fn failed(e: Error) -> ExitRecord {
    ExitRecord {
        reason: match e {
            Error::Snapshot { .. } => ExitReason::BadSnapshot,
            _ => ExitReason::Failed,
        },
        message: e.to_string(),
        at_unix: now_unix(),
    }
}

fn run(spec: &VmmSpec) -> ExitRecord {
    let socket = VmmSpec::control_socket(&spec.dir);
    let _ = std::fs::remove_file(&socket);
    let listener = match UnixListener::bind(&socket) {
        Ok(l) => l,
        Err(e) => {
            return failed(Error::Config(format!(
                "control socket {}: {e}",
                socket.display()
            )))
        }
    };
    let started = Instant::now();
    let (mut vm, boot_ms) = match &spec.restore_from {
        // A restored guest is past init: agent readiness is the caller's
        // ping.
        Some(dir) => match Vm::restore(&spec.config, dir) {
            Ok(vm) => (vm, started.elapsed().as_secs_f64() * 1000.0),
            Err(e) => return failed(e),
        },
        None => {
            let mut vm = match Vm::start(&spec.config) {
                Ok(vm) => vm,
                Err(e) => return failed(e),
            };
            match vm.wait_for_init(Duration::from_millis(spec.boot_timeout_ms)) {
                Ok(boot) => (vm, boot.to_init_ms),
                Err(e) => return failed(e),
            }
        }
    };

    // Control connections are served on their own threads; what they ask
    // of the VM comes here, to the one thread that owns it.
    let (cmd_tx, cmd_rx) = channel::<Command>();
    let ended = cmd_tx.clone();
    vm.on_end(move || {
        let _ = ended.send(None);
    });
    let status = Status {
        started,
        boot_ms,
        paused: Arc::new(AtomicBool::new(false)),
        suspending: Arc::new(AtomicBool::new(false)),
        net: vm.net().cloned(),
    };
    let served = status.clone();
    std::thread::Builder::new()
        .name("vmm-control".into())
        .spawn(move || {
            sandbox::enter(ThreadKind::Control, &Files::none());
            accept(listener, cmd_tx, served)
        })
        .ok();
    // Last, once every other thread of the VM started: a thread takes its
    // creator's filter along, and none should carry the owner's.
    // Files: its directory's parent (the workspace's, holding the
    // snapshots, suspends and disk copies it writes; for a snapshot
    // build, the build's), and what it removes at the end of a TTL.
    let owner_files = Files {
        read_write: [spec.dir.parent().unwrap_or(&spec.dir)]
            .into_iter()
            .chain(spec.remove_on_expiry.as_deref())
            .map(Path::to_path_buf)
            .collect(),
        read_only: Vec::new(),
    };
    sandbox::enter(ThreadKind::Owner, &owner_files);
    let test_hooks = std::env::var(TEST_HOOKS_ENV).as_deref() == Ok("1");
    let mut idle = IdleWatch::new(spec.idle_suspend.clone());
    // Why the last idle suspend did not happen: logged when it changes,
    // not at every try (a running service would fill the log).
    let mut not_suspended = String::new();

    loop {
        if let Some(deadline) = spec.deadline_unix {
            if now_unix() >= deadline {
                vm.shutdown();
                return ExitRecord {
                    reason: ExitReason::Expired,
                    message: "the workspace reached its time to live".into(),
                    at_unix: now_unix(),
                };
            }
        }
        match vm.try_exit() {
            None => {}
            Some(Ok(exit)) => {
                return ExitRecord {
                    reason: match exit {
                        VmExit::PowerOff { .. } => ExitReason::PoweredOff,
                        VmExit::Reset => ExitReason::Reset,
                    },
                    message: exit.to_string(),
                    at_unix: now_unix(),
                }
            }
            Some(Err(e)) => return failed(e),
        }
        if idle.idle_long_enough(&vm) {
            if let Some(policy) = idle.policy().cloned() {
                status.suspending.store(true, Ordering::Release);
                match idle::suspend(&mut vm, &policy) {
                    Ok(()) => {
                        vm.shutdown();
                        return ExitRecord {
                            reason: ExitReason::IdleSuspended,
                            message: format!(
                                "suspended after {} s without activity; the next call resumes it",
                                policy.after_seconds
                            ),
                            at_unix: now_unix(),
                        };
                    }
                    Err(why) => {
                        if why != not_suspended {
                            eprintln!("pyro vmm: idle, but not suspended: {why}");
                        }
                        not_suspended = why;
                    }
                }
                status.suspending.store(false, Ordering::Release);
                idle.rearm();
            }
        }
        let mut wait = spec.deadline_unix.map_or(OWNER_IDLE, |d| {
            OWNER_IDLE.min(Duration::from_secs(d.saturating_sub(now_unix()).max(1)))
        });
        if let Some(left) = idle.remaining() {
            wait = wait.min(left.max(Duration::from_millis(100)));
        }
        match cmd_rx.recv_timeout(wait) {
            Ok(None) => {} // a vCPU ended: try_exit, next round, says how
            Ok(Some((req, reply))) => {
                idle.rearm();
                let answer = match req {
                    ControlRequest::IdleSuspend { policy } => {
                        idle.set(policy);
                        ControlReply::IdleSuspendSet
                    }
                    ControlRequest::Pause => match vm.pause() {
                        Ok(()) => ControlReply::Paused,
                        Err(e) => ControlReply::Error {
                            message: e.to_string(),
                        },
                    },
                    ControlRequest::Resume => {
                        vm.resume();
                        ControlReply::Resumed
                    }
                    ControlRequest::Stop => ControlReply::Stopping,
                    ControlRequest::CopyDisk { source, dest } => {
                        let t = Instant::now();
                        match vm.copy_disk(&source, &dest) {
                            Ok(bytes) => ControlReply::DiskCopied {
                                bytes,
                                ms: t.elapsed().as_secs_f64() * 1000.0,
                            },
                            Err(e) => ControlReply::Error {
                                message: e.to_string(),
                            },
                        }
                    }
                    ControlRequest::Snapshot { dir, disks } => {
                        let t = Instant::now();
                        match vm.snapshot_with_disks(&dir, &disks) {
                            Ok((memory_bytes, disk_bytes)) => ControlReply::Snapshotted {
                                memory_bytes,
                                disk_bytes,
                                ms: t.elapsed().as_secs_f64() * 1000.0,
                            },
                            Err(e) => ControlReply::Error {
                                message: e.to_string(),
                            },
                        }
                    }
                    ControlRequest::TestSandboxViolation if test_hooks => {
                        // SAFETY: ptrace(PTRACE_PEEKDATA, 0, 0, 0) reads
                        // nothing of ours; under the sandbox it never
                        // runs, and without one it fails (no tracee).
                        unsafe { libc::syscall(libc::SYS_ptrace, libc::PTRACE_PEEKDATA, 0, 0, 0) };
                        ControlReply::Error {
                            message: "the sandbox let ptrace through".into(),
                        }
                    }
                    ControlRequest::TestSandboxViolation => ControlReply::Error {
                        message: format!("test hooks are off ({TEST_HOOKS_ENV})"),
                    },
                    // Never sent here (the connection answers them).
                    other => status.answer(other),
                };
                status.paused.store(vm.is_paused(), Ordering::Release);
                let stopping = answer == ControlReply::Stopping;
                let _ = reply.send(answer);
                if stopping {
                    vm.shutdown();
                    return ExitRecord {
                        reason: ExitReason::Stopped,
                        message: "stopped on request".into(),
                        at_unix: now_unix(),
                    };
                }
            }
            Err(RecvTimeoutError::Disconnected) | Err(RecvTimeoutError::Timeout) => {}
        }
    }
}

/// What a `Status` request reports, readable from any thread.
#[derive(Clone)]
struct Status {
    started: Instant,
    boot_ms: f64,
    /// Mirrors `Vm::is_paused`, kept by the thread that owns the VM.
    paused: Arc<AtomicBool>,
    /// Set while the owner suspends the idle VM.
    suspending: Arc<AtomicBool>,
    /// The VM's network, changed and read from any thread.
    net: Option<NetControl>,
}

impl Status {
    /// Answers a request that needs no VM owner (not
    /// [`ControlRequest::needs_vm`]): status, and the network's (the
    /// stack picks changes up on its own thread).
    fn answer(&self, req: ControlRequest) -> ControlReply {
        let net = || {
            self.net
                .as_ref()
                .ok_or_else(|| "this VM has no network device".to_string())
        };
        let answered = match req {
            ControlRequest::Net => net().map(|n| ControlReply::Net { status: n.status() }),
            ControlRequest::NetUpdate { rules } => net().and_then(|n| {
                n.update(rules)
                    .map(|()| ControlReply::NetUpdated)
                    .map_err(|e| e.to_string())
            }),
            ControlRequest::PortPublish { mapping } => net().and_then(|n| {
                n.publish(mapping)
                    .map(|port| ControlReply::PortPublished { port })
                    .map_err(|e| e.to_string())
            }),
            ControlRequest::PortUnpublish { guest } => net().and_then(|n| {
                n.unpublish(guest)
                    .map(|port| ControlReply::PortUnpublished { port })
                    .map_err(|e| e.to_string())
            }),
            _ => Ok(self.reply()),
        };
        answered.unwrap_or_else(|message| ControlReply::Error { message })
    }

    fn reply(&self) -> ControlReply {
        ControlReply::Status {
            pid: std::process::id(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            boot_ms: self.boot_ms,
            paused: self.paused.load(Ordering::Acquire),
            suspending: self.suspending.load(Ordering::Acquire),
        }
    }
}

fn accept(listener: UnixListener, commands: Sender<Command>, status: Status) {
    for conn in listener.incoming().flatten() {
        let commands = commands.clone();
        let status = status.clone();
        std::thread::spawn(move || {
            let _ = answer(conn, &commands, &status);
        });
    }
}

fn answer(conn: UnixStream, commands: &Sender<Command>, status: &Status) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = String::new();
    BufReader::new((&conn).take(64 * 1024)).read_line(&mut line)?;
    let reply = match serde_json::from_str::<ControlRequest>(&line) {
        Ok(req) if !req.needs_vm() => status.answer(req),
        Ok(req) => {
            let wait = req.reply_timeout();
            let (tx, rx) = channel();
            let _ = commands.send(Some((req, tx)));
            rx.recv_timeout(wait).unwrap_or(ControlReply::Error {
                message: "the VM did not answer (it is stopping)".into(),
            })
        }
        Err(e) => ControlReply::Error {
            message: format!("bad request {line:?}: {e}"),
        },
    };
    let mut out = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
    out.push(b'\n');
    (&conn).write_all(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_requests_on_the_vm_go_to_its_owner() {
        assert!(ControlRequest::Pause.needs_vm());
        assert!(ControlRequest::Stop.needs_vm());
        assert!(!ControlRequest::Status.needs_vm());
        assert!(!ControlRequest::Net.needs_vm());
        assert!(!ControlRequest::PortUnpublish { guest: 80 }.needs_vm());
    }

    #[test]
    fn requests_that_write_vm_bytes_wait_long_the_rest_briefly() {
        let dir = PathBuf::from("/d");
        let snapshot = ControlRequest::Snapshot {
            dir: dir.clone(),
            disks: Vec::new(),
        };
        let copy = ControlRequest::CopyDisk {
            source: dir.clone(),
            dest: dir,
        };
        assert_eq!(snapshot.reply_timeout(), LONG_REPLY_TIMEOUT);
        assert_eq!(copy.reply_timeout(), LONG_REPLY_TIMEOUT);
        assert_eq!(
            ControlRequest::Stop.reply_timeout(),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn exit_reasons_print_as_they_serialize() {
        use ExitReason::*;
        for r in [
            Stopped,
            Expired,
            PoweredOff,
            Reset,
            Failed,
            BadSnapshot,
            VmmDied,
            SandboxViolation,
            IdleSuspended,
        ] {
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
            let back: ExitReason = serde_json::from_str(&format!("\"{r}\"")).unwrap();
            assert_eq!(back, r);
        }
    }
}
