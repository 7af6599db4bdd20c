//! The Intel MP table: how a kernel without ACPI finds its CPUs, the
//! IOAPIC and the interrupt routing.
//!
//! It also matters for speed on PVM hosts: without it the kernel scans the
//! BIOS area 0xf0000-0xfffff for one, and reads of that non-RAM range run
//! so slowly under the emulator that the scan alone cost 2.8 s of boot.
//! The floating pointer sits at the start of the EBDA, the second place the
//! kernel looks, so the scan stops there.

use crate::error::Error;
use crate::layout::EBDA_START;
use crate::memory::GuestMem;
use vm_memory::{Bytes, GuestAddress};

const APIC_DEFAULT: u32 = 0xfee0_0000;
const IOAPIC_DEFAULT: u32 = 0xfec0_0000;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
pub const IOAPIC_PINS: u8 = 24;
const SPEC_REV: u8 = 4;
const CPU_ENABLED: u8 = 1;
const CPU_BSP: u8 = 2;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;
/// CPU signature in the processor entries: family 6 (informational only).
const CPU_SIGNATURE: u32 = 0x600;
/// FPU and APIC present.
const CPU_FEATURES: u32 = 0x201;

/// Writes the floating pointer and configuration table for `cpus` CPUs.
pub fn write(mem: &GuestMem, cpus: u8) -> Result<(), Error> {
    let table_addr = EBDA_START + 16;
    let table = config_table(cpus);
    let pointer = floating_pointer(table_addr as u32);
    if 16 + table.len() as u64 > 0x400 {
        return Err(Error::Config(format!(
            "MP table for {cpus} CPUs does not fit the EBDA"
        )));
    }
    let err = |e| Error::Memory(format!("writing MP table: {e}"));
    mem.write_slice(&pointer, GuestAddress(EBDA_START))
        .map_err(err)?;
    mem.write_slice(&table, GuestAddress(table_addr))
        .map_err(err)
}

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

fn floating_pointer(table_addr: u32) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[0..4].copy_from_slice(b"_MP_");
    p[4..8].copy_from_slice(&table_addr.to_le_bytes());
    p[8] = 1; // length in 16-byte units
    p[9] = SPEC_REV;
    p[10] = checksum(&p);
    p
}

fn config_table(cpus: u8) -> Vec<u8> {
    let ioapic_id = cpus + 1;
    let mut entries = Vec::new();
    let mut count: u16 = 0;
    for cpu in 0..cpus {
        entries.push(0); // processor
        entries.push(cpu);
        entries.push(APIC_VERSION);
        entries.push(CPU_ENABLED | if cpu == 0 { CPU_BSP } else { 0 });
        entries.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        entries.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[1, 0]); // bus 0
    entries.extend_from_slice(b"ISA   ");
    count += 1;
    entries.extend_from_slice(&[2, ioapic_id, IOAPIC_VERSION, 1]); // IOAPIC, enabled
    entries.extend_from_slice(&IOAPIC_DEFAULT.to_le_bytes());
    count += 1;
    for pin in 0..IOAPIC_PINS {
        // I/O interrupt: ISA bus IRQ n -> IOAPIC pin n, bus-default polarity/trigger.
        entries.extend_from_slice(&[3, INT_TYPE_INT, 0, 0, 0, pin, ioapic_id, pin]);
        count += 1;
    }
    // Local interrupts: LINT0 = ExtINT (the PIC), LINT1 = NMI, all CPUs.
    entries.extend_from_slice(&[4, INT_TYPE_EXTINT, 0, 0, 0, 0, 0xff, 0]);
    entries.extend_from_slice(&[4, INT_TYPE_NMI, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let mut table = Vec::with_capacity(44 + entries.len());
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&((44 + entries.len()) as u16).to_le_bytes());
    table.push(SPEC_REV);
    table.push(0); // checksum, below
    table.extend_from_slice(b"PYRO    ");
    table.extend_from_slice(b"MICROVM     ");
    table.extend_from_slice(&[0; 6]); // OEM table pointer and size
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&APIC_DEFAULT.to_le_bytes());
    table.extend_from_slice(&[0; 4]); // extended table length, checksum, reserved
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_and_lengths_hold() {
        let p = floating_pointer(0x9fc10);
        assert_eq!(p.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        for cpus in [1, 4, 32] {
            let t = config_table(cpus);
            assert_eq!(t.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
            assert_eq!(u16::from_le_bytes([t[4], t[5]]) as usize, t.len());
            let entries = u16::from_le_bytes([t[34], t[35]]);
            assert_eq!(entries, u16::from(cpus) + 2 + u16::from(IOAPIC_PINS) + 2);
            assert!(16 + t.len() <= 0x400, "{cpus} CPUs fit the EBDA");
        }
    }
}
