//! Just enough of the i8042 keyboard controller for the guest to reset the
//! machine: the kernel boots with `reboot=k`, so `reboot`, a panic
//! (`panic=-1`) or a triple-fault-free reset all end up writing 0xFE
//! ("pulse reset line") to the command port.

use crate::signal::{GuestSignals, StopReason};
use crate::BusDevice;

/// Data port 0x60 .. command/status port 0x64.
pub struct I8042 {
    signals: GuestSignals,
}

impl I8042 {
    pub const BASE: u16 = 0x60;
    pub const LEN: u16 = 5;
    const COMMAND: u64 = 4;
    const CMD_RESET: u8 = 0xfe;

    pub fn new(signals: GuestSignals) -> Self {
        Self { signals }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Status 0: output buffer empty, input buffer empty (the kernel's
        // kb_wait() spins on the latter before it sends the reset).
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == Self::COMMAND && data.first() == Some(&Self::CMD_RESET) {
            self.signals.request_stop(StopReason::Reset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_reset_command_stops() {
        let signals = GuestSignals::new();
        let mut dev = I8042::new(signals.clone());
        dev.write(0, &[0xfe]);
        dev.write(4, &[0xaa]);
        assert_eq!(signals.stop(), None);
        dev.write(4, &[0xfe]);
        assert_eq!(signals.stop(), Some(StopReason::Reset));
    }
}
