//! Confinement of the threads that handle what a guest controls.
//!
//! The guest is the adversary: it writes the virtio rings, the vsock
//! packets, the network frames and the disk images the VMM reads. A bug
//! in that code must not hand the guest the host. So each thread of a VM
//! gives up, once set up, every system call its work does not need:
//!
//! | thread | its list | set up by |
//! |---|---|---|
//! | `vcpuN` | [`vcpu`] | the vCPU thread, before its first `KVM_RUN` |
//! | `vmm-events` | [`events`] | the event thread, before its first wait |
//! | `vmm-resolver` | [`resolver`] | the network's name lookups |
//! | the VMM process's main thread | [`owner`] | `pyro __vmm`, once the VM runs |
//! | `vmm-control` and its connections | [`control`] | `pyro __vmm` |
//! | `pyro __image-reader` | [`parser`] | the ext4 reader of workspace disks |
//!
//! Each list is one reviewed file; every entry says why it is there, and
//! [`COMMON`] holds what any Rust thread needs (locks, the allocator,
//! signal return, thread exit). A seccomp filter binds the thread that
//! installs it and the threads it starts later; the VMM's threads are all
//! started before the main thread installs its own, so no thread carries
//! another's list on top of its own.
//!
//! What a confined thread also loses:
//! - **capabilities**: all of them (the control thread keeps
//!   `CAP_NET_BIND_SERVICE`, so a published port below 1024 still binds
//!   when pyro runs as root). Capabilities are per thread in Linux, so
//!   this holds in a VM that runs inside the CLI or the MCP server too
//!   (`run`), without touching the caller's own threads;
//! - **new privileges** (`PR_SET_NO_NEW_PRIVS`, set with the filter);
//! - **files** outside the directories its kind needs at run time, with
//!   Landlock where the kernel has it ([`landlock`], [`Files`]).
//!
//! A call outside the list raises `SIGSYS`; the handler writes one line
//! (`pyro vmm: sandbox: ...`, the thread and the call's number) to
//! stderr, which for a workspace is its `vmm.log`, and ends the process:
//! a thread that makes such a call is no longer running our code. The
//! workspace reads that line back and reports `sandbox_violation`.
//!
//! [`MODE_ENV`] (`PYRO_VMM_SECCOMP`): `enforce` (the default), `log` (the
//! kernel logs the call instead, `audit: type=1326` in `dmesg`, and lets
//! it through: how to find a call a new code path needs; capabilities
//! and Landlock stay in force), `off`.
//! `pyro doctor` says which is in force.

pub mod control;
pub mod events;
mod kvm;
pub mod landlock;
pub mod owner;
pub mod parser;
pub mod resolver;
pub mod vcpu;

pub use landlock::Files;
pub use parser::{confine_parser, PARSER_MAX_CPU_SECONDS, PARSER_MAX_MEMORY};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The environment variable that picks the [`Mode`].
pub const MODE_ENV: &str = "PYRO_VMM_SECCOMP";

/// How the filters are applied (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Enforce,
    Log,
    Off,
}

