//! An output ring (a shell's terminal, a service's stream): the last `cap`
//! bytes, addressed by cursors that count every byte ever pushed.

use std::collections::VecDeque;

pub struct Ring {
    buf: VecDeque<u8>,
    cap: usize,
    /// The cursor of the oldest byte kept.
    start: u64,
}

/// Output from one read.
#[derive(Debug, PartialEq, Eq)]
pub struct Slice {
    /// The cursor of `bytes[0]`.
    pub from: u64,
    pub bytes: Vec<u8>,
    /// The cursor asked for had fallen off the ring.
    pub truncated: bool,
}

impl Ring {
    pub fn new(cap: usize) -> Ring {
        Ring {
            buf: VecDeque::new(),
            cap,
            start: 0,
        }
    }

    pub fn start(&self) -> u64 {
        self.start
    }

    /// The cursor after the newest byte (bytes produced so far).
    pub fn end(&self) -> u64 {
        self.start + self.buf.len() as u64
    }

    pub fn push(&mut self, data: &[u8]) {
        // Bytes older than the last `cap` of `data` are dropped unseen.
        let skipped = data.len().saturating_sub(self.cap);
        let data = &data[skipped..];
        let over = (self.buf.len() + data.len()).saturating_sub(self.cap);
        self.buf.drain(..over);
        self.start += (over + skipped) as u64;
        self.buf.extend(data);
    }

    /// Up to `max` bytes from `cursor` (from the oldest kept byte if
    /// `cursor` fell off). A read cut short by `max` does not end inside
    /// a UTF-8 character, so text reads stay whole across cursors. A
    /// cursor past the end is an error.
    pub fn read(&self, cursor: u64, max: usize) -> Result<Slice, String> {
        if cursor > self.end() {
            return Err(format!(
                "cursor {cursor} is past the end of the output ({} bytes so far)",
                self.end()
            ));
        }
        let from = cursor.max(self.start);
        let offset = (from - self.start) as usize;
        let available = self.buf.len() - offset;
        let n = available.min(max);
        let mut bytes: Vec<u8> = self.buf.range(offset..offset + n).copied().collect();
        if n < available {
            bytes.truncate(utf8_cut(&bytes));
        }
        Ok(Slice {
            from,
            bytes,
            truncated: cursor < self.start,
        })
    }
}

/// The length of `bytes` without a UTF-8 character cut off at its end
/// (at most 3 bytes shorter, and never empty unless `bytes` is).
pub fn utf8_cut(bytes: &[u8]) -> usize {
    let n = bytes.len();
    for back in 1..=n.min(3) {
        let b = bytes[n - back];
        if b & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back
        }
        let needs = match b {
            0xF0.. => 4,
            0xE0.. => 3,
            0xC0.. => 2,
            _ => 1,
        };
        return if needs > back && back < n {
            n - back
        } else {
            n
        };
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_count_every_byte_and_old_ones_are_truncated() {
        let mut ring = Ring::new(8);
        ring.push(b"hello ");
        assert_eq!(ring.read(0, 100).unwrap().bytes, b"hello ");
        ring.push(b"world");
        assert_eq!((ring.start(), ring.end()), (3, 11));
        let s = ring.read(0, 100).unwrap();
        assert_eq!(
            (s.from, s.truncated, &s.bytes[..]),
            (3, true, &b"lo world"[..])
        );
        let s = ring.read(6, 3).unwrap();
        assert_eq!((s.from, s.truncated, &s.bytes[..]), (6, false, &b"wor"[..]));
        assert!(ring.read(11, 5).unwrap().bytes.is_empty());
        assert!(ring.read(12, 5).unwrap_err().contains("past the end"));
        // A push larger than the ring keeps its tail.
        ring.push(b"0123456789");
        assert_eq!((ring.start(), ring.end()), (13, 21));
        assert_eq!(ring.read(13, 100).unwrap().bytes, b"23456789");
    }

    #[test]
    fn a_read_cut_short_does_not_split_a_character() {
        let mut ring = Ring::new(64);
        ring.push("aé€😀".as_bytes()); // 1 + 2 + 3 + 4 bytes
        for max in 1..10 {
            let s = ring.read(0, max).unwrap();
            assert!(
                std::str::from_utf8(&s.bytes).is_ok(),
                "max {max}: {:?}",
                s.bytes
            );
            let next = ring.read(s.from + s.bytes.len() as u64, 100).unwrap();
            assert!(std::str::from_utf8(&next.bytes).is_ok(), "rest after {max}");
        }
        assert_eq!(ring.read(0, 2).unwrap().bytes, b"a");
        assert_eq!(utf8_cut(&[0xE2]), 1, "never empty");
        assert_eq!(utf8_cut(b"ab"), 2);
    }
}
