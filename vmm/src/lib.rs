//! `pyro-vmm`: the virtual machine monitor.
//!
//! Owns the KVM side of a pyro VM: the VM and its vCPUs (kvm-ioctls),
//! guest memory (vm-memory) split around the 32-bit MMIO gap, loading an ELF
//! `vmlinux` (linux-loader, 64-bit boot protocol), boot parameters and the
//! e820 map, CPUID/MSR/LAPIC set-up, the in-kernel irqchip and PIT, host
//! detection (PVM vs VMX/SVM) with the kernel command-line quirks it
//! implies, and the vCPU run loop that turns every way a guest can end
//! (power-off, reset, panic, internal emulation error, triple fault,
//! timeout) into a result or an error that says what happened.
//!
//! A VM is described by a [`VmConfig`] (its devices one ordered list,
//! [`DeviceConfig`]) and assembled by `builder` (cold boot or restore,
//! the same named steps). A running [`Vm`] can be frozen ([`Vm::freeze`]:
//! vCPUs parked, devices held) for a snapshot ([`snapshot`]) or a
//! point-in-time copy of a disk ([`Vm::copy_disk`], using
//! [`disk::sparse_copy`]).
//!
//! It also owns the detached VMM process of VMs that outlive their caller
//! ([`control`]: spec, control socket, exit record), and the confinement
//! every VM thread puts itself under once set up ([`sandbox`]: a seccomp
//! list per thread kind, capabilities dropped), and suspending a VM that
//! sat idle ([`idle`]).
//!
//! Devices live in `pyro-devices`; this crate wires them to the buses.

mod boot;
mod builder;
mod config;
pub mod control;
mod cpu;
pub mod disk;
mod error;
mod freeze;
mod host;
pub mod idle;
mod kernel_cmdline;
mod layout;
pub mod limits;
mod memory;
mod mptable;
pub mod sandbox;
pub mod snapshot;
mod vcpu;
mod virtio;
mod vm;

pub use config::{DeviceConfig, Disk, NetConfig, VmConfig, VsockConfig};
pub use error::{console_tail_text, Error, GuestFailure};
pub use freeze::{DeviceGuards, DiskCopy, Frozen};
pub use host::{kvm_api_version, HostKind};
pub use kernel_cmdline::KernelCmdline;
/// The console log's cap and rotation (`VmConfig::serial_log_max_bytes`).
pub use pyro_devices::console_log;
/// The user-space network behind the net device (policy, DNS, stack).
pub use pyro_net as net;
pub use vm::{BootTimes, Vm, VmExit};