impl Mode {
    /// The mode [`MODE_ENV`] asks for; an unknown value is refused, so a
    /// typo never turns the sandbox off unnoticed.
    pub fn from_env() -> Result<Mode, String> {
        match std::env::var(MODE_ENV).as_deref() {
            Err(_) | Ok("") | Ok("enforce") => Ok(Mode::Enforce),
            Ok("log") => Ok(Mode::Log),
            Ok("off") => Ok(Mode::Off),
            Ok(other) => Err(format!(
                "{MODE_ENV}={other:?}: expected enforce, log or off"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Log => "log",
            Mode::Off => "off",
        }
    }
}

/// Which arguments an allowed call may have.
#[derive(Debug, Clone, Copy)]
pub enum Args {
    /// Any.
    Any,
    /// `ioctl` with one of these requests (second argument).
    Ioctl(&'static [u64]),
    /// The first argument is this process's id (`tgkill`: only our own
    /// threads).
    OwnProcess,
    /// `clone` making a thread (`CLONE_THREAD` set), never a process.
    Thread,
}

/// One allowed system call, and why the thread needs it.
#[derive(Debug, Clone, Copy)]
pub struct Allow {
    pub call: i64,
    pub args: Args,
    pub why: &'static str,
}

const fn any(call: i64, why: &'static str) -> Allow {
    Allow {
        call,
        args: Args::Any,
        why,
    }
}

/// What every thread of ours needs, whatever its work.
pub const COMMON: &[Allow] = &[
    any(libc::SYS_futex, "locks, channels and condition variables"),
    any(libc::SYS_mmap, "the allocator (and thread stacks)"),
    any(libc::SYS_munmap, "the allocator"),
    any(libc::SYS_mremap, "the allocator (growing buffers)"),
    any(
        libc::SYS_mprotect,
        "the allocator (growing a thread's heap)",
    ),
    any(libc::SYS_madvise, "the allocator returning memory"),
    any(libc::SYS_brk, "the allocator"),
    any(libc::SYS_close, "dropping a descriptor"),
    any(
        libc::SYS_write,
        "the sandbox's own report and panic messages on stderr",
    ),
    any(libc::SYS_rt_sigreturn, "returning from a signal handler"),
    any(libc::SYS_rt_sigprocmask, "thread exit, panics"),
    any(libc::SYS_sigaltstack, "thread exit (std's overflow stack)"),
    any(libc::SYS_getrandom, "hash maps' random seeds"),
    any(
        libc::SYS_clock_gettime,
        "Instant, where the vDSO falls back",
    ),
    any(libc::SYS_clock_nanosleep, "sleeps"),
    any(libc::SYS_sched_yield, "spinning locks"),
    any(libc::SYS_gettid, "the C library's thread functions"),
    any(libc::SYS_getpid, "the C library (raise, abort)"),
    Allow {
        call: libc::SYS_tgkill,
        args: Args::OwnProcess,
        why: "kicking a vCPU out of KVM_RUN; abort: only this process's threads",
    },
    any(libc::SYS_exit, "thread exit"),
    any(libc::SYS_exit_group, "process exit"),
];

/// The kinds of thread a VM runs, each with its list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadKind {
    Vcpu,
    Events,
    Resolver,
    Owner,
    Control,
}

impl ThreadKind {
    pub const ALL: [ThreadKind; 5] = [
        ThreadKind::Vcpu,
        ThreadKind::Events,
        ThreadKind::Resolver,
        ThreadKind::Owner,
        ThreadKind::Control,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ThreadKind::Vcpu => "vcpu",
            ThreadKind::Events => "events",
            ThreadKind::Resolver => "resolver",
            ThreadKind::Owner => "owner",
            ThreadKind::Control => "control",
        }
    }

    /// Its own list (on top of [`COMMON`]).
    pub fn allowed(self) -> &'static [Allow] {
        match self {
            ThreadKind::Vcpu => vcpu::ALLOWED,
            ThreadKind::Events => events::ALLOWED,
            ThreadKind::Resolver => resolver::ALLOWED,
            ThreadKind::Owner => owner::ALLOWED,
            ThreadKind::Control => control::ALLOWED,
        }
    }

    /// Calls it answers with an errno (on top of [`COMMON_REFUSED`]).
    pub fn refused(self) -> &'static [Refuse] {
        match self {
            ThreadKind::Events | ThreadKind::Control => NO_FILES,
            _ => &[],
        }
    }

    /// Capabilities it keeps (bit numbers).
    fn keeps(self) -> &'static [u32] {
        match self {
            ThreadKind::Control => &[CAP_NET_BIND_SERVICE],
            _ => &[],
        }
    }
}

fn condition(index: u8, op: SeccompCmpOp, len: SeccompCmpArgLen, value: u64) -> SeccompCondition {
    // Only an argument index above 5 is refused, and ours are constants.
    SeccompCondition::new(index, len, op, value).expect("argument index in range")
}

fn rules_for(allow: &Allow) -> Vec<SeccompRule> {
    let rule = |c: Vec<SeccompCondition>| SeccompRule::new(c).expect("non-empty rule");
    match allow.args {
        Args::Any => Vec::new(),
        Args::Ioctl(requests) => requests
            .iter()
            .map(|&r| {
                rule(vec![condition(
                    1,
                    SeccompCmpOp::Eq,
                    SeccompCmpArgLen::Dword,
                    r,
                )])
            })
            .collect(),
        Args::OwnProcess => vec![rule(vec![condition(
            0,
            SeccompCmpOp::Eq,
            SeccompCmpArgLen::Dword,
            u64::from(std::process::id()),
        )])],
        Args::Thread => vec![rule(vec![condition(
            0,
            SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
            SeccompCmpArgLen::Qword,
            libc::CLONE_THREAD as u64,
        )])],
    }
}

