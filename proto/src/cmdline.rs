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
