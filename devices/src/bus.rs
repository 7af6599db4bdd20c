//! Address-range routing for port I/O and MMIO exits.

use std::sync::{Arc, Mutex};

/// A device on a bus. `offset` is relative to the start of its range.
pub trait BusDevice: Send {
    fn read(&mut self, offset: u64, data: &mut [u8]);
    fn write(&mut self, offset: u64, data: &[u8]);
}

struct Range {
    base: u64,
    len: u64,
    device: Arc<Mutex<dyn BusDevice>>,
}

/// A set of non-overlapping ranges. Accesses that hit no device read as
/// all-ones (a floating bus) and writes are dropped, as on real hardware.
#[derive(Default, Clone)]
pub struct Bus {
    ranges: Arc<Vec<Range>>,
}

/// Two devices claimed overlapping ranges.
#[derive(Debug, thiserror::Error)]
#[error("bus range {base:#x}+{len:#x} overlaps an existing device")]
pub struct OverlapError {
    pub base: u64,
    pub len: u64,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a device at `base..base+len`. Only valid while building the VM
    /// (before the bus is cloned into vCPU threads).
    pub fn insert(
        &mut self,
        base: u64,
        len: u64,
        device: Arc<Mutex<dyn BusDevice>>,
    ) -> Result<(), OverlapError> {
        let ranges = Arc::get_mut(&mut self.ranges).expect("bus is shared; insert before cloning");
        if len == 0
            || ranges
                .iter()
                .any(|r| base < r.base + r.len && r.base < base + len)
        {
            return Err(OverlapError { base, len });
        }
        ranges.push(Range { base, len, device });
        ranges.sort_by_key(|r| r.base);
        Ok(())
    }

    fn find(&self, addr: u64, size: usize) -> Option<(&Range, u64)> {
        let idx = self
            .ranges
            .partition_point(|r| r.base <= addr)
            .checked_sub(1)?;
        let range = &self.ranges[idx];
        let offset = addr - range.base;
        (offset + size as u64 <= range.len).then_some((range, offset))
    }

    /// Returns false when no device is there.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((range, offset)) => {
                lock(&range.device).read(offset, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Returns false when no device is there.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((range, offset)) => {
                lock(&range.device).write(offset, data);
                true
            }
            None => false,
        }
    }
}

/// A device whose lock was poisoned by a panic keeps serving: its state is
/// plain data, and a stuck VM is worse than a possibly odd register.
fn lock(device: &Mutex<dyn BusDevice>) -> std::sync::MutexGuard<'_, dyn BusDevice + 'static> {
    device
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(Vec<(u64, Vec<u8>)>);
    impl BusDevice for Echo {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.0.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn routes_by_range_and_floats_elsewhere() {
        let dev = Arc::new(Mutex::new(Echo(vec![])));
        let mut bus = Bus::new();
        bus.insert(0x100, 0x10, dev.clone()).unwrap();
        let mut b = [0u8; 2];
        assert!(bus.read(0x104, &mut b));
        assert_eq!(b, [4, 4]);
        assert!(!bus.read(0x10f, &mut b), "access straddling the end");
        assert_eq!(b, [0xff, 0xff]);
        assert!(!bus.read(0xff, &mut b));
        assert!(bus.write(0x100, &[7]));
        assert_eq!(dev.lock().unwrap().0, vec![(0, vec![7])]);
        assert!(bus.insert(0x108, 0x10, dev.clone()).is_err());
        assert!(bus.insert(0xf8, 0x10, dev).is_err());
    }
}
