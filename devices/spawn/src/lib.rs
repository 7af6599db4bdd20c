//! Starting a process without `fork` for guest-init, which forbids
//! `unsafe` itself (it lives under `devices/` because `unsafe` lives only
//! there and in `vmm/`).
//!
//! Why: `std::process::Command` falls back to `fork` + `exec` in the
//! guest agent, because it is a static glibc binary (std's weak lookups
//! of `posix_spawn_file_actions_addchdir_np` and of the glibc version
//! find nothing there) and because it sets `PATH` for its children. A
//! `fork` of the agent copies its page tables and write-protects every
//! page it has, so the agent then takes a page fault for each page it
//! writes again; on PVM hosts both are emulated guest-kernel work
//! (milliseconds a fault). glibc's `posix_spawn` starts the child on the
//! parent's memory (`CLONE_VM | CLONE_VFORK`) and has it exec at once:
//! no page table is copied and nothing is write-protected.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What to start. `program` is run as given (a path: the caller has
/// searched `PATH` if it had to, since the child's `PATH` may differ
/// from ours); a relative one is taken from `cwd`.
pub struct Spawn<'a> {
    pub program: &'a Path,
    /// The whole argument vector, `argv[0]` included.
    pub argv: &'a [String],
    /// The whole environment.
    pub env: &'a [(String, String)],
    pub cwd: &'a Path,
    /// Become standard input, output and error (in the child only).
    pub stdin: BorrowedFd<'a>,
    pub stdout: BorrowedFd<'a>,
    pub stderr: BorrowedFd<'a>,
    /// Lead a new process group (its id is the child's pid).
    pub new_process_group: bool,
}

/// Starts the process; returns its pid. An exec failure (a missing
/// program: `NotFound`) comes back as the error, from glibc.
pub fn spawn(s: &Spawn<'_>) -> io::Result<i32> {
    let nul = |e: std::ffi::NulError| io::Error::new(io::ErrorKind::InvalidInput, e);
    let program = CString::new(s.program.as_os_str().as_bytes()).map_err(nul)?;
    let cwd = CString::new(s.cwd.as_os_str().as_bytes()).map_err(nul)?;
    let argv: Vec<CString> = s
        .argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(nul)?;
    let env: Vec<CString> = s
        .env
        .iter()
        .map(|(k, v)| CString::new(format!("{k}={v}")))
        .collect::<Result<_, _>>()
        .map_err(nul)?;
    let mut argv_ptrs: Vec<*mut libc::c_char> =
        argv.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv_ptrs.push(std::ptr::null_mut());
    let mut env_ptrs: Vec<*mut libc::c_char> = env.iter().map(|e| e.as_ptr().cast_mut()).collect();
    env_ptrs.push(std::ptr::null_mut());

    let mut actions = FileActions::new()?;
    for (fd, target) in [
        (s.stdin, libc::STDIN_FILENO),
        (s.stdout, libc::STDOUT_FILENO),
        (s.stderr, libc::STDERR_FILENO),
    ] {
        // SAFETY: `actions.0` was initialised by FileActions::new; the
        // call only records the two descriptor numbers.
        check(unsafe {
            libc::posix_spawn_file_actions_adddup2(&mut actions.0, fd.as_raw_fd(), target)
        })?;
    }
    // SAFETY: as above; glibc copies the path string.
    check(unsafe { libc::posix_spawn_file_actions_addchdir_np(&mut actions.0, cwd.as_ptr()) })?;

    let mut attr = Attr::new()?;
    let mut flags = libc::POSIX_SPAWN_SETSIGDEF | libc::POSIX_SPAWN_SETSIGMASK;
    if s.new_process_group {
        flags |= libc::POSIX_SPAWN_SETPGROUP;
        // SAFETY: `attr.0` was initialised by Attr::new.
        check(unsafe { libc::posix_spawnattr_setpgroup(&mut attr.0, 0) })?;
    }
    // The child starts with no signal blocked and every signal at its
    // default: SIGPIPE, which Rust ignores in the agent, and any other
    // the spawner ignores (a parent started in the background ignores
    // SIGINT and SIGQUIT, and SIG_IGN survives exec). glibc's child sets
    // each signal once either way, so this costs no extra call.
    let set = empty_sigset();
    // SAFETY: `attr.0` is initialised and `set` a valid sigset_t.
    check(unsafe { libc::posix_spawnattr_setsigmask(&mut attr.0, &set) })?;
    let mut all = empty_sigset();
    // SAFETY: `all` is a valid sigset_t; glibc's sigfillset leaves out
    // its internal signals, and KILL and STOP have no disposition to set.
    unsafe {
        libc::sigfillset(&mut all);
        libc::sigdelset(&mut all, libc::SIGKILL);
        libc::sigdelset(&mut all, libc::SIGSTOP);
    }
    // SAFETY: as above.
    check(unsafe { libc::posix_spawnattr_setsigdefault(&mut attr.0, &all) })?;
    // SAFETY: as above; the flags are POSIX_SPAWN_* bits.
    check(unsafe { libc::posix_spawnattr_setflags(&mut attr.0, flags as libc::c_short) })?;

    let mut pid: libc::pid_t = 0;
    // SAFETY: every pointer is valid for the call: `program` and the
    // strings behind both NULL-terminated vectors live until it returns,
    // and `actions`/`attr` are initialised. glibc's posix_spawn runs the
    // child on a stack of its own and waits until it has exec'd (or
    // failed), so nothing here is used by the child afterwards.
    check(unsafe {
        libc::posix_spawn(
            &mut pid,
            program.as_ptr(),
            &actions.0,
            &attr.0,
            argv_ptrs.as_ptr(),
            env_ptrs.as_ptr(),
        )
    })?;
    Ok(pid)
}

