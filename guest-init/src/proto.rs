//! What host and guest agree on. Platform-neutral: the host side imports it.

/// The VMM's guest-signal device: a small bank of I/O ports the guest writes
/// to tell the VMM about its life cycle.
///
/// The guest writes [`marker::VALUE_LEN`] little-endian value bytes to
/// `BASE..BASE+8` (latched by the device), then the event code to
/// [`marker::EVENT_PORT`], which acts on the latched value. From user space
/// the whole message is one `pwrite` of 9 bytes at offset `BASE` on
/// `/dev/port`, which the kernel turns into 9 `outb`s in port order.
pub mod marker {
    /// First port of the bank.
    pub const BASE: u16 = 0x600;
    /// Bytes of the value that precedes an event.
    pub const VALUE_LEN: usize = 8;
    /// Writing an event code here acts on the latched value.
    pub const EVENT_PORT: u16 = BASE + VALUE_LEN as u16;
    /// Ports the device claims.
    pub const LEN: u16 = VALUE_LEN as u16 + 1;

    /// PID 1 started. Value: guest monotonic clock at that moment, in
    /// microseconds (guest-side boot time).
    pub const EVENT_INIT_STARTED: u8 = 1;
    /// The guest is powering off after syncing its disks. Value: exit status.
    pub const EVENT_POWER_OFF: u8 = 2;

    /// Encodes one message as the bytes written at offset [`BASE`].
    pub fn encode(event: u8, value: u64) -> [u8; VALUE_LEN + 1] {
        let mut buf = [0u8; VALUE_LEN + 1];
        buf[..VALUE_LEN].copy_from_slice(&value.to_le_bytes());
        buf[VALUE_LEN] = event;
        buf
    }
}

/// Kernel command-line keys guest-init reads from `/proc/cmdline`.
pub mod cmdline {
    /// `pyro.mode=<mode>`: what PID 1 does once the system is up.
    pub const MODE_KEY: &str = "pyro.mode";
    /// Power off right after start-up (boot checks, `pyro doctor --boot`).
    pub const MODE_POWEROFF: &str = "poweroff";
    /// Stay up and serve (the default).
    pub const MODE_SERVE: &str = "serve";
    /// Where guest-init is installed in every environment image.
    pub const INIT_PATH: &str = "/opt/pyro/bin/pyro-init";
}

#[cfg(test)]
mod tests {
    use super::marker::*;

    #[test]
    fn encode_puts_value_first_and_event_last() {
        let b = encode(EVENT_POWER_OFF, 0x0102);
        assert_eq!(b[0], 0x02);
        assert_eq!(b[1], 0x01);
        assert_eq!(b[VALUE_LEN], EVENT_POWER_OFF);
        assert_eq!(EVENT_PORT, BASE + 8);
    }
}
