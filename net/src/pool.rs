//! Synthetic addresses for the names a guest resolved.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

/// Addresses the VMM's DNS hands out for allowed names: 198.18.0.0/15
/// (RFC 2544 benchmarking range, never a real destination). A connection
/// to one is dialed by the VMM to the name it stands for, so a guest can
/// only reach what it resolved.
///
/// The pool holds at most `capacity` names; when it is full, the least
/// recently used name (resolved or connected to) gives its address to the
/// new one. A guest that kept an evicted address past its DNS TTL then
/// reaches the new name, which the policy allowed too; short TTLs keep
/// that rare.
#[derive(Debug, Clone)]
pub struct SyntheticPool {
    /// Most names held at once (also the highest offset handed out).
    capacity: u32,
    /// Name to its address's offset in the range.
    by_name: HashMap<String, u32>,
    /// Offset to its name and last use.
    by_offset: HashMap<u32, Slot>,
    /// Last use to offset: the first entry is the next to evict.
    by_last_use: BTreeMap<u64, u32>,
    /// Advances on every use; never repeats.
    clock: u64,
}

/// One address in use.
#[derive(Debug, Clone)]
struct Slot {
    name: String,
    last_use: u64,
}

impl SyntheticPool {
    /// The first address of the range (never handed out).
    pub const NET: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
    /// The range's prefix length.
    pub const PREFIX: u8 = 15;
    /// Usable addresses: all but the network and broadcast addresses.
    const MAX_CAPACITY: u32 = (1 << (32 - Self::PREFIX as u32)) - 2;

    /// A pool for at most `capacity` names, clamped to 1..=131070 (the
    /// range's addresses but its first and last).
    pub fn new(capacity: usize) -> Self {
        let capacity = u32::try_from(capacity)
            .unwrap_or(u32::MAX)
            .clamp(1, Self::MAX_CAPACITY);
        SyntheticPool {
            capacity,
            by_name: HashMap::new(),
            by_offset: HashMap::new(),
            by_last_use: BTreeMap::new(),
            clock: 0,
        }
    }

    /// The address standing for `name` (case and a trailing dot do not
    /// matter): the same one while the name stays in the pool, else a free
    /// one, else the least recently used name's. Marks `name` as used.
    pub fn addr_for(&mut self, name: &str) -> Ipv4Addr {
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        let offset = match self.by_name.get(&name) {
            Some(&offset) => offset,
            None => self.assign(name),
        };
        self.touch(offset);
        Self::addr_at(offset)
    }

    /// The name `ip` stands for, if it is in the pool. Marks it as used.
    pub fn name_of(&mut self, ip: Ipv4Addr) -> Option<&str> {
        let offset = Self::offset_of(ip)?;
        if !self.by_offset.contains_key(&offset) {
            return None;
        }
        self.touch(offset);
        self.by_offset.get(&offset).map(|slot| slot.name.as_str())
    }

    /// Is `ip` in 198.18.0.0/15 (whether handed out or not)?
    pub fn contains(ip: Ipv4Addr) -> bool {
        u32::from(ip) >> (32 - Self::PREFIX) == u32::from(Self::NET) >> (32 - Self::PREFIX)
    }

    /// How many names hold an address.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Does no name hold an address?
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Most names the pool holds at once.
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Gives `name` (not in the pool) an offset: the next never used one,
    /// or the least recently used name's.
    fn assign(&mut self, name: String) -> u32 {
        let in_use = self.by_offset.len() as u32;
        let offset = if in_use < self.capacity {
            in_use + 1
        } else {
            self.evict_least_recent()
        };
        self.by_name.insert(name.clone(), offset);
        self.by_offset.insert(offset, Slot { name, last_use: 0 });
        offset
    }

    /// Frees the least recently used address and returns its offset.
    fn evict_least_recent(&mut self) -> u32 {
        let (_, offset) = self
            .by_last_use
            .pop_first()
            .expect("a full pool has a least recently used name");
        if let Some(slot) = self.by_offset.remove(&offset) {
            self.by_name.remove(&slot.name);
        }
        offset
    }

    /// Marks the name at `offset` as just used.
    fn touch(&mut self, offset: u32) {
        self.clock += 1;
        if let Some(slot) = self.by_offset.get_mut(&offset) {
            self.by_last_use.remove(&slot.last_use);
            slot.last_use = self.clock;
            self.by_last_use.insert(self.clock, offset);
        }
    }

