//! VM snapshots: what a paused VM is made of (vCPU and in-kernel device
//! state, clocks, each virtio transport's registers with its device's own
//! state, guest memory), how it is written to a directory, and the checks
//! that refuse to restore a snapshot into a VMM, kernel or device layout
//! it was not made for.
//!
//! A snapshot directory holds `snapshot.json` (this module's
//! [`Snapshot`], serde) and `memory.bin` (guest RAM, regions back to back,
//! sparse where the guest's pages are zero). Restore maps `memory.bin`
//! MAP_PRIVATE, so many VMs share its clean pages and none can change it.

use crate::error::Error;
use crate::memory::GuestMem;
use crate::VmConfig;
use kvm_bindings::{
    kvm_clock_data, kvm_irqchip, kvm_lapic_state, kvm_mp_state, kvm_msr_entry, kvm_pit_state2,
    kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave, Msrs, KVM_IRQCHIP_IOAPIC,
    KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
};
use kvm_ioctls::{VcpuFd, VmFd};
use pyro_devices::serial::SerialSnapshot;
use pyro_devices::virtio::mmio::TransportSnapshot;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use vm_memory::{Address, Bytes, GuestMemoryBackend, GuestMemoryRegion};

/// Bumped whenever anything below changes meaning. 3: the config's
/// devices are one list; each virtio slot keeps its device's own state.
pub const FORMAT_VERSION: u32 = 4;
pub const STATE_FILE: &str = "snapshot.json";
pub const MEMORY_FILE: &str = "memory.bin";
const PAGE: usize = 4096;

/// Everything but guest memory.
#[derive(Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    /// What made it; a restore refuses a snapshot from another VMM build
    /// or host kernel (KVM state formats and MSR sets differ).
    pub origin: Origin,
    /// The config the VM was booted with (paths may differ on restore;
    /// the device layout may not).
    pub config: VmConfig,
    pub cmdline: String,
    pub vcpus: Vec<VcpuState>,
    pub vm: VmState,
    pub serial: SerialSnapshot,
    /// One per virtio-mmio slot, in slot order.
    pub transports: Vec<TransportSnapshot>,
    /// [`file_id`] of the `memory.bin` written with this state: a
    /// restore that opened another one (the snapshot was taken again
    /// between its two reads) refuses instead of pairing one VM's state
    /// with another's memory.
    #[serde(default)]
    pub memory_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub vmm: String,
    pub host_kernel: String,
    /// Size and mtime of the guest kernel file: the kernel in memory must
    /// be the one the config names.
    pub guest_kernel: String,
    /// [`file_id`]s of the read-only disks, in order: the guest's page
    /// cache holds their blocks, so they must be the same images. (A
    /// writable disk may be another one: a workspace's disk takes the
    /// place of an empty one; so may a disk the guest reads only with
    /// direct I/O, [`crate::Disk::direct_only`].)
    pub read_only_disks: Vec<String>,
}

impl Origin {
    /// The origin a VM of `config` has when this process runs it.
    pub fn current(config: &VmConfig) -> Origin {
        Origin {
            vmm: vmm_build_id(),
            host_kernel: host_kernel().to_string(),
            guest_kernel: file_id(&config.kernel),
            read_only_disks: config
                .disks()
                .filter(|d| d.read_only && !d.direct_only)
                .map(|d| file_id(&d.path))
                .collect(),
        }
    }

    /// Why a snapshot made at this origin cannot be restored at `here`,
    /// if it cannot.
    pub fn mismatch(&self, here: &Origin) -> Option<String> {
        let pairs = [
            ("pyro build", &self.vmm, &here.vmm),
            ("host kernel", &self.host_kernel, &here.host_kernel),
            ("guest kernel", &self.guest_kernel, &here.guest_kernel),
        ];
        for (what, then, now) in pairs {
            if then != now {
                return Some(format!(
                    "made by {what} {then:?}, this is {now:?}; take the snapshot again"
                ));
            }
        }
        (self.read_only_disks != here.read_only_disks).then(|| {
            format!(
                "made with read-only disks {:?}, these are {:?} (a rebuilt image?); take the \
                 snapshot again",
                self.read_only_disks, here.read_only_disks
            )
        })
    }
}

/// This VMM build: crate version plus the running binary's size and
/// mtime (a rebuilt binary may lay out device state differently).
/// The host kernel's release, read once: a confined VMM thread may not
/// open /proc files (the builder reads it before confinement).
pub(crate) fn host_kernel() -> &'static str {
    static RELEASE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    RELEASE.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string()
    })
}

pub fn vmm_build_id() -> String {
    vmm_build_id_of(&std::env::current_exe().unwrap_or_default())
}

