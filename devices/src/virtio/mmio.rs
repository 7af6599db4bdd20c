//! The virtio-mmio transport, version 2 ("modern") register layout.
//!
//! Locks: a vCPU's register access holds this transport's lock and takes
//! the device's inside it (transport, then device). Whoever takes them the
//! other way round (a snapshot) must have the vCPUs parked: see
//! `pyro_vmm`'s `freeze` module.

use super::persist::{restore_queues, DeviceState, RestoreContext, RestoreError};
use super::{GuestMem, Interrupt, QueueSnapshot, VirtioDevice, INT_CONFIG, INT_USED_RING};
use crate::BusDevice;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use virtio_queue::{Queue, QueueT};

const MAGIC: u32 = 0x7472_6976; // "virt"
const VERSION: u32 = 2;
const VENDOR: u32 = 0x5059_524f; // "PYRO"

// Register offsets.
const R_MAGIC: u64 = 0x000;
const R_VERSION: u64 = 0x004;
const R_DEVICE_ID: u64 = 0x008;
const R_VENDOR_ID: u64 = 0x00c;
const R_DEVICE_FEATURES: u64 = 0x010;
const R_DEVICE_FEATURES_SEL: u64 = 0x014;
const R_DRIVER_FEATURES: u64 = 0x020;
const R_DRIVER_FEATURES_SEL: u64 = 0x024;
const R_QUEUE_SEL: u64 = 0x030;
const R_QUEUE_NUM_MAX: u64 = 0x034;
const R_QUEUE_NUM: u64 = 0x038;
const R_QUEUE_READY: u64 = 0x044;
/// Handled by an ioeventfd in KVM; a write that still reaches us is ignored.
pub const R_QUEUE_NOTIFY: u64 = 0x050;
const R_INTERRUPT_STATUS: u64 = 0x060;
const R_INTERRUPT_ACK: u64 = 0x064;
const R_STATUS: u64 = 0x070;
const R_QUEUE_DESC_LOW: u64 = 0x080;
const R_QUEUE_DESC_HIGH: u64 = 0x084;
const R_QUEUE_AVAIL_LOW: u64 = 0x090;
const R_QUEUE_AVAIL_HIGH: u64 = 0x094;
const R_QUEUE_USED_LOW: u64 = 0x0a0;
const R_QUEUE_USED_HIGH: u64 = 0x0a4;
const R_CONFIG_GENERATION: u64 = 0x0fc;
const R_CONFIG: u64 = 0x100;

// Device status bits.
const S_FEATURES_OK: u32 = 8;
const S_DRIVER_OK: u32 = 4;
const S_FAILED: u32 = 128;

pub struct MmioTransport {
    device: Arc<Mutex<dyn VirtioDevice>>,
    mem: GuestMem,
    interrupt: Interrupt,
    queues: Vec<Queue>,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    status: u32,
    active: bool,
    /// Bumped whenever the device's config space changes under the
    /// driver (the ConfigGeneration register), so a multi-word read that
    /// straddles a change is retried.
    config_generation: u32,
    /// Set by a restore whose device config differs from the snapshot's;
    /// the driver is told once the vCPUs run.
    config_changed: bool,
}

/// How much of a device's config space a snapshot keeps to compare: our
/// devices' spaces are smaller (block: 8 bytes, vsock: 8).
const CONFIG_SNAPSHOT_LEN: usize = 64;

impl MmioTransport {
    pub fn new(device: Arc<Mutex<dyn VirtioDevice>>, mem: GuestMem, interrupt: Interrupt) -> Self {
        let queues = Self::fresh_queues(&device);
        Self {
            device,
            mem,
            interrupt,
            queues,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            status: 0,
            active: false,
            config_generation: 0,
            config_changed: false,
        }
    }

    fn fresh_queues(device: &Arc<Mutex<dyn VirtioDevice>>) -> Vec<Queue> {
        let dev = device.lock().unwrap_or_else(|p| p.into_inner());
        dev.queue_max_sizes()
            .iter()
            // Sizes come from our own devices (powers of two <= 32768).
            .map(|&max| Queue::new(max).expect("device queue size is a power of two"))
            .collect()
    }