    fn addr_at(offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(Self::NET) + offset)
    }

    /// The offset of `ip` in the range, if it is one the pool hands out.
    fn offset_of(ip: Ipv4Addr) -> Option<u32> {
        if !Self::contains(ip) {
            return None;
        }
        let offset = u32::from(ip) - u32::from(Self::NET);
        (1..=Self::MAX_CAPACITY).contains(&offset).then_some(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last_two: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(SyntheticPool::NET) + last_two)
    }

    #[test]
    fn a_name_keeps_its_address() {
        let mut pool = SyntheticPool::new(16);
        assert!(pool.is_empty());
        let pypi = pool.addr_for("pypi.org");
        let github = pool.addr_for("github.com");
        assert_eq!(
            pypi,
            Ipv4Addr::new(198, 18, 0, 1),
            "the network address is skipped"
        );
        assert_eq!(github, Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(pool.addr_for("pypi.org"), pypi);
        assert_eq!(pool.addr_for("PyPI.org."), pypi);
        assert_eq!(pool.len(), 2);
        assert_eq!(pool.name_of(pypi), Some("pypi.org"));
        assert_eq!(pool.name_of(github), Some("github.com"));
    }

    #[test]
    fn unknown_addresses_have_no_name() {
        let mut pool = SyntheticPool::new(4);
        pool.addr_for("example.com");
        assert_eq!(pool.name_of(addr(2)), None, "not handed out");
        assert_eq!(pool.name_of(SyntheticPool::NET), None);
        assert_eq!(pool.name_of(Ipv4Addr::new(198, 19, 255, 255)), None);
        assert_eq!(pool.name_of(Ipv4Addr::new(10, 0, 0, 1)), None);
    }

    #[test]
    fn a_full_pool_evicts_the_least_recently_used_name() {
        let mut pool = SyntheticPool::new(3);
        let a = pool.addr_for("a.example");
        let b = pool.addr_for("b.example");
        let c = pool.addr_for("c.example");
        // Use order now: b (oldest), c, a.
        pool.addr_for("a.example");
        let d = pool.addr_for("d.example");
        assert_eq!(d, b, "b was the least recently used");
        assert_eq!(pool.name_of(b), Some("d.example"));
        assert_eq!(pool.len(), 3);
        // Connecting counts as a use: c is used, so a goes next.
        assert_eq!(pool.name_of(c), Some("c.example"));
        assert_eq!(pool.addr_for("e.example"), a);
        // Use order now: d, c, e; b returns on d's address.
        assert_eq!(pool.addr_for("b.example"), d);
        assert_eq!(pool.name_of(d), Some("b.example"));
        assert_eq!(pool.len(), 3);
    }

    #[test]
    fn eviction_keeps_the_indexes_consistent() {
        let mut pool = SyntheticPool::new(8);
        for round in 0..1000 {
            let name = format!("host{}.example", round % 13);
            let ip = pool.addr_for(&name);
            assert!(SyntheticPool::contains(ip));
            assert_eq!(pool.name_of(ip), Some(name.as_str()));
            assert!(pool.len() <= 8);
        }
        assert_eq!(pool.by_name.len(), pool.by_offset.len());
        assert_eq!(pool.by_name.len(), pool.by_last_use.len());
    }

    #[test]
    fn contains_is_exactly_198_18_0_0_slash_15() {
        assert!(SyntheticPool::contains(Ipv4Addr::new(198, 18, 0, 0)));
        assert!(SyntheticPool::contains(Ipv4Addr::new(198, 19, 255, 255)));
        assert!(!SyntheticPool::contains(Ipv4Addr::new(198, 17, 255, 255)));
        assert!(!SyntheticPool::contains(Ipv4Addr::new(198, 20, 0, 0)));
        assert!(!SyntheticPool::contains(Ipv4Addr::new(10, 0, 2, 15)));
    }

    #[test]
    fn capacity_is_clamped_to_the_range() {
        assert_eq!(SyntheticPool::new(0).capacity(), 1);
        assert_eq!(SyntheticPool::new(usize::MAX).capacity(), (1 << 17) - 2);
        let mut one = SyntheticPool::new(0);
        assert_eq!(one.addr_for("a"), addr(1));
        assert_eq!(one.addr_for("b"), addr(1));
        assert_eq!(one.name_of(addr(1)), Some("b"));
    }

    #[test]
    fn a_full_range_hands_out_every_address_once() {
        let mut pool = SyntheticPool::new(usize::MAX);
        let mut last = SyntheticPool::NET;
        for i in 0..(1 << 17) - 2 {
            last = pool.addr_for(&format!("n{i}"));
        }
        assert_eq!(
            last,
            Ipv4Addr::new(198, 19, 255, 254),
            "the broadcast address is skipped"
        );
        assert_eq!(pool.addr_for("one.more"), addr(1));
    }
}
