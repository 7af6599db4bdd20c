//! A running VM: build it top to bottom, run its vCPUs, wait for the guest
//! to come up or go away, and tear it down.

use crate::boot;
use crate::cpu;
use crate::error::{Error, FailureKind, GuestFailure};
use crate::host::HostKind;
use crate::kernel_cmdline::KernelCmdline;
use crate::layout::*;
use crate::limits;
use crate::memory::{self, GuestMem};
use crate::mptable;
use crate::snapshot::{self, Origin, Snapshot};
use crate::vcpu::{self, VcpuContext, VcpuEnd};
use crate::virtio::{Subscriber, VirtioSlots};
use event_manager::EventManager;
use kvm_bindings::{kvm_pit_config, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VmFd};
use pyro_devices::i8042::I8042;
use pyro_devices::serial::{ConsoleSink, ConsoleTail, Serial};
use pyro_devices::signal::SignalRegs;
use pyro_devices::virtio::block::Block;
use pyro_devices::virtio::mmio::MmioTransport;
use pyro_devices::virtio::vsock::handler::VsockHandler;
use pyro_devices::virtio::vsock::Vsock;
use pyro_devices::{Bus, GuestSignals, StopReason};
use pyro_proto::cmdline::INIT_PATH;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::signal::Killable;

/// How often the event thread checks whether the VM is stopping.
const EVENT_LOOP_TICK_MS: i32 = 50;

/// A block device for the guest; the first one is the root filesystem.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Disk {
    pub path: PathBuf,
    pub read_only: bool,
}

/// The guest's vsock device and its host side.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VsockConfig {
    /// The guest's context id (3 or more).
    pub cid: u64,
    /// Host clients connect here (`CONNECT <port>\n`); guest connections
    /// to host port P go to `<uds>_P`.
    pub uds: PathBuf,
}

/// Everything needed to start a VM.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmConfig {
    /// ELF `vmlinux`.
    pub kernel: PathBuf,
    pub mem_mib: u32,
    pub vcpus: u8,
    /// `disks[0]` is mounted as `/` (read-only when the disk is) and its
    /// `/opt/pyro/bin/pyro-init` runs as PID 1.
    pub disks: Vec<Disk>,
    /// A vsock device, if the guest should have one.
    pub vsock: Option<VsockConfig>,
    /// Appended to the kernel command line.
    pub cmdline_extra: Vec<String>,
    /// Serial console log file (created or truncated).
    pub serial_log: Option<PathBuf>,
    /// Also copy the console to our stderr.
    pub serial_echo: bool,
    pub host: HostKind,
}

impl VmConfig {
    pub const DEFAULT_MEM_MIB: u32 = limits::MEM_MIB.default;
    pub const MAX_VCPUS: u8 = limits::VCPUS.max;

    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        Self {
            kernel: kernel.into(),
            mem_mib: Self::DEFAULT_MEM_MIB,
            vcpus: limits::VCPUS.default,
            disks: Vec::new(),
            vsock: None,
            cmdline_extra: Vec::new(),
            serial_log: None,
            serial_echo: false,
            host: HostKind::detect(),
        }
    }

    fn validate(&self) -> Result<(), Error> {
        limits::MEM_MIB.check(self.mem_mib).map_err(Error::Config)?;
        limits::VCPUS.check(self.vcpus).map_err(Error::Config)?;
        Ok(())
    }

    /// The kernel command line this config boots with.
    pub fn cmdline(&self) -> KernelCmdline {
        let mut line = KernelCmdline::new(self.host);
        if let Some(root) = self.disks.first() {
            line.push("root=/dev/vda");
            line.push("rootfstype=ext4");
            line.push(if root.read_only { "ro" } else { "rw" });
            line.push(format!("init={INIT_PATH}"));
        }
        for word in &self.cmdline_extra {
            line.push(word.clone());
        }
        line
    }
}

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

