//! Guest RAM: anonymous mappings split around the MMIO gap, registered
//! with KVM as one memory slot per region.

use crate::error::Error;
use crate::layout::{MMIO_GAP_END, MMIO_GAP_START};
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

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

/// Allocates guest RAM and hands it to KVM.
pub fn create(vm: &VmFd, size: u64) -> Result<GuestMem, Error> {
    let mem = GuestMemoryMmap::from_ranges(&ram_ranges(size))
        .map_err(|e| Error::Memory(format!("cannot map {} MiB: {e}", size >> 20)))?;
    for (slot, region) in mem.iter().enumerate() {
        let host = mem
            .get_host_address(region.start_addr())
            .map_err(|e| Error::Memory(e.to_string()))?;
        let spec = kvm_userspace_memory_region {
            slot: slot as u32,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
            flags: 0,
        };
        // SAFETY: the region is a live mapping owned by `mem` of exactly
        // `memory_size` bytes. `mem` is kept alive by the `Vm` for as long
        // as the VM fd (which is dropped first, see `Vm`'s field order), so
        // KVM never sees a dangling mapping.
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
}
