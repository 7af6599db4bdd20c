//! Where things live in guest-physical memory (x86_64).

/// Boot GDT and (empty) IDT.
pub const GDT_ADDR: u64 = 0x500;
pub const IDT_ADDR: u64 = 0x520;
/// The Linux "zero page" (struct boot_params).
pub const ZERO_PAGE: u64 = 0x7000;
/// Initial stack for the boot CPU.
pub const BOOT_STACK: u64 = 0x8ff0;
/// Boot page tables: one PML4, one PDPT, one PD of 2 MiB pages (1 GiB).
pub const PML4: u64 = 0x9000;
pub const PDPT: u64 = 0xa000;
pub const PD: u64 = 0xb000;
/// Kernel command line, and the most the x86 kernel accepts.
pub const CMDLINE: u64 = 0x20000;
pub const CMDLINE_MAX: usize = 2048;
pub const PAGE: u64 = 0x1000;
/// The guest-signal device's page (`pyro_proto::marker`): in
/// the ISA hole, left out of KVM's memory slots so accesses exit.
pub const GUEST_SIGNAL_PAGE: u64 = pyro_proto::marker::ADDR;
/// Start of the BIOS EBDA: usable low RAM ends here.
pub const EBDA_START: u64 = 0x9fc00;
/// Kernels load at or above 1 MiB.
pub const HIMEM_START: u64 = 0x10_0000;
/// The 32-bit MMIO gap: no RAM between these.
pub const MMIO_GAP_START: u64 = 0xd000_0000;
pub const MMIO_GAP_END: u64 = 1 << 32;
/// virtio-mmio device windows, one page each, at the start of the gap.
pub const VIRTIO_MMIO_BASE: u64 = MMIO_GAP_START;
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// KVM needs three pages for the TSS and one for the identity map (VMX),
/// inside the gap where no RAM or device is.
pub const KVM_TSS: u64 = 0xfffb_d000;
pub const KVM_IDENTITY_MAP: u64 = 0xfffb_c000;
/// GSIs for virtio devices: IOAPIC pins 5..=23 (4 is the serial port).
pub const VIRTIO_FIRST_IRQ: u32 = 5;
pub const VIRTIO_LAST_IRQ: u32 = 23;
