//! The vCPU run loop: one thread per vCPU, treating every exit as
//! untrusted guest input.

use crate::error::FailureKind;
use crate::memory::GuestMem;
use kvm_ioctls::{VcpuExit, VcpuFd};
use pyro_devices::{Bus, GuestSignals};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

/// Why a vCPU thread ended.
#[derive(Debug)]
pub enum VcpuEnd {
    /// A device recorded a stop request (see `GuestSignals::stop`).
    Stopped,
    /// The VMM asked it to stop.
    Kicked,
    Failed(FailureKind),
}

pub struct VcpuContext {
    pub fd: VcpuFd,
    pub pio: Bus,
    pub mmio: Bus,
    pub signals: GuestSignals,
    pub stop: Arc<AtomicBool>,
    pub pause: Arc<Pause>,
    pub mem: GuestMem,
}

/// Holds vCPUs out of KVM_RUN while the VM is paused.
#[derive(Default)]
pub struct Pause {
    /// (pause requested, vCPUs parked)
    state: Mutex<(bool, usize)>,
    changed: Condvar,
}

impl Pause {
    /// Asks vCPUs to park; the caller then kicks them out of KVM_RUN.
    pub fn request(&self) {
        self.lock().0 = true;
    }

    pub fn release(&self) {
        self.lock().0 = false;
        self.changed.notify_all();
    }

    /// Waits until `count` vCPUs are parked (or `timeout` passes).
    pub fn wait_parked(&self, count: usize, timeout: std::time::Duration) -> bool {
        let guard = self.lock();
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |s| s.1 < count)
            .unwrap_or_else(|p| p.into_inner());
        guard.1 >= count
    }

    pub fn is_requested(&self) -> bool {
        self.lock().0
    }

    /// Called by a vCPU thread between runs: parks while a pause is
    /// requested and the VM is not stopping.
    fn park_if_requested(&self, stop: &AtomicBool) {
        let mut guard = self.lock();
        if !guard.0 {
            return;
        }
        guard.1 += 1;
        self.changed.notify_all();
        while guard.0 && !stop.load(Ordering::Acquire) {
            guard = self
                .changed
                .wait_timeout(guard, std::time::Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        guard.1 -= 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (bool, usize)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The signal that knocks a vCPU thread out of KVM_RUN (with EINTR).
pub fn kick_signal() -> i32 {
    SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Installs the no-op kick handler once per process.
pub fn install_kick_handler() -> std::io::Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = register_signal_handler(kick_signal(), on_kick).map_err(std::io::Error::from);
    });
    result
}

/// What an exit asks for, with the exit's borrow of the vCPU released.
enum Step {
    Continue,
    InternalError,
    Fail(FailureKind),
    TripleFault,
}

pub fn run(mut ctx: VcpuContext) -> VcpuEnd {
    loop {
        ctx.pause.park_if_requested(&ctx.stop);
        if ctx.stop.load(Ordering::Acquire) {
            return VcpuEnd::Kicked;
        }
        let step = match ctx.fd.run() {
            Ok(VcpuExit::IoOut(port, data)) => {
                ctx.pio.write(u64::from(port), data);
                Step::Continue
            }
            Ok(VcpuExit::IoIn(port, data)) => {
                ctx.pio.read(u64::from(port), data);
                Step::Continue
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                ctx.mmio.read(addr, data);
                Step::Continue
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                ctx.mmio.write(addr, data);
                Step::Continue
            }
            // With the in-kernel irqchip KVM handles HLT itself; an exit
            // here is spurious and the vCPU can simply go on.
            Ok(VcpuExit::Hlt) => Step::Continue,
            Ok(VcpuExit::Shutdown) => Step::TripleFault,
            Ok(VcpuExit::InternalError) => Step::InternalError,
            Ok(VcpuExit::FailEntry(reason, _cpu)) => Step::Fail(FailureKind::FailEntry { reason }),
            Ok(VcpuExit::SystemEvent(..)) => {
                ctx.signals.request_stop(pyro_devices::StopReason::Reset);
                Step::Continue
            }
            Ok(other) => Step::Fail(FailureKind::UnexpectedExit(format!("{other:?}"))),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Step::Continue,
            Err(e) => Step::Fail(FailureKind::Run(e.to_string())),
        };
        match step {
            Step::Continue => {}
            Step::Fail(kind) => return VcpuEnd::Failed(kind),
            Step::TripleFault => {
                return VcpuEnd::Failed(FailureKind::TripleFault { rip: rip(&ctx.fd) })
            }
            Step::InternalError => return VcpuEnd::Failed(internal_error(&mut ctx)),
        }
        if ctx.signals.stop().is_some() {
            return VcpuEnd::Stopped;
        }
    }
}

fn rip(fd: &VcpuFd) -> u64 {
    fd.get_regs().map(|r| r.rip).unwrap_or(0)
}

const KVM_INTERNAL_ERROR_EMULATION: u32 = 1;
const EMULATION_FLAG_INSTRUCTION_BYTES: u64 = 1;

/// Collects what KVM says about an emulation failure: the faulting rip and
/// the instruction bytes (from KVM when it supplies them, otherwise read
/// from guest memory through the vCPU's page tables).
fn internal_error(ctx: &mut VcpuContext) -> FailureKind {
    let run = ctx.fd.get_kvm_run();
    // SAFETY: the exit reason is KVM_EXIT_INTERNAL_ERROR, so `internal` is
    // the union member KVM filled in; it is plain integers, valid for any
    // bit pattern.
    let internal = unsafe { run.__bindgen_anon_1.internal };
    let (suberror, ndata, data) = (internal.suberror, internal.ndata as usize, internal.data);
    let rip = rip(&ctx.fd);
    let mut insn = Vec::new();
    if suberror == KVM_INTERNAL_ERROR_EMULATION
        && ndata >= 3
        && data[0] & EMULATION_FLAG_INSTRUCTION_BYTES != 0
    {
        let bytes: Vec<u8> = data[1..3].iter().flat_map(|w| w.to_le_bytes()).collect();
        let size = usize::from(bytes[0]).min(15);
        insn = bytes[1..1 + size.min(bytes.len() - 1)].to_vec();
    }
    if insn.is_empty() {
        if let Ok(t) = ctx.fd.translate_gva(rip) {
            if t.valid != 0 {
                let mut buf = [0u8; 15];
                if ctx
                    .mem
                    .read_slice(&mut buf, GuestAddress(t.physical_address))
                    .is_ok()
                {
                    insn = buf.to_vec();
                }
            }
        }
    }
    FailureKind::InternalError {
        suberror,
        rip,
        insn,
    }
}
