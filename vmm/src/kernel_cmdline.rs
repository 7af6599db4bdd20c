//! The guest kernel command line.

use crate::host::HostKind;
use crate::layout::CMDLINE_MAX;

/// Always: serial console, reset through the i8042 (so a reboot ends the
/// VM), reboot at once on panic (the VMM reports it from the console).
const BASE: &[&str] = &["console=ttyS0", "reboot=k", "panic=-1", "quiet"];

/// PVM hosts only. The first group hides instructions KVM's emulator
/// lacks (the guest's CPUID shows the host's features; KVM_SET_CPUID2 has
/// no effect there), the patch's `pvm_native` skips INT3/FWAIT, and the
/// rest cut emulated boot work. See `images/kernel/README.md`.
const PVM_QUIRKS: &[&str] = &[
    "noxsave",
    "nofsgsbase",
    "clearcpuid=popcnt,rdtscp,smap,erms,fsrm,rdpid,cx16",
    "pvm_native",
    "noreplace-smp",
    "rodata=off",
    // Passed to PID 1 as environment and inherited by every process: the
    // guest kernel (noxsave) saves only x87/SSE state on context switch,
    // so glibc must not pick AVX code paths. Masking the AVX bits is not
    // enough: glibc derives the *preferred* bit AVX_Fast_Unaligned_Load
    // before it applies the masks, and that bit alone selects the AVX
    // memcpy/memmove. Left on, a task preempted mid-copy got the upper
    // halves of its YMM registers back as zeros: 16 zeroed bytes in every
    // 32-byte block copied at that moment (seen as corrupted vsock frames).
    "GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX,-AVX2,-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX512CD,-FMA,-XSAVEC,-AVX_Fast_Unaligned_Load",
];

/// Builds the command line for one boot.
#[derive(Debug, Clone)]
pub struct KernelCmdline {
    words: Vec<String>,
}

impl KernelCmdline {
    pub fn new(host: HostKind) -> Self {
        let mut words: Vec<String> = BASE.iter().map(|s| s.to_string()).collect();
        if host.needs_emulator_quirks() {
            words.extend(PVM_QUIRKS.iter().map(|s| s.to_string()));
        }
        Self { words }
    }

    pub fn push(&mut self, word: impl Into<String>) {
        self.words.push(word.into());
    }

    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// The joined line; errors if the kernel would truncate it.
    pub fn render(&self) -> Result<String, crate::Error> {
        let line = self.words.join(" ");
        if line.len() >= CMDLINE_MAX {
            return Err(crate::Error::CmdlineTooLong {
                len: line.len(),
                max: CMDLINE_MAX - 1,
            });
        }
        Ok(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_only_on_pvm() {
        let pvm = KernelCmdline::new(HostKind::Pvm).render().unwrap();
        assert!(pvm.contains("pvm_native") && pvm.contains("noxsave"));
        for host in [HostKind::Vmx, HostKind::Svm, HostKind::Unknown] {
            let line = KernelCmdline::new(host).render().unwrap();
            assert!(!line.contains("pvm_native"), "{host:?}: {line}");
            assert!(!line.contains("clearcpuid"), "{host:?}: {line}");
            assert!(line.starts_with("console=ttyS0 reboot=k panic=-1"));
        }
    }

    #[test]
    fn too_long_is_an_error() {
        let mut c = KernelCmdline::new(HostKind::Vmx);
        c.push("x".repeat(CMDLINE_MAX));
        assert!(c.render().is_err());
    }
}
