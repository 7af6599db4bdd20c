//! Shells: an interactive shell on a pseudo-terminal per shell, kept by
//! the agent across connections (the host client may come and go). One
//! thread per shell copies the terminal's output into its [`Ring`] as
//! produced; another waits for the shell's exit status. Reads wait for
//! quiet here, in the guest, so a client needs one round trip, not a
//! poll loop. Bounds and the wire types are in `pyro_proto::shell`.

mod busy;
mod prompt;

use super::ring::Ring;
use super::{reaper, RpcError};
use prompt::Markers;
use pyro_proto::rpc::{self, workspace_absolute, workspace_relative, Event, Reply};
use pyro_proto::shell::{self, Info, OpenRequest, ReadRequest, ReadResult, Signal, State};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::process::{kill_process_group, Pid};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// `pyro-init SESSION_ARG PROGRAM ARGS...` (not as PID 1): become a
/// session leader with stdin as the controlling terminal, then exec
/// PROGRAM. The agent starts shells through it, as safe code cannot
/// run anything between fork and exec.
pub const SESSION_ARG: &str = "--pyro-shell-session";

/// How long a write may wait for the terminal to take its input.
const INPUT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a read that waits for quiet wants the shell quiet while a
/// command typed has not brought its prompt back (it may be starting up,
/// or be an interactive program that prints no prompt marker).
const BUSY_QUIET: Duration = Duration::from_millis(2000);
/// How long open waits for the shell's first prompt.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long close waits after SIGHUP before SIGKILL.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

struct Shell {
    id: String,
    pid: i32,
    cwd: String,
    started_at: u64,
    /// The terminal's master side, non-blocking.
    master: File,
    /// Held while one write types its input, so writes do not interleave.
    input: Mutex<()>,
    status: Mutex<Status>,
    /// Signalled on output, input, exit and end of output.
    changed: Condvar,
    /// A byte here stops the output thread (on close).
    stop: File,
}

struct Status {
    ring: Ring,
    cols: u16,
    rows: u16,
    /// Last output or input.
    last_activity: Instant,
    /// Exit code and terminating signal, once the shell ended.
    exit: Option<(Option<i32>, Option<i32>)>,
    /// Every holder of the terminal closed it: no more output.
    eof: bool,
    /// Prompt markers seen. The first is the shell's start-up prompt,
    /// which answers no line typed (one typed before it came, while the
    /// shell was still starting, is answered by the prompt after it).
    prompts: u64,
    /// Lines typed (Enter) that the shell has not answered with a prompt
    /// marker yet: while not 0, a command is running. Counted, not a
    /// flag, so the prompt of a command answered late (after the next
    /// line was typed) does not end the next one too.
    pending_lines: u64,
}

fn shells() -> MutexGuard<'static, HashMap<String, Arc<Shell>>> {
    static SHELLS: OnceLock<Mutex<HashMap<String, Arc<Shell>>>> = OnceLock::new();
    SHELLS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

fn get(id: &str) -> Result<Arc<Shell>, RpcError> {
    shells().get(id).cloned().ok_or_else(|| not_found(id))
}

fn not_found(id: &str) -> RpcError {
    RpcError::new(
        "not_found",
        format!("no shell {id:?} (closed, or the workspace was stopped or reset since)"),
    )
}

fn invalid(message: String) -> RpcError {
    RpcError::new("invalid_argument", message)
}

/// Runs the session helper if this process was started as one.
pub fn run_session_if_asked() {
    let mut args = std::env::args_os();
    if std::process::id() == 1 || args.nth(1).as_deref() != Some(SESSION_ARG.as_ref()) {
        return;
    }
    let argv: Vec<OsString> = args.collect();
    let Some(program) = argv.first() else {
        std::process::exit(127);
    };
    let stdin = std::io::stdin();
    let err = match rustix::process::setsid().and_then(|_| rustix::process::ioctl_tiocsctty(&stdin))
    {
        Err(e) => std::io::Error::from(e),
        Ok(()) => Command::new(program).args(&argv[1..]).exec(),
    };
    let _ = writeln!(
        std::io::stderr(),
        "pyro-init: cannot start the shell {}: {err}",
        program.to_string_lossy()
    );
    std::process::exit(127);
}

