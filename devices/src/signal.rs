//! The guest-signal device: the boot marker and the power-off status (the
//! register layout is `pyro_proto::marker`), plus the shared record
//! of why the guest wants to stop, which the i8042 also writes to.

use crate::BusDevice;
use pyro_proto::marker;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Why the guest asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// guest-init powered off with this status.
    PowerOff { status: u8 },
    /// The guest reset the machine (i8042), e.g. `reboot` or a kernel panic.
    Reset,
}

/// When PID 1 said it started.
#[derive(Debug, Clone, Copy)]
pub struct InitMark {
    /// Host time of the marker write.
    pub at: Instant,
    /// Guest monotonic clock at PID 1 start (guest-side boot time).
    pub guest_us: u64,
}

#[derive(Default)]
struct State {
    stop: Option<StopReason>,
    init: Option<InitMark>,
}

/// What devices tell the VMM. Cheap to clone; vCPU threads check
/// [`GuestSignals::stop`] after each exit they handle.
#[derive(Clone, Default)]
pub struct GuestSignals(Arc<Mutex<State>>);

impl GuestSignals {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a stop request; the first one wins.
    pub fn request_stop(&self, reason: StopReason) {
        self.state().stop.get_or_insert(reason);
    }

    pub fn stop(&self) -> Option<StopReason> {
        self.state().stop
    }

    pub fn init(&self) -> Option<InitMark> {
        self.state().init
    }
}

/// The MMIO registers. Latches value bytes, acts on the event byte.
pub struct SignalRegs {
    value: [u8; marker::VALUE_LEN],
    signals: GuestSignals,
}

impl SignalRegs {
    pub const ADDR: u64 = marker::ADDR;
    pub const LEN: u64 = marker::LEN;

    pub fn new(signals: GuestSignals) -> Self {
        Self {
            value: [0; marker::VALUE_LEN],
            signals,
        }
    }
}

impl BusDevice for SignalRegs {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, byte) in data.iter().enumerate() {
            let at = offset.saturating_add(i as u64);
            if at < marker::EVENT_OFFSET {
                self.value[at as usize] = *byte;
                continue;
            }
            if at != marker::EVENT_OFFSET {
                continue;
            }
            let value = u64::from_le_bytes(self.value);
            match *byte {
                marker::EVENT_INIT_STARTED => {
                    let mut state = self.signals.state();
                    state.init.get_or_insert(InitMark {
                        at: Instant::now(),
                        guest_us: value,
                    });
                }
                marker::EVENT_POWER_OFF => self.signals.request_stop(StopReason::PowerOff {
                    status: value as u8,
                }),
                _ => {} // unknown events are ignored: the guest is untrusted
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_in_address_order_deliver_events() {
        let signals = GuestSignals::new();
        let mut dev = SignalRegs::new(signals.clone());
        for (i, b) in marker::encode(marker::EVENT_INIT_STARTED, 3_500_000)
            .iter()
            .enumerate()
        {
            dev.write(i as u64, &[*b]);
        }
        assert_eq!(signals.init().unwrap().guest_us, 3_500_000);
        assert_eq!(signals.stop(), None);
        dev.write(0, &marker::encode(marker::EVENT_POWER_OFF, 7));
        assert_eq!(signals.stop(), Some(StopReason::PowerOff { status: 7 }));
        dev.write(0, &marker::encode(99, 1));
        dev.write(0, &marker::encode(marker::EVENT_POWER_OFF, 9));
        assert_eq!(
            signals.stop(),
            Some(StopReason::PowerOff { status: 7 }),
            "first stop wins"
        );
    }
}
