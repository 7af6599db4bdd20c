//! Errors. Each says what happened and, where the user can act, what to do.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open /dev/kvm: {0} (is KVM enabled and are you in the kvm group? `pyro doctor` checks)")]
    KvmOpen(#[source] kvm_ioctls::Error),
    #[error("KVM {op} failed: {source}")]
    Kvm {
        op: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("kernel image {path}: {source} (build it with `pyro env pull`)")]
    KernelOpen {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("kernel image {path} cannot be loaded: {detail} (expected an ELF vmlinux)")]
    KernelLoad { path: PathBuf, detail: String },
    #[error("guest memory: {0}")]
    Memory(String),
    #[error("snapshot {path}: {detail}")]
    Snapshot { path: PathBuf, detail: String },
    #[error("invalid VM config: {0}")]
    Config(String),
    #[error("sandbox: {0}")]
    Sandbox(String),
    #[error("kernel command line is {len} bytes; the kernel takes at most {max}")]
    CmdlineTooLong { len: usize, max: usize },
    #[error("disk {path}: {source}")]
    Disk {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("vsock socket {path}: {source}")]
    Vsock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("serial log {path}: {source}")]
    SerialLog {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("disk {path} is not one of this VM's writable disks (copy only a disk the VM writes)")]
    NotAWritableDisk { path: PathBuf },
    #[error("will not copy over {path}: it is one of this VM's disks (pick another destination)")]
    CopyOverDisk { path: PathBuf },
    #[error("copying disk {from} to {to}: {source}")]
    DiskCopy {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the VM has stopped: its devices are gone")]
    Stopped,
    #[error("the vCPUs did not pause within 5 s")]
    PauseTimeout,
    #[error("cannot start a vCPU thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("{0}")]
    Guest(GuestFailure),
    #[error(
        "timed out after {seconds:.1}s waiting for {what}{}",
        console_tail_text(console)
    )]
    Timeout {
        what: &'static str,
        seconds: f64,
        console: Vec<String>,
    },
}

/// How the guest failed, with what it last printed.
#[derive(Debug, Clone)]
pub struct GuestFailure {
    pub kind: FailureKind,
    pub console: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum FailureKind {
    /// The guest kernel panicked (message from the console).
    Panic(String),
    /// KVM could not run an instruction (on PVM: the emulator lacks it).
    InternalError {
        suberror: u32,
        rip: u64,
        insn: Vec<u8>,
    },
    /// The vCPU shut down (triple fault).
    TripleFault { rip: u64 },
    /// KVM refused to enter the guest.
    FailEntry { reason: u64 },
    /// A vCPU exit the VMM does not handle.
    UnexpectedExit(String),
    /// KVM_RUN itself failed.
    Run(String),
    /// The guest reset or powered off before PID 1 said it started.
    StoppedBeforeInit(String),
}

impl fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            FailureKind::Panic(msg) => write!(f, "guest kernel panic: {msg}")?,
            FailureKind::InternalError {
                suberror,
                rip,
                insn,
            } => {
                write!(
                    f,
                    "KVM internal error (suberror {suberror}) at rip {rip:#x}"
                )?;
                if !insn.is_empty() {
                    write!(f, ", instruction bytes")?;
                    for b in insn {
                        write!(f, " {b:02x}")?;
                    }
                }
                write!(
                    f,
                    "; on a PVM host this is an instruction KVM's emulator lacks (check the kernel's PVM masks)"
                )?
            }
            FailureKind::TripleFault { rip } => {
                write!(f, "guest triple fault (vCPU shutdown) at rip {rip:#x}")?
            }
            FailureKind::FailEntry { reason } => write!(
                f,
                "KVM could not enter the guest (hardware entry failure reason {reason:#x})"
            )?,
            FailureKind::UnexpectedExit(what) => write!(f, "unexpected vCPU exit: {what}")?,
            FailureKind::Run(what) => write!(f, "KVM_RUN failed: {what}")?,
            FailureKind::StoppedBeforeInit(how) => {
                write!(f, "guest {how} before its init started")?
            }
        }
        f.write_str(&console_tail_text(&self.console))
    }
}

/// The last non-empty console lines as text to append to an error
/// message (`"; last guest console lines: ..."`).
pub fn console_tail_text(console: &[String]) -> String {
    const SHOWN: usize = 15;
    let lines: Vec<&String> = console.iter().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::from("; the guest printed nothing");
    }
    let start = lines.len().saturating_sub(SHOWN);
    let mut out = String::from("; last guest console lines:");
    for l in &lines[start..] {
        out.push_str("\n  | ");
        out.push_str(l);
    }
    out
}
