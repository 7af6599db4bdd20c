//! The argument groups several commands share, and the parsers of every
//! limited value: the VM's shape (`--vcpus`, `--mem-mib`), a guest
//! command with its `--timeout-seconds`, `--disk-mib` and
//! `--ttl-seconds`. Ranges and defaults are [`pyro_vmm::limits`], the
//! ones the SDK checks and the MCP schemas state, so they cannot drift;
//! the help shows each range.

use clap::builder::{RangedI64ValueParser, RangedU64ValueParser};
use clap::Args;
use pyro_vmm::limits::{Limit, DISK_MIB, MEM_MIB, TIMEOUT_SECONDS, TTL_SECONDS, VCPUS};

/// The VM's size (`run`, `doctor`, `workspace create`).
#[derive(Args, Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmShape {
    #[arg(
        long,
        default_value_t = VCPUS.default,
        value_parser = small(VCPUS),
        help = help("vCPUs for the VM", VCPUS)
    )]
    pub vcpus: u8,
    #[arg(
        long,
        default_value_t = MEM_MIB.default,
        value_parser = small(MEM_MIB),
        help = help("Guest memory in MiB", MEM_MIB)
    )]
    pub mem_mib: u32,
}

/// A guest command and how long it may take (`run`, `workspace exec`).
#[derive(Args, Debug)]
pub struct CommandArgs {
    #[arg(
        long,
        default_value_t = TIMEOUT_SECONDS.default,
        value_parser = large(TIMEOUT_SECONDS),
        help = help(
            "Kill the command (its whole process group) after this many seconds",
            TIMEOUT_SECONDS
        )
    )]
    pub timeout_seconds: u64,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

impl CommandArgs {
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_seconds)
    }
}

/// `--disk-mib` of `workspace create`.
pub fn disk_mib() -> RangedU64ValueParser<u64> {
    large(DISK_MIB)
}

pub fn disk_mib_help() -> String {
    help(
        "Size of the /workspace disk in MiB (sparse on the host)",
        DISK_MIB,
    )
}

/// `--ttl-seconds` of `workspace create` (no default: no expiry).
pub fn ttl_seconds() -> RangedU64ValueParser<u64> {
    large(TTL_SECONDS)
}

pub fn ttl_seconds_help() -> String {
    help(
        "Stop and remove the workspace this many seconds after create",
        TTL_SECONDS,
    )
}

/// `what, MIN to MAX`; a limit without an upper bound says `at least MIN`.
pub fn help<T: Copy + std::fmt::Display + PartialEq + TryFrom<u64>>(
    what: &str,
    limit: Limit<T>,
) -> String {
    if T::try_from(u64::MAX).is_ok_and(|max| max == limit.max) {
        format!("{what}, at least {}", limit.min)
    } else {
        format!("{what}, {} to {}", limit.min, limit.max)
    }
}

/// The parser of a `u8` or `u32` limit.
fn small<T>(limit: Limit<T>) -> RangedI64ValueParser<T>
where
    T: Copy + Into<i64> + TryFrom<i64> + Clone + Send + Sync + 'static,
{
    let (min, max): (i64, i64) = (limit.min.into(), limit.max.into());
    RangedI64ValueParser::<T>::new().range(min..=max)
}

/// The parser of a `u64` limit.
pub fn large(limit: Limit<u64>) -> RangedU64ValueParser<u64> {
    RangedU64ValueParser::<u64>::new().range(limit.min..=limit.max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Probe {
        #[command(flatten)]
        shape: VmShape,
        #[arg(long, value_parser = ttl_seconds())]
        ttl_seconds: Option<u64>,
        #[arg(long, default_value_t = DISK_MIB.default, value_parser = disk_mib())]
        disk_mib: u64,
        #[command(flatten)]
        cmd: CommandArgs,
    }

    fn probe(args: &[&str]) -> Result<Probe, clap::Error> {
        Probe::try_parse_from(["probe"].iter().chain(args).chain(&["--", "true"]))
    }

    #[test]
    fn defaults_are_the_limits_defaults() {
        let p = probe(&[]).unwrap();
        assert_eq!(p.shape.vcpus, VCPUS.default);
        assert_eq!(p.shape.mem_mib, MEM_MIB.default);
        assert_eq!(p.disk_mib, DISK_MIB.default);
        assert_eq!(p.cmd.timeout_seconds, TIMEOUT_SECONDS.default);
        assert_eq!(p.ttl_seconds, None);
    }

    #[test]
    fn ranges_are_the_limits() {
        let edges = |flag: &str, min: u64, max: Option<u64>| {
            let ok = |v: u64| probe(&[flag, &v.to_string()]).is_ok();
            assert!(ok(min), "{flag} {min}");
            assert!(!ok(min - 1), "{flag} {}", min - 1);
            if let Some(max) = max {
                assert!(ok(max), "{flag} {max}");
                assert!(!ok(max + 1), "{flag} {}", max + 1);
            }
        };
        edges("--vcpus", VCPUS.min.into(), Some(VCPUS.max.into()));
        edges("--mem-mib", MEM_MIB.min.into(), Some(MEM_MIB.max.into()));
        edges("--disk-mib", DISK_MIB.min, Some(DISK_MIB.max));
        edges(
            "--timeout-seconds",
            TIMEOUT_SECONDS.min,
            Some(TIMEOUT_SECONDS.max),
        );
        edges("--ttl-seconds", TTL_SECONDS.min, None);
        assert!(probe(&["--ttl-seconds", &u64::MAX.to_string()]).is_ok());
        let err = probe(&["--vcpus", "99"]).unwrap_err().to_string();
        assert!(err.contains("99 is not in 1..=32"), "{err}");
    }

    #[test]
    fn help_shows_the_ranges() {
        assert_eq!(help("vCPUs for the VM", VCPUS), "vCPUs for the VM, 1 to 32");
        assert_eq!(help("TTL", TTL_SECONDS), "TTL, at least 1");
        assert_eq!(
            disk_mib_help(),
            "Size of the /workspace disk in MiB (sparse on the host), 64 to 1048576"
        );
    }
}
