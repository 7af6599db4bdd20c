//! The tools, one file per family, and the parameter types they share.
//! Each tool is a thin call into [`pyro_workspace::Pyro`]; its structured
//! result is the JSON `pyro ... --json` prints (lists wrapped in an object
//! with a `count`).

pub(crate) mod disk;
pub(crate) mod files;
pub(crate) mod network;
pub(crate) mod run;
pub(crate) mod secrets;
pub(crate) mod services;
pub(crate) mod shells;
pub(crate) mod snapshots;
pub(crate) mod workspace;

use pyro_vmm::limits::{Limit, MEM_MIB, TIMEOUT_SECONDS, VCPUS};
use pyro_workspace::Error;
use schemars::JsonSchema;
use serde::Deserialize;

/// Parameters of tools that take only a workspace.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceRef {
    /// The workspace: its `workspace_id` (from workspace_create or
    /// workspace_list) or its unique name.
    pub workspace_id: String,
}

/// A command to run: a string runs with `/bin/sh -c` (pipes, `&&`,
/// redirections work); an array of strings runs directly as argv, with
/// no shell.
#[derive(Debug, JsonSchema)]
#[serde(untagged)]
#[schemars(inline)]
pub enum CommandLine {
    /// A shell command line, run with `/bin/sh -c`.
    Shell(String),
    /// Program and arguments, run directly.
    Argv(Vec<String>),
}

impl<'de> Deserialize<'de> for CommandLine {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let rule = "command must be a non-empty string (run with /bin/sh -c) or a non-empty array of strings (argv)";
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) if !s.trim().is_empty() => Ok(CommandLine::Shell(s)),
            serde_json::Value::Array(items) if !items.is_empty() => items
                .into_iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => Ok(s),
                    _ => Err(D::Error::custom(rule)),
                })
                .collect::<Result<_, _>>()
                .map(CommandLine::Argv),
            _ => Err(D::Error::custom(rule)),
        }
    }
}

impl CommandLine {
    /// The argv the guest runs.
    pub fn argv(self) -> Vec<String> {
        match self {
            CommandLine::Shell(line) => vec!["/bin/sh".into(), "-c".into(), line],
            CommandLine::Argv(argv) => argv,
        }
    }
}

/// Fails with `invalid_argument` unless `min <= value <= max`.
pub(crate) fn check_range<T: PartialOrd + std::fmt::Display>(
    field: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), Error> {
    if value < min || value > max {
        return Err(Error::InvalidArgument(format!(
            "{field} is {value}; it must be between {min} and {max}"
        )));
    }
    Ok(())
}

/// Shared defaults (they also appear in the schemas). The VM-shape and
/// timeout limits are [`pyro_vmm::limits`], the ones the CLI and the SDK
/// check, used by path in the `#[schemars(range(...))]` attributes.
pub(crate) fn default_environment() -> String {
    pyro_workspace::DEFAULT_ENV.to_string()
}
pub(crate) fn default_vcpus() -> u8 {
    VCPUS.default
}
pub(crate) fn default_idle_suspend_seconds() -> u64 {
    pyro_workspace::DEFAULT_IDLE_SUSPEND_SECONDS
}
pub(crate) fn default_mem_mib() -> u32 {
    MEM_MIB.default
}
pub(crate) fn default_timeout_seconds() -> u64 {
    TIMEOUT_SECONDS.default
}
pub(crate) fn default_workspace_path() -> String {
    "/workspace".to_string()
}

/// Fails with `invalid_argument` unless `limit` allows `value`.
pub(crate) fn check_limit<T: Copy + PartialOrd + std::fmt::Display>(
    limit: Limit<T>,
    value: T,
) -> Result<(), Error> {
    check_range(limit.name, value, limit.min, limit.max)
}