/// [`vmm_build_id`] as the VMM binary `exe`, of this crate version, will
/// report it: the key of snapshots another process takes and restores.
pub fn vmm_build_id_of(exe: &Path) -> String {
    format!("{} {}", env!("CARGO_PKG_VERSION"), file_id(exe))
}

/// A file's identity for cache keys: inode, size, mtime (empty if it
/// cannot be read). Kernels and images are replaced, never edited.
pub fn file_id(path: &Path) -> String {
    std::fs::metadata(path).map_or(String::new(), |m| metadata_id(&m))
}

/// [`file_id`] of a file already open.
pub fn open_file_id(file: &std::fs::File) -> String {
    file.metadata().map_or(String::new(), |m| metadata_id(&m))
}

fn metadata_id(m: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!("{}:{}:{}.{}", m.ino(), m.len(), m.mtime(), m.mtime_nsec())
}

#[derive(Serialize, Deserialize)]
pub struct VcpuState {
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub xsave: kvm_xsave,
    pub xcrs: Option<kvm_xcrs>,
    pub msrs: Vec<kvm_msr_entry>,
    pub lapic: kvm_lapic_state,
    pub events: kvm_vcpu_events,
    pub mp_state: kvm_mp_state,
}

#[derive(Serialize, Deserialize)]
pub struct VmState {
    pub pic_master: kvm_irqchip,
    pub pic_slave: kvm_irqchip,
    pub ioapic: kvm_irqchip,
    pub pit: kvm_pit_state2,
    pub clock: kvm_clock_data,
}

fn kvm(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |source| Error::Kvm { op, source }
}

/// Reads a parked vCPU's state. Runs on the vCPU's own thread: first a
/// KVM_RUN with immediate_exit, which completes an MMIO or port read we
/// answered but the guest has not yet consumed (it would be lost).
pub fn save_vcpu(fd: &mut VcpuFd, msr_index: &[u32]) -> Result<VcpuState, Error> {
    fd.set_kvm_immediate_exit(1);
    let _ = fd.run();
    fd.set_kvm_immediate_exit(0);
    Ok(VcpuState {
        regs: fd.get_regs().map_err(kvm("KVM_GET_REGS"))?,
        sregs: fd.get_sregs().map_err(kvm("KVM_GET_SREGS"))?,
        xsave: fd.get_xsave().map_err(kvm("KVM_GET_XSAVE"))?,
        xcrs: fd.get_xcrs().ok(),
        msrs: save_msrs(fd, msr_index)?,
        lapic: fd.get_lapic().map_err(kvm("KVM_GET_LAPIC"))?,
        events: fd.get_vcpu_events().map_err(kvm("KVM_GET_VCPU_EVENTS"))?,
        mp_state: fd.get_mp_state().map_err(kvm("KVM_GET_MP_STATE"))?,
    })
}

/// Every MSR KVM lists that it will also read back; KVM_GET_MSRS stops at
/// the first it refuses, so that one is skipped and the rest read again.
fn save_msrs(fd: &VcpuFd, index: &[u32]) -> Result<Vec<kvm_msr_entry>, Error> {
    let mut out = Vec::with_capacity(index.len());
    let mut rest = index;
    while !rest.is_empty() {
        let entries: Vec<kvm_msr_entry> = rest
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs =
            Msrs::from_entries(&entries).map_err(|e| Error::Config(format!("MSR list: {e:?}")))?;
        let read = fd.get_msrs(&mut msrs).map_err(kvm("KVM_GET_MSRS"))?;
        out.extend_from_slice(&msrs.as_slice()[..read]);
        rest = &rest[(read + 1).min(rest.len())..];
    }
    Ok(out)
}