    fn device(&self) -> std::sync::MutexGuard<'_, dyn VirtioDevice + 'static> {
        self.device.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The selected queue, only while the driver may still configure it.
    fn configurable_queue(&mut self) -> Option<&mut Queue> {
        if self.active {
            return None;
        }
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn reset(&mut self) {
        if self.active {
            self.device().reset();
        }
        self.queues = Self::fresh_queues(&self.device);
        self.active = false;
        self.status = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        self.interrupt.ack(INT_USED_RING | INT_CONFIG);
    }

    fn set_status(&mut self, status: u32) {
        if status == 0 {
            self.reset();
            return;
        }
        // FEATURES_OK only sticks if the driver accepted VERSION_1 and
        // nothing we do not offer.
        let offered = self.device().features();
        let mut status = status;
        if status & S_FEATURES_OK != 0
            && (self.driver_features & !offered != 0
                || self.driver_features & super::VIRTIO_F_VERSION_1 == 0)
        {
            status &= !S_FEATURES_OK;
        }
        self.status = status;
        if status & S_DRIVER_OK != 0 && status & S_FAILED == 0 && !self.active {
            let mem = self.mem.clone();
            let all_valid = self.queues.iter().all(|q| !q.ready() || q.is_valid(&mem));
            if !all_valid {
                // A queue pointing outside guest memory: refuse to run.
                self.status |= S_FAILED;
                return;
            }
            let queues = std::mem::take(&mut self.queues);
            self.active = true;
            let interrupt = self.interrupt.clone();
            let features = self.driver_features;
            let mut dev = self.device();
            dev.ack_features(features);
            dev.activate(mem, queues, interrupt);
        }
    }
}

/// A transport's registers, the queues it holds (only while the driver
/// configures them; an active device holds its own) and its device's
/// state, as a snapshot stores them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransportSnapshot {
    pub device_type: u32,
    pub device_features_sel: u32,
    pub driver_features_sel: u32,
    pub driver_features: u64,
    pub queue_sel: u32,
    pub status: u32,
    pub active: bool,
    pub queues: Vec<QueueSnapshot>,
    pub interrupt_status: u32,
    /// The start of the device's config space as the driver last saw it.
    pub config: Vec<u8>,
    pub config_generation: u32,
    /// The device's own state ([`super::persist::Persist`]).
    pub device: DeviceState,
}

impl MmioTransport {
    /// The device behind this transport (a snapshot locks it first, so
    /// the event thread cannot move its queues meanwhile).
    pub fn device_handle(&self) -> Arc<Mutex<dyn VirtioDevice>> {
        self.device.clone()
    }

    /// Call with the guest paused and `dev` (this transport's device,
    /// locked by the caller) held.
    pub fn snapshot(&self, dev: &dyn VirtioDevice) -> TransportSnapshot {
        let queues = self.queues.iter().map(QueueSnapshot::of).collect();
        TransportSnapshot {
            device_type: dev.device_type(),
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            driver_features: self.driver_features,
            queue_sel: self.queue_sel,
            status: self.status,
            active: self.active,
            queues,
            interrupt_status: self.interrupt.status(),
            config: config_bytes(dev),
            config_generation: self.config_generation,
            device: dev.save_state(),
        }
    }

    /// Puts a fresh transport (and its device) where `s` left off. A
    /// snapshot whose devices do not match this VM's, or whose queues
    /// point outside guest memory, is refused. A device whose config
    /// differs from the snapshot's (a disk of another size in that slot)
    /// is fine: the driver is told of the change (see
    /// [`MmioTransport::resume_after_restore`]).
    pub fn restore(&mut self, s: &TransportSnapshot) -> Result<(), RestoreError> {
        let (device_type, max_sizes, config, offered) = {
            let dev = self.device();
            (
                dev.device_type(),
                dev.queue_max_sizes().to_vec(),
                config_bytes(&*dev),
                dev.features(),
            )
        };
        if s.device_type != device_type {
            return Err(RestoreError::DeviceType {
                saved: s.device_type,
                here: device_type,
            });
        }
        if s.driver_features & !offered != 0 {
            return Err(RestoreError::Features {
                device: device_type,
                features: s.driver_features,
                offered,
            });
        }
        // The transport's own queues: those the driver was configuring
        // (none once the device is active and holds them).
        let queues = if s.active {
            Vec::new()
        } else {
            restore_queues(device_type, &s.queues, &max_sizes, &self.mem)?
        };
        let ctx = RestoreContext {
            mem: self.mem.clone(),
            interrupt: self.interrupt.clone(),
        };
        {
            let mut dev = self.device();
            dev.ack_features(s.driver_features);
            dev.restore_state(ctx, &s.device)?;
        }
        self.device_features_sel = s.device_features_sel;
        self.driver_features_sel = s.driver_features_sel;
        self.driver_features = s.driver_features;
        self.queue_sel = s.queue_sel;
        self.status = s.status;
        self.interrupt.restore(s.interrupt_status);
        self.config_changed = config != s.config;
        self.config_generation = s
            .config_generation
            .wrapping_add(u32::from(self.config_changed));
        self.active = s.active;
        self.queues = queues;
        Ok(())
    }