/// A call a thread does not need but the C library makes on its own and
/// copes with refused: it fails with `errno` instead of ending the
/// process.
#[derive(Debug, Clone, Copy)]
pub struct Refuse {
    pub call: i64,
    pub errno: i32,
    pub why: &'static str,
}

/// Refused for every thread.
pub const COMMON_REFUSED: &[Refuse] = &[Refuse {
    call: libc::SYS_clone3,
    errno: libc::ENOSYS,
    why: "its flags sit in memory a filter cannot read; the C library then \
          falls back to clone, whose flags Args::Thread checks",
}];

/// For threads that open no file: glibc opens
/// /proc/sys/vm/overcommit_memory the first time a thread's heap shrinks
/// (once per process, at a moment no one picks), and takes a refusal as
/// "no overcommit". Found with `PYRO_VMM_SECCOMP=log` on an event thread.
pub const NO_FILES: &[Refuse] = &[
    Refuse {
        call: libc::SYS_openat,
        errno: libc::EACCES,
        why: "glibc's malloc checking overcommit; this thread opens no file",
    },
    Refuse {
        call: libc::SYS_open,
        errno: libc::EACCES,
        why: "the same, by the older call",
    },
];

/// The compiled filter of `lists` with `mismatch` for every other call,
/// except the `refused` calls (and [`COMMON_REFUSED`]), which fail with
/// their errno.
pub(crate) fn compile(
    lists: &[&[Allow]],
    refused: &[Refuse],
    mismatch: SeccompAction,
) -> Result<BpfProgram, String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for allow in lists.iter().flat_map(|l| l.iter()) {
        let new = rules_for(allow);
        match rules.get_mut(&allow.call) {
            // Already allowed without conditions: stays so.
            Some(existing) if existing.is_empty() => {}
            Some(_) if new.is_empty() => {
                rules.insert(allow.call, Vec::new());
            }
            Some(existing) => existing.extend(new),
            None => {
                rules.insert(allow.call, new);
            }
        }
    }
    let mut program: BpfProgram = SeccompFilter::new(
        rules,
        mismatch.clone(),
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(|e| e.to_string())?
    .try_into()
    .map_err(|e: seccompiler::BackendError| e.to_string())?;
    if mismatch != SeccompAction::Allow {
        program = answer_with_errno(program, COMMON_REFUSED.iter().chain(refused));
    }
    Ok(program)
}

/// Puts the `refused` calls, each answered with its errno, in front of
/// `program`'s own checks. seccompiler's program first checks the
/// architecture (3 instructions, killing on a foreign one), then loads
/// the call number; ours go after that load. A refused call that is also
/// allowed stays refused: list it in one place only.
fn answer_with_errno<'a>(
    program: BpfProgram,
    refused: impl Iterator<Item = &'a Refuse>,
) -> BpfProgram {
    use seccompiler::sock_filter;
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
    const BPF_RET_K: u16 = 0x06;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    // seccomp_data.nr is at offset 0.
    assert!(
        program.len() > 4 && program[3].code == BPF_LD_W_ABS && program[3].k == 0,
        "seccompiler's program no longer starts as expected"
    );
    let (head, tail) = program.split_at(4);
    let mut out = head.to_vec();
    for r in refused {
        out.push(sock_filter {
            code: BPF_JMP_JEQ_K,
            jt: 0,
            jf: 1,
            k: r.call as u32,
        });
        out.push(sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ERRNO | (r.errno as u32 & 0xffff),
        });
    }
    out.extend_from_slice(tail);
    out
}

struct Prepared {
    mode: Mode,
    programs: Vec<(ThreadKind, BpfProgram)>,
}

static PREPARED: OnceLock<Result<Prepared, String>> = OnceLock::new();

/// Reads the mode, compiles every thread kind's filter and installs the
/// `SIGSYS` handler, once per process. Call it before starting a VM's
/// threads: its errors (an unknown mode) are the caller's to report,
/// where [`enter`] in a thread has no one to report to.
pub fn prepare() -> Result<Mode, String> {
    let prepared = PREPARED.get_or_init(|| {
        let mode = Mode::from_env()?;
        let mismatch = match mode {
            Mode::Enforce => SeccompAction::Trap,
            Mode::Log => SeccompAction::Log,
            Mode::Off => SeccompAction::Allow,
        };
        let mut programs = Vec::new();
        if mode != Mode::Off {
            for kind in ThreadKind::ALL {
                let program = compile(&[COMMON, kind.allowed()], kind.refused(), mismatch.clone())
                    .map_err(|e| format!("seccomp filter of the {} thread: {e}", kind.name()))?;
                programs.push((kind, program));
            }
            install_sigsys_handler()?;
        }
        Ok(Prepared { mode, programs })
    });
    prepared.as_ref().map(|p| p.mode).map_err(Clone::clone)
}