/// Loads a vCPU's state, in the order KVM needs (MP state and registers
/// first, the LAPIC before the MSRs, events last).
pub fn restore_vcpu(fd: &VcpuFd, s: &VcpuState) -> Result<(), Error> {
    fd.set_mp_state(s.mp_state)
        .map_err(kvm("KVM_SET_MP_STATE"))?;
    fd.set_regs(&s.regs).map_err(kvm("KVM_SET_REGS"))?;
    fd.set_sregs(&s.sregs).map_err(kvm("KVM_SET_SREGS"))?;
    // SAFETY: `s.xsave` is a whole `kvm_xsave` read back by KVM_GET_XSAVE
    // (serde restores it byte for byte), so it has the legacy size KVM_SET_XSAVE reads;
    // KVM validates its contents.
    unsafe { fd.set_xsave(&s.xsave) }.map_err(kvm("KVM_SET_XSAVE"))?;
    if let Some(xcrs) = &s.xcrs {
        fd.set_xcrs(xcrs).map_err(kvm("KVM_SET_XCRS"))?;
    }
    // The LAPIC before the MSRs: KVM ignores a TSC-deadline MSR write
    // unless the LAPIC timer is already in deadline mode, and a lost
    // deadline is a guest whose timers never fire again (`sleep 1` hangs).
    fd.set_lapic(&s.lapic).map_err(kvm("KVM_SET_LAPIC"))?;
    let msrs =
        Msrs::from_entries(&s.msrs).map_err(|e| Error::Config(format!("MSR list: {e:?}")))?;
    let written = fd.set_msrs(&msrs).map_err(kvm("KVM_SET_MSRS"))?;
    if written != s.msrs.len() {
        return Err(Error::Config(format!(
            "KVM refused MSR {:#x} from the snapshot",
            s.msrs[written].index
        )));
    }
    fd.set_vcpu_events(&s.events)
        .map_err(kvm("KVM_SET_VCPU_EVENTS"))?;
    Ok(())
}

pub fn save_vm(vm: &VmFd) -> Result<VmState, Error> {
    let chip = |id| -> Result<kvm_irqchip, Error> {
        let mut c = kvm_irqchip {
            chip_id: id,
            ..Default::default()
        };
        vm.get_irqchip(&mut c).map_err(kvm("KVM_GET_IRQCHIP"))?;
        Ok(c)
    };
    Ok(VmState {
        pic_master: chip(KVM_IRQCHIP_PIC_MASTER)?,
        pic_slave: chip(KVM_IRQCHIP_PIC_SLAVE)?,
        ioapic: chip(KVM_IRQCHIP_IOAPIC)?,
        pit: vm.get_pit2().map_err(kvm("KVM_GET_PIT2"))?,
        clock: vm.get_clock().map_err(kvm("KVM_GET_CLOCK"))?,
    })
}

/// The guest's clock resumes where it stopped (no jump backwards, no
/// lost time inside the guest); guest-init sets the wall clock from the
/// host when the host first talks to a restored guest.
pub fn restore_vm(vm: &VmFd, s: &VmState) -> Result<(), Error> {
    for chip in [&s.pic_master, &s.pic_slave, &s.ioapic] {
        vm.set_irqchip(chip).map_err(kvm("KVM_SET_IRQCHIP"))?;
    }
    vm.set_pit2(&s.pit).map_err(kvm("KVM_SET_PIT2"))?;
    let clock = kvm_clock_data {
        clock: s.clock.clock,
        ..Default::default()
    };
    vm.set_clock(&clock).map_err(kvm("KVM_SET_CLOCK"))
}

