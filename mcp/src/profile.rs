//! Tool profiles: which tools a server exposes (`--profile`).

use std::fmt;
use std::str::FromStr;

/// A set of tools. `workspace-core` is what most agents need and the
/// default; `workspace-full` adds stop/start, fork, snapshots,
/// published ports, shells, services, secrets and disk reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// `vm_run` only: one-shot commands in fresh VMs.
    VmRun,
    /// `vm_run` and the workspace tools for the edit-run-fix loop.
    #[default]
    WorkspaceCore,
    /// Every tool pyro has.
    WorkspaceFull,
}

/// `vm-run`.
const VM_RUN: &[&str] = &["vm_run"];

/// `workspace-core`.
const WORKSPACE_CORE: &[&str] = &[
    "vm_run",
    "workspace_create",
    "workspace_list",
    "workspace_update",
    "workspace_status",
    "workspace_sync_push",
    "workspace_exec",
    "workspace_logs",
    "workspace_file_list",
    "workspace_file_read",
    "workspace_file_write",
    "workspace_patch_apply",
    "workspace_diff",
    "workspace_export",
    "workspace_reset",
    "workspace_delete",
];

/// `workspace-full`: every tool the server implements.
const WORKSPACE_FULL: &[&str] = &[
    "vm_run",
    "workspace_create",
    "workspace_list",
    "workspace_update",
    "workspace_status",
    "workspace_logs",
    "workspace_delete",
    "workspace_fork",
    "workspace_stop",
    "workspace_start",
    "workspace_exec",
    "workspace_sync_push",
    "workspace_export",
    "workspace_diff",
    "workspace_reset",
    "workspace_file_list",
    "workspace_file_read",
    "workspace_file_write",
    "workspace_patch_apply",
    "snapshot_create",
    "snapshot_list",
    "snapshot_delete",
    "workspace_port_publish",
    "workspace_port_list",
    "workspace_port_unpublish",
    "shell_open",
    "shell_read",
    "shell_write",
    "shell_signal",
    "shell_resize",
    "shell_list",
    "shell_close",
    "service_start",
    "service_list",
    "service_status",
    "service_logs",
    "service_stop",
    "workspace_secret_set",
    "workspace_secret_unset",
    "workspace_disk_list",
    "workspace_disk_read",
    "workspace_disk_export",
];

impl Profile {
    pub const ALL: [Profile; 3] = [
        Profile::VmRun,
        Profile::WorkspaceCore,
        Profile::WorkspaceFull,
    ];
    /// The `--profile` values, in the order of [`Profile::ALL`].
    pub const NAMES: [&'static str; 3] = ["vm-run", "workspace-core", "workspace-full"];

    pub fn name(self) -> &'static str {
        // Variants are declared in the order of NAMES.
        Self::NAMES[self as usize]
    }

    /// The names of the tools this profile exposes.
    pub fn tools(self) -> &'static [&'static str] {
        match self {
            Profile::VmRun => VM_RUN,
            Profile::WorkspaceCore => WORKSPACE_CORE,
            Profile::WorkspaceFull => WORKSPACE_FULL,
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        one_of("profile", s, &Profile::ALL, &Profile::NAMES)
    }
}

/// The value among `all` whose name (in `names`, same order) is `s`, or
/// an error that lists the names.
pub(crate) fn one_of<T: Copy>(what: &str, s: &str, all: &[T], names: &[&str]) -> Result<T, String> {
    names
        .iter()
        .position(|n| *n == s)
        .map(|i| all[i])
        .ok_or_else(|| format!("unknown {what} {s:?}: use one of {}", names.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_lists_the_valid_ones() {
        for p in Profile::ALL {
            assert_eq!(p.name().parse::<Profile>(), Ok(p));
        }
        let err = "full".parse::<Profile>().unwrap_err();
        assert!(
            err.contains("vm-run, workspace-core, workspace-full"),
            "{err}"
        );
    }

    #[test]
    fn core_is_a_subset_of_full_and_counts_match_the_spec() {
        assert_eq!(Profile::VmRun.tools().len(), 1);
        assert_eq!(Profile::WorkspaceCore.tools().len(), 16);
        assert_eq!(Profile::WorkspaceFull.tools().len(), 42);
        for t in Profile::WorkspaceCore.tools() {
            assert!(Profile::WorkspaceFull.tools().contains(t), "{t}");
        }
    }
}
