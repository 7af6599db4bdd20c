//! A frozen VM ([`Vm::freeze`]): vCPUs parked, so device state and guest
//! memory hold still while they are read; what is done with that
//! (a snapshot, a point-in-time copy of a disk) lives here too.
//!
//! ## Lock order
//!
//! Each virtio slot has two locks: its transport (`MmioTransport`) and
//! its device. A vCPU's MMIO access takes the transport, then the device
//! (`MmioTransport`'s register handlers); the event thread takes only the
//! device. [`Frozen`] takes every device lock first (so the event thread
//! cannot move a queue or write guest memory meanwhile) and, for a
//! snapshot, each transport lock while holding its device: the opposite
//! order to the vCPUs'. That is safe only because every vCPU is parked
//! outside KVM_RUN while the VM is frozen, so no vCPU holds or wants a
//! transport lock. Never lock devices before transports with vCPUs
//! running.

use crate::error::Error;
use crate::memory::GuestMem;
use crate::snapshot::{self, Origin, Snapshot};
use crate::{DeviceConfig, Vm, VmConfig};
use pyro_devices::virtio::mmio::MmioTransport;
use pyro_devices::virtio::VirtioDevice;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// A VM whose vCPUs are parked; they run again when this is dropped (if
/// the freeze is what paused them: a VM paused before stays paused).
pub struct Frozen<'a> {
    vm: &'a mut Vm,
    paused_here: bool,
    /// One per entry of the config's devices, in slot order.
    transports: Vec<Arc<Mutex<MmioTransport>>>,
    devices: Vec<Arc<Mutex<dyn VirtioDevice>>>,
}

/// Every virtio device of a frozen VM, locked, in slot order.
pub type DeviceGuards<'a> = Vec<MutexGuard<'a, dyn VirtioDevice + 'static>>;

impl Vm {
    /// Parks the vCPUs (unless the VM is paused already) and hands back a
    /// guard through which device state and guest memory can be read
    /// consistently; dropping it resumes the vCPUs if it paused them.
    /// Fails if the guest has stopped (its devices are gone).
    pub fn freeze(&mut self) -> Result<Frozen<'_>, Error> {
        let transports: Vec<_> = self
            .transports
            .iter()
            .map(Weak::upgrade)
            .collect::<Option<_>>()
            .ok_or(Error::Stopped)?;
        let devices = transports.iter().map(|t| lock(t).device_handle()).collect();
        let paused_here = !self.is_paused();
        if paused_here {
            self.pause()?;
        }
        Ok(Frozen {
            vm: self,
            paused_here,
            transports,
            devices,
        })
    }

    /// Writes a snapshot of the running VM to `dir` (created if needed):
    /// freezes it, saves vCPUs, in-kernel devices, clocks, our devices and
    /// guest memory, and leaves it paused or running as it found it. A
    /// failure leaves no `snapshot.json` in `dir`, so nothing can restore
    /// half a snapshot.
    pub fn snapshot(&mut self, dir: &Path) -> Result<u64, Error> {
        let fail = |detail: String| Error::Snapshot {
            path: dir.to_path_buf(),
            detail,
        };
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
        match std::fs::remove_file(dir.join(snapshot::STATE_FILE)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(e.to_string())),
        }
        self.freeze()?.write_snapshot(dir)
    }

    /// Copies the writable disk `source` (one of this VM's block
    /// devices) to `dest` as it is at one instant: freezes the VM, makes
    /// sure the device's writes are on the file, copies it sparse-aware
    /// ([`crate::disk::sparse_copy`]: `dest` is whole or absent), and
    /// thaws. Returns the bytes copied (allocated ranges only).
    pub fn copy_disk(&mut self, source: &Path, dest: &Path) -> Result<u64, Error> {
        let slot = self.writable_disk_slot(source)?;
        // The copy is renamed over `dest`: never over a disk in use.
        if let Ok(dest) = std::fs::canonicalize(dest) {
            if self
                .config
                .disks()
                .any(|d| std::fs::canonicalize(&d.path).is_ok_and(|p| p == dest))
            {
                return Err(Error::CopyOverDisk { path: dest });
            }
        }
        let frozen = self.freeze()?;
        let devices = frozen.lock_devices();
        devices[slot].sync_backend().map_err(|e| Error::Disk {
            path: source.to_path_buf(),
            source: e,
        })?;
        let copied = crate::disk::sparse_copy(source, dest).map_err(|e| Error::DiskCopy {
            from: source.to_path_buf(),
            to: dest.to_path_buf(),
            source: e,
        })?;
        drop(devices);
        drop(frozen);
        Ok(copied)
    }

    /// The slot of the writable block device whose file is `path`.
    fn writable_disk_slot(&self, path: &Path) -> Result<usize, Error> {
        let wanted = std::fs::canonicalize(path).map_err(|e| Error::Disk {
            path: path.to_path_buf(),
            source: e,
        })?;
        self.config
            .devices
            .iter()
            .position(|d| match d {
                DeviceConfig::Block(disk) => {
                    !disk.read_only && std::fs::canonicalize(&disk.path).is_ok_and(|p| p == wanted)
                }
                _ => false,
            })
            .ok_or_else(|| Error::NotAWritableDisk {
                path: path.to_path_buf(),
            })
    }
}

impl Frozen<'_> {
    /// Locks every virtio device (see the module's lock order). While
    /// the guards live, the event thread cannot touch a queue or guest
    /// memory.
    pub fn lock_devices(&self) -> DeviceGuards<'_> {
        self.devices.iter().map(|d| lock(d)).collect()
    }

    /// Guest RAM.
    pub fn memory(&self) -> &GuestMem {
        &self.vm.mem
    }

    pub fn config(&self) -> &VmConfig {
        &self.vm.config
    }

    /// Writes the snapshot files into `dir` (which exists and holds no
    /// state file); the state file last.
    fn write_snapshot(&self, dir: &Path) -> Result<u64, Error> {
        let vcpus = self.vm.pause.save_all(self.vm.config.vcpus.into())?;
        let vm = snapshot::save_vm(&self.vm.vm_fd)?;
        // Devices first, then each transport: the order of the module
        // doc, safe with the vCPUs parked.
        let guards = self.lock_devices();
        let transports = self
            .transports
            .iter()
            .zip(&guards)
            .map(|(t, dev)| lock(t).snapshot(&**dev))
            .collect();
        let serial = lock(&self.vm.serial).snapshot();
        let memory_bytes = snapshot::save_memory(self.memory(), &snapshot::memory_path(dir))?;
        drop(guards);
        Snapshot {
            version: snapshot::FORMAT_VERSION,
            origin: Origin::current(&self.vm.config),
            config: self.vm.config.clone(),
            cmdline: self.vm.cmdline.clone(),
            vcpus,
            vm,
            serial,
            transports,
            memory_id: snapshot::file_id(&snapshot::memory_path(dir)),
        }
        .write(dir)?;
        Ok(memory_bytes)
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        if self.paused_here {
            self.vm.resume();
        }
    }
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
