//! Assembling a VM, top to bottom, after Firecracker's `builder.rs`:
//! [`boot`] builds one to cold-boot a kernel, [`restore`] one to run on
//! from a snapshot. Both are the same named steps in the same order
//! (create the KVM VM, guest memory, legacy devices, attach the virtio
//! devices, vCPUs, the event thread); only what fills them differs.
//!
//! Adding a device kind is one arm in [`attach_devices`] and one
//! `attach_*` function here.

use crate::boot;
use crate::config::{DeviceConfig, Disk, VmConfig, VsockConfig};
use crate::cpu;
use crate::error::Error;
use crate::layout::*;
use crate::memory::{self, GuestMem};
use crate::mptable;
use crate::sandbox::{self, Files, ThreadKind};
use crate::snapshot::{self, Snapshot, VcpuState};
use crate::vcpu::{self, VcpuContext};
use crate::virtio::{Subscriber, VirtioSlots};
use crate::vm::{Vm, VmParts};
use event_manager::{EventManager, SubscriberOps};
use kvm_bindings::{kvm_pit_config, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VmFd};
use pyro_devices::console_log::ConsoleLog;
use pyro_devices::i8042::I8042;
use pyro_devices::serial::{ConsoleSink, ConsoleTail, Serial, SerialSnapshot};
use pyro_devices::signal::SignalRegs;
use pyro_devices::virtio::block::event_handler::BlockHandler;
use pyro_devices::virtio::block::Block;
use pyro_devices::virtio::mmio::MmioTransport;
use pyro_devices::virtio::net::event_handler::NetHandler;
use pyro_devices::virtio::net::Net;
use pyro_devices::virtio::vsock::event_handler::VsockHandler;
use pyro_devices::virtio::vsock::{StreamActivity, Vsock};
use pyro_devices::{Bus, GuestSignals};
use pyro_net::stack::{NetConfig, NetControl};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

fn kvm_err(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |source| Error::Kvm { op, source }
}

/// Step 0: the filters the VM's threads confine themselves with
/// ([`sandbox`]), compiled before any thread starts; the network's
/// name-lookup thread, started with the devices, takes its own.
fn prepare_sandbox() -> Result<(), Error> {
    sandbox::prepare().map_err(Error::Sandbox)?;
    // Read now: a snapshot records it, and the confined owner thread
    // that takes one may not open /proc files.
    snapshot::host_kernel();
    pyro_net::stack::on_resolver_start(|| {
        sandbox::enter(ThreadKind::Resolver, &sandbox::landlock::resolver_files())
    });
    Ok(())
}

/// Builds a VM that boots `config`'s kernel and starts its vCPUs.
pub(crate) fn boot(config: &VmConfig) -> Result<Vm, Error> {
    let started = Instant::now();
    config.validate()?;
    prepare_sandbox()?;
    let kvm = Kvm::new().map_err(Error::KvmOpen)?;
    let vm = create_vm(&kvm)?;
    let mem = memory::create(&vm, config.mem_bytes())?;
    let signals = GuestSignals::new();
    let legacy = legacy_devices(&vm, config, &signals, None)?;
    let mut cmdline = config.cmdline();
    let attached = attach_devices(&vm, &mem, config, &signals, &mut cmdline)?;
    let cmdline = cmdline.render()?;
    let entry = boot::load(&mem, &config.kernel, &cmdline, config.mem_bytes())?;
    mptable::write(&mem, config.vcpus)?;
    let vcpus = start_vcpus(
        &kvm,
        &vm,
        config,
        &legacy,
        &attached,
        &signals,
        &mem,
        VcpuStart::Boot { rip: entry.rip },
    )?;
    finish(
        vm,
        mem,
        config,
        started,
        legacy,
        attached,
        signals,
        vcpus,
        cmdline,
        entry.has_pvh_note,
    )
}

