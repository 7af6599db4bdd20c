//! Guest RAM: anonymous mappings split around the MMIO gap, registered
//! with KVM as one memory slot per region.

use crate::error::Error;
use crate::layout::{GUEST_SIGNAL_PAGE, MMIO_GAP_END, MMIO_GAP_START, PAGE};
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

pub type GuestMem = GuestMemoryMmap<()>;

/// The RAM ranges for `size` bytes of guest memory.
pub fn ram_ranges(size: u64) -> Vec<(GuestAddress, usize)> {
    if size <= MMIO_GAP_START {
        vec![(GuestAddress(0), size as usize)]
    } else {
        vec![
            (GuestAddress(0), MMIO_GAP_START as usize),
            (GuestAddress(MMIO_GAP_END), (size - MMIO_GAP_START) as usize),
        ]
    }
}

/// Guest-physical ranges backed by RAM in KVM: the RAM ranges minus the
/// guest-signal page, which must exit to the VMM (see
/// `pyro_proto::marker`).
pub fn kvm_slots(size: u64) -> Vec<(u64, u64)> {
    let hole = GUEST_SIGNAL_PAGE..GUEST_SIGNAL_PAGE + PAGE;
    let mut slots = Vec::new();
    for (start, len) in ram_ranges(size) {
        let (start, end) = (start.0, start.0 + len as u64);
        if start < hole.end && hole.start < end {
            if start < hole.start {
                slots.push((start, hole.start - start));
            }
            if hole.end < end {
                slots.push((hole.end, end - hole.end));
            }
        } else {
            slots.push((start, end - start));
        }
    }
    slots
}

/// Allocates guest RAM and hands it to KVM.
pub fn create(vm: &VmFd, size: u64) -> Result<GuestMem, Error> {
    let mem = GuestMemoryMmap::from_ranges(&ram_ranges(size))
        .map_err(|e| Error::Memory(format!("cannot map {} MiB: {e}", size >> 20)))?;
    register(vm, mem, size)
}

/// Guest RAM backed by a snapshot's memory file, mapped MAP_PRIVATE:
/// pages are read from the file on first touch and copied on first
/// write, so a restore copies nothing up front and the file never
/// changes.
pub fn from_file(vm: &VmFd, size: u64, file: &std::fs::File) -> Result<GuestMem, Error> {
    use vm_memory::mmap::{GuestRegionMmap, MmapRegionBuilder};
    use vm_memory::FileOffset;
    let mut regions = Vec::new();
    let mut offset = 0u64;
    for (start, len) in ram_ranges(size) {
        let fd = file
            .try_clone()
            .map_err(|e| Error::Memory(format!("memory file: {e}")))?;
        let mapping = MmapRegionBuilder::new(len)
            .with_file_offset(FileOffset::new(fd, offset))
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_NORESERVE)
            .build()
            .map_err(|e| Error::Memory(format!("cannot map the memory file: {e}")))?;
        let region = GuestRegionMmap::new(mapping, start)
            .ok_or_else(|| Error::Memory("memory region overflows".into()))?;
        regions.push(region);
        offset += len as u64;
    }
    let mem = GuestMemoryMmap::from_regions(regions)
        .map_err(|e| Error::Memory(format!("cannot map {} MiB: {e}", size >> 20)))?;
    register(vm, mem, size)
}

fn register(vm: &VmFd, mem: GuestMem, size: u64) -> Result<GuestMem, Error> {
    for (slot, (start, len)) in kvm_slots(size).into_iter().enumerate() {
        let host = mem
            .get_host_address(GuestAddress(start))
            .map_err(|e| Error::Memory(e.to_string()))?;
        let spec = kvm_userspace_memory_region {
            slot: slot as u32,
            guest_phys_addr: start,
            memory_size: len,
            userspace_addr: host as u64,
            flags: 0,
        };
        // SAFETY: `host..host+len` lies inside one live mapping owned by
        // `mem` (kvm_slots only cuts pieces out of `ram_ranges`, which is
        // what `mem` maps). `mem` outlives the VM fd (see `Vm`'s field
        // order), so KVM never sees a dangling mapping.
        unsafe { vm.set_user_memory_region(spec) }.map_err(|source| Error::Kvm {
            op: "KVM_SET_USER_MEMORY_REGION",
            source,
        })?;
    }
    Ok(mem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_memory_is_one_range_large_memory_skips_the_gap() {
        assert_eq!(ram_ranges(128 << 20), vec![(GuestAddress(0), 128 << 20)]);
        let big = ram_ranges(4 << 30);
        assert_eq!(big[0], (GuestAddress(0), MMIO_GAP_START as usize));
        assert_eq!(big[1].0, GuestAddress(MMIO_GAP_END));
        assert_eq!(big[0].1 + big[1].1, 4 << 30);
    }

    #[test]
    fn kvm_slots_leave_out_the_signal_page() {
        let slots = kvm_slots(128 << 20);
        assert_eq!(
            slots,
            vec![
                (0, GUEST_SIGNAL_PAGE),
                (
                    GUEST_SIGNAL_PAGE + PAGE,
                    (128 << 20) - GUEST_SIGNAL_PAGE - PAGE
                )
            ]
        );
        let total: u64 = kvm_slots(4 << 30).iter().map(|s| s.1).sum();
        assert_eq!(total, (4 << 30) - PAGE);
    }
}
