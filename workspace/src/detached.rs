//! VMs in processes of their own, which outlive the call that made them
//! (the base of workspaces). The VMM process is a host binary run in its
//! hidden `__vmm SPEC` mode (the `pyro` CLI has it); everything about a
//! VM lives in its directory (spec, sockets, console log, exit record), so
//! any later process can find it, ask it, or stop it. No daemon.

use crate::guest::GuestClient;
use crate::process::ProcessId;
use crate::Error;
use pyro_vmm::control::{self, ControlReply, ControlRequest, ExitReason, ExitRecord, VmmSpec};
use pyro_vmm::net::policy::{NetRules, PortMapping};
use pyro_vmm::net::stack::{NetStatus, PublishedPort};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable naming the binary to run VMM processes with.
pub const VMM_BIN_ENV: &str = "PYRO_VMM_BIN";

/// The binary that hosts VMM processes: `$PYRO_VMM_BIN`, else a `pyro`
/// next to the running executable (or one directory up, where cargo
/// keeps binaries when the caller is a test in `target/*/deps`).
pub fn vmm_program() -> Result<PathBuf, Error> {
    if let Some(bin) = std::env::var_os(VMM_BIN_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe().map_err(|e| Error::Io(format!("current_exe: {e}")))?;
    if exe.file_name().is_some_and(|n| n == "pyro") {
        return Ok(exe);
    }
    let dir = exe.parent().unwrap_or(Path::new("/"));
    for candidate in [dir.join("pyro"), dir.join("../pyro")] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(Error::Io(format!(
        "cannot find the `pyro` binary to run the VM process: set {VMM_BIN_ENV} to its path \
         (build it with `cargo build --release -p pyro-cli`)"
    )))
}

/// What a detached VM is doing, from its directory.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum VmState {
    Running {
        pid: u32,
        uptime_ms: u64,
        boot_ms: f64,
        /// Guest code is not running (see [`DetachedVm::pause`]).
        paused: bool,
        /// Idle, it is being suspended (`pyro_vmm::idle`): it turns new
        /// agent clients away and soon ends as
        /// [`ExitReason::IdleSuspended`] (or runs on).
        suspending: bool,
    },
    /// Not running: `record` says why, if the VMM could still write it
    /// (a VMM killed with SIGKILL cannot).
    Stopped { reason: ExitReason, message: String },
}

/// A handle on the VM whose files are in `dir`.
#[derive(Debug, Clone)]
pub struct DetachedVm {
    dir: PathBuf,
}