    /// Once the restored vCPUs exist (an interrupt raised before then has
    /// no CPU to land on and is lost): raise what was pending and let the
    /// device tell the guest what did not survive, and what changed.
    pub fn resume_after_restore(&mut self) {
        self.interrupt.raise_if_pending();
        if self.active {
            self.device().restored();
            if std::mem::take(&mut self.config_changed) {
                self.interrupt.signal_config();
            }
        }
    }
}

fn config_bytes(dev: &dyn VirtioDevice) -> Vec<u8> {
    let mut bytes = vec![0u8; CONFIG_SNAPSHOT_LEN];
    dev.read_config(0, &mut bytes);
    bytes
}

fn set_half(value: &mut u64, high: bool, half: u32) {
    if high {
        *value = (*value & 0xffff_ffff) | (u64::from(half) << 32);
    } else {
        *value = (*value & !0xffff_ffff) | u64::from(half);
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= R_CONFIG {
            self.device().read_config(offset - R_CONFIG, data);
            return;
        }
        if data.len() != 4 {
            data.fill(0);
            return;
        }
        let value = match offset {
            R_MAGIC => MAGIC,
            R_VERSION => VERSION,
            R_DEVICE_ID => self.device().device_type(),
            R_VENDOR_ID => VENDOR,
            R_DEVICE_FEATURES => match self.device_features_sel {
                0 => self.device().features() as u32,
                1 => (self.device().features() >> 32) as u32,
                _ => 0,
            },
            R_QUEUE_NUM_MAX => self
                .queues
                .get(self.queue_sel as usize)
                .map_or(0, |q| u32::from(q.max_size())),
            R_QUEUE_READY => self
                .queues
                .get(self.queue_sel as usize)
                .map_or(0, |q| u32::from(q.ready())),
            R_INTERRUPT_STATUS => self.interrupt.status(),
            R_STATUS => self.status,
            R_CONFIG_GENERATION => self.config_generation,
            _ => 0,
        };
        data.copy_from_slice(&value.to_le_bytes());
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= R_CONFIG {
            self.device().write_config(offset - R_CONFIG, data);
            return;
        }
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return;
        };
        let v = u32::from_le_bytes(bytes);
        match offset {
            R_DEVICE_FEATURES_SEL => self.device_features_sel = v,
            R_DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            R_DRIVER_FEATURES if self.status & S_FEATURES_OK == 0 => match self.driver_features_sel
            {
                0 => set_half(&mut self.driver_features, false, v),
                1 => set_half(&mut self.driver_features, true, v),
                _ => {}
            },
            R_QUEUE_SEL => self.queue_sel = v,
            R_QUEUE_NUM => {
                if let Some(q) = self.configurable_queue() {
                    q.set_size(v as u16);
                }
            }
            R_QUEUE_READY => {
                if let Some(q) = self.configurable_queue() {
                    q.set_ready(v == 1);
                }
            }
            R_QUEUE_DESC_LOW | R_QUEUE_DESC_HIGH | R_QUEUE_AVAIL_LOW | R_QUEUE_AVAIL_HIGH
            | R_QUEUE_USED_LOW | R_QUEUE_USED_HIGH => {
                // Each address is a low/high register pair, 4 bytes apart.
                let (lo, hi) = if offset & 4 == 0 {
                    (Some(v), None)
                } else {
                    (None, Some(v))
                };
                if let Some(q) = self.configurable_queue() {
                    match offset & !4 {
                        R_QUEUE_DESC_LOW => q.set_desc_table_address(lo, hi),
                        R_QUEUE_AVAIL_LOW => q.set_avail_ring_address(lo, hi),
                        _ => q.set_used_ring_address(lo, hi),
                    }
                }
            }
            R_INTERRUPT_ACK => self.interrupt.ack(v),
            R_STATUS => self.set_status(v),
            _ => {} // read-only or unknown registers: ignored
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::block::Block;
    use vm_memory::GuestAddress;
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    fn transport(disk_bytes: u64) -> (MmioTransport, tempfile::NamedTempFile) {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(disk_bytes).unwrap();
        let block = Block::open(file.path(), false, "t").unwrap();
        let mem = GuestMem::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let interrupt = Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap());
        (
            MmioTransport::new(Arc::new(Mutex::new(block)), mem, interrupt),
            file,
        )
    }

    fn reg(t: &mut MmioTransport, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    /// A driver-ready snapshot of a transport over a disk of `bytes`.
    fn saved(bytes: u64) -> TransportSnapshot {
        let (t, _file) = transport(bytes);
        let mut s = t.snapshot(&*t.device());
        s.status = S_FEATURES_OK | S_DRIVER_OK;
        s.active = true;
        s
    }

    #[test]
    fn a_disk_that_grew_since_the_snapshot_is_announced_to_the_driver() {
        let s = saved(0);
        let (mut t, _file) = transport(1 << 20);
        t.restore(&s).unwrap();
        assert_eq!(
            reg(&mut t, R_INTERRUPT_STATUS),
            0,
            "not before the vCPUs run"
        );
        t.resume_after_restore();
        assert_eq!(reg(&mut t, R_INTERRUPT_STATUS), INT_CONFIG);
        assert_eq!(reg(&mut t, R_CONFIG_GENERATION), s.config_generation + 1);
        assert_eq!(reg(&mut t, R_CONFIG), 2048, "capacity in sectors");
        t.write(R_INTERRUPT_ACK, &INT_CONFIG.to_le_bytes());
        t.resume_after_restore();
        assert_eq!(reg(&mut t, R_INTERRUPT_STATUS), 0, "told once");
    }

    #[test]
    fn an_unchanged_disk_raises_nothing() {
        let s = saved(1 << 20);
        let (mut t, _file) = transport(1 << 20);
        t.restore(&s).unwrap();
        t.resume_after_restore();
        assert_eq!(reg(&mut t, R_INTERRUPT_STATUS), 0);
        assert_eq!(reg(&mut t, R_CONFIG_GENERATION), s.config_generation);
    }
}
