//! The VMM's guest-signal device: a few bytes of MMIO the guest writes to
//! tell the VMM about its life cycle.
//!
//! The guest writes [`VALUE_LEN`] little-endian value bytes at
//! `ADDR` (latched by the device), then the event code at
//! [`EVENT_OFFSET`], which acts on the latched value. From user
//! space the whole message is one 9-byte `pwrite` at offset `ADDR` on
//! `/dev/mem`; the kernel copies it forwards (a qword, then a byte), so
//! the event byte always lands last.
//!
//! Why there: `/dev/port` needs ISA or PCI, which the guest kernel leaves
//! out, and `/dev/mem` `write()` only reaches addresses below the top of
//! RAM. So the device sits in the legacy ISA hole below 1 MiB (not RAM in
//! the e820 map), on a page the VMM leaves out of KVM's memory slots so
//! that guest accesses exit to it.

/// Guest-physical address of the device: a page of the ISA hole.
pub const ADDR: u64 = 0xd_0000;
/// Bytes of the value that precedes an event.
pub const VALUE_LEN: usize = 8;
/// Writing an event code here acts on the latched value.
pub const EVENT_OFFSET: u64 = VALUE_LEN as u64;
/// Bytes the device claims.
pub const LEN: u64 = 16;

/// PID 1 started. Value: guest monotonic clock at that moment, in
/// microseconds (guest-side boot time).
pub const EVENT_INIT_STARTED: u8 = 1;
/// The guest is powering off after syncing its disks. Value: exit status.
pub const EVENT_POWER_OFF: u8 = 2;

/// Encodes one message as the bytes written at [`ADDR`].
pub fn encode(event: u8, value: u64) -> [u8; VALUE_LEN + 1] {
    let mut buf = [0u8; VALUE_LEN + 1];
    buf[..VALUE_LEN].copy_from_slice(&value.to_le_bytes());
    buf[VALUE_LEN] = event;
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_puts_value_first_and_event_last() {
        let b = encode(EVENT_POWER_OFF, 0x0102);
        assert_eq!(b[0], 0x02);
        assert_eq!(b[1], 0x01);
        assert_eq!(b[VALUE_LEN], EVENT_POWER_OFF);
        assert_eq!(EVENT_OFFSET, 8);
    }
}
