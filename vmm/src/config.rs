//! What a VM is made of: [`VmConfig`], with its devices as one ordered
//! list ([`DeviceConfig`]). Slots, the kernel command line, the snapshot
//! layout check and the builder's attach step all walk that list.

use crate::error::Error;
use crate::host::HostKind;
use crate::kernel_cmdline::KernelCmdline;
use crate::limits;
pub use pyro_net::stack::NetConfig;
use pyro_proto::cmdline::INIT_PATH;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A block device for the guest; the first one is the root filesystem.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Disk {
    pub path: PathBuf,
    pub read_only: bool,
    /// The guest reads it only with direct I/O (a workspace's staging
    /// disk), so none of it is in the guest's page cache: a snapshot may
    /// be restored with another file in its place even when it is
    /// read-only (see `snapshot::Origin`).
    #[serde(default)]
    pub direct_only: bool,
}

/// The guest's vsock device and its host side.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VsockConfig {
    /// The guest's context id (3 or more).
    pub cid: u64,
    /// Host clients connect here (`CONNECT <port>\n`); guest connections
    /// to host port P go to `<uds>_P`.
    pub uds: PathBuf,
}

/// One virtio device, in the order the guest sees them (one MMIO slot
/// each). Adding a device kind is one arm here and one `attach_*` in the
/// builder.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeviceConfig {
    Block(Disk),
    Vsock(VsockConfig),
    /// virtio-net with the VMM's user-space stack behind it.
    Net(NetConfig),
}

impl DeviceConfig {
    /// The device kind, as layout checks and messages name it.
    pub fn kind(&self) -> &'static str {
        match self {
            DeviceConfig::Block(_) => "block",
            DeviceConfig::Vsock(_) => "vsock",
            DeviceConfig::Net(_) => "net",
        }
    }
}

/// Everything needed to start a VM.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmConfig {
    /// ELF `vmlinux`.
    pub kernel: PathBuf,
    pub mem_mib: u32,
    pub vcpus: u8,
    /// The virtio devices, in slot order. The first [`DeviceConfig::Block`]
    /// is mounted as `/` (read-only when the disk is) and its
    /// `/opt/pyro/bin/pyro-init` runs as PID 1.
    pub devices: Vec<DeviceConfig>,
    /// Appended to the kernel command line.
    pub cmdline_extra: Vec<String>,
    /// Serial console log file (created or truncated).
    pub serial_log: Option<PathBuf>,
    /// The most the console log holds before it rotates to `<log>.1`
    /// (one old file kept): a guest printing without end costs the host
    /// two files of this size at most ([`limits::CONSOLE_LOG_BYTES`]).
    #[serde(default = "default_serial_log_max_bytes")]
    pub serial_log_max_bytes: u64,
    /// Also copy the console to our stderr.
    pub serial_echo: bool,
    pub host: HostKind,
}

/// Configs saved before the cap existed (snapshots) get the default.
fn default_serial_log_max_bytes() -> u64 {
    limits::CONSOLE_LOG_BYTES.default
}

impl VmConfig {
    pub const DEFAULT_MEM_MIB: u32 = limits::MEM_MIB.default;
    pub const MAX_VCPUS: u8 = limits::VCPUS.max;

    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        Self {
            kernel: kernel.into(),
            mem_mib: Self::DEFAULT_MEM_MIB,
            vcpus: limits::VCPUS.default,
            devices: Vec::new(),
            cmdline_extra: Vec::new(),
            serial_log: None,
            serial_log_max_bytes: limits::CONSOLE_LOG_BYTES.default,
            serial_echo: false,
            host: HostKind::detect(),
        }
    }

    /// Guest RAM in bytes.
    pub fn mem_bytes(&self) -> u64 {
        u64::from(self.mem_mib) << 20
    }

    /// Adds a block device after the devices already there.
    pub fn add_disk(&mut self, disk: Disk) {
        self.devices.push(DeviceConfig::Block(disk));
    }

    /// Gives the VM this vsock device: replaces the one it has (keeping
    /// its slot), or adds one after the other devices.
    pub fn set_vsock(&mut self, vsock: VsockConfig) {
        match self
            .devices
            .iter_mut()
            .find(|d| matches!(d, DeviceConfig::Vsock(_)))
        {
            Some(slot) => *slot = DeviceConfig::Vsock(vsock),
            None => self.devices.push(DeviceConfig::Vsock(vsock)),
        }
    }

    /// Gives the VM this network: replaces its net device's config
    /// (keeping the slot), or adds one after the other devices.
    pub fn set_net(&mut self, net: NetConfig) {
        match self
            .devices
            .iter_mut()
            .find(|d| matches!(d, DeviceConfig::Net(_)))
        {
            Some(slot) => *slot = DeviceConfig::Net(net),
            None => self.devices.push(DeviceConfig::Net(net)),
        }
    }

    /// The net device's config, if the VM has one.
    pub fn net(&self) -> Option<&NetConfig> {
        self.devices.iter().find_map(|d| match d {
            DeviceConfig::Net(n) => Some(n),
            _ => None,
        })
    }

    /// The block devices, in slot order.
    pub fn disks(&self) -> impl Iterator<Item = &Disk> {
        self.devices.iter().filter_map(|d| match d {
            DeviceConfig::Block(disk) => Some(disk),
            _ => None,
        })
    }

    /// The root disk: the first block device.
    pub fn root(&self) -> Option<&Disk> {
        self.disks().next()
    }

    /// The vsock device, if the VM has one.
    pub fn vsock(&self) -> Option<&VsockConfig> {
        self.devices.iter().find_map(|d| match d {
            DeviceConfig::Vsock(v) => Some(v),
            _ => None,
        })
    }

    /// The device kinds in slot order: what a snapshot's layout must match.
    pub fn layout(&self) -> Vec<&'static str> {
        self.devices.iter().map(DeviceConfig::kind).collect()
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        limits::MEM_MIB.check(self.mem_mib).map_err(Error::Config)?;
        limits::VCPUS.check(self.vcpus).map_err(Error::Config)?;
        limits::CONSOLE_LOG_BYTES
            .check(self.serial_log_max_bytes)
            .map_err(Error::Config)?;
        for device in &self.devices {
            if let DeviceConfig::Vsock(v) = device {
                if v.cid < 3 {
                    return Err(Error::Config(format!(
                        "vsock cid must be 3 or more, got {}",
                        v.cid
                    )));
                }
            }
        }
        for kind in ["vsock", "net"] {
            if self.devices.iter().filter(|d| d.kind() == kind).count() > 1 {
                return Err(Error::Config(format!("at most one {kind} device")));
            }
        }
        Ok(())
    }

    /// The kernel command line this config boots with.
    pub fn cmdline(&self) -> KernelCmdline {
        let mut line = KernelCmdline::new(self.host);
        if let Some(root) = self.root() {
            line.push("root=/dev/vda");
            line.push("rootfstype=ext4");
            line.push(if root.read_only { "ro" } else { "rw" });
            line.push(format!("init={INIT_PATH}"));
        }
        for word in &self.cmdline_extra {
            line.push(word.clone());
        }
        line
    }
}
