//! The argument groups several commands share, and the parsers of every
//! limited value: the VM's shape (`--vcpus`, `--mem-mib`), a guest
//! command with its `--timeout-seconds`, `--disk-mib` and
//! `--ttl-seconds`, and [`number`], the one parser of every whole-number
//! argument. Ranges and defaults are [`pyro_vmm::limits`], the ones the
//! SDK checks and the MCP schemas state, so they cannot drift; the help
//! shows each range.

use clap::builder::{StringValueParser, TypedValueParser};
use clap::Args;
use pyro_vmm::limits::{Limit, DISK_MIB, MEM_MIB, TIMEOUT_SECONDS, TTL_SECONDS, VCPUS};

/// The VM's size (`run`, `doctor`, `workspace create`).
#[derive(Args, Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmShape {
    #[arg(
        long,
        default_value_t = VCPUS.default,
        value_parser = limited(VCPUS),
        help = help("vCPUs for the VM (more than 1: the SMP guest kernel, built on first use)", VCPUS)
    )]
    pub vcpus: u8,
    #[arg(
        long,
        default_value_t = MEM_MIB.default,
        value_parser = limited(MEM_MIB),
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
        value_parser = limited(TIMEOUT_SECONDS),
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
pub fn disk_mib() -> impl TypedValueParser<Value = u64> {
    limited(DISK_MIB)
}

pub fn disk_mib_help() -> String {
    help(
        "Size of the /workspace disk in MiB (sparse on the host)",
        DISK_MIB,
    )
}

/// `--ttl-seconds` of `workspace create` (no default: no expiry).
pub fn ttl_seconds() -> impl TypedValueParser<Value = u64> {
    limited(TTL_SECONDS)
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

/// The parser of a limit's value.
pub fn limited<T>(limit: Limit<T>) -> impl TypedValueParser<Value = T>
where
    T: Copy + Into<u64> + TryFrom<u64> + Send + Sync + 'static,
{
    number(limit.min.into(), limit.max.into())
}

/// The parser of a whole number from `min` to `max` (`u64::MAX`: no upper
/// bound). Its refusal names the argument (clap's `invalid value '-5' for
/// '--timeout-seconds <TIMEOUT_SECONDS>'`) and says the rule; a negative
/// number reaches it as a value, not as a flag, because the command tree
/// allows negative numbers (`crate::args::Cli::parse_from_args`).
pub fn number<T>(min: u64, max: u64) -> impl TypedValueParser<Value = T>
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
{
    StringValueParser::new().try_map(move |text| {
        let rule = if max == u64::MAX {
            format!("at least {min}")
        } else {
            format!("{min} to {max}")
        };
        let sign = if min > 0 {
            "positive"
        } else {
            "zero or positive"
        };
        match text.trim().parse::<i128>() {
            Ok(n) if n < 0 => Err(format!("{n} is negative; it must be {sign}, {rule}")),
            Ok(n) => u64::try_from(n)
                .ok()
                .filter(|v| (min..=max).contains(v))
                .and_then(|v| T::try_from(v).ok())
                .ok_or_else(|| format!("{n} is out of range; it must be {rule}")),
            Err(_) => Err(format!(
                "{text:?} is not a whole number; it must be {sign}, {rule}"
            )),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Negative numbers as values, as `Cli::parse_from_args` sets them.
    #[derive(Parser, Debug)]
    #[command(allow_negative_numbers = true)]
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
        assert!(
            err.contains("99 is out of range; it must be 1 to 32"),
            "{err}"
        );
    }

    #[test]
    fn negative_and_other_numbers_name_the_flag_and_the_rule() {
        let refused = |args: &[&str]| probe(args).unwrap_err().to_string();
        let err = refused(&["--timeout-seconds", "-5"]);
        let rule = format!(
            "-5 is negative; it must be positive, 1 to {}",
            TIMEOUT_SECONDS.max
        );
        assert!(
            err.contains(&format!("'--timeout-seconds <TIMEOUT_SECONDS>': {rule}")),
            "{err}"
        );
        assert!(!err.contains("tip"), "{err}");
        let err = refused(&["--ttl-seconds", "1.5"]);
        assert!(
            err.contains("\"1.5\" is not a whole number; it must be positive, at least 1"),
            "{err}"
        );
        let big = "99999999999999999999999";
        assert!(refused(&["--ttl-seconds", big]).contains("out of range"));
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