/// A running VM. Dropping it stops the vCPUs and frees everything.
pub struct Vm {
    threads: Vec<JoinHandle<()>>,
    vcpus: usize,
    stop: Arc<AtomicBool>,
    pause: Arc<vcpu::Pause>,
    ends: Receiver<VcpuEnd>,
    ended: Option<VcpuEnd>,
    signals: GuestSignals,
    console: Arc<Mutex<ConsoleTail>>,
    started: Instant,
    has_pvh_note: bool,
    cmdline: String,
    config: VmConfig,
    serial: Arc<Mutex<Serial>>,
    /// Weak: the vCPUs' MMIO bus and the event thread own the devices, so
    /// a guest that stops drops them (closing every host vsock
    /// connection) even while this `Vm` lives on. Snapshots upgrade them.
    transports: Vec<Weak<Mutex<MmioTransport>>>,
    // Field order is drop order: the VM fd goes before the memory it maps.
    _vm: VmFd,
    _mem: GuestMem,
}

impl Vm {
    /// Builds the VM and starts its vCPUs.
    pub fn start(config: &VmConfig) -> Result<Vm, Error> {
        Self::build(config, None)
    }

    /// Builds the VM from the snapshot in `dir` (taken by
    /// [`Vm::snapshot`] from a VM with the same device layout; disk and
    /// socket paths come from `config`) and runs it from where it was.
    /// Guest-init is already running: there is no init marker to wait
    /// for. Vsock connections of the snapshotted VM are gone; the guest
    /// hears so (TRANSPORT_RESET) and its listeners take new ones.
    pub fn restore(config: &VmConfig, dir: &Path) -> Result<Vm, Error> {
        Self::build(config, Some(dir))
    }

