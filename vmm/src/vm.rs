//! A running VM: its vCPU threads and devices, waiting for the guest to
//! come up or go away, pausing, freezing for a consistent look at its
//! state ([`Vm::freeze`]), and tearing it down. [`crate::builder`]
//! assembles it; [`crate::freeze`] holds what a frozen VM can do.

use crate::builder;
use crate::config::VmConfig;
use crate::error::{Error, FailureKind, GuestFailure};
use crate::memory::GuestMem;
use crate::vcpu::{self, VcpuEnd};
use kvm_ioctls::VmFd;
use pyro_devices::serial::{ConsoleTail, Serial};
use pyro_devices::virtio::mmio::MmioTransport;
use pyro_devices::virtio::vsock::StreamActivity;
use pyro_devices::{GuestSignals, StopReason};
use pyro_net::stack::NetControl;
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vmm_sys_util::signal::Killable;

/// How long the guest took to reach PID 1.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BootTimes {
    /// Host wall time from `Vm::start` to the init marker.
    pub to_init_ms: f64,
    /// The guest's own clock when PID 1 started.
    pub guest_init_ms: f64,
}

/// How a guest ended on its own terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VmExit {
    /// guest-init powered off with this status.
    PowerOff { status: u8 },
    /// The guest reset the machine (e.g. `reboot`) without a panic.
    Reset,
}

impl std::fmt::Display for VmExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VmExit::PowerOff { status } => write!(f, "the guest powered off with status {status}"),
            VmExit::Reset => write!(f, "the guest reset the machine"),
        }
    }
}

/// What a vCPU thread that ends calls, once an owner set it.
pub(crate) type EndHook = Arc<std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>>;

/// A running VM. Dropping it stops the vCPUs and frees everything.
pub struct Vm {
    threads: Vec<JoinHandle<()>>,
    vcpus: usize,
    stop: Arc<AtomicBool>,
    pub(crate) pause: Arc<vcpu::Pause>,
    ends: Receiver<VcpuEnd>,
    ended: Option<VcpuEnd>,
    /// Called by a vCPU thread that ends ([`Vm::on_end`]).
    end_hook: EndHook,
    signals: GuestSignals,
    console: Arc<Mutex<ConsoleTail>>,
    started: Instant,
    has_pvh_note: bool,
    pub(crate) cmdline: String,
    pub(crate) config: VmConfig,
    pub(crate) serial: Arc<Mutex<Serial>>,
    /// One per entry of `config.devices`, in that order. Weak: the
    /// vCPUs' MMIO bus and the event thread own the devices, so a guest
    /// that stops drops them (closing every host vsock connection) even
    /// while this `Vm` lives on. A freeze upgrades them.
    pub(crate) transports: Vec<Weak<Mutex<MmioTransport>>>,
    /// The network's control handle (policy, ports, counts), if the VM
    /// has a net device.
    net: Option<NetControl>,
    /// The vsock device's stream counts, if the VM has one.
    vsock: Option<Arc<StreamActivity>>,
    // Field order is drop order: the VM fd goes before the memory it maps.
    pub(crate) vm_fd: VmFd,
    pub(crate) mem: GuestMem,
}

/// What [`crate::builder`] hands over to make a [`Vm`].
pub(crate) struct VmParts {
    pub threads: Vec<JoinHandle<()>>,
    pub stop: Arc<AtomicBool>,
    pub pause: Arc<vcpu::Pause>,
    pub ends: Receiver<VcpuEnd>,
    pub end_hook: EndHook,
    pub signals: GuestSignals,
    pub console: Arc<Mutex<ConsoleTail>>,
    pub serial: Arc<Mutex<Serial>>,
    pub started: Instant,
    pub has_pvh_note: bool,
    pub cmdline: String,
    pub config: VmConfig,
    pub transports: Vec<Weak<Mutex<MmioTransport>>>,
    pub net: Option<NetControl>,
    pub vsock: Option<Arc<StreamActivity>>,
    pub vm: VmFd,
    pub mem: GuestMem,
}

impl Vm {
    /// Builds the VM and starts its vCPUs.
    pub fn start(config: &VmConfig) -> Result<Vm, Error> {
        builder::boot(config)
    }

    /// Builds the VM from the snapshot in `dir` (taken by
    /// [`Vm::snapshot`] from a VM with the same device layout; disk and
    /// socket paths come from `config`) and runs it from where it was.
    /// Guest-init is already running: there is no init marker to wait
    /// for. Vsock connections of the snapshotted VM are gone; the guest
    /// hears so (TRANSPORT_RESET) and its listeners take new ones.
    pub fn restore(config: &VmConfig, dir: &Path) -> Result<Vm, Error> {
        builder::restore(config, dir)
    }

    pub(crate) fn from_parts(p: VmParts) -> Vm {
        Vm {
            threads: p.threads,
            vcpus: usize::from(p.config.vcpus),
            stop: p.stop,
            pause: p.pause,
            ends: p.ends,
            ended: None,
            end_hook: p.end_hook,
            signals: p.signals,
            console: p.console,
            started: p.started,
            has_pvh_note: p.has_pvh_note,
            cmdline: p.cmdline,
            config: p.config,
            serial: p.serial,
            transports: p.transports,
            net: p.net,
            vsock: p.vsock,
            vm_fd: p.vm,
            mem: p.mem,
        }
    }

    /// The config the VM was built from.
    pub fn config(&self) -> &VmConfig {
        &self.config
    }

    /// The VM's network: its rules, ports and refusals, changed and read
    /// while it runs. None without a net device.
    pub fn net(&self) -> Option<&NetControl> {
        self.net.as_ref()
    }

