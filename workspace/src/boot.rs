//! Booting an environment to its init and back down: the end-to-end check
//! behind `pyro doctor --boot`, the boot tests and the `cold_boot` bench.

use crate::{Error, Progress, Pyro};
use pyro_vmm::{HostKind, Vm, VmConfig, VmExit};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How to boot.
#[derive(Debug, Clone)]
pub struct BootOptions {
    pub environment: String,
    pub mem_mib: u32,
    pub vcpus: u8,
    /// Bound on VMM start -> init marker.
    pub init_timeout: Duration,
    /// Bound on init marker -> power-off.
    pub exit_timeout: Duration,
    /// Where the guest console goes (default: `<data>/logs/boot-check.log`).
    pub console_log: Option<PathBuf>,
    /// Also copy the guest console to stderr.
    pub echo_console: bool,
}

impl Default for BootOptions {
    fn default() -> Self {
        Self {
            environment: pyro_images::DEFAULT_ENV.to_string(),
            mem_mib: VmConfig::DEFAULT_MEM_MIB,
            vcpus: 1,
            init_timeout: Duration::from_secs(60),
            exit_timeout: Duration::from_secs(30),
            console_log: None,
            echo_console: false,
        }
    }
}

/// What a boot check saw.
#[derive(Debug, Clone, Serialize)]
pub struct BootCheck {
    pub environment: String,
    pub host: HostKind,
    pub mem_mib: u32,
    pub vcpus: u8,
    /// Host wall time, VMM start -> PID 1 running.
    pub to_init_ms: f64,
    /// The guest's own clock when PID 1 started.
    pub guest_init_ms: f64,
    /// Host wall time, VMM start -> VM gone.
    pub total_ms: f64,
    pub exit: VmExit,
    pub kernel: PathBuf,
    pub rootfs: PathBuf,
    pub console_log: PathBuf,
}

impl Pyro {
    /// Builds what is missing (kernel, environment image), boots the
    /// environment with `pyro.mode=poweroff`, and waits for init to start
    /// and the VM to power off.
    pub fn boot_check(
        &self,
        opts: &BootOptions,
        progress: &dyn Progress,
    ) -> Result<BootCheck, Error> {
        let console_log = match &opts.console_log {
            Some(p) => p.clone(),
            None => {
                let dir = self.paths().data.join("logs");
                std::fs::create_dir_all(&dir)
                    .map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
                dir.join("boot-check.log")
            }
        };
        let (mut config, env) =
            self.environment_vm(&opts.environment, opts.mem_mib, opts.vcpus, progress)?;
        config.cmdline_extra.push("pyro.mode=poweroff".into());
        config.serial_log = Some(console_log.clone());
        config.serial_echo = opts.echo_console;

        let started = Instant::now();
        let mut vm = Vm::start(&config)?;
        let times = vm.wait_for_init(opts.init_timeout)?;
        let exit = vm.wait_for_exit(opts.exit_timeout)?;
        drop(vm);
        Ok(BootCheck {
            environment: env.name,
            host: config.host,
            mem_mib: config.mem_mib,
            vcpus: config.vcpus,
            to_init_ms: times.to_init_ms,
            guest_init_ms: times.guest_init_ms,
            total_ms: started.elapsed().as_secs_f64() * 1000.0,
            exit,
            kernel: config.kernel.clone(),
            rootfs: env.rootfs,
            console_log,
        })
    }
}