    fn build(config: &VmConfig, from: Option<&Path>) -> Result<Vm, Error> {
        let started = Instant::now();
        config.validate()?;
        // What a restore found wrong with the snapshot in `from`.
        let bad_snapshot = |detail: String| Error::Snapshot {
            path: from.unwrap_or(Path::new("")).join(snapshot::STATE_FILE),
            detail,
        };
        let restoring = match from {
            Some(dir) => {
                let snap = Snapshot::load(dir, config)?;
                let path = snapshot::memory_path(dir);
                let file = std::fs::File::open(&path).map_err(|e| Error::Snapshot {
                    path,
                    detail: e.to_string(),
                })?;
                Some((snap, file))
            }
            None => None,
        };
        let kvm_err = |op| move |source| Error::Kvm { op, source };
        let kvm = Kvm::new().map_err(Error::KvmOpen)?;
        let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
        vm.set_tss_address(KVM_TSS as usize)
            .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
        vm.set_identity_map_address(KVM_IDENTITY_MAP)
            .map_err(kvm_err("KVM_SET_IDENTITY_MAP_ADDR"))?;
        vm.create_irq_chip()
            .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm.create_pit2(pit).map_err(kvm_err("KVM_CREATE_PIT2"))?;

        let mem_size = u64::from(config.mem_mib) << 20;
        let mem = match &restoring {
            Some((_, file)) => memory::from_file(&vm, mem_size, file)?,
            None => memory::create(&vm, mem_size)?,
        };

        let signals = GuestSignals::new();
        let saved_serial = restoring.as_ref().map(|(snap, _)| &snap.serial);
        let (pio, console, serial) =
            legacy_devices(&vm, config, &signals, saved_serial, &bad_snapshot)?;
        let mut mmio = Bus::new();
        mmio.insert(
            SignalRegs::ADDR,
            SignalRegs::LEN,
            Arc::new(Mutex::new(SignalRegs::new(signals.clone()))),
        )
        .map_err(|e| Error::Config(e.to_string()))?;
        let mut events = EventManager::<Subscriber>::new()
            .map_err(|e| Error::Config(format!("event manager: {e}")))?;
        let mut cmdline = config.cmdline();
        let mut slots = VirtioSlots {
            vm: &vm,
            mem: &mem,
            mmio: &mut mmio,
            events: &mut events,
            cmdline: &mut cmdline,
            next: 0,
            transports: Vec::new(),
        };
        for (i, disk) in config.disks.iter().enumerate() {
            let block = Block::open(&disk.path, disk.read_only, &format!("pyro-disk{i}")).map_err(
                |source| Error::Disk {
                    path: disk.path.clone(),
                    source,
                },
            )?;
            slots.attach(Arc::new(Mutex::new(block)))?;
        }
        if let Some(vsock) = &config.vsock {
            if vsock.cid < 3 {
                return Err(Error::Config(format!(
                    "vsock cid must be 3 or more, got {}",
                    vsock.cid
                )));
            }
            let device = Vsock::new(vsock.cid, &vsock.uds).map_err(|source| Error::Vsock {
                path: vsock.uds.clone(),
                source,
            })?;
            let device = Arc::new(Mutex::new(device));
            let handler_device = device.clone();
            slots.attach_with(device, move |kicks| {
                Box::new(VsockHandler::new(handler_device, kicks))
            })?;
        }
        let transports = std::mem::take(&mut slots.transports);
        let cmdline = cmdline.render()?;
        let (entry, cmdline) = match &restoring {
            Some((snap, _)) => {
                if snap.transports.len() != transports.len() {
                    return Err(bad_snapshot(format!(
                        "{} virtio devices in the snapshot, {} in this VM",
                        snap.transports.len(),
                        transports.len()
                    )));
                }
                // In-kernel irqchip first: a device that raises its line as
                // it comes back (vsock's TRANSPORT_RESET) must not have the
                // interrupt wiped by a later KVM_SET_IRQCHIP.
                snapshot::restore_vm(&vm, &snap.vm)?;
                for (t, saved) in transports.iter().zip(&snap.transports) {
                    t.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .restore(saved)
                        .map_err(bad_snapshot)?;
                }
                (None, snap.cmdline.clone())
            }
            None => {
                let entry = boot::load(&mem, &config.kernel, &cmdline, mem_size)?;
                mptable::write(&mem, config.vcpus)?;
                (Some(entry), cmdline)
            }
        };

        let supported = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
        let msr_index = Arc::new(
            kvm.get_msr_index_list()
                .map_err(kvm_err("KVM_GET_MSR_INDEX_LIST"))?
                .as_slice()
                .to_vec(),
        );
        vcpu::install_kick_handler().map_err(Error::Thread)?;
        let stop = Arc::new(AtomicBool::new(false));
        let pause = Arc::new(vcpu::Pause::default());
        let (end_tx, ends) = channel();
        let mut threads = Vec::new();
        for index in 0..config.vcpus {
            let fd = vm
                .create_vcpu(u64::from(index))
                .map_err(kvm_err("KVM_CREATE_VCPU"))?;
            cpu::set_cpuid(&fd, &supported, index)?;
            match (&restoring, &entry) {
                (Some((snap, _)), _) => {
                    snapshot::restore_vcpu(&fd, &snap.vcpus[usize::from(index)])?
                }
                (None, entry) => {
                    cpu::set_msrs(&fd)?;
                    cpu::set_fpu(&fd)?;
                    cpu::set_lapic(&fd)?;
                    if let (0, Some(entry)) = (index, entry) {
                        cpu::set_boot_registers(&fd, entry.rip)?;
                    }
                }
            }
            let ctx = VcpuContext {
                fd,
                pio: pio.clone(),
                mmio: mmio.clone(),
                signals: signals.clone(),
                stop: stop.clone(),
                pause: pause.clone(),
                index,
                msr_index: msr_index.clone(),
                mem: mem.clone(),
            };
            let tx = end_tx.clone();
            let end_all = stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("vcpu{index}"))
                .spawn(move || {
                    let _ = tx.send(vcpu::run(ctx));
                    // A guest that stopped (power-off, reset, crash) stops
                    // its devices too: the event thread ends and drops
                    // them, which closes every host vsock connection, so a
                    // client blocked on a reply sees the end at once
                    // instead of waiting for an answer that cannot come.
                    end_all.store(true, Ordering::Release);
                })
                .map_err(Error::Thread)?;
            threads.push(thread);
        }

        if restoring.is_some() {
            for t in &transports {
                t.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .resume_after_restore();
            }
        }

        let event_stop = stop.clone();
        let event_thread = std::thread::Builder::new()
            .name("vmm-events".into())
            .spawn(move || {
                while !event_stop.load(Ordering::Acquire) {
                    // Errors are EINTR from vCPU kicks; just go round.
                    let _ = events.run_with_timeout(EVENT_LOOP_TICK_MS);
                }
            })
            .map_err(Error::Thread)?;
        threads.push(event_thread);

        Ok(Vm {
            threads,
            vcpus: usize::from(config.vcpus),
            stop,
            pause,
            ends,
            ended: None,
            signals,
            console,
            started,
            has_pvh_note: entry.is_some_and(|e| e.has_pvh_note),
            cmdline,
            config: config.clone(),
            serial,
            transports: transports.iter().map(Arc::downgrade).collect(),
            _vm: vm,
            _mem: mem,
        })
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
                return Err(Error::Config("the vCPUs did not pause within 5 s".into()));
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

