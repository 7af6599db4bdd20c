//! Kernel command-line keys guest-init reads from `/proc/cmdline`.

/// `pyro.mode=<mode>`: what PID 1 does once the system is up.
pub const MODE_KEY: &str = "pyro.mode";
/// Power off right after start-up (boot checks, `pyro doctor --boot`).
pub const MODE_POWEROFF: &str = "poweroff";
/// Stay up and serve (the default).
pub const MODE_SERVE: &str = "serve";
/// `pyro.workspace=/dev/vdX`: the disk to mount (ext4) on /workspace.
/// Without it /workspace is a tmpfs (one-shot runs).
pub const WORKSPACE_KEY: &str = "pyro.workspace";
/// `pyro.workspace=later`: mount nothing on /workspace at start-up;
/// the host names the disk in its `Restored` request. Warm workspace
/// snapshots are taken this way, without the workspace's disk.
pub const WORKSPACE_LATER: &str = "later";
/// Where guest-init is installed in every environment image.
pub const INIT_PATH: &str = "/opt/pyro/bin/pyro-init";
/// `pyro.system=<upper>`: make the whole system writable at start-up,
/// with an overlay over the read-only root whose upper layer is the
/// ext4 disk `/dev/vdX` (a workspace's system disk: changes persist) or
/// [`SYSTEM_TMPFS`] (a one-shot run: changes go with the VM). Without
/// it the root stays read-only.
pub const SYSTEM_KEY: &str = "pyro.system";
/// `pyro.system=tmpfs`: the upper layer in guest memory.
pub const SYSTEM_TMPFS: &str = "tmpfs";
/// `pyro.system=later`: nothing at start-up; the host names the upper in
/// its `Restored` request (warm snapshots are taken this way).
pub const SYSTEM_LATER: &str = "later";
/// `pyro.test_panic=<word>`: for tests of guest-init's panic isolation
/// only. An exec whose argv is exactly `[<word>]` panics in the agent's
/// handler instead of running. Only tests set it (through
/// `VmConfig::cmdline_extra`); no front end passes kernel parameters
/// from its callers, so it cannot be reached in normal use.
pub const TEST_PANIC_KEY: &str = "pyro.test_panic";
