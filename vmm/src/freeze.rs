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
//! running: `write_snapshot`, the one place that does, checks first that
//! every vCPU is parked (`Pause::all_parked`) and refuses otherwise.

use crate::error::Error;
use crate::memory::GuestMem;
use crate::snapshot::{self, Origin, Snapshot};
use crate::{DeviceConfig, Vm, VmConfig};
use pyro_devices::virtio::mmio::MmioTransport;
use pyro_devices::virtio::VirtioDevice;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// A point-in-time copy of one of the VM's writable disks (`source`, its
/// file) to `dest`, which must be none of the VM's disks: `dest` is
/// whole or absent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DiskCopy {
    pub source: PathBuf,
    pub dest: PathBuf,
}

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
        self.snapshot_with_disks(dir, &[]).map(|(memory, _)| memory)
    }

    /// [`Vm::snapshot`], and in the same freeze a copy of each of
    /// `disks` (see [`Vm::copy_disk`]): memory and disks of one instant,
    /// so a VM restored from the snapshot onto the copies finds its page
    /// cache and its disks agreeing (a fork). Returns the memory bytes
    /// written and the disk bytes copied. A failure leaves no
    /// `snapshot.json`; copies already made stay, for the caller to
    /// remove.
    pub fn snapshot_with_disks(
        &mut self,
        dir: &Path,
        disks: &[DiskCopy],
    ) -> Result<(u64, u64), Error> {
        let slots = disks
            .iter()
            .map(|copy| self.copy_slot(copy))
            .collect::<Result<Vec<_>, _>>()?;
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
        let copies: Vec<_> = slots.into_iter().zip(disks).collect();
        self.freeze()?.write_snapshot(dir, &copies)
    }

    /// Copies the writable disk `source` (one of this VM's block
    /// devices) to `dest` as it is at one instant: freezes the VM, makes
    /// sure the device's writes are on the file, copies it sparse-aware
    /// ([`crate::disk::sparse_copy`]: `dest` is whole or absent), and
    /// thaws. Returns the bytes copied (allocated ranges only).
    pub fn copy_disk(&mut self, source: &Path, dest: &Path) -> Result<u64, Error> {
        let copy = DiskCopy {
            source: source.to_path_buf(),
            dest: dest.to_path_buf(),
        };
        let slot = self.copy_slot(&copy)?;
        let frozen = self.freeze()?;
        let devices = frozen.lock_devices();
        copy_locked(&devices, slot, &copy)
    }

    /// The slot of `copy`'s source, checked to be a writable disk of
    /// this VM, with `dest` none of its disks (the copy is renamed over
    /// `dest`: never over a disk in use).
    fn copy_slot(&self, copy: &DiskCopy) -> Result<usize, Error> {
        let slot = self.writable_disk_slot(&copy.source)?;
        if let Ok(dest) = std::fs::canonicalize(&copy.dest) {
            if self
                .config
                .disks()
                .any(|d| std::fs::canonicalize(&d.path).is_ok_and(|p| p == dest))
            {
                return Err(Error::CopyOverDisk { path: dest });
            }
        }
        Ok(slot)
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
    /// state file), and copies the disks of `copies` (slot and copy)
    /// with the devices locked for both; the state file last.
    fn write_snapshot(
        &self,
        dir: &Path,
        copies: &[(usize, &DiskCopy)],
    ) -> Result<(u64, u64), Error> {
        let vcpus = self.vm.pause.save_all(self.vm.config.vcpus.into())?;
        let vm = snapshot::save_vm(&self.vm.vm_fd)?;
        // The transports are locked after the devices below, against the
        // vCPUs' order: checked here, not assumed. Only this thread
        // releases the pause, so it holds until the locks are dropped.
        if !self.vm.pause.all_parked(self.vm.config.vcpus.into()) {
            return Err(Error::Config(
                "a snapshot needs every vCPU parked (the lock order in vmm/src/freeze.rs)".into(),
            ));
        }
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
        let mut disk_bytes = 0;
        for (slot, copy) in copies {
            disk_bytes += copy_locked(&guards, *slot, copy)?;
        }
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
        Ok((memory_bytes, disk_bytes))
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        if self.paused_here {
            self.vm.resume();
        }
    }
}

/// Copies disk `copy.source`, the block device in `slot`, with every
/// device locked (`devices`): its writes made durable first, then a
/// sparse-aware copy (`dest` whole or absent). Returns the bytes copied.
fn copy_locked(devices: &DeviceGuards<'_>, slot: usize, copy: &DiskCopy) -> Result<u64, Error> {
    devices[slot].sync_backend().map_err(|e| Error::Disk {
        path: copy.source.clone(),
        source: e,
    })?;
    crate::disk::sparse_copy(&copy.source, &copy.dest).map_err(|e| Error::DiskCopy {
        from: copy.source.clone(),
        to: copy.dest.clone(),
        source: e,
    })
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