/// posix_spawn's functions return the error number instead of setting
/// `errno`.
fn check(code: libc::c_int) -> io::Result<()> {
    match code {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

fn empty_sigset() -> libc::sigset_t {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the whole set it is given.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        set.assume_init()
    }
}

struct FileActions(libc::posix_spawn_file_actions_t);

impl FileActions {
    fn new() -> io::Result<Self> {
        let mut raw = std::mem::MaybeUninit::uninit();
        // SAFETY: init writes the whole structure it is given.
        check(unsafe { libc::posix_spawn_file_actions_init(raw.as_mut_ptr()) })?;
        // SAFETY: initialised just above.
        Ok(FileActions(unsafe { raw.assume_init() }))
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialised in new(), destroyed once.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
    }
}

struct Attr(libc::posix_spawnattr_t);

impl Attr {
    fn new() -> io::Result<Self> {
        let mut raw = std::mem::MaybeUninit::uninit();
        // SAFETY: init writes the whole structure it is given.
        check(unsafe { libc::posix_spawnattr_init(raw.as_mut_ptr()) })?;
        // SAFETY: initialised just above.
        Ok(Attr(unsafe { raw.assume_init() }))
    }
}

impl Drop for Attr {
    fn drop(&mut self) {
        // SAFETY: initialised in new(), destroyed once.
        unsafe { libc::posix_spawnattr_destroy(&mut self.0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::pipe::{pipe_with, PipeFlags};
    use std::io::Read;
    use std::os::fd::AsFd;

    fn run(program: &str, script: &str, cwd: &Path) -> io::Result<(i32, String)> {
        run_argv(program, &["sh", "-c", script], cwd)
    }

    fn run_argv(program: &str, argv: &[&str], cwd: &Path) -> io::Result<(i32, String)> {
        let (out_r, out_w) = pipe_with(PipeFlags::CLOEXEC).unwrap();
        let null = std::fs::File::open("/dev/null").unwrap();
        let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        let env = [("GREETING".to_string(), "hello there".to_string())];
        let pid = spawn(&Spawn {
            program: Path::new(program),
            argv: &argv,
            env: &env,
            cwd,
            stdin: null.as_fd(),
            stdout: out_w.as_fd(),
            stderr: out_w.as_fd(),
            new_process_group: true,
        })?;
        drop(out_w);
        let mut out = String::new();
        std::fs::File::from(out_r).read_to_string(&mut out).unwrap();
        let pid = rustix::process::Pid::from_raw(pid).unwrap();
        let status = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())
            .unwrap()
            .unwrap()
            .1;
        Ok((status.exit_status().unwrap_or(-1), out))
    }

    #[test]
    fn the_child_gets_its_argv_env_cwd_group_and_pipes() {
        let dir = std::env::temp_dir().canonicalize().unwrap();
        let (code, out) = run(
            "/bin/sh",
            "echo \"$GREETING\"; pwd; [ \"$(cut -d' ' -f5 /proc/$$/stat)\" = $$ ] && echo leader; \
             echo \"${HOME:-no home}\"; exit 7",
            &dir,
        )
        .unwrap();
        assert_eq!(code, 7);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "hello there");
        assert_eq!(lines[1], dir.to_str().unwrap());
        assert_eq!(lines[3], "no home", "only the environment given");
        assert_eq!(lines[2], "leader", "a process group of its own");
    }

    #[test]
    fn the_child_starts_with_default_signals_and_none_blocked() {
        // The test harness ignores SIGPIPE (Rust does); block one more
        // in this thread: neither may reach the command.
        let mut usr1 = empty_sigset();
        // SAFETY: `usr1` is an initialised sigset_t.
        unsafe {
            libc::sigaddset(&mut usr1, libc::SIGUSR1);
            libc::pthread_sigmask(libc::SIG_BLOCK, &usr1, std::ptr::null_mut());
        }
        // Not through a shell: dash blocks every signal while it starts
        // a child, so its own status would say so.
        let (code, out) =
            run_argv("/bin/cat", &["cat", "/proc/self/status"], Path::new("/")).unwrap();
        assert_eq!(code, 0);
        let mask = |name: &str| {
            let line = out.lines().find(|l| l.starts_with(name)).expect(name);
            u64::from_str_radix(line.split('\t').nth(1).unwrap(), 16).unwrap()
        };
        assert_eq!(mask("SigBlk"), 0, "{out}");
        // Standard signals: glibc's posix_spawn sets its own internal
        // real-time ones to ignored in every child.
        assert_eq!(mask("SigIgn") & 0x7fff_ffff, 0, "{out}");
    }

    #[test]
    fn a_missing_program_or_cwd_is_an_error() {
        let e = run("/no/such/program", "true", Path::new("/")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e = run("/bin/sh", "true", Path::new("/no/such/dir")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