/// Checks the VM size fields shared by vm_run and workspace_create.
pub(crate) fn check_vm_size(vcpus: u8, mem_mib: u32) -> Result<(), Error> {
    check_limit(VCPUS, vcpus)?;
    check_limit(MEM_MIB, mem_mib)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_shell_strings_or_argv() {
        let shell: CommandLine = serde_json::from_str(r#""ls | wc -l""#).unwrap();
        assert_eq!(shell.argv(), ["/bin/sh", "-c", "ls | wc -l"]);
        let argv: CommandLine = serde_json::from_str(r#"["uname", "-r"]"#).unwrap();
        assert_eq!(argv.argv(), ["uname", "-r"]);
        for bad in [r#""""#, "[]", "[1]", "3", "null"] {
            let err = serde_json::from_str::<CommandLine>(bad).unwrap_err();
            assert!(err.to_string().contains("command must be"), "{bad}: {err}");
        }
    }

    #[test]
    fn ranges_name_the_field() {
        let e = check_range("vcpus", 40u8, 1, 32).unwrap_err();
        assert_eq!(e.kind(), "invalid_argument");
        assert_eq!(e.to_string(), "vcpus is 40; it must be between 1 and 32");
    }

    /// The limited fields' schemas state the limits the checks apply,
    /// and their descriptions (written by hand) name the same range.
    #[test]
    fn schemas_state_the_vm_limits() {
        use pyro_vmm::limits::{DISK_MIB, TTL_SECONDS};
        use pyro_workspace::{DEFAULT_FILE_READ_BYTES, MAX_FILE_READ_BYTES};
        let run = serde_json::to_value(schemars::schema_for!(run::VmRunParams)).unwrap();
        let create = serde_json::to_value(schemars::schema_for!(workspace::CreateParams)).unwrap();
        let exec = serde_json::to_value(schemars::schema_for!(workspace::ExecParams)).unwrap();
        let read = serde_json::to_value(schemars::schema_for!(files::FileReadParams)).unwrap();
        type Row<'a> = (&'a serde_json::Value, &'a str, u64, u64, Option<u64>);
        let rows: [Row; 8] = [
            (
                &run,
                "vcpus",
                VCPUS.min.into(),
                VCPUS.max.into(),
                Some(VCPUS.default.into()),
            ),
            (
                &create,
                "vcpus",
                VCPUS.min.into(),
                VCPUS.max.into(),
                Some(VCPUS.default.into()),
            ),
            (
                &run,
                "mem_mib",
                MEM_MIB.min.into(),
                MEM_MIB.max.into(),
                Some(MEM_MIB.default.into()),
            ),
            (
                &create,
                "mem_mib",
                MEM_MIB.min.into(),
                MEM_MIB.max.into(),
                Some(MEM_MIB.default.into()),
            ),
            (
                &create,
                "disk_mib",
                DISK_MIB.min,
                DISK_MIB.max,
                Some(DISK_MIB.default),
            ),
            (
                &run,
                "timeout_seconds",
                TIMEOUT_SECONDS.min,
                TIMEOUT_SECONDS.max,
                Some(TIMEOUT_SECONDS.default),
            ),
            (
                &exec,
                "timeout_seconds",
                TIMEOUT_SECONDS.min,
                TIMEOUT_SECONDS.max,
                Some(TIMEOUT_SECONDS.default),
            ),
            (
                &read,
                "max_bytes",
                1,
                MAX_FILE_READ_BYTES,
                Some(DEFAULT_FILE_READ_BYTES),
            ),
        ];
        for (schema, field, min, max, default) in rows {
            let p = &schema["properties"][field];
            assert_eq!(p["minimum"], min, "{field}: {p}");
            assert_eq!(p["maximum"], max, "{field}: {p}");
            assert_eq!(p["default"], serde_json::json!(default), "{field}: {p}");
            let description = p["description"].as_str().unwrap();
            assert!(
                description.contains(&format!("{min} to {max}")),
                "{field}: the description must name the range {min} to {max}: {description:?}"
            );
        }
        let ttl = &create["properties"]["ttl_seconds"];
        assert_eq!(ttl["minimum"], TTL_SECONDS.min, "{ttl}");
        assert!(ttl.get("maximum").is_none(), "no upper bound: {ttl}");
    }
}
