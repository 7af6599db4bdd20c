//! The limits on a VM's shape and on a call's duration, in one place.
//!
//! The CLI's argument parsers, the MCP tools' JSON schemas and checks,
//! the SDK's option checks and [`crate::VmConfig::validate`] all read
//! these, so a limit changes in one line and every surface agrees.

/// An inclusive range with the value used when the caller gives none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit<T> {
    /// The name callers know the value by (`--vcpus`, `"vcpus"`).
    pub name: &'static str,
    pub min: T,
    pub max: T,
    pub default: T,
}

impl<T: Copy + PartialOrd + std::fmt::Display> Limit<T> {
    /// Whether `value` is allowed.
    pub fn contains(&self, value: T) -> bool {
        self.min <= value && value <= self.max
    }

    /// `Err` with a message naming the field and the rule when `value` is
    /// outside the range.
    pub fn check(&self, value: T) -> Result<T, String> {
        if self.contains(value) {
            Ok(value)
        } else {
            Err(format!(
                "{} must be between {} and {}, got {value}",
                self.name, self.min, self.max
            ))
        }
    }
}

/// Virtual CPUs per VM.
pub const VCPUS: Limit<u8> = Limit {
    name: "vcpus",
    min: 1,
    max: 32,
    default: 1,
};

/// Guest memory in MiB. Below 64 the guest kernel cannot start.
pub const MEM_MIB: Limit<u32> = Limit {
    name: "mem_mib",
    min: 64,
    max: 65536,
    default: 128,
};

/// A workspace's `/workspace` disk in MiB (a sparse file: only what the
/// guest writes takes space on the host).
pub const DISK_MIB: Limit<u64> = Limit {
    name: "disk_mib",
    min: 64,
    max: 1 << 20,
    default: 4096,
};

/// A command's timeout in seconds (`run`, `workspace exec`).
pub const TIMEOUT_SECONDS: Limit<u64> = Limit {
    name: "timeout_seconds",
    min: 1,
    max: 86_400,
    default: 30,
};

/// A workspace's time to live in seconds (no default: no expiry).
pub const TTL_SECONDS: Limit<u64> = Limit {
    name: "ttl_seconds",
    min: 1,
    max: u64::MAX,
    default: u64::MAX,
};

/// The console log's cap in bytes (`VmConfig::serial_log_max_bytes`);
/// a full log rotates to `console.log.1` (`pyro_devices::console_log`).
pub const CONSOLE_LOG_BYTES: Limit<u64> = Limit {
    name: "serial_log_max_bytes",
    min: 4096,
    max: 1 << 30,
    default: pyro_devices::console_log::ConsoleLog::DEFAULT_MAX_BYTES,
};

/// What a one-shot run keeps of each output stream in its result, in
/// bytes (`run --max-output-bytes`, `vm_run`'s `max_output_bytes`).
/// Output handed on as it arrives (to the CLI's terminal) is not cut;
/// the result says `stdout_truncated`/`stderr_truncated`.
pub const OUTPUT_BYTES: Limit<u64> = Limit {
    name: "max_output_bytes",
    min: 0,
    max: 256 << 20,
    default: 1 << 20,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_the_field_and_the_rule() {
        assert_eq!(VCPUS.check(4), Ok(4));
        assert_eq!(
            VCPUS.check(40).unwrap_err(),
            "vcpus must be between 1 and 32, got 40"
        );
        assert!(MEM_MIB.check(63).is_err());
        assert!(MEM_MIB.contains(MEM_MIB.default));
        assert!(DISK_MIB.contains(DISK_MIB.default));
        assert!(TIMEOUT_SECONDS.contains(TIMEOUT_SECONDS.default));
    }
}
