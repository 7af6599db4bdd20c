//! `pyro-workspace`: the pyro SDK.
//!
//! Owns what users do with pyro, independent of how they ask: the
//! environment catalog and cache (on top of `pyro-images`), booting VMs
//! (on top of `pyro-vmm`), host checks (`doctor`), and, as they land,
//! one-shot runs and persistent workspaces. The CLI and the MCP server are
//! thin front ends over [`Pyro`]; every call returns a typed result that
//! serializes to the JSON they print.

#![forbid(unsafe_code)]

mod boot;
mod cancel;
mod detached;
mod doctor;
mod environments;
mod error;
mod guest;
mod process;
mod run;
pub mod secrets;
mod shell_words;
mod staging;
#[doc(hidden)]
pub mod testing;
mod transfer;
mod warm;
mod workspaces;

pub use boot::{BootCheck, BootOptions};
pub use cancel::Cancel;
pub use detached::{vmm_program, DetachedVm, VmState, VMM_BIN_ENV};
pub use doctor::{DoctorReport, KvmStatus};
pub use environments::{EnvDeleted, EnvDetail, EnvSummary, PruneReport};
pub use error::{Error, BAD_INPUT_KINDS};
pub use guest::{GuestClient, GuestError};
pub use pyro_images::{
    CustomEnv, CustomRequest, NoProgress, Progress, StderrProgress, DEFAULT_ENV, MAX_SETUP_SCRIPT,
};
pub use pyro_proto::rpc::{
    ArtifactType, DownloadResult, ExecRequest, ExecResult, FileInfo, ListResult, ReadResult,
    Stream, UploadResult, WriteResult,
};
/// Service bounds, defaults and probe parsing (`pyro workspace service`,
/// docs/services.md).
pub use pyro_proto::service as service_limits;
/// Shell bounds and defaults (`pyro workspace shell`, docs/shells.md).
pub use pyro_proto::shell as shell_limits;
pub use pyro_vmm::control::ExitReason;
/// Network policies, allowlists, static names, port mappings, and what a
/// running VM reports of its network.
pub use pyro_vmm::net::policy::{AddHost, HostPattern, NetRules, NetworkPolicy, PortMapping};
pub use pyro_vmm::net::stack::{NetStatus, PublishedPort, RefusalRecord, RefusalSource};
pub use pyro_vmm::NetConfig;
pub use pyro_vmm::{HostKind, VmExit};
pub use run::{abandon_runs, RunOptions, RunResult, RunTimings};
pub use shell_words::{shell_join, shell_quote};
pub use staging::{STAGED_BAD_SUM_ENV, STAGING_ENV};
pub use transfer::{pack_dir, unpack_untrusted, PackStats};
pub use workspaces::{
    abandon_creates, parse_secret_env, secret_env_pair, secret_from_file, serve_image_reader,
    DiskExport, ExecOptions, ServedBy, HOST_READS_ENV, IMAGE_READER_ESCAPE_ENV, IMAGE_READER_MODE,
};
pub use workspaces::{
    Checkpoint, CheckpointKind, CommandRecord, CommandStatus, CreateOptions, Deleted, DiffEntry,
    DiffResult, DiffStatus, DiffSummary, Export, FileList, FileRead, FileWrite, ForkOptions,
    Forked, PatchApply, Port, PortList, Reset, SecretInfo, SecretSource, Service, ServiceList,
    ServiceLogs, ServiceOptions, ServicePort, ServiceProbe, ServiceState, Shell, ShellClosed,
    ShellList, ShellOptions, ShellRead, ShellReadOptions, ShellSignal, ShellSignalSent, ShellState,
    ShellWrite, StartKind, SuspendedBy, SyncPush, UpdateOptions, Workspace, WorkspaceRecord,
    WorkspaceState, DEFAULT_DISK_MIB, DEFAULT_FILE_READ_BYTES, DEFAULT_IDLE_SUSPEND_SECONDS,
    DEFAULT_SYSTEM_DISK_MIB, MAX_FILE_READ_BYTES, MAX_FILE_WRITE_BYTES, MAX_FORK_COUNT,
};

use pyro_images::{Images, Paths};

/// The entry point of the SDK.
#[derive(Debug, Clone)]
pub struct Pyro {
    images: Images,
}

impl Pyro {
    /// Uses `PYRO_HOME`, or the XDG cache and data directories.
    pub fn from_env() -> Self {
        Self::with_paths(Paths::from_env())
    }

    /// Keeps everything under `home` (`home/cache`, `home/data`).
    pub fn with_home(home: impl AsRef<std::path::Path>) -> Self {
        Self::with_paths(Paths::with_home(home))
    }

    pub fn with_paths(paths: Paths) -> Self {
        Self {
            images: Images::new(paths),
        }
    }

    pub fn paths(&self) -> &Paths {
        self.images.paths()
    }

    pub(crate) fn images(&self) -> &Images {
        &self.images
    }

    /// A VM booting `environment` from its read-only root image, building
    /// the kernel and the image first if needed. Callers add devices.
    ///
    /// The kernel follows `vcpus`: the uniprocessor kernel for one vCPU,
    /// the SMP kernel (built on first use, minutes) for more. The kernel
    /// file is part of every warm snapshot's key and origin, so a VM
    /// never restores a snapshot of the other kernel.
    pub(crate) fn environment_vm(
        &self,
        environment: &str,
        mem_mib: u32,
        vcpus: u8,
        progress: &dyn Progress,
    ) -> Result<(pyro_vmm::VmConfig, pyro_images::Environment), Error> {
        // Unknown names are refused before any tool is installed.
        self.images.spec(environment)?;
        self.images.provide_tools(environment, progress)?;
        let kernel = self.images.kernel_for_vcpus(vcpus, progress)?;
        let env = self.images.environment(environment, progress)?;
        let mut config = pyro_vmm::VmConfig::new(&kernel.path);
        config.mem_mib = mem_mib;
        config.vcpus = vcpus;
        if let Some(max) = console_log_max_from_env() {
            config.serial_log_max_bytes = max;
        }
        config.add_disk(pyro_vmm::Disk {
            path: env.rootfs.clone(),
            read_only: true,
            direct_only: false,
        });
        // Every VM has the net device (policy `off` by default): one
        // warm snapshot then fits every policy.
        config.set_net(pyro_vmm::NetConfig::default());
        Ok((config, env))
    }
}

/// Sets the console log's cap of the VMs this process starts, in bytes
/// (default 4 MiB, at least 4096; `console.log` rotates to
/// `console.log.1` when full). Tests set it small; a value that is not a
/// number is ignored.
pub const CONSOLE_LOG_MAX_ENV: &str = "PYRO_CONSOLE_LOG_MAX_BYTES";

fn console_log_max_from_env() -> Option<u64> {
    std::env::var(CONSOLE_LOG_MAX_ENV).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use pyro_images::KernelVariant;
    use pyro_vmm::limits::VCPUS;

    #[test]
    fn the_smp_kernel_takes_as_many_cpus_as_a_vm_may_have() {
        let want = format!("CONFIG_NR_CPUS={}", VCPUS.max);
        assert!(
            KernelVariant::Smp.config().lines().any(|l| l == want),
            "images/kernel/smp.config must set {want} (pyro_vmm::limits::VCPUS.max)"
        );
        assert_eq!(KernelVariant::for_vcpus(VCPUS.default), KernelVariant::Up);
    }
}