/// Writes guest RAM to `path`, leaving holes for zero pages. The caller
/// holds every device (a [`crate::Frozen`] VM) so nothing writes guest
/// memory meanwhile.
pub fn save_memory(mem: &GuestMem, path: &Path) -> Result<u64, Error> {
    let err = |e: std::io::Error| Error::Snapshot {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let file = std::fs::File::create(path).map_err(err)?;
    let mut offset = 0u64;
    let mut page = [0u8; PAGE];
    for region in mem.iter() {
        let len = region.len();
        let mut at = 0u64;
        while at < len {
            let n = (len - at).min(PAGE as u64) as usize;
            mem.read_slice(&mut page[..n], region.start_addr().unchecked_add(at))
                .map_err(|e| err(std::io::Error::other(e.to_string())))?;
            if page[..n].iter().any(|b| *b != 0) {
                file.write_all_at(&page[..n], offset + at).map_err(err)?;
            }
            at += n as u64;
        }
        offset += len;
    }
    file.set_len(offset).map_err(err)?;
    file.sync_all().map_err(err)?;
    Ok(offset)
}

impl Snapshot {
    /// Writes `snapshot.json` atomically (temp + rename), last, so a
    /// directory with a state file always has its memory file complete.
    pub fn write(&self, dir: &Path) -> Result<(), Error> {
        let path = dir.join(STATE_FILE);
        let err = |e: std::io::Error| Error::Snapshot {
            path: path.clone(),
            detail: e.to_string(),
        };
        let tmp = dir.join(format!("{STATE_FILE}.tmp"));
        let bytes = serde_json::to_vec(self).map_err(|e| err(std::io::Error::other(e)))?;
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(&bytes).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)
    }

    /// Reads the state file of the snapshot in `dir`: an error if it is
    /// missing, damaged or of another format version. Says nothing about
    /// whether this VMM can restore it (see [`Snapshot::load`]).
    pub fn read(dir: &Path) -> Result<Snapshot, Error> {
        let path = dir.join(STATE_FILE);
        let fail = |detail: String| Error::Snapshot {
            path: path.clone(),
            detail,
        };
        let bytes = std::fs::read(&path).map_err(|e| fail(e.to_string()))?;
        let other_version = |version: u32| {
            fail(format!(
                "format version {version} but this pyro reads version {FORMAT_VERSION}; take it again"
            ))
        };
        let snap: Snapshot = match serde_json::from_slice(&bytes) {
            Ok(snap) => snap,
            Err(e) => {
                // A snapshot of another format may not parse as this one:
                // say which format it is rather than "damaged".
                #[derive(Deserialize)]
                struct Versioned {
                    version: u32,
                }
                return Err(match serde_json::from_slice::<Versioned>(&bytes) {
                    Ok(v) if v.version != FORMAT_VERSION => other_version(v.version),
                    _ => fail(format!(
                        "damaged or not a pyro snapshot ({e}); take it again"
                    )),
                });
            }
        };
        if snap.version != FORMAT_VERSION {
            return Err(other_version(snap.version));
        }
        Ok(snap)
    }

    /// Reads and checks a snapshot for `config`: a damaged file, another
    /// format, VMM build, host kernel, guest kernel or device layout, or a
    /// memory file of the wrong size gets an error saying which.
    pub fn load(dir: &Path, config: &VmConfig) -> Result<Snapshot, Error> {
        let snap = Snapshot::read(dir)?;
        let fail = |detail: String| Error::Snapshot {
            path: dir.join(STATE_FILE),
            detail,
        };
        if let Some(why) = snap.origin.mismatch(&Origin::current(config)) {
            return Err(fail(why));
        }
        let c = &snap.config;
        let layout = |c: &VmConfig| (c.mem_mib, c.vcpus, c.layout(), c.host);
        if layout(c) != layout(config) {
            return Err(fail(format!(
                "made for {} MiB, {} vCPU(s), devices [{}]; asked for {} MiB, {} vCPU(s), devices [{}]",
                c.mem_mib,
                c.vcpus,
                c.layout().join(", "),
                config.mem_mib,
                config.vcpus,
                config.layout().join(", "),
            )));
        }
        if snap.vcpus.len() != usize::from(config.vcpus) {
            return Err(fail("vCPU states do not match the vCPU count".into()));
        }
        let memory = memory_path(dir);
        let len = std::fs::metadata(&memory)
            .map_err(|e| fail(format!("{}: {e}", memory.display())))?
            .len();
        if len != u64::from(config.mem_mib) << 20 {
            return Err(fail(format!(
                "{} is {len} bytes, expected {}",
                memory.display(),
                u64::from(config.mem_mib) << 20
            )));
        }
        Ok(snap)
    }
}

pub fn memory_path(dir: &Path) -> PathBuf {
    dir.join(MEMORY_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_error(json: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), json).unwrap();
        match Snapshot::read(dir.path()) {
            Ok(_) => panic!("{json} was read"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn an_older_format_is_named_not_called_damaged() {
        // Format 2 had `disks` and `vsock` fields, not `devices`.
        let err = read_error(r#"{"version":2,"config":{"disks":[],"vsock":null}}"#);
        assert!(err.contains("format version 2"), "{err}");
        let err = read_error("not json");
        assert!(err.contains("damaged or not a pyro snapshot"), "{err}");
    }

    #[test]
    fn only_cached_read_only_disks_must_be_the_same_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "vmlinux",
            "root",
            "root2",
            "work-a",
            "work-b",
            "staging-a",
            "staging-b",
        ] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        let file = |name: &str| dir.path().join(name);
        let disk = |path: PathBuf, read_only, direct_only| crate::Disk {
            path,
            read_only,
            direct_only,
        };
        let config = |staging: &str, work: &str| {
            let mut c = VmConfig::new(file("vmlinux"));
            c.add_disk(disk(file("root"), true, false));
            c.add_disk(disk(file(work), false, false));
            c.add_disk(disk(file(staging), true, true));
            c
        };
        let taken = Origin::current(&config("staging-a", "work-a"));
        assert_eq!(taken.read_only_disks.len(), 1, "the root image only");
        let here = Origin::current(&config("staging-b", "work-b"));
        assert_eq!(taken.mismatch(&here), None);
        let mut other_root = config("staging-a", "work-a");
        other_root.devices[0] = crate::DeviceConfig::Block(disk(file("root2"), true, false));
        let why = taken.mismatch(&Origin::current(&other_root)).unwrap();
        assert!(why.contains("read-only disks"), "{why}");
    }
}