/// This binary, started again as the session helper.
const SELF: &str = "/proc/self/exe";

pub fn open(req: OpenRequest) -> Result<Reply, RpcError> {
    if !shell::valid_id(&req.id) {
        return Err(invalid(format!("shell id {:?}: 1-32 of [a-z0-9-]", req.id)));
    }
    shell::check_size(req.cols, req.rows).map_err(invalid)?;
    let cwd = workspace_relative(&req.cwd)
        .map(|rel| workspace_absolute(&rel))
        .map_err(|e| invalid(format!("cwd: {e}")))?;
    shell::check_env(&req.env).map_err(invalid)?;
    check_room(&req.id)?;
    let fail =
        |what: &str, e: std::io::Error| RpcError::new("shell_failed", format!("{what}: {e}"));
    let (master, slave) = pty(req.cols, req.rows).map_err(|e| fail("pseudo-terminal", e))?;
    let bash = std::path::Path::new("/bin/bash").exists();
    let (program, args): (&str, &[&str]) = if bash {
        ("/bin/bash", &["--noprofile", "--norc", "-i"])
    } else {
        ("/bin/sh", &["-i"])
    };
    let mut env = vec![
        ("TERM".to_string(), "xterm-256color".to_string()),
        ("PS1".into(), "pyro$ ".into()),
        ("PROMPT_COMMAND".into(), prompt::PROMPT_COMMAND.into()),
    ];
    env.extend(req.env.iter().cloned());
    let env = super::command_env(&env);
    let mut argv = vec![SELF.to_string(), SESSION_ARG.into(), program.into()];
    argv.extend(args.iter().map(|a| a.to_string()));
    // posix_spawn, not a fork of the agent (see `exec::spawn_sh`). The
    // helper is not a process group leader, so its `setsid` works.
    let spawned = reaper::start(&pyro_spawn::Spawn {
        program: std::path::Path::new(SELF),
        argv: &argv,
        env: &env,
        cwd: std::path::Path::new(&cwd),
        stdin: slave.as_fd(),
        stdout: slave.as_fd(),
        stderr: slave.as_fd(),
        new_process_group: false,
    });
    // Our copy of the terminal's slave side goes now: the output thread
    // sees the end once the shell and its children have closed theirs.
    drop(slave);
    let (pid, exited) = spawned.map_err(|e| fail(&format!("start {program} in {cwd}"), e))?;
    let (stop_read, stop_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| fail("pipe", e.into()))?;
    let started_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let shell = Arc::new(Shell {
        id: req.id.clone(),
        pid,
        cwd,
        started_at,
        master,
        input: Mutex::new(()),
        status: Mutex::new(Status {
            ring: Ring::new(shell::RING_BYTES),
            cols: req.cols,
            rows: req.rows,
            last_activity: Instant::now(),
            exit: None,
            eof: false,
            prompts: 0,
            pending_lines: 0,
        }),
        changed: Condvar::new(),
        stop: File::from(stop_write),
    });
    let out = shell.clone();
    let waiter = shell.clone();
    let threads = helper(&shell, "shell-out", move || {
        pump(&out, File::from(stop_read))
    })
    .and_then(|_| {
        helper(&shell, "shell-wait", move || {
            let status = exited.recv().ok();
            let mut st = waiter.lock();
            st.exit =
                Some(status.map_or((None, None), |s| (s.exit_status(), s.terminating_signal())));
            drop(st);
            waiter.changed.notify_all();
        })
    });
    if let Err(e) = threads {
        end(&shell);
        return Err(fail("thread", e));
    }
    // Ready once it has printed its prompt (bash: its first prompt
    // marker; sh has none: any output): input typed before the shell set
    // up its terminal can sit unseen in the line discipline. On a loaded
    // PVM host bash can take over 10 s to get there (the host waits 30).
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut st = shell.lock();
    let started = |st: &Status| {
        if bash {
            st.prompts > 0
        } else {
            st.ring.end() > 0
        }
    };
    while !started(&st) && !st.eof && st.exit.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        st = shell
            .changed
            .wait_timeout(st, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    let info = shell.info(&st);
    drop(st);
    // Checked again: another open may have taken the room meanwhile.
    let mut all = shells();
    if let Err(e) = check_room_in(&all, &req.id) {
        drop(all);
        end(&shell);
        return Err(e);
    }
    all.insert(req.id, shell);
    Ok(Reply::Shell(info))
}

/// The id is free and there is room for one more shell.
fn check_room(id: &str) -> Result<(), RpcError> {
    check_room_in(&shells(), id)
}

fn check_room_in(shells: &HashMap<String, Arc<Shell>>, id: &str) -> Result<(), RpcError> {
    if shells.contains_key(id) {
        return Err(RpcError::new(
            "conflict",
            format!("a shell {id:?} is open already"),
        ));
    }
    if shells.len() >= shell::MAX_SHELLS {
        return Err(RpcError::new(
            "too_many_shells",
            format!(
                "{} shells are open, the most a workspace keeps: close one first (exited shells count until closed)",
                shell::MAX_SHELLS
            ),
        ));
    }
    Ok(())
}

/// A new pseudo-terminal of `cols` x `rows`: the master side
/// (non-blocking) and the slave side.
fn pty(cols: u16, rows: u16) -> std::io::Result<(File, std::os::fd::OwnedFd)> {
    use rustix::pty::OpenptFlags as F;
    let master = rustix::pty::openpt(F::RDWR | F::NOCTTY | F::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let slave = rustix::pty::ioctl_tiocgptpeer(&master, F::RDWR | F::NOCTTY | F::CLOEXEC)?;
    set_size(&master, cols, rows)?;
    let flags = rustix::fs::fcntl_getfl(&master)?;
    rustix::fs::fcntl_setfl(&master, flags | rustix::fs::OFlags::NONBLOCK)?;
    Ok((File::from(master), slave))
}

fn set_size(master: impl std::os::fd::AsFd, cols: u16, rows: u16) -> std::io::Result<()> {
    let size = rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    Ok(rustix::termios::tcsetwinsize(master, size)?)
}

/// Copies the terminal's output into the ring until every holder of
/// the terminal closed it, or `stop` is written.
fn pump(shell: &Shell, stop: File) {
    let mut buf = vec![0u8; 64 << 10];
    let mut markers = Markers::default();
    loop {
        let mut fds = [
            PollFd::new(&shell.master, PollFlags::IN),
            PollFd::new(&stop, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        }
        if !fds[1].revents().is_empty() {
            break;
        }
        match (&shell.master).read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let (output, prompts) = markers.strip(&buf[..n]);
                let mut st = shell.lock();
                st.ring.push(&output);
                let answers = match st.prompts {
                    0 => (prompts as u64).saturating_sub(1),
                    _ => prompts as u64,
                };
                st.prompts += prompts as u64;
                st.pending_lines = st.pending_lines.saturating_sub(answers);
                st.last_activity = Instant::now();
                drop(st);
                shell.changed.notify_all();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            // EIO: the last holder of the slave side closed it.
            Err(_) => break,
        }
    }
    shell.lock().eof = true;
    shell.changed.notify_all();
}

pub fn read(req: ReadRequest, out: &mut impl Write) -> Result<Reply, RpcError> {
    let shell = get(&req.id)?;
    shell::check_read(req.max_bytes, req.wait_for_idle_ms).map_err(invalid)?;
    let started = Instant::now();
    let mut st = shell.lock();
    let mut idle = false;
    if let Some(ms) = req.wait_for_idle_ms {
        let quiet = Duration::from_millis(ms);
        let cap = started + Duration::from_millis(shell::WAIT_CAP_MS);
        // When the foreground command was last seen working, and
        // whether it was looked at since the last wake-up.
        let mut working_at = started;
        let mut looked = false;
        loop {
            let ready = st
                .ring
                .end()
                .saturating_sub(req.cursor.max(st.ring.start()));
            if ready >= req.max_bytes || st.eof {
                break;
            }
            let now = Instant::now();
            // Quiet since the read began at least: output from before it
            // (a prompt) does not count as the answer to a write just sent.
            let quiet = if st.pending_lines > 0 {
                quiet.max(BUSY_QUIET)
            } else {
                quiet
            };
            let idle_at = st.last_activity.max(working_at) + quiet;
            if now >= idle_at && st.pending_lines > 0 && !looked {
                // Silent, but maybe still starting up or computing: look
                // (without the lock, so output keeps flowing meanwhile),
                // then decide again on what came in while looking.
                let group = shell.foreground();
                drop(st);
                let working = group.is_some_and(|g| busy::working(g.as_raw_nonzero().get()));
                st = shell.lock();
                if working {
                    working_at = Instant::now();
                } else {
                    looked = true;
                }
                continue;
            }
            if now >= idle_at {
                idle = true;
                // Quiet that long counts as answered: a line a program
                // read (not the shell), or a continuation line, never
                // brings a prompt, and must not slow every later read.
                st.pending_lines = 0;
                break;
            }
            if now >= cap {
                break;
            }
            st = shell
                .changed
                .wait_timeout(st, idle_at.min(cap) - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            looked = false;
        }
    }
    let slice = st
        .ring
        .read(req.cursor, req.max_bytes as usize)
        .map_err(invalid)?;
    let next_cursor = slice.from + slice.bytes.len() as u64;
    let result = ReadResult {
        shell: shell.info(&st),
        cursor: slice.from,
        next_cursor,
        truncated: slice.truncated,
        more: next_cursor < st.ring.end(),
        idle,
        waited_ms: started.elapsed().as_millis() as u64,
    };
    drop(st);
    for piece in slice.bytes.chunks(rpc::CHUNK) {
        rpc::write_frame(out, &Event::Data, piece).map_err(RpcError::host_gone)?;
    }
    Ok(Reply::ShellRead(result))
}

pub fn write(id: &str, input: &[u8]) -> Result<Reply, RpcError> {
    let shell = get(id)?;
    shell::check_input(input.len()).map_err(invalid)?;
    shell.running()?;
    let _typing = shell.input.lock().unwrap_or_else(|p| p.into_inner());
    // Before the input goes in: the prompt that ends the command may
    // come back before this call does.
    let lines = input.iter().filter(|&&b| b == b'\n' || b == b'\r').count();
    shell.lock().pending_lines += lines as u64;
    let deadline = Instant::now() + INPUT_TIMEOUT;
    let mut rest = input;
    while !rest.is_empty() {
        match (&shell.master).write(rest) {
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                let timeout = Timespec::try_from(left).unwrap_or(Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                });
                let mut fds = [PollFd::new(&shell.master, PollFlags::OUT)];
                let woke = poll(&mut fds, Some(&timeout)).unwrap_or(0);
                if woke == 0 && left.is_zero() {
                    return Err(RpcError::new(
                        "input_blocked",
                        format!(
                            "the terminal took {} of {} bytes in {} s: the program in the shell is not reading its input",
                            input.len() - rest.len(),
                            input.len(),
                            INPUT_TIMEOUT.as_secs()
                        ),
                    ));
                }
            }
            Err(e) => return Err(RpcError::new("shell_failed", format!("write: {e}"))),
        }
    }
    let mut st = shell.lock();
    st.last_activity = Instant::now();
    Ok(Reply::Shell(shell.info(&st)))
}

pub fn resize(id: &str, cols: u16, rows: u16) -> Result<Reply, RpcError> {
    let shell = get(id)?;
    shell::check_size(cols, rows).map_err(invalid)?;
    set_size(&shell.master, cols, rows)
        .map_err(|e| RpcError::new("shell_failed", format!("resize: {e}")))?;
    let mut st = shell.lock();
    (st.cols, st.rows) = (cols, rows);
    Ok(Reply::Shell(shell.info(&st)))
}

pub fn signal(id: &str, signal: Signal) -> Result<Reply, RpcError> {
    let shell = get(id)?;
    shell.running()?;
    let sig = match signal {
        Signal::Hup => rustix::process::Signal::HUP,
        Signal::Int => rustix::process::Signal::INT,
        Signal::Term => rustix::process::Signal::TERM,
        Signal::Kill => rustix::process::Signal::KILL,
    };
    let group = shell
        .foreground()
        .ok_or_else(|| RpcError::new("shell_failed", "no process group to signal".into()))?;
    kill_process_group(group, sig)
        .map_err(|e| RpcError::new("shell_failed", format!("signal {signal}: {e}")))?;
    Ok(shell.reply())
}

pub fn close(id: &str) -> Result<Reply, RpcError> {
    let shell = shells().remove(id).ok_or_else(|| not_found(id))?;
    end(&shell);
    Ok(shell.reply())
}

pub fn list() -> Reply {
    let all: Vec<Arc<Shell>> = shells().values().cloned().collect();
    let mut shells: Vec<Info> = all.iter().map(|s| s.info(&s.lock())).collect();
    shells.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
    Reply::Shells { shells }
}

/// Ends a shell: SIGHUP to its foreground group and its own, SIGKILL
/// after [`CLOSE_GRACE`] if it is still there; then stops its output
/// thread.
/// Runs `f`, one of `shell`'s helpers, on a thread of its own. A helper
/// that panics would leave the shell looking alive with no output or no
/// exit ever seen: the shell is ended instead, a line in its output says
/// why, and it reads as exited. The agent and PID 1 go on (the panic hook
/// logs the panic to the console).
fn helper(
    shell: &Arc<Shell>,
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    let (shell, what) = (shell.clone(), name.to_string());
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                let message = super::agent::panic_message(&*payload).to_string();
                end(&shell);
                let mut st = shell.lock();
                st.ring.push(
                    format!("\r\n[pyro: the agent's {what} thread failed ({message}); the shell was ended]\r\n")
                        .as_bytes(),
                );
                st.eof = true;
                st.exit.get_or_insert((None, None));
                drop(st);
                shell.changed.notify_all();
            }
        })
        .map(|_| ())
}