/// Builds a VM from the snapshot in `dir` (taken by [`Vm::snapshot`] from
/// a VM with the same device layout; disk and socket paths come from
/// `config`) and runs it from where it was.
pub(crate) fn restore(config: &VmConfig, dir: &Path) -> Result<Vm, Error> {
    let started = Instant::now();
    config.validate()?;
    prepare_sandbox()?;
    let snap = Snapshot::load(dir, config)?;
    let memory_path = snapshot::memory_path(dir);
    let memory_file = std::fs::File::open(&memory_path).map_err(|e| Error::Snapshot {
        path: memory_path.clone(),
        detail: e.to_string(),
    })?;
    if snapshot::open_file_id(&memory_file) != snap.memory_id {
        return Err(Error::Snapshot {
            path: memory_path,
            detail: "not the memory file written with this state (the snapshot was taken \
                     again meanwhile); take it again"
                .into(),
        });
    }
    let kvm = Kvm::new().map_err(Error::KvmOpen)?;
    let vm = create_vm(&kvm)?;
    let mem = memory::from_file(&vm, config.mem_bytes(), &memory_file)?;
    let signals = GuestSignals::new();
    let legacy = legacy_devices(&vm, config, &signals, Some((&snap.serial, dir)))?;
    // The slots add their entries as at boot; the guest runs with the
    // command line it booted with, which the snapshot kept.
    let mut cmdline = config.cmdline();
    let attached = attach_devices(&vm, &mem, config, &signals, &mut cmdline)?;
    // In-kernel irqchip first: a device that raises its line as it comes
    // back (vsock's TRANSPORT_RESET) must not have the interrupt wiped by
    // a later KVM_SET_IRQCHIP.
    snapshot::restore_vm(&vm, &snap.vm)?;
    restore_devices(&attached.transports, &snap, dir)?;
    let vcpus = start_vcpus(
        &kvm,
        &vm,
        config,
        &legacy,
        &attached,
        &signals,
        &mem,
        VcpuStart::Restore(&snap.vcpus),
    )?;
    // Only now: an interrupt raised before the vCPUs exist is lost.
    for t in &attached.transports {
        lock(t).resume_after_restore();
    }
    finish(
        vm,
        mem,
        config,
        started,
        legacy,
        attached,
        signals,
        vcpus,
        snap.cmdline,
        false,
    )
}

/// Step 1: the KVM VM with its in-kernel irqchip and PIT.
fn create_vm(kvm: &Kvm) -> Result<VmFd, Error> {
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
    Ok(vm)
}

/// Serial and i8042 on the port I/O bus, and the console they feed.
pub(crate) struct Legacy {
    pio: Bus,
    console: Arc<Mutex<ConsoleTail>>,
    serial: Arc<Mutex<Serial>>,
}

