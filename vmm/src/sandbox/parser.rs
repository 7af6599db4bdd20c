//! Confining a helper process that parses what a guest controls, so a
//! bug in the parser cannot reach the host (today: the ext4 reader of
//! workspace disks, `pyro __image-reader`, see
//! `workspace/src/workspaces/image_reader.rs`). A whole process, where
//! the VMM's lists are per thread: it is started for this work alone.
//!
//! What [`confine_parser`] leaves the process:
//! - **System calls**: the [`PARSER_SYSCALLS`] allowlist, each with its
//!   reason. Any other call kills the process (`SIGSYS`), and the parent
//!   reports it. Files it needs are opened before; it can open no other.
//! - **No new privileges** (`PR_SET_NO_NEW_PRIVS`, set by the filter's
//!   installation).
//! - **Limits**: address space (a runaway allocation fails), CPU time (a
//!   loop on a crafted image ends with `SIGXCPU`), no file growth.

use super::{any, Allow};
use seccompiler::SeccompAction;

/// The system calls a parser helper may make, and why.
pub const PARSER_SYSCALLS: &[Allow] = &[
    any(libc::SYS_read, "requests on stdin"),
    any(libc::SYS_pread64, "the image, opened before confinement"),
    any(
        libc::SYS_write,
        "replies on stdout, a panic's message on stderr",
    ),
    any(libc::SYS_lseek, "std's buffered file reads"),
    any(libc::SYS_close, "dropping the image's descriptor at exit"),
    any(libc::SYS_mmap, "the allocator"),
    any(libc::SYS_munmap, "the allocator"),
    any(libc::SYS_mremap, "the allocator (growing buffers)"),
    any(libc::SYS_brk, "the allocator"),
    any(libc::SYS_madvise, "the allocator returning memory"),
    any(libc::SYS_futex, "std's locks (stdout)"),
    any(libc::SYS_rt_sigreturn, "returning from a signal handler"),
    any(libc::SYS_rt_sigprocmask, "std's panic and exit paths"),
    any(libc::SYS_sigaltstack, "std's stack-overflow handler"),
    any(libc::SYS_getrandom, "hash maps' random seeds"),
    any(
        libc::SYS_clock_gettime,
        "Instant, where the vDSO falls back",
    ),
    any(libc::SYS_exit, "thread exit"),
    any(libc::SYS_exit_group, "process exit"),
];

/// Most address space a parser helper may map.
pub const PARSER_MAX_MEMORY: u64 = 2 << 30;
/// Most CPU time it may use, in seconds.
pub const PARSER_MAX_CPU_SECONDS: u64 = 120;

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: setrlimit reads the struct we pass, which lives for the
    // call; it touches no other memory of ours.
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Confines the calling process for good (see the module docs). Call it
/// with every file the parser needs already open, before reading any
/// untrusted byte, and while the process has one thread: the filter
/// binds the calling thread and threads it starts later.
pub fn confine_parser() -> std::io::Result<()> {
    let err = |e: String| std::io::Error::other(format!("seccomp: {e}"));
    set_limit(libc::RLIMIT_AS, PARSER_MAX_MEMORY)?;
    set_limit(libc::RLIMIT_CPU, PARSER_MAX_CPU_SECONDS)?;
    set_limit(libc::RLIMIT_FSIZE, 0)?;
    let program =
        super::compile(&[PARSER_SYSCALLS], &[], SeccompAction::KillProcess).map_err(err)?;
    seccompiler::apply_filter(&program).map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in the child this test re-runs itself as.
    const CHILD: &str = "PYRO_TEST_SANDBOX_CHILD";

    #[test]
    fn a_confined_parser_that_opens_a_file_is_killed() {
        if std::env::var_os(CHILD).is_some() {
            confine_parser().unwrap();
            // Allowed: writing to stdout.
            println!("confined");
            // Not allowed: opening anything.
            let _ = std::fs::File::open("/etc/hostname");
            println!("still alive");
            std::process::exit(0);
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sandbox::parser::tests::a_confined_parser_that_opens_a_file_is_killed",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("confined"), "{stdout}");
        assert!(!stdout.contains("still alive"), "{stdout}");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(libc::SIGSYS), "{:?}", out.status);
    }
}