thread_local! {
    /// The calling thread's kind, for [`on_sigsys`]'s report.
    static KIND: std::cell::Cell<&'static str> = const { std::cell::Cell::new("unconfined") };
}

/// Confines the calling thread as `kind`, with file access limited to
/// `files` where the kernel has Landlock (see the module docs). After
/// [`prepare`] succeeded this fails only if the kernel refuses, which the
/// thread reports by ending the process: running unconfined is not an
/// option once the VM's threads are up.
pub fn enter(kind: ThreadKind, files: &Files) {
    if let Err(e) = try_enter(kind, files) {
        eprintln!(
            "pyro vmm: sandbox: cannot confine the {} thread: {e}",
            kind.name()
        );
        std::process::exit(1);
    }
}

fn try_enter(kind: ThreadKind, files: &Files) -> Result<(), String> {
    let prepared = match PREPARED.get() {
        Some(Ok(p)) => p,
        Some(Err(e)) => return Err(e.clone()),
        None => return Err("sandbox::prepare was not called".into()),
    };
    if prepared.mode == Mode::Off {
        return Ok(());
    }
    drop_capabilities(kind.keeps())?;
    // SAFETY: takes integers only. Landlock wants it before it restricts.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(format!("no_new_privs: {}", std::io::Error::last_os_error()));
    }
    landlock::restrict(files)?;
    let program = prepared
        .programs
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, p)| p)
        .ok_or("no filter compiled for this thread")?;
    KIND.with(|k| k.set(kind.name()));
    seccompiler::apply_filter(program).map_err(|e| e.to_string())
}