impl DetachedVm {
    /// A handle on an existing VM directory (running or not).
    pub fn open(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The agent's vsock socket.
    pub fn vsock(&self) -> PathBuf {
        self.dir.join("vsock.sock")
    }

    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    /// Starts a VMM process for `spec` (its `dir` must exist) and returns
    /// without waiting for the guest. The process runs in its own process
    /// group, so a Ctrl-C meant for the caller does not reach it.
    ///
    /// Its identity (pid and start time) goes into `vmm-pid.json`, so that
    /// [`DetachedVm::stop`] can make sure of a VMM that does not answer.
    /// Refused once [`close_spawns`] has been called.
    pub fn spawn(spec: &VmmSpec) -> Result<DetachedVm, Error> {
        // Held until the identity is written: `close_spawns` then sees
        // every VMM spawned before it.
        let spawns = SPAWNS_CLOSED.lock().unwrap_or_else(|p| p.into_inner());
        if *spawns {
            return Err(Error::Io(
                "this process is exiting: no new VM is started".into(),
            ));
        }
        let vm = DetachedVm::open(&spec.dir);
        // A VMM of this directory that still runs (wedged: callers saw
        // it as stopped) must never share the disks with a new one.
        if let Some(old) = vm.recorded_process() {
            if !old.kill_group(Duration::from_secs(10)) {
                return Err(Error::Io(format!(
                    "the earlier VM process {} of {} does not die; not starting another on its disks",
                    old.pid,
                    spec.dir.display()
                )));
            }
        }
        let io = |e: std::io::Error| Error::Io(format!("{}: {e}", spec.dir.display()));
        let _ = std::fs::remove_file(VmmSpec::exit_record(&spec.dir));
        let spec_path = spec.dir.join("vmm.json");
        std::fs::write(
            &spec_path,
            serde_json::to_vec_pretty(spec).map_err(|e| Error::Io(e.to_string()))?,
        )
        .map_err(io)?;
        let log = std::fs::File::create(spec.dir.join("vmm.log")).map_err(io)?;
        use std::os::unix::process::CommandExt;
        let mut child = Command::new(vmm_program()?)
            .arg("__vmm")
            .arg(&spec_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| Error::Io(format!("starting the VM process: {e}")))?;
        if let Some(id) = ProcessId::of(child.id()) {
            if let Err(e) = crate::workspaces::write_json(&vm.pid_file(), &id) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        }
        drop(spawns);
        // Reap it when it ends, so a long-lived caller collects no zombies.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        Ok(vm)
    }

    /// Waits for the guest agent; fails early, with the reason and the
    /// console's last lines, if the VMM ends first.
    pub fn wait_ready(&self, timeout: Duration) -> Result<GuestClient, Error> {
        let started = Instant::now();
        loop {
            if let Ok(client) = GuestClient::connect(&self.vsock()) {
                return Ok(client);
            }
            if let Some(record) = control::exit_record(&self.dir) {
                return Err(Error::Guest(format!(
                    "the VM ended before its agent answered ({}: {}){}",
                    record.reason,
                    record.message,
                    self.console_tail_text()
                )));
            }
            if let Some(line) = self.sandbox_violation() {
                return Err(Error::Guest(format!(
                    "the VM ended before its agent answered ({}: {line})",
                    ExitReason::SandboxViolation
                )));
            }
            if started.elapsed() > timeout {
                let _ = self.stop();
                return Err(Error::Guest(format!(
                    "the guest agent did not answer within {:.0} s{}",
                    timeout.as_secs_f64(),
                    self.console_tail_text()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asks the VMM; a refused connection means it is gone.
    pub fn state(&self) -> VmState {
        match control::request(&self.dir, &ControlRequest::Status) {
            Ok(ControlReply::Status {
                pid,
                uptime_ms,
                boot_ms,
                paused,
                suspending,
            }) => VmState::Running {
                pid,
                uptime_ms,
                boot_ms,
                paused,
                suspending,
            },
            _ => match control::exit_record(&self.dir) {
                Some(ExitRecord {
                    reason, message, ..
                }) => VmState::Stopped { reason, message },
                None => match self.recorded_process().filter(ProcessId::alive) {
                    Some(vmm) => VmState::Stopped {
                        reason: ExitReason::VmmNotAnswering,
                        message: format!(
                            "the VM process ({}) runs but does not answer its control socket; \
                             stop or start kills it",
                            vmm.pid
                        ),
                    },
                    None => match self.sandbox_violation() {
                        Some(message) => VmState::Stopped {
                            reason: ExitReason::SandboxViolation,
                            message,
                        },
                        None => VmState::Stopped {
                            reason: ExitReason::VmmDied,
                            message: "the VM process ended without saying why (killed?)".into(),
                        },
                    },
                },
            },
        }
    }

    /// Stops running guest code; devices stay up, so host connections
    /// wait instead of failing. Undo with [`DetachedVm::resume`].
    pub fn pause(&self) -> Result<(), Error> {
        self.control(ControlRequest::Pause, ControlReply::Paused)
    }

    pub fn resume(&self) -> Result<(), Error> {
        self.control(ControlRequest::Resume, ControlReply::Resumed)
    }

    /// Has the VMM suspend the VM once idle as `policy` says (`None`:
    /// never); idle time counts afresh.
    pub fn set_idle_suspend(
        &self,
        policy: Option<pyro_vmm::idle::IdleSuspend>,
    ) -> Result<(), Error> {
        self.control(
            ControlRequest::IdleSuspend { policy },
            ControlReply::IdleSuspendSet,
        )
    }

    /// Snapshots the running VM into `dir` (which must not exist; see
    /// `pyro_vmm::snapshot`); the VM runs on afterwards.
    pub fn snapshot(&self, dir: &Path) -> Result<(), Error> {
        self.snapshot_with_disks(dir, &[]).map(|_| ())
    }

    /// Writes a snapshot of the running VM to `dir` and, in the same
    /// freeze, copies each of `disks` (one of its writable disks, to a
    /// file that is none of them): memory and disks of one instant, what
    /// a fork restores. The VM runs on. Returns how long it was frozen.
    /// Waits up to [`control::LONG_REPLY_TIMEOUT`].
    pub fn snapshot_with_disks(
        &self,
        dir: &Path,
        disks: &[pyro_vmm::DiskCopy],
    ) -> Result<Duration, Error> {
        let req = ControlRequest::Snapshot {
            dir: dir.to_path_buf(),
            disks: disks.to_vec(),
        };
        match self.ask(&req)? {
            ControlReply::Snapshotted { ms, .. } => Ok(Duration::from_secs_f64(ms / 1000.0)),
            other => Err(unexpected(other)),
        }
    }

    /// Copies `source`, one of the VM's writable disks, to `dest` as it
    /// is at one instant (the VMM freezes the VM, syncs the disk, copies
    /// it sparse-aware and thaws it; `dest` is whole or absent). Returns
    /// the bytes copied. Waits up to
    /// [`control::LONG_REPLY_TIMEOUT`], not the 10 s of other requests:
    /// a large disk takes a while. What the guest has not written out is
    /// not in the copy: sync the guest first.
    pub fn copy_disk(&self, source: &Path, dest: &Path) -> Result<u64, Error> {
        let req = ControlRequest::CopyDisk {
            source: source.to_path_buf(),
            dest: dest.to_path_buf(),
        };
        match self.ask(&req)? {
            ControlReply::DiskCopied { bytes, .. } => Ok(bytes),
            other => Err(unexpected(other)),
        }
    }

    /// The running VM's network: rules, published ports, refusals.
    pub fn net_status(&self) -> Result<NetStatus, Error> {
        match self.ask(&ControlRequest::Net)? {
            ControlReply::Net { status } => Ok(status),
            other => Err(unexpected(other)),
        }
    }

    /// New network rules for the running VM (new connections follow
    /// them; open ones stay).
    pub fn net_update(&self, rules: NetRules) -> Result<(), Error> {
        self.control(
            ControlRequest::NetUpdate { rules },
            ControlReply::NetUpdated,
        )
    }

    /// Publishes a guest port on the host's 127.0.0.1.
    pub fn port_publish(&self, mapping: PortMapping) -> Result<PublishedPort, Error> {
        match self.ask(&ControlRequest::PortPublish { mapping })? {
            ControlReply::PortPublished { port } => Ok(port),
            other => Err(unexpected(other)),
        }
    }

    /// Stops publishing a guest port.
    pub fn port_unpublish(&self, guest: u16) -> Result<PublishedPort, Error> {
        match self.ask(&ControlRequest::PortUnpublish { guest })? {
            ControlReply::PortUnpublished { port } => Ok(port),
            other => Err(unexpected(other)),
        }
    }

    fn control(&self, req: ControlRequest, want: ControlReply) -> Result<(), Error> {
        match self.ask(&req)? {
            reply if reply == want => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Sends `req` to the VMM; its error reply is an error.
    fn ask(&self, req: &ControlRequest) -> Result<ControlReply, Error> {
        match control::request(&self.dir, req) {
            Ok(ControlReply::Error { message }) => Err(Error::Vm(pyro_vmm::Error::Config(message))),
            Ok(reply) => Ok(reply),
            Err(e) => Err(Error::Conflict(format!("the VM is not running ({e})"))),
        }
    }

    /// The VMM process `vmm-pid.json` records, if any (maybe long gone).
    /// The line a VMM ended by its sandbox left in `vmm.log`
    /// (`pyro_vmm::sandbox`), if it left one. Only the log's end is read:
    /// the line is the process's last.
    fn sandbox_violation(&self) -> Option<String> {
        use std::io::{Read, Seek, SeekFrom};
        let mut log = std::fs::File::open(self.dir.join("vmm.log")).ok()?;
        let len = log.metadata().ok()?.len();
        log.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
        let mut tail = Vec::new();
        log.take(4096).read_to_end(&mut tail).ok()?;
        let prefix = pyro_vmm::sandbox::VIOLATION_PREFIX;
        String::from_utf8_lossy(&tail)
            .lines()
            .rev()
            .find(|l| l.starts_with(prefix))
            .map(|l| l.trim_start_matches(prefix).trim().to_string())
    }

    fn recorded_process(&self) -> Option<ProcessId> {
        crate::workspaces::read_json(&self.pid_file()).ok()
    }

    /// Where [`DetachedVm::spawn`] keeps the VMM process's identity.
    fn pid_file(&self) -> PathBuf {
        self.dir.join("vmm-pid.json")
    }

    /// Stops the VM if it runs and waits until its process is gone. A
    /// VMM that does not answer its control socket (still starting,
    /// wedged, or its socket removed) but whose process still runs is
    /// killed, so no caller removes the files of a VM that goes on.
    pub fn stop(&self) -> Result<(), Error> {
        if control::request(&self.dir, &ControlRequest::Stop).is_err() {
            return match self.recorded_process() {
                Some(vmm) if !vmm.kill_group(Duration::from_secs(10)) => Err(Error::Io(format!(
                    "the VM process {} did not answer and did not die within 10 s of SIGKILL",
                    vmm.pid
                ))),
                _ => Ok(()),
            };
        }
        let started = Instant::now();
        while std::fs::symlink_metadata(VmmSpec::control_socket(&self.dir)).is_ok() {
            if started.elapsed() > Duration::from_secs(10) {
                return Err(Error::Io("the VM process did not stop within 10 s".into()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The socket goes early in the VMM's shutdown; the process must
        // be gone too, its disks closed, before callers copy or delete
        // them (seen once: a VMM lived on after its socket, for hours,
        // with its directory deleted). Killed if it lingers.
        if let Some(vmm) = self.recorded_process() {
            while vmm.alive() && started.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if !vmm.kill_group(Duration::from_secs(10)) {
                return Err(Error::Io(format!(
                    "the VM process {} did not end within 10 s of SIGKILL",
                    vmm.pid
                )));
            }
        }
        Ok(())
    }

    /// The last console lines, from `console.log.1` too when the log
    /// rotated a moment ago (both are capped: `VmConfig::serial_log_max_bytes`).
    fn console_tail_text(&self) -> String {
        let log = self.console_log();
        let read =
            |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
        let mut text = read(&log);
        if text.lines().count() < 15 {
            text = read(&pyro_vmm::console_log::rotated(&log)) + &text;
        }
        let lines: Vec<String> = text.lines().map(String::from).collect();
        pyro_vmm::console_tail_text(&lines[lines.len().saturating_sub(15)..])
    }
}

/// Set by [`close_spawns`]: [`DetachedVm::spawn`] refuses.
static SPAWNS_CLOSED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);

/// Makes [`DetachedVm::spawn`] refuse from now on, waiting for one in
/// progress to finish: for a process about to exit on a signal, which
/// then stops the VMs it was making (see `abandon_creates`) and must not
/// see another one start behind its back.
pub(crate) fn close_spawns() {
    *SPAWNS_CLOSED.lock().unwrap_or_else(|p| p.into_inner()) = true;
}

fn unexpected(reply: ControlReply) -> Error {
    Error::Guest(format!("unexpected control reply {reply:?}"))
}

impl crate::Pyro {
    /// The VM config [`Pyro::spawn_detached`] runs: `environment`'s root
    /// image, vsock and console in `dir` (created if missing). Callers
    /// that want more devices add them and spawn with
    /// [`DetachedVm::spawn`].
    pub fn detached_config(
        &self,
        environment: &str,
        mem_mib: u32,
        vcpus: u8,
        dir: &Path,
        progress: &dyn crate::Progress,
    ) -> Result<pyro_vmm::VmConfig, Error> {
        let (mut config, _env) = self.environment_vm(environment, mem_mib, vcpus, progress)?;
        std::fs::create_dir_all(dir).map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
        config.set_vsock(pyro_vmm::VsockConfig {
            cid: 3,
            uds: dir.join("vsock.sock"),
        });
        config.serial_log = Some(dir.join("console.log"));
        Ok(config)
    }

    /// Starts a detached VM of `environment` whose files live in `dir`
    /// (created if missing), with the extra kernel command-line words
    /// `cmdline_extra`. Returns once the VMM process runs; use
    /// [`DetachedVm::wait_ready`] for the agent.
    pub fn spawn_detached(
        &self,
        environment: &str,
        mem_mib: u32,
        vcpus: u8,
        dir: &Path,
        deadline_unix: Option<u64>,
        progress: &dyn crate::Progress,
    ) -> Result<DetachedVm, Error> {
        let config = self.detached_config(environment, mem_mib, vcpus, dir, progress)?;
        DetachedVm::spawn(&VmmSpec {
            config,
            dir: dir.to_path_buf(),
            deadline_unix,
            boot_timeout_ms: 120_000,
            remove_on_expiry: None,
            restore_from: None,
            idle_suspend: None,
        })
    }
}
