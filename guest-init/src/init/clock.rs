//! Guest clocks.

use rustix::time::{clock_gettime, ClockId};

/// Microseconds of CLOCK_MONOTONIC, which starts at guest kernel boot.
pub fn monotonic_us() -> u64 {
    let ts = clock_gettime(ClockId::Monotonic);
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}