fn end(shell: &Shell) {
    let groups = [shell.foreground(), Pid::from_raw(shell.pid)];
    let signal_all = |sig| {
        for group in groups.into_iter().flatten() {
            let _ = kill_process_group(group, sig);
        }
    };
    let mut st = shell.lock();
    if st.exit.is_none() {
        signal_all(rustix::process::Signal::HUP);
        let deadline = Instant::now() + CLOSE_GRACE;
        while st.exit.is_none() && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            st = shell
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if st.exit.is_none() {
            signal_all(rustix::process::Signal::KILL);
        }
    }
    drop(st);
    let _ = (&shell.stop).write(b"x");
}

impl Shell {
    fn lock(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn running(&self) -> Result<(), RpcError> {
        match self.lock().exit {
            None => Ok(()),
            Some(_) => Err(RpcError::new(
                "conflict",
                format!(
                    "shell {} has exited: read its last output, then close it",
                    self.id
                ),
            )),
        }
    }

    /// The terminal's foreground process group (the shell's own when it
    /// runs nothing).
    fn foreground(&self) -> Option<Pid> {
        rustix::termios::tcgetpgrp(&self.master)
            .ok()
            .or(Pid::from_raw(self.pid))
    }

    fn reply(&self) -> Reply {
        Reply::Shell(self.info(&self.lock()))
    }

    fn info(&self, st: &Status) -> Info {
        Info {
            id: self.id.clone(),
            state: if st.exit.is_some() {
                State::Exited
            } else {
                State::Running
            },
            pid: self.pid as u32,
            cwd: self.cwd.clone(),
            cols: st.cols,
            rows: st.rows,
            started_at: self.started_at,
            exit_code: st.exit.and_then(|(code, _)| code),
            exit_signal: st.exit.and_then(|(_, signal)| signal),
            output_bytes: st.ring.end(),
        }
    }
}