    /// The vsock device's stream counts and host-client switch: what
    /// says a VM is idle (no stream open, none opened since last
    /// looked). None without a vsock device.
    pub fn vsock_activity(&self) -> Option<&Arc<StreamActivity>> {
        self.vsock.as_ref()
    }

    /// Waits until PID 1 reports it started.
    pub fn wait_for_init(&mut self, timeout: Duration) -> Result<BootTimes, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(mark) = self.signals.init() {
                return Ok(BootTimes {
                    to_init_ms: ms(mark.at.duration_since(self.started)),
                    guest_init_ms: mark.guest_us as f64 / 1000.0,
                });
            }
            if self.poll_end(deadline, "the guest's init to start")? {
                let failure = match self.end_result() {
                    Err(e) => return Err(e),
                    Ok(VmExit::Reset) => FailureKind::StoppedBeforeInit("reset".into()),
                    Ok(VmExit::PowerOff { status }) => {
                        FailureKind::StoppedBeforeInit(format!("powered off (status {status})"))
                    }
                };
                return Err(self.failure(failure));
            }
        }
    }

    /// Waits until the guest ends.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Result<VmExit, Error> {
        let deadline = Instant::now() + timeout;
        while !self.poll_end(deadline, "the guest to power off")? {}
        self.end_result()
    }

    /// Stops running guest code: every vCPU leaves KVM_RUN and waits.
    /// Devices stay up (host connections wait rather than fail). The
    /// guest's clock keeps running, so it sees time jump on resume.
    pub fn pause(&mut self) -> Result<(), Error> {
        self.pause.request();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self
            .pause
            .wait_parked(self.vcpus, Duration::from_millis(10))
        {
            if Instant::now() >= deadline {
                self.pause.release();
                return Err(Error::PauseTimeout);
            }
            // Knock each vCPU out of KVM_RUN; the event thread ignores it.
            for thread in &self.threads {
                if !thread.is_finished() {
                    let _ = thread.kill(vcpu::kick_signal());
                }
            }
        }
        Ok(())
    }

    pub fn resume(&mut self) {
        self.pause.release();
    }

    pub fn is_paused(&self) -> bool {
        self.pause.is_requested()
    }

    /// Has `hook` called (on a vCPU thread) when a vCPU ends, so an
    /// owner that blocks on other work hears of it at once, then calls
    /// [`Vm::try_exit`]. Set once; a later call is ignored. An end
    /// before the hook is set is not announced: check `try_exit` after.
    pub fn on_end(&self, hook: impl Fn() + Send + Sync + 'static) {
        let _ = self.end_hook.set(Box::new(hook));
    }

    /// How the guest ended, if it has; never waits and never stops it.
    pub fn try_exit(&mut self) -> Option<Result<VmExit, Error>> {
        if self.ended.is_none() {
            match self.ends.try_recv() {
                Ok(end) => {
                    self.ended = Some(end);
                    self.shutdown();
                }
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => {
                    self.ended = Some(VcpuEnd::Failed(FailureKind::Run(
                        "vCPU threads are gone".into(),
                    )));
                }
            }
        }
        Some(self.end_result())
    }

    /// The last lines of the guest console.
    pub fn console_tail(&self) -> Vec<String> {
        self.console
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lines()
    }

    /// Whether the kernel carries a PVH entry note (the VMM boots it with
    /// the 64-bit protocol either way).
    pub fn kernel_has_pvh_note(&self) -> bool {
        self.has_pvh_note
    }

    pub fn cmdline(&self) -> &str {
        &self.cmdline
    }

    /// Waits up to a millisecond for a vCPU to end. Ok(true) once one has.
    fn poll_end(&mut self, deadline: Instant, what: &'static str) -> Result<bool, Error> {
        if self.ended.is_some() {
            return Ok(true);
        }
        match self.ends.recv_timeout(Duration::from_millis(1)) {
            Ok(end) => {
                self.ended = Some(end);
                self.shutdown();
                Ok(true)
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.ended = Some(VcpuEnd::Failed(FailureKind::Run(
                    "vCPU threads are gone".into(),
                )));
                Ok(true)
            }
            Err(RecvTimeoutError::Timeout) if Instant::now() >= deadline => {
                let seconds = ms(deadline.duration_since(self.started)) / 1000.0;
                let console = self.console_tail();
                self.shutdown();
                Err(Error::Timeout {
                    what,
                    seconds,
                    console,
                })
            }
            Err(RecvTimeoutError::Timeout) => Ok(false),
        }
    }

    /// Turns how the VM ended into a result. A reset after a kernel panic
    /// message is a panic, not a clean reboot.
    fn end_result(&self) -> Result<VmExit, Error> {
        let panic = self
            .console
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .panic()
            .map(String::from);
        match (&self.ended, self.signals.stop()) {
            (Some(VcpuEnd::Failed(kind)), _) => Err(self.failure(kind.clone())),
            (_, Some(StopReason::PowerOff { status })) => Ok(VmExit::PowerOff { status }),
            (_, Some(StopReason::Reset)) => match panic {
                Some(msg) => Err(self.failure(FailureKind::Panic(msg))),
                None => Ok(VmExit::Reset),
            },
            _ => Err(self.failure(FailureKind::Run("the VM stopped without a reason".into()))),
        }
    }

    fn failure(&self, kind: FailureKind) -> Error {
        Error::Guest(GuestFailure {
            kind,
            console: self.console_tail(),
        })
    }

    /// Stops every vCPU and joins its thread. Idempotent.
    pub fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        // A kick can land just before a thread re-enters KVM_RUN, so keep
        // kicking until each thread is gone.
        for thread in self.threads.drain(..) {
            while !thread.is_finished() {
                let _ = thread.kill(vcpu::kick_signal());
                std::thread::sleep(Duration::from_micros(200));
            }
            let _ = thread.join();
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
