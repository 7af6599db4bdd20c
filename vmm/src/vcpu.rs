//! The vCPU run loop: one thread per vCPU, treating every exit as
//! untrusted guest input.

use crate::error::{Error, FailureKind};
use crate::memory::GuestMem;
use crate::snapshot::{self, VcpuState};
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
    pub index: u8,
    /// The MSRs a snapshot saves (KVM_GET_MSR_INDEX_LIST).
    pub msr_index: Arc<Vec<u32>>,
    pub mem: GuestMem,
}

/// Holds vCPUs out of KVM_RUN while the VM is paused.
/// Pausing: vCPUs park outside KVM_RUN until released; while parked they
/// can be asked to save their state (a snapshot), which only the thread
/// that runs a vCPU can do cleanly (it may owe the guest an I/O result).
#[derive(Default)]
pub struct Pause {
    state: Mutex<PauseState>,
    changed: Condvar,
}

#[derive(Default)]
struct PauseState {
    requested: bool,
    parked: usize,
    /// Bumped to ask every parked vCPU for its state.
    save_round: u64,
    saved: Vec<(u8, Result<VcpuState, Error>)>,
}

impl Pause {
    pub fn request(&self) {
        self.lock().requested = true;
    }

    pub fn release(&self) {
        self.lock().requested = false;
        self.changed.notify_all();
    }

    /// Waits up to `timeout` for `count` vCPUs to be parked.
    pub fn wait_parked(&self, count: usize, timeout: std::time::Duration) -> bool {
        let guard = self.lock();
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |s| s.parked < count)
            .unwrap_or_else(|p| p.into_inner());
        guard.parked >= count
    }

    pub fn is_requested(&self) -> bool {
        self.lock().requested
    }

    /// Whether a pause is requested and `count` vCPUs are parked: none
    /// is in KVM_RUN or can enter it until [`Pause::release`].
    pub fn all_parked(&self, count: usize) -> bool {
        let s = self.lock();
        s.requested && s.parked >= count
    }

    /// Every parked vCPU's state, in vCPU order. Call with all `count`
    /// vCPUs parked.
    pub fn save_all(&self, count: usize) -> Result<Vec<VcpuState>, Error> {
        let mut guard = self.lock();
        guard.saved.clear();
        guard.save_round += 1;
        self.changed.notify_all();
        let (mut guard, _) = self
            .changed
            .wait_timeout_while(guard, std::time::Duration::from_secs(5), |s| {
                s.saved.len() < count
            })
            .unwrap_or_else(|p| p.into_inner());
        if guard.saved.len() < count {
            return Err(Error::Config(
                "the vCPUs did not save their state within 5 s".into(),
            ));
        }
        let mut saved = std::mem::take(&mut guard.saved);
        saved.sort_by_key(|(index, _)| *index);
        saved.into_iter().map(|(_, state)| state).collect()
    }

    fn park_if_requested(
        &self,
        stop: &AtomicBool,
        index: u8,
        save: &mut dyn FnMut() -> Result<VcpuState, Error>,
    ) {
        let mut guard = self.lock();
        if !guard.requested {
            return;
        }
        guard.parked += 1;
        self.changed.notify_all();
        let mut seen = guard.save_round;
        while guard.requested && !stop.load(Ordering::Acquire) {
            if guard.save_round != seen {
                seen = guard.save_round;
                drop(guard);
                let state = save();
                guard = self.lock();
                guard.saved.push((index, state));
                self.changed.notify_all();
                continue;
            }
            guard = self
                .changed
                .wait_timeout(guard, std::time::Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        guard.parked -= 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PauseState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

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
        let (fd, msr_index) = (&mut ctx.fd, &ctx.msr_index);
        ctx.pause.park_if_requested(&ctx.stop, ctx.index, &mut || {
            snapshot::save_vcpu(fd, msr_index)
        });
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    #[test]
    fn all_parked_only_while_every_vcpu_waits_and_the_pause_holds() {
        let pause = Arc::new(Pause::default());
        let stop = Arc::new(AtomicBool::new(false));
        assert!(!pause.all_parked(1), "nothing requested");
        pause.request();
        assert!(!pause.all_parked(1), "requested, not yet parked");
        let parker = {
            let (pause, stop) = (pause.clone(), stop.clone());
            std::thread::spawn(move || {
                pause.park_if_requested(&stop, 0, &mut || Err(Error::PauseTimeout))
            })
        };
        assert!(pause.wait_parked(1, Duration::from_secs(5)));
        assert!(pause.all_parked(1));
        assert!(!pause.all_parked(2), "a second vCPU is not parked");
        pause.release();
        parker.join().unwrap();
        assert!(!pause.all_parked(1), "released");
    }
}
