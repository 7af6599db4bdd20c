//! `pyro doctor`: can this host run pyro VMs, and what is built.

use crate::{BootCheck, BootOptions, EnvSummary, Progress, Pyro};
use pyro_vmm::HostKind;
use serde::Serialize;
use std::path::PathBuf;

/// `/dev/kvm` as this process sees it.
#[derive(Debug, Clone, Serialize)]
pub struct KvmStatus {
    pub path: String,
    pub exists: bool,
    pub readable: bool,
    pub writable: bool,
    /// KVM_GET_API_VERSION, when /dev/kvm could be opened.
    pub api_version: Option<i32>,
}

/// The built guest kernel, if any.
#[derive(Debug, Clone, Serialize)]
pub struct KernelStatus {
    pub installed: bool,
    pub path: Option<PathBuf>,
    pub source_version: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    /// No issues found.
    pub ok: bool,
    pub platform: String,
    pub kvm: KvmStatus,
    /// pvm, vmx, svm or unknown.
    pub host: HostKind,
    pub host_note: String,
    pub cache_dir: PathBuf,
    pub data_dir: PathBuf,
    pub kernel: KernelStatus,
    pub environments: Vec<EnvSummary>,
    /// Present when a boot was asked for and succeeded.
    pub boot: Option<BootCheck>,
    pub issues: Vec<String>,
}

impl Pyro {
    /// Checks the host and the cache; with `boot`, also builds what is
    /// missing and boots an environment end to end.
    pub fn doctor(&self, boot: Option<&BootOptions>, progress: &dyn Progress) -> DoctorReport {
        let mut issues = Vec::new();
        let kvm = kvm_status(&mut issues);
        let host = HostKind::detect();
        let kernel = self.images().installed_kernel();
        let mut report = DoctorReport {
            ok: false,
            platform: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
            kvm,
            host,
            host_note: host_note(host).to_string(),
            cache_dir: self.paths().cache.clone(),
            data_dir: self.paths().data.clone(),
            kernel: KernelStatus {
                installed: kernel.is_some(),
                path: kernel.as_ref().map(|k| k.path.clone()),
                source_version: kernel.map(|k| k.manifest.source_version),
            },
            environments: self.env_list(),
            boot: None,
            issues: Vec::new(),
        };
        if std::env::consts::ARCH != "x86_64" {
            issues.push(format!(
                "pyro runs x86_64 guests on x86_64 hosts; this is {}",
                std::env::consts::ARCH
            ));
        }
        if let Some(opts) = boot {
            if report.kvm.api_version.is_some() {
                match self.boot_check(opts, progress) {
                    Ok(check) => report.boot = Some(check),
                    Err(e) => issues.push(format!("boot of {} failed: {e}", opts.environment)),
                }
            } else {
                issues.push("boot skipped: KVM is not usable".into());
            }
        }
        report.ok = issues.is_empty();
        report.issues = issues;
        report
    }
}

fn kvm_status(issues: &mut Vec<String>) -> KvmStatus {
    let path = "/dev/kvm";
    let exists = std::path::Path::new(path).exists();
    let readable = std::fs::File::open(path).is_ok();
    let writable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .is_ok();
    let api_version = match pyro_vmm::kvm_api_version() {
        Ok(v) => Some(v),
        Err(e) => {
            issues.push(if exists {
                format!("{path} is not usable: {e}")
            } else {
                format!("{path} does not exist: enable virtualization (VT-x/AMD-V) and load kvm_intel or kvm_amd")
            });
            None
        }
    };
    KvmStatus {
        path: path.into(),
        exists,
        readable,
        writable,
        api_version,
    }
}

fn host_note(host: HostKind) -> &'static str {
    match host {
        HostKind::Pvm => "PVM (kvm_pvm): guest kernel code is emulated; the VMM adds the PVM kernel command-line masks",
        HostKind::Vmx => "Intel VT-x: hardware virtualization, no masks needed",
        HostKind::Svm => "AMD-V: hardware virtualization, no masks needed",
        HostKind::Unknown => "unknown KVM module: booting without PVM masks",
    }
}