/// Keeps only `keep` of the calling thread's capabilities (effective,
/// permitted and inheritable), and no ambient ones.
fn drop_capabilities(keep: &[u32]) -> Result<(), String> {
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut now = [Data::default(); 2];
    // SAFETY: capget writes two `Data` (version 3) into `now`, which has
    // room for them, and reads `header`; both live across the call.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, now.as_mut_ptr()) } != 0 {
        return Err(format!("capget: {}", std::io::Error::last_os_error()));
    }
    let mut data = [Data::default(); 2];
    for &cap in keep {
        let (word, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
        // Keep it only where the thread had it.
        if now[word].permitted & bit != 0 {
            data[word].permitted |= bit;
            data[word].effective |= now[word].effective & bit;
        }
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointers.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    // SAFETY: capset reads `header` and two `Data` from `data`; both
    // live across the call. It changes only the calling thread.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) } != 0 {
        return Err(format!("capset: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn install_sigsys_handler() -> Result<(), String> {
    // SAFETY: a zeroed sigaction is a valid value to fill in.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_sigsys as *const () as usize;
    action.sa_flags = libc::SA_SIGINFO;
    // SAFETY: installs a handler that makes only async-signal-safe
    // calls (write, exit_group); `action` lives across the call.
    if unsafe { libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()) } != 0 {
        return Err(format!(
            "sigaction(SIGSYS): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// `linux/capability.h`.
const CAP_NET_BIND_SERVICE: u32 = 10;

/// The first words of the line a refused call leaves on stderr.
pub const VIOLATION_PREFIX: &str = "pyro vmm: sandbox:";

/// Exit status of a process ended by a refused call (128 + SIGSYS).
pub const VIOLATION_EXIT: i32 = 128 + libc::SIGSYS;

extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // `siginfo_t`'s sigsys member (x86_64): the call's number is the
    // int at byte 24 (after signo, errno, code, padding and call_addr).
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO, and
    // SIGSYS from seccomp fills the sigsys member.
    let nr = unsafe { (info as *const u8).add(24).cast::<i32>().read_unaligned() };
    let kind = KIND.with(|k| k.get());
    let mut line = [0u8; 200];
    let mut at = 0;
    for part in [
        VIOLATION_PREFIX.as_bytes(),
        b" the ",
        kind.as_bytes(),
        b" thread made system call ",
        decimal(nr, &mut [0u8; 12]),
        b", which its filter does not allow; the VM process ended\n",
    ] {
        let n = part.len().min(line.len() - at);
        line[at..at + n].copy_from_slice(&part[..n]);
        at += n;
    }
    // SAFETY: write and exit_group are async-signal-safe and allowed in
    // every filter (COMMON); `line` lives across the call.
    unsafe {
        libc::write(2, line.as_ptr().cast(), at);
        libc::syscall(libc::SYS_exit_group, VIOLATION_EXIT);
    }
}

/// `n` in decimal, written into `buf` without allocating.
fn decimal(n: i32, buf: &mut [u8; 12]) -> &[u8] {
    let mut v = i64::from(n).unsigned_abs();
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}

/// What confinement this host gives a VM, for `pyro doctor`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The mode [`MODE_ENV`] selects (or why it is invalid).
    pub mode: Result<Mode, String>,
    /// The kernel's seccomp filter actions (`/proc/sys/kernel/seccomp`).
    pub seccomp_actions: Option<String>,
    /// Calls allowed per thread kind, [`COMMON`] included.
    pub allowed_calls: Vec<(&'static str, usize)>,
    /// Landlock's ABI version, when the kernel has it enabled: then each
    /// VM thread may touch files only where its kind needs to.
    pub landlock_abi: Option<i64>,
}

/// Looks at the host (no filter is installed).
pub fn report() -> Report {
    Report {
        mode: Mode::from_env(),
        seccomp_actions: std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail")
            .ok()
            .map(|s| s.trim().to_string()),
        allowed_calls: ThreadKind::ALL
            .iter()
            .map(|k| {
                let mut calls: Vec<i64> =
                    COMMON.iter().chain(k.allowed()).map(|a| a.call).collect();
                calls.sort_unstable();
                calls.dedup();
                (k.name(), calls.len())
            })
            .collect(),
        landlock_abi: landlock::abi(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in the child a test re-runs itself as.
    const CHILD: &str = "PYRO_TEST_SANDBOX_THREAD";

    fn rerun(test: &str, env: &[(&str, &str)]) -> std::process::Output {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    #[test]
    fn every_list_compiles_and_says_why() {
        for kind in ThreadKind::ALL {
            compile(
                &[COMMON, kind.allowed()],
                kind.refused(),
                SeccompAction::Trap,
            )
            .unwrap();
            for a in kind.allowed() {
                assert!(!a.why.is_empty(), "{}: {}", kind.name(), a.call);
                let refused = COMMON_REFUSED.iter().chain(kind.refused());
                assert!(
                    refused.clone().all(|r| r.call != a.call),
                    "{}: {} is both allowed and refused",
                    kind.name(),
                    a.call
                );
            }
        }
    }

    #[test]
    fn decimal_writes_numbers() {
        assert_eq!(decimal(0, &mut [0; 12]), b"0");
        assert_eq!(decimal(435, &mut [0; 12]), b"435");
        assert_eq!(decimal(-1, &mut [0; 12]), b"-1");
        assert_eq!(decimal(i32::MIN, &mut [0; 12]), b"-2147483648");
    }

    #[test]
    fn a_confined_thread_that_calls_outside_its_list_ends_the_process_with_a_report() {
        if std::env::var_os(CHILD).is_some() {
            prepare().unwrap();
            std::thread::Builder::new()
                .name("vcpu0".into())
                .spawn(|| {
                    enter(ThreadKind::Vcpu, &Files::none());
                    println!("confined");
                    // Threads start under the filter too (clone, not clone3).
                    // Not for a vCPU: opening a socket.
                    let _ = std::net::UdpSocket::bind("127.0.0.1:0");
                    println!("still alive");
                })
                .unwrap()
                .join()
                .unwrap();
            std::process::exit(0);
        }
        let out = rerun(
            "sandbox::tests::a_confined_thread_that_calls_outside_its_list_ends_the_process_with_a_report",
            &[],
        );
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(stdout.contains("confined"), "{stdout}");
        assert!(!stdout.contains("still alive"), "{stdout}");
        assert!(
            stderr.contains(&format!(
                "{VIOLATION_PREFIX} the vcpu thread made system call {}",
                libc::SYS_socket
            )),
            "{stderr}"
        );
        assert_eq!(out.status.code(), Some(VIOLATION_EXIT), "{:?}", out.status);
    }

    #[test]
    fn a_confined_thread_opens_files_only_where_landlock_lets_it() {
        if landlock::abi().is_none() {
            eprintln!("no Landlock on this kernel: nothing to check");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("log"), "x").unwrap();
        let files = Files {
            read_write: vec![dir.path().to_path_buf()],
            read_only: Vec::new(),
        };
        let dir_path = dir.path().to_path_buf();
        let out = std::thread::spawn(move || {
            prepare().unwrap();
            // vCPUs may open (the console log's rotation), but only there.
            enter(ThreadKind::Vcpu, &files);
            let inside = std::fs::File::create(dir_path.join("log.1")).map(|_| ());
            let outside = std::fs::File::open("/etc/hostname").map(|_| ());
            (
                inside.map_err(|e| e.kind()),
                outside.map_err(|e| e.raw_os_error()),
            )
        })
        .join()
        .unwrap();
        assert_eq!(out.0, Ok(()));
        assert_eq!(out.1, Err(Some(libc::EACCES)));
    }

    #[test]
    fn a_thread_that_opens_no_files_is_refused_an_open_and_lives_on() {
        if std::env::var_os(CHILD).is_some() {
            prepare().unwrap();
            std::thread::spawn(|| {
                enter(ThreadKind::Events, &Files::none());
                // What glibc's malloc does once, at a moment no one picks.
                let e = std::fs::File::open("/proc/sys/vm/overcommit_memory").unwrap_err();
                println!("refused: {:?}", e.raw_os_error());
            })
            .join()
            .unwrap();
            std::process::exit(0);
        }
        let out = rerun(
            "sandbox::tests::a_thread_that_opens_no_files_is_refused_an_open_and_lives_on",
            &[],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("refused: Some({})", libc::EACCES)),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0));
    }

    #[test]
    fn a_confined_thread_starts_threads_but_no_processes_and_drops_capabilities() {
        if std::env::var_os(CHILD).is_some() {
            prepare().unwrap();
            let (tid_tx, tid_rx) = std::sync::mpsc::channel();
            let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
            let confined = std::thread::spawn(move || {
                enter(ThreadKind::Control, &Files::none());
                // SAFETY: gettid takes no arguments.
                tid_tx.send(unsafe { libc::gettid() }).unwrap();
                go_rx.recv().unwrap();
                // A thread: allowed (glibc falls back from clone3 to clone).
                let t = std::thread::spawn(|| 7).join().unwrap();
                println!("thread {t}");
                // A process: refused (clone without CLONE_THREAD).
                // SAFETY: a test child; fork's child exits at once.
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    // SAFETY: the forked child leaves at once.
                    unsafe { libc::_exit(0) };
                }
                println!("forked {pid}");
            });
            // The confined thread cannot open files; this one reads its status.
            let tid = tid_rx.recv().unwrap();
            let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
            let eff = status.lines().find(|l| l.starts_with("CapEff:")).unwrap();
            println!("{eff}");
            go_tx.send(()).unwrap();
            confined.join().unwrap();
            std::process::exit(0);
        }
        let out = rerun(
            "sandbox::tests::a_confined_thread_starts_threads_but_no_processes_and_drops_capabilities",
            &[],
        );
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(stdout.contains("thread 7"), "{stdout}\n{stderr}");
        // Only CAP_NET_BIND_SERVICE (bit 10) may be left, if it was there.
        let eff = stdout.split("CapEff:").nth(1).expect(&stdout);
        let bits = u64::from_str_radix(eff.split_whitespace().next().unwrap(), 16).unwrap();
        assert_eq!(bits & !(1 << 10), 0, "{eff}");
        assert!(!stdout.contains("forked"), "{stdout}");
        assert!(
            stderr.contains(&format!("system call {}", libc::SYS_clone)),
            "{stderr}"
        );
    }

    #[test]
    fn off_confines_nothing_and_an_unknown_mode_is_refused() {
        if std::env::var_os(CHILD).is_some() {
            match std::env::var(MODE_ENV).as_deref() {
                Ok("off") => {
                    assert_eq!(prepare(), Ok(Mode::Off));
                    std::thread::spawn(|| {
                        enter(ThreadKind::Vcpu, &Files::none());
                        std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                    })
                    .join()
                    .unwrap();
                    println!("unconfined");
                }
                _ => println!("{}", prepare().unwrap_err()),
            }
            std::process::exit(0);
        }
        let test = "sandbox::tests::off_confines_nothing_and_an_unknown_mode_is_refused";
        let out = rerun(test, &[(MODE_ENV, "off")]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("unconfined"));
        let out = rerun(test, &[(MODE_ENV, "strict")]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("PYRO_VMM_SECCOMP=\"strict\": expected enforce, log or off"),
            "{stdout}"
        );
    }
}
