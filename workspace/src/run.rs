//! One-shot runs: boot a fresh VM of an environment, run one command,
//! tear everything down.

use crate::guest::GuestClient;
use crate::{Cancel, Error, Progress, Pyro};
use pyro_proto::rpc::{ExecRequest, Stream};
use pyro_vmm::limits::OUTPUT_BYTES;
use pyro_vmm::{Vm, VmConfig, VsockConfig};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub environment: String,
    /// vCPUs ([`pyro_vmm::limits::VCPUS`]). More than one boots the SMP
    /// guest kernel, built on first use (minutes, reported to the
    /// progress), with a warm snapshot of its own.
    pub vcpus: u8,
    pub mem_mib: u32,
    /// Bound on the command itself (its process group is killed after).
    pub timeout: Duration,
    /// Bound on boot + agent start.
    pub boot_timeout: Duration,
    /// Boot the kernel instead of restoring the environment's warm
    /// snapshot (see `warm.rs`).
    pub cold: bool,
    /// When to give up: the command's process group is killed and the run
    /// fails with [`Error::Cancelled`] (the VM is removed as always).
    pub cancel: Cancel,
    /// The VM's network: policy, allowlist, static names (policy `off`
    /// by default: no network).
    pub network: pyro_vmm::NetConfig,
    /// What the result keeps of each output stream, in bytes
    /// ([`pyro_vmm::limits::OUTPUT_BYTES`]); `on_output` still sees all.
    pub max_output_bytes: u64,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            environment: pyro_images::DEFAULT_ENV.into(),
            vcpus: 1,
            mem_mib: VmConfig::DEFAULT_MEM_MIB,
            timeout: Duration::from_secs(30),
            boot_timeout: Duration::from_secs(120),
            cold: false,
            cancel: Cancel::never(),
            network: pyro_vmm::NetConfig::default(),
            max_output_bytes: OUTPUT_BYTES.default,
        }
    }
}

/// Where the time went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunTimings {
    /// Whether the VM was restored from the warm snapshot (else booted).
    pub warm: bool,
    /// Finding the images and starting the VMM.
    pub create_ms: u64,
    /// Cold: VMM start -> guest init. Warm: restore -> agent answering
    /// and made unique.
    pub boot_ms: u64,
    /// Cold: guest init -> agent answering. Warm: 0.
    pub agent_ms: u64,
    pub exec_ms: u64,
    pub total_ms: u64,
}

/// The result of `Pyro::run`. Output is kept up to
/// [`RunOptions::max_output_bytes`] a stream (and all of it is handed to
/// the caller's callback as it arrives).
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub environment: String,
    pub command: Vec<String>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    #[serde(serialize_with = "lossy")]
    pub stdout: Vec<u8>,
    #[serde(serialize_with = "lossy")]
    pub stderr: Vec<u8>,
    /// The command wrote more to stdout than `stdout` holds.
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub duration_ms: u64,
    /// What the network policy refused during the run (the last
    /// [`pyro_vmm::net::stack::RECENT_REFUSALS`]): why a download failed.
    pub network_refusals: Vec<pyro_vmm::net::stack::RefusalRecord>,
    pub timings: RunTimings,
}

fn lossy<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(bytes))
}

impl RunResult {
    /// The exit code a shell would report: the command's own, 128 + signal
    /// if it was killed, 124 on timeout.
    pub fn shell_exit_code(&self) -> i32 {
        shell_exit_code(self.timed_out, self.exit_code, self.signal)
    }
}

/// The exit code a shell reports for a command: its own, 128 + N if
/// signal N killed it, 124 on timeout (as `timeout(1)` does).
pub(crate) fn shell_exit_code(timed_out: bool, exit_code: Option<i32>, signal: Option<i32>) -> i32 {
    if timed_out {
        124
    } else {
        exit_code.or(signal.map(|s| 128 + s)).unwrap_or(1)
    }
}

/// A VM's directory (sockets, console log), removed when dropped.
struct VmDir(PathBuf);

