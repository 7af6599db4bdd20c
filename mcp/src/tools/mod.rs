//! The tools, one file per family, and the parameter types they share.
//! Each tool is a thin call into [`pyro_workspace::Pyro`]; its structured
//! result is the JSON `pyro ... --json` prints (lists wrapped in an object
//! with a `count`).

pub(crate) mod files;
pub(crate) mod run;
pub(crate) mod snapshots;
pub(crate) mod workspace;

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

/// Shared defaults (they also appear in the schemas).
pub(crate) fn default_environment() -> String {
    pyro_workspace::DEFAULT_ENV.to_string()
}
pub(crate) fn default_vcpus() -> u8 {
    1
}
pub(crate) fn default_mem_mib() -> u32 {
    128
}
pub(crate) fn default_timeout_seconds() -> u64 {
    30
}
pub(crate) fn default_workspace_path() -> String {
    "/workspace".to_string()
}

/// Bounds the CLI enforces too.
pub(crate) const MAX_VCPUS: u8 = 32;
pub(crate) const MIN_MEM_MIB: u32 = 64;
pub(crate) const MAX_MEM_MIB: u32 = 65536;
pub(crate) const MAX_TIMEOUT_SECONDS: u64 = 86400;

/// Checks the VM size fields shared by vm_run and workspace_create.
pub(crate) fn check_vm_size(vcpus: u8, mem_mib: u32) -> Result<(), Error> {
    check_range("vcpus", vcpus, 1, MAX_VCPUS)?;
    check_range("mem_mib", mem_mib, MIN_MEM_MIB, MAX_MEM_MIB)
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
}