/// Step 3: the legacy devices; a restore puts the UART's registers back.
fn legacy_devices(
    vm: &VmFd,
    config: &VmConfig,
    signals: &GuestSignals,
    saved_serial: Option<(&SerialSnapshot, &Path)>,
) -> Result<Legacy, Error> {
    let log = match &config.serial_log {
        Some(path) => Some(
            ConsoleLog::create(path, config.serial_log_max_bytes).map_err(|source| {
                Error::SerialLog {
                    path: path.clone(),
                    source,
                }
            })?,
        ),
        None => None,
    };
    let sink = ConsoleSink::new(log, config.serial_echo);
    let console = sink.tail();
    let irq = EventFd::new(EFD_NONBLOCK).map_err(|e| Error::Config(format!("eventfd: {e}")))?;
    vm.register_irqfd(&irq, Serial::IRQ)
        .map_err(kvm_err("KVM_IRQFD"))?;
    let mut pio = Bus::new();
    let overlap = |e: pyro_devices::bus::OverlapError| Error::Config(e.to_string());
    let serial = match saved_serial {
        Some((saved, dir)) => Serial::restored(irq, sink, saved).map_err(|e| Error::Snapshot {
            path: dir.join(snapshot::STATE_FILE),
            detail: e.to_string(),
        })?,
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
    Ok(Legacy {
        pio,
        console,
        serial,
    })
}

/// The MMIO bus with every virtio device on it, and the event loop that
/// runs their queues.
pub(crate) struct Attached {
    mmio: Bus,
    events: EventManager<Subscriber>,
    /// One per entry of `config.devices`, in that order.
    transports: Vec<Arc<Mutex<MmioTransport>>>,
    /// The network's control handle, if the VM has a net device.
    net: Option<NetControl>,
    /// The vsock device's stream counts, if the VM has one.
    vsock: Option<Arc<StreamActivity>>,
}

/// Step 4: the guest-signal registers, then one virtio-mmio slot per
/// entry of `config.devices`, in order.
fn attach_devices(
    vm: &VmFd,
    mem: &GuestMem,
    config: &VmConfig,
    signals: &GuestSignals,
    cmdline: &mut crate::KernelCmdline,
) -> Result<Attached, Error> {
    let mut mmio = Bus::new();
    mmio.insert(
        SignalRegs::ADDR,
        SignalRegs::LEN,
        Arc::new(Mutex::new(SignalRegs::new(signals.clone()))),
    )
    .map_err(|e| Error::Config(e.to_string()))?;
    let mut events = EventManager::<Subscriber>::new()
        .map_err(|e| Error::Config(format!("event manager: {e}")))?;
    let mut slots = VirtioSlots {
        vm,
        mem,
        mmio: &mut mmio,
        events: &mut events,
        cmdline,
        next: 0,
        transports: Vec::new(),
    };
    let mut blocks = 0;
    let mut net = None;
    let mut vsock = None;
    for device in &config.devices {
        match device {
            DeviceConfig::Block(disk) => {
                attach_block(&mut slots, disk, blocks)?;
                blocks += 1;
            }
            DeviceConfig::Vsock(config) => vsock = Some(attach_vsock(&mut slots, config)?),
            DeviceConfig::Net(config) => net = Some(attach_net(&mut slots, config)?),
        }
    }
    let transports = std::mem::take(&mut slots.transports);
    Ok(Attached {
        mmio,
        events,
        transports,
        net,
        vsock,
    })
}

/// A virtio-blk device on `disk`'s file; `index` names it (`pyro-diskN`).
fn attach_block(slots: &mut VirtioSlots<'_>, disk: &Disk, index: usize) -> Result<(), Error> {
    let block = Block::open(&disk.path, disk.read_only, &format!("pyro-disk{index}")).map_err(
        |source| Error::Disk {
            path: disk.path.clone(),
            source,
        },
    )?;
    let device = Arc::new(Mutex::new(block));
    let handler_device = device.clone();
    slots.attach(device, move |kicks| {
        Box::new(BlockHandler::new(handler_device, kicks))
    })
}

/// The vsock device with its host side on `vsock.uds`; returns its
/// stream counts.
fn attach_vsock(
    slots: &mut VirtioSlots<'_>,
    vsock: &VsockConfig,
) -> Result<Arc<StreamActivity>, Error> {
    let device = Vsock::new(vsock.cid, &vsock.uds).map_err(|source| Error::Vsock {
        path: vsock.uds.clone(),
        source,
    })?;
    let activity = device.activity();
    let device = Arc::new(Mutex::new(device));
    let handler_device = device.clone();
    slots.attach(device, move |kicks| {
        Box::new(VsockHandler::new(handler_device, kicks))
    })?;
    Ok(activity)
}

/// The net device, its stack set up by `config` (published ports bound
/// now: a port in use fails the start with the reason).
fn attach_net(slots: &mut VirtioSlots<'_>, config: &NetConfig) -> Result<NetControl, Error> {
    let device = Net::new(config).map_err(|e| Error::Config(format!("network: {e}")))?;
    let control = device.control();
    let device = Arc::new(Mutex::new(device));
    let handler_device = device.clone();
    slots.attach(device, move |kicks| {
        Box::new(NetHandler::new(handler_device, kicks))
    })?;
    Ok(control)
}

/// A restore's step 4b: each slot's transport and device where the
/// snapshot left them (the layout was checked by [`Snapshot::load`]).
fn restore_devices(
    transports: &[Arc<Mutex<MmioTransport>>],
    snap: &Snapshot,
    dir: &Path,
) -> Result<(), Error> {
    if snap.transports.len() != transports.len() {
        return Err(Error::Snapshot {
            path: dir.join(snapshot::STATE_FILE),
            detail: format!(
                "{} virtio devices in the snapshot, {} in this VM",
                snap.transports.len(),
                transports.len()
            ),
        });
    }
    for (slot, (t, saved)) in transports.iter().zip(&snap.transports).enumerate() {
        lock(t).restore(saved).map_err(|e| Error::Snapshot {
            path: dir.join(snapshot::STATE_FILE),
            detail: format!("virtio slot {slot}: {e}"),
        })?;
    }
    Ok(())
}

/// Where the vCPUs start from.
enum VcpuStart<'a> {
    /// The boot CPU at the kernel's entry, the others waiting for INIT.
    Boot { rip: u64 },
    /// Each vCPU as the snapshot saved it.
    Restore(&'a [VcpuState]),
}

/// The running vCPU threads.
pub(crate) struct Vcpus {
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    pause: Arc<vcpu::Pause>,
    ends: std::sync::mpsc::Receiver<vcpu::VcpuEnd>,
    /// Written by a vCPU that ends, so the event thread, which blocks
    /// with no timeout, sees `stop` at once.
    wake: EventFd,
    /// Called by a vCPU that ends ([`Vm::on_end`]).
    end_hook: crate::vm::EndHook,
}

/// Step 5: one thread per vCPU, set up from `start`, running.
#[allow(clippy::too_many_arguments)]
fn start_vcpus(
    kvm: &Kvm,
    vm: &VmFd,
    config: &VmConfig,
    legacy: &Legacy,
    attached: &Attached,
    signals: &GuestSignals,
    mem: &GuestMem,
    start: VcpuStart<'_>,
) -> Result<Vcpus, Error> {
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
    let end_hook = crate::vm::EndHook::default();
    // At run time a vCPU touches one file: the console log, which it
    // rotates at its cap.
    let files = Files {
        read_write: config
            .serial_log
            .as_ref()
            .and_then(|p| p.parent())
            .map(|d| d.to_path_buf())
            .into_iter()
            .collect(),
        read_only: Vec::new(),
    };
    let wake = EventFd::new(EFD_NONBLOCK).map_err(|e| Error::Config(format!("eventfd: {e}")))?;
    let stop = Arc::new(AtomicBool::new(false));
    let pause = Arc::new(vcpu::Pause::default());
    let (end_tx, ends) = channel();
    let mut threads = Vec::new();
    for index in 0..config.vcpus {
        let fd = vm
            .create_vcpu(u64::from(index))
            .map_err(kvm_err("KVM_CREATE_VCPU"))?;
        cpu::set_cpuid(&fd, &supported, index)?;
        match &start {
            VcpuStart::Restore(states) => snapshot::restore_vcpu(&fd, &states[usize::from(index)])?,
            VcpuStart::Boot { rip } => {
                cpu::set_msrs(&fd)?;
                cpu::set_fpu(&fd)?;
                cpu::set_lapic(&fd)?;
                if index == 0 {
                    cpu::set_boot_registers(&fd, *rip)?;
                }
            }
        }
        let ctx = VcpuContext {
            fd,
            pio: legacy.pio.clone(),
            mmio: attached.mmio.clone(),
            signals: signals.clone(),
            stop: stop.clone(),
            pause: pause.clone(),
            index,
            msr_index: msr_index.clone(),
            mem: mem.clone(),
        };
        let wake = wake
            .try_clone()
            .map_err(|e| Error::Config(format!("eventfd: {e}")))?;
        threads.push(spawn_vcpu(
            ctx,
            end_tx.clone(),
            stop.clone(),
            wake,
            end_hook.clone(),
            files.clone(),
        )?);
    }
    Ok(Vcpus {
        threads,
        stop,
        pause,
        ends,
        wake,
        end_hook,
    })
}

fn spawn_vcpu(
    ctx: VcpuContext,
    ends: Sender<vcpu::VcpuEnd>,
    end_all: Arc<AtomicBool>,
    wake: EventFd,
    end_hook: crate::vm::EndHook,
    files: Files,
) -> Result<JoinHandle<()>, Error> {
    std::thread::Builder::new()
        .name(format!("vcpu{}", ctx.index))
        .spawn(move || {
            sandbox::enter(ThreadKind::Vcpu, &files);
            let _ = ends.send(vcpu::run(ctx));
            // A guest that stopped (power-off, reset, crash) stops its
            // devices too: the event thread ends and drops them, which
            // closes every host vsock connection, so a client blocked on
            // a reply sees the end at once instead of waiting for an
            // answer that cannot come.
            end_all.store(true, Ordering::Release);
            let _ = wake.write(1);
            if let Some(hook) = end_hook.get() {
                hook();
            }
        })
        .map_err(Error::Thread)
}

/// Step 6: the event thread runs the devices' queues and host sockets;
/// then the parts become a [`Vm`].
#[allow(clippy::too_many_arguments)]
fn finish(
    vm: VmFd,
    mem: GuestMem,
    config: &VmConfig,
    started: Instant,
    legacy: Legacy,
    attached: Attached,
    signals: GuestSignals,
    vcpus: Vcpus,
    cmdline: String,
    has_pvh_note: bool,
) -> Result<Vm, Error> {
    let Attached {
        mut events,
        transports,
        net,
        vsock,
        ..
    } = attached;
    let Vcpus {
        mut threads,
        stop,
        pause,
        ends,
        wake,
        end_hook,
    } = vcpus;
    events.add_subscriber(Box::new(Wake(wake)));
    let event_stop = stop.clone();
    let event_thread = std::thread::Builder::new()
        .name("vmm-events".into())
        .spawn(move || {
            sandbox::enter(ThreadKind::Events, &Files::none());
            // No timeout: every stop wakes it, a shutdown by its kick
            // signal (EINTR), a vCPU that ends through `wake`.
            while !event_stop.load(Ordering::Acquire) {
                let _ = events.run();
            }
        })
        .map_err(Error::Thread)?;
    threads.push(event_thread);
    Ok(Vm::from_parts(VmParts {
        threads,
        stop,
        pause,
        ends,
        end_hook,
        signals,
        console: legacy.console,
        serial: legacy.serial,
        started,
        has_pvh_note,
        cmdline,
        config: config.clone(),
        transports: transports.iter().map(Arc::downgrade).collect(),
        net,
        vsock,
        vm,
        mem,
    }))
}

/// Wakes the event thread when a vCPU ends (see [`Vcpus::wake`]).
struct Wake(EventFd);

impl event_manager::MutEventSubscriber for Wake {
    fn process(&mut self, _: event_manager::Events, _: &mut event_manager::EventOps) {
        let _ = self.0.read();
    }

    fn init(&mut self, ops: &mut event_manager::EventOps) {
        // Only fails on a closed epoll fd; the loop then still ends on
        // the shutdown's kick.
        let _ = ops.add(event_manager::Events::new(
            &self.0,
            vmm_sys_util::epoll::EventSet::IN,
        ));
    }
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