    /// Writes a snapshot of the running VM to `dir` (created if needed):
    /// pauses it, saves vCPUs, in-kernel devices, clocks, our devices and
    /// guest memory, and leaves it paused or running as it found it. A
    /// failure leaves no `snapshot.json` in `dir`, so nothing can restore
    /// half a snapshot.
    pub fn snapshot(&mut self, dir: &Path) -> Result<u64, Error> {
        let fail = |detail: String| Error::Snapshot {
            path: dir.to_path_buf(),
            detail,
        };
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
        match std::fs::remove_file(dir.join(snapshot::STATE_FILE)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(e.to_string())),
        }
        let was_paused = self.is_paused();
        if !was_paused {
            self.pause()?;
        }
        let result = self.snapshot_paused(dir);
        if !was_paused {
            self.resume();
        }
        result
    }

    fn snapshot_paused(&mut self, dir: &Path) -> Result<u64, Error> {
        let vcpus = self.pause.save_all(self.vcpus)?;
        let vm = snapshot::save_vm(&self._vm)?;
        // Hold every device while their queues and guest memory are read:
        // the event thread cannot deliver a packet or finish a request
        // into memory half copied.
        let transports: Vec<_> = self
            .transports
            .iter()
            .map(Weak::upgrade)
            .collect::<Option<_>>()
            .ok_or_else(|| Error::Config("the VM has stopped: nothing to snapshot".into()))?;
        let devices: Vec<_> = transports
            .iter()
            .map(|t| t.lock().unwrap_or_else(|p| p.into_inner()).device_handle())
            .collect();
        let guards: Vec<_> = devices
            .iter()
            .map(|d| d.lock().unwrap_or_else(|p| p.into_inner()))
            .collect();
        let transports = transports
            .iter()
            .zip(&guards)
            .map(|(t, dev)| t.lock().unwrap_or_else(|p| p.into_inner()).snapshot(&**dev))
            .collect();
        let serial = self
            .serial
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .snapshot();
        let memory_bytes = snapshot::save_memory(&self._mem, &snapshot::memory_path(dir))?;
        drop(guards);
        Snapshot {
            version: snapshot::FORMAT_VERSION,
            origin: Origin::current(&self.config),
            config: self.config.clone(),
            cmdline: self.cmdline.clone(),
            vcpus,
            vm,
            serial,
            transports,
        }
        .write(dir)?;
        Ok(memory_bytes)
    }

    pub fn is_paused(&self) -> bool {
        self.pause.is_requested()
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

/// Serial and i8042 on the port I/O bus.
type Legacy = (Bus, Arc<Mutex<ConsoleTail>>, Arc<Mutex<Serial>>);

fn legacy_devices(
    vm: &VmFd,
    config: &VmConfig,
    signals: &GuestSignals,
    saved_serial: Option<&pyro_devices::serial::SerialSnapshot>,
    bad_snapshot: &dyn Fn(String) -> Error,
) -> Result<Legacy, Error> {
    let log = match &config.serial_log {
        Some(path) => Some(
            std::fs::File::create(path).map_err(|source| Error::SerialLog {
                path: path.clone(),
                source,
            })?,
        ),
        None => None,
    };
    let sink = ConsoleSink::new(log, config.serial_echo);
    let console = sink.tail();
    let irq = EventFd::new(EFD_NONBLOCK).map_err(|e| Error::Config(format!("eventfd: {e}")))?;
    vm.register_irqfd(&irq, Serial::IRQ)
        .map_err(|source| Error::Kvm {
            op: "KVM_IRQFD",
            source,
        })?;
    let mut pio = Bus::new();
    let overlap = |e: pyro_devices::bus::OverlapError| Error::Config(e.to_string());
    let serial = match saved_serial {
        Some(saved) => Serial::restored(irq, sink, saved).map_err(bad_snapshot)?,
        None => Serial::new(irq, sink),
    };
    let serial = Arc::new(Mutex::new(serial));
    pio.insert(Serial::BASE.into(), Serial::LEN.into(), serial.clone())
        .map_err(overlap)?;
    pio.insert(
        I8042::BASE.into(),
        I8042::LEN.into(),
        Arc::new(Mutex::new(I8042::new(signals.clone()))),
    )
    .map_err(overlap)?;
    Ok((pio, console, serial))
}