/// Run directories in use by this process, for [`abandon_runs`].
static LIVE_DIRS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn live_dirs() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    LIVE_DIRS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes the directories of this process's runs in progress. For a
/// front end about to exit on a signal (Ctrl-C): the in-process VMs die
/// with the process, and this takes their sockets and logs with them
/// rather than leaving them for the next run's sweep.
pub fn abandon_runs() {
    for dir in live_dirs().drain(..) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

impl VmDir {
    fn create(data: &Path) -> Result<VmDir, Error> {
        let root = data.join("vms");
        sweep_stale(&root);
        let id = format!("run-{}-{}", std::process::id(), unique());
        let dir = root.join(id);
        std::fs::create_dir_all(&dir).map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
        std::fs::write(dir.join("pid"), std::process::id().to_string())
            .map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
        live_dirs().push(dir.clone());
        Ok(VmDir(dir))
    }
}

impl Drop for VmDir {
    fn drop(&mut self) {
        live_dirs().retain(|d| d != &self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (u64::from(nanos) << 16) | NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Removes run directories whose process is gone (a run killed by a
/// signal cannot clean up after itself; the VM died with it).
fn sweep_stale(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let pid = std::fs::read_to_string(entry.path().join("pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok());
        if let Some(pid) = pid {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// One output stream as a result keeps it: the first `cap` bytes, and
/// whether more came (a run's result; a command's history record).
pub(crate) struct Kept {
    pub bytes: Vec<u8>,
    /// Some arrived past the cap.
    pub cut: bool,
    cap: usize,
}

impl Kept {
    pub fn new(cap: usize) -> Kept {
        Kept {
            bytes: Vec::new(),
            cut: false,
            cap,
        }
    }

    pub fn keep(&mut self, more: &[u8]) {
        let room = self.cap.saturating_sub(self.bytes.len());
        self.cut |= more.len() > room;
        self.bytes.extend_from_slice(&more[..more.len().min(room)]);
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// A command to run (`run`, `workspace exec`): a program and its
/// arguments; refused before any VM or guest is asked.
pub(crate) fn check_argv(argv: &[String]) -> Result<(), Error> {
    match argv.first() {
        None => Err(Error::InvalidArgument(
            "command: none given; pass the program and its arguments after `--`".into(),
        )),
        Some(program) if program.trim().is_empty() => Err(Error::InvalidArgument(format!(
            "command: the program name is empty ({program:?}); it must name a program \
             (e.g. `-- sh -c '...'`)"
        ))),
        Some(_) => Ok(()),
    }
}

impl Pyro {
    /// Boots `opts.environment`, runs `argv` (no shell), streams its
    /// output to `on_output`, and removes the VM and its files whatever
    /// happens.
    pub fn run(
        &self,
        opts: &RunOptions,
        argv: &[String],
        progress: &dyn Progress,
        mut on_output: impl FnMut(Stream, &[u8]),
    ) -> Result<RunResult, Error> {
        check_argv(argv)?;
        OUTPUT_BYTES
            .check(opts.max_output_bytes)
            .map_err(Error::InvalidArgument)?;
        let started = Instant::now();
        let (mut config, env) =
            self.environment_vm(&opts.environment, opts.mem_mib, opts.vcpus, progress)?;
        let dir = VmDir::create(&self.paths().data)?;
        let uds = dir.0.join("vsock.sock");
        config.serial_log = Some(dir.0.join("console.log"));
        config.set_net(opts.network.clone());

        let vm_start = Instant::now();
        let create_ms = ms(vm_start.duration_since(started));
        let (mut vm, mut client, boot_ms, agent_ms) = if opts.cold {
            // A throwaway writable system, as a warm start gets.
            config.cmdline_extra.push(format!(
                "{}={}",
                pyro_proto::cmdline::SYSTEM_KEY,
                pyro_proto::cmdline::SYSTEM_TMPFS
            ));
            config.set_vsock(VsockConfig {
                cid: 3,
                uds: uds.clone(),
            });
            let mut vm = Vm::start(&config)?;
            let boot = vm.wait_for_init(opts.boot_timeout)?;
            let agent_start = Instant::now();
            let client = GuestClient::wait_ready(&uds, opts.boot_timeout)
                .map_err(|e| guest_error(e, &mut vm))?;
            (
                vm,
                client,
                boot.to_init_ms as u64,
                ms(agent_start.elapsed()),
            )
        } else {
            let warm = self.restore_warm(
                &opts.environment,
                &config,
                &uds,
                opts.boot_timeout,
                progress,
            )?;
            (warm.vm, warm.client, warm.restore_ms, 0)
        };
        if opts.cancel.is_cancelled() {
            return Err(Error::Cancelled(
                "the run was cancelled before its command started".into(),
            ));
        }

        let exec_start = Instant::now();
        let request = ExecRequest {
            argv: argv.to_vec(),
            timeout_ms: Some(ms(opts.timeout)),
            ..Default::default()
        };
        let cap = usize::try_from(opts.max_output_bytes).unwrap_or(usize::MAX);
        let (mut stdout, mut stderr) = (Kept::new(cap), Kept::new(cap));
        let result = client
            .exec_cancellable(request, None, &opts.cancel, |stream, bytes| {
                match stream {
                    Stream::Stdout => stdout.keep(bytes),
                    Stream::Stderr => stderr.keep(bytes),
                }
                on_output(stream, bytes);
            })
            .map_err(|e| guest_error(e, &mut vm))?;
        let exec_ms = ms(exec_start.elapsed());
        let network_refusals = vm
            .net()
            .map(|n| n.status().recent_refusals)
            .unwrap_or_default();
        drop(client);
        vm.shutdown();
        drop(vm);
        drop(dir);
        Ok(RunResult {
            environment: env.name,
            command: argv.to_vec(),
            exit_code: result.exit_code,
            signal: result.signal,
            timed_out: result.timed_out,
            stdout_truncated: stdout.cut || result.stdout_truncated,
            stderr_truncated: stderr.cut || result.stderr_truncated,
            stdout: stdout.bytes,
            stderr: stderr.bytes,
            duration_ms: result.duration_ms,
            network_refusals,
            timings: RunTimings {
                warm: !opts.cold,
                create_ms,
                boot_ms,
                agent_ms,
                exec_ms,
                total_ms: ms(started.elapsed()),
            },
        })
    }
}

/// A guest-side failure. If the connection broke because the VM itself
/// stopped (powered off, reset, panicked, crashed), that is the error to
/// report, not the broken pipe; either way with the console's last lines.
fn guest_error(e: crate::GuestError, vm: &mut Vm) -> Error {
    if matches!(e, crate::GuestError::Cancelled(_)) {
        return e.into();
    }
    if matches!(e, crate::GuestError::Io(_)) {
        match vm.wait_for_exit(Duration::from_millis(500)) {
            Ok(exit) => {
                return Error::Guest(format!(
                    "the VM stopped while the command was running ({}){}",
                    exit,
                    pyro_vmm::console_tail_text(&vm.console_tail())
                ))
            }
            Err(pyro_vmm::Error::Timeout { .. }) => {}
            Err(vm_error) => return Error::Vm(vm_error),
        }
    }
    Error::Guest(format!(
        "{e}{}",
        pyro_vmm::console_tail_text(&vm.console_tail())
    ))
}
