//! What kind of KVM this host has, and what that means for the guest.
//!
//! On PVM hosts (`kvm_pvm` loaded with native=1) all guest kernel code runs
//! in KVM's instruction emulator, which lacks many instructions: the guest
//! kernel must be told not to use them (see `images/kernel/README.md`). On
//! VMX/SVM hosts none of that is needed and the same kernel runs unmasked.

use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostKind {
    /// Pagetable-based Virtual Machine: shadow paging, emulated CPL0.
    Pvm,
    /// Intel VT-x.
    Vmx,
    /// AMD-V.
    Svm,
    /// /dev/kvm is there but the module is not one we know.
    Unknown,
}

impl HostKind {
    /// Reads `/sys/module`; `PYRO_HOST_KIND=pvm|vmx|svm` overrides (for
    /// tests and for hosts whose sysfs is hidden).
    pub fn detect() -> HostKind {
        if let Some(kind) = std::env::var("PYRO_HOST_KIND")
            .ok()
            .as_deref()
            .and_then(Self::parse)
        {
            return kind;
        }
        Self::detect_in(Path::new("/sys/module"))
    }

    /// Detection against a given sysfs module directory.
    pub fn detect_in(sys_module: &Path) -> HostKind {
        // PVM first: a host could have kvm_intel loaded too, and then the
        // masks are the safe choice (they are inert on VMX).
        if sys_module.join("kvm_pvm").exists() {
            HostKind::Pvm
        } else if sys_module.join("kvm_intel").exists() {
            HostKind::Vmx
        } else if sys_module.join("kvm_amd").exists() {
            HostKind::Svm
        } else {
            HostKind::Unknown
        }
    }

    pub fn parse(s: &str) -> Option<HostKind> {
        match s {
            "pvm" => Some(HostKind::Pvm),
            "vmx" => Some(HostKind::Vmx),
            "svm" => Some(HostKind::Svm),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HostKind::Pvm => "pvm",
            HostKind::Vmx => "vmx",
            HostKind::Svm => "svm",
            HostKind::Unknown => "unknown",
        }
    }

    /// Whether the guest kernel must avoid the instructions PVM's emulator
    /// lacks.
    pub fn needs_emulator_quirks(self) -> bool {
        self == HostKind::Pvm
    }
}

/// Opens /dev/kvm and returns KVM_GET_API_VERSION: the cheapest proof that
/// this process can create VMs.
pub fn kvm_api_version() -> Result<i32, crate::Error> {
    let kvm = kvm_ioctls::Kvm::new().map_err(crate::Error::KvmOpen)?;
    Ok(kvm.get_api_version())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sysfs(modules: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for m in modules {
            std::fs::create_dir(dir.path().join(m)).unwrap();
        }
        dir
    }

    #[test]
    fn detects_each_kind_from_sysfs() {
        assert_eq!(
            HostKind::detect_in(sysfs(&["kvm", "kvm_pvm"]).path()),
            HostKind::Pvm
        );
        assert_eq!(
            HostKind::detect_in(sysfs(&["kvm", "kvm_intel"]).path()),
            HostKind::Vmx
        );
        assert_eq!(
            HostKind::detect_in(sysfs(&["kvm", "kvm_amd"]).path()),
            HostKind::Svm
        );
        assert_eq!(
            HostKind::detect_in(sysfs(&["kvm"]).path()),
            HostKind::Unknown
        );
        assert_eq!(
            HostKind::detect_in(sysfs(&["kvm_intel", "kvm_pvm"]).path()),
            HostKind::Pvm,
            "PVM wins: its masks are inert on VMX"
        );
    }

    #[test]
    fn only_pvm_needs_quirks() {
        assert!(HostKind::Pvm.needs_emulator_quirks());
        for k in [HostKind::Vmx, HostKind::Svm, HostKind::Unknown] {
            assert!(!k.needs_emulator_quirks());
        }
    }
}
