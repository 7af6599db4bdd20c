//! Putting a Linux kernel into guest memory: the ELF image, the command
//! line, the zero page with its e820 map, and the boot page tables and GDT
//! the 64-bit boot protocol expects.

use crate::error::Error;
use crate::layout::*;
use crate::memory::{ram_ranges, GuestMem};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::KernelLoader;
use std::fs::File;
use std::path::Path;
use vm_memory::{Bytes, GuestAddress};

const E820_RAM: u32 = 1;
const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT: u32 = 0x0100_0000;

/// Where the boot CPU starts.
pub struct KernelEntry {
    pub rip: u64,
    pub has_pvh_note: bool,
}

/// Loads `path` (an ELF vmlinux) and everything the kernel reads at entry.
pub fn load(
    mem: &GuestMem,
    path: &Path,
    cmdline: &str,
    mem_size: u64,
) -> Result<KernelEntry, Error> {
    let mut file = File::open(path).map_err(|source| Error::KernelOpen {
        path: path.into(),
        source,
    })?;
    let loaded = Elf::load(mem, None, &mut file, Some(GuestAddress(HIMEM_START))).map_err(|e| {
        Error::KernelLoad {
            path: path.into(),
            detail: e.to_string(),
        }
    })?;
    let rip = loaded.kernel_load.0;
    // The 64-bit protocol works for every kernel we build; a PVH note is
    // reported (doctor shows it) but the measured path is used.
    let has_pvh_note = matches!(loaded.pvh_boot_cap, PvhBootCapability::PvhEntryPresent(_));

    let mut line = cmdline.as_bytes().to_vec();
    line.push(0);
    mem.write_slice(&line, GuestAddress(CMDLINE))
        .map_err(mem_err)?;
    write_zero_page(mem, cmdline.len() as u32, mem_size)?;
    write_page_tables(mem)?;
    write_gdt(mem)?;
    Ok(KernelEntry { rip, has_pvh_note })
}

fn mem_err(e: vm_memory::GuestMemoryError) -> Error {
    Error::Memory(format!("writing boot data: {e}"))
}

/// The RAM the guest may use, as e820 entries (low RAM below the EBDA,
/// then everything from 1 MiB, split around the MMIO gap).
pub fn e820_map(mem_size: u64) -> Vec<(u64, u64)> {
    let mut map = vec![(0, EBDA_START)];
    for (start, len) in ram_ranges(mem_size) {
        let end = start.0 + len as u64;
        let start = start.0.max(HIMEM_START);
        if end > start {
            map.push((start, end - start));
        }
    }
    map
}

fn write_zero_page(mem: &GuestMem, cmdline_len: u32, mem_size: u64) -> Result<(), Error> {
    let mut params = boot_params::default();
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    params.hdr.header = KERNEL_HDR_MAGIC;
    params.hdr.cmd_line_ptr = CMDLINE as u32;
    params.hdr.cmdline_size = cmdline_len;
    params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT;
    let map = e820_map(mem_size);
    for (i, (addr, size)) in map.iter().enumerate() {
        params.e820_table[i] = boot_e820_entry {
            addr: *addr,
            size: *size,
            r#type: E820_RAM,
        };
    }
    params.e820_entries = map.len() as u8;
    mem.write_obj(params, GuestAddress(ZERO_PAGE))
        .map_err(mem_err)
}

/// Identity-maps the first GiB with 2 MiB pages; the kernel replaces these
/// tables early, it only needs to reach its own entry code.
fn write_page_tables(mem: &GuestMem) -> Result<(), Error> {
    const PRESENT_RW: u64 = 0x3;
    const HUGE: u64 = 0x80;
    mem.write_obj(PDPT | PRESENT_RW, GuestAddress(PML4))
        .map_err(mem_err)?;
    mem.write_obj(PD | PRESENT_RW, GuestAddress(PDPT))
        .map_err(mem_err)?;
    for i in 0..512u64 {
        mem.write_obj((i << 21) | PRESENT_RW | HUGE, GuestAddress(PD + i * 8))
            .map_err(mem_err)?;
    }
    Ok(())
}

/// Null, 64-bit code, data, TSS: the layout Linux's 64-bit entry expects.
pub const GDT: [u64; 4] = [
    0,
    gdt_entry(0xa09b, 0, 0xfffff),
    gdt_entry(0xc093, 0, 0xfffff),
    gdt_entry(0x808b, 0, 0xfffff),
];

/// A segment descriptor from access/flags bits, base and limit.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    (((base as u64) & 0xff00_0000) << 32)
        | (((base as u64) & 0x00ff_ffff) << 16)
        | ((limit as u64) & 0x0000_ffff)
        | (((limit as u64) & 0x000f_0000) << 32)
        | (((flags as u64) & 0x0000_f0ff) << 40)
}

fn write_gdt(mem: &GuestMem) -> Result<(), Error> {
    for (i, entry) in GDT.iter().enumerate() {
        mem.write_obj(*entry, GuestAddress(GDT_ADDR + i as u64 * 8))
            .map_err(mem_err)?;
    }
    mem.write_obj(0u64, GuestAddress(IDT_ADDR)).map_err(mem_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e820_skips_bios_area_and_mmio_gap() {
        assert_eq!(
            e820_map(128 << 20),
            vec![(0, EBDA_START), (HIMEM_START, (128 << 20) - HIMEM_START)]
        );
        let big = e820_map(4 << 30);
        assert_eq!(big[1], (HIMEM_START, MMIO_GAP_START - HIMEM_START));
        assert_eq!(big[2], (MMIO_GAP_END, (4 << 30) - MMIO_GAP_START));
    }

    #[test]
    fn gdt_entries_match_known_encodings() {
        assert_eq!(GDT[1], 0x00af_9b00_0000_ffff);
        assert_eq!(GDT[2], 0x00cf_9300_0000_ffff);
    }
}
