//! `exec`: run a command, stream its output as produced, enforce a timeout
//! on its whole process group, kill that group if the host goes away,
//! report how it ended.

use super::{reaper, RpcError};
use pyro_proto::rpc::{self, Event, ExecRequest, ExecResult, Stream};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::pipe::{pipe_with, PipeFlags};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CHUNK: usize = 64 * 1024;

/// Runs `req`; `stdin` is the request body when `req.stdin` is set (it is
/// read to its end in every case, so the connection stays in step).
pub fn run<S: Write + AsFd>(
    req: &ExecRequest,
    stdin: Option<&mut (dyn Read + Send)>,
    out: &mut BufWriter<S>,
) -> Result<ExecResult, RpcError> {
    let shell_argv;
    let argv = match (&req.shell, req.argv.is_empty()) {
        (Some(line), true) => {
            shell_argv = ["/bin/sh".to_string(), "-c".into(), line.clone()];
            &shell_argv[..]
        }
        (None, false) => &req.argv[..],
        (Some(_), false) => {
            return Err(RpcError::new(
                "invalid_argument",
                "give either argv or shell, not both".into(),
            ))
        }
        (None, true) => {
            return Err(RpcError::new(
                "invalid_argument",
                "no command: argv and shell are both empty".into(),
            ))
        }
    };
    let program = &argv[0];
    let cwd = req.cwd.clone().unwrap_or_else(|| {
        if std::path::Path::new("/workspace").is_dir() {
            "/workspace".into()
        } else {
            "/".into()
        }
    });
    let env = super::command_env(&req.env);
    let spawn_error = |kind, e: std::io::Error| RpcError {
        kind,
        message: format!("{program}: {e} (cwd {cwd})"),
    };
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str());
    let resolved = find_program(program, path)
        .ok_or_else(|| spawn_error("not_found", rustix::io::Errno::NOENT.into()))?;
    let io = |e: rustix::io::Errno| spawn_error("spawn_failed", e.into());
    let (out_r, out_w) = pipe_with(PipeFlags::CLOEXEC).map_err(io)?;
    let (err_r, err_w) = pipe_with(PipeFlags::CLOEXEC).map_err(io)?;
    let (in_r, in_w) = match stdin {
        Some(_) => {
            let (r, w) = pipe_with(PipeFlags::CLOEXEC).map_err(io)?;
            (r, Some(w))
        }
        None => {
            let null =
                rustix::fs::open("/dev/null", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty());
            (null.map_err(io)?, None)
        }
    };
    let started = Instant::now();
    // posix_spawn, not std's fork + exec: see the pyro-spawn crate.
    let spawned = reaper::start(&pyro_spawn::Spawn {
        program: &resolved,
        argv,
        env: &env,
        cwd: Path::new(&cwd),
        stdin: in_r.as_fd(),
        stdout: out_w.as_fd(),
        stderr: err_w.as_fd(),
        new_process_group: true,
    });
    // Ours are the other ends: the child's copies close when it ends.
    drop((in_r, out_w, err_w));
    let (pid, exited) = spawned.map_err(|e| {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => "not_found",
            _ => "spawn_failed",
        };
        spawn_error(kind, e)
    })?;
    let pipes = [Some(File::from(out_r)), Some(File::from(err_r))];
    std::thread::scope(|scope| {
        if let (Some(body), Some(pipe)) = (stdin, in_w) {
            scope.spawn(move || feed_stdin(body, File::from(pipe)));
        }
        stream_output(req, pipes, pid, started, exited, out)
    })
}

/// Starts `sh -c command` for a service or a readiness check: in a
/// process group of its own, in `cwd`, with the commands' environment
/// plus `env`, stdin from /dev/null, and stdout and stderr into new pipes
/// whose read ends come back (`capture`) or into /dev/null. Like `run`,
/// with `posix_spawn`: no fork of the agent.
pub fn spawn_sh(
    command: &str,
    env: &[(String, String)],
    cwd: &str,
    capture: bool,
) -> std::io::Result<Started> {
    let env = super::command_env(env);
    let argv = ["/bin/sh".to_string(), "-c".into(), command.into()];
    // One /dev/null for every stream it is (a readiness check runs every
    // half second: each open is a guest system call).
    let null = rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?;
    let pipes = if capture {
        Some((
            pipe_with(PipeFlags::CLOEXEC)?,
            pipe_with(PipeFlags::CLOEXEC)?,
        ))
    } else {
        None
    };
    let (out, err) = match &pipes {
        Some(((_, out_w), (_, err_w))) => (out_w.as_fd(), err_w.as_fd()),
        None => (null.as_fd(), null.as_fd()),
    };
    let (pid, exited) = reaper::start(&pyro_spawn::Spawn {
        program: Path::new("/bin/sh"),
        argv: &argv,
        env: &env,
        cwd: Path::new(cwd),
        stdin: null.as_fd(),
        stdout: out,
        stderr: err,
        new_process_group: true,
    })?;
    // Our write ends close here: the child holds its own.
    let pipes = pipes.map(|((out_r, _), (err_r, _))| (File::from(out_r), File::from(err_r)));
    Ok(Started { pid, exited, pipes })
}

/// What [`spawn_sh`] started.
pub struct Started {
    /// Also its process group.
    pub pid: i32,
    pub exited: reaper::Exited,
    /// The read ends of its stdout and stderr, when captured.
    pub pipes: Option<(File, File)>,
}

/// Where `program` is: itself if it names a path (relative ones are
/// taken from the command's directory), else the first executable file
/// of that name in `path`, the command's own `PATH` (not the agent's).
fn find_program(program: &str, path: Option<&str>) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    if program.is_empty() {
        return None;
    }
    path.unwrap_or(super::PATH)
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| {
            rustix::fs::stat(candidate).is_ok_and(|st| {
                FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
                    && st.st_mode & 0o111 != 0
            })
        })
}

/// Copies the body into the command's stdin, then closes it. Whatever
/// the command does not read is drained by the agent after the request.
fn feed_stdin(body: &mut (dyn Read + Send), mut pipe: File) {
    let mut limited = body.take(rpc::MAX_STDIN_BYTES);
    let _ = super::copy_chunked(&mut limited, &mut pipe);
}

/// Streams the command's output as produced until both pipes close, in
/// one thread: `poll` on the two pipes and on the host connection. The
/// connection is watched for hang-up only (`POLLRDHUP`; frames of a stdin
/// body stay unread for the feeder), so a host that goes away (a
/// cancelled call, a closed client) gets the command's process group
/// killed at once, not when it next writes output.
fn stream_output<S: Write + AsFd>(
    req: &ExecRequest,
    // Indexed as `STREAMS`; `None` once a pipe reached its end.
    mut pipes: [Option<File>; 2],
    pgid: i32,
    started: Instant,
    exited: std::sync::mpsc::Receiver<rustix::process::WaitStatus>,
    out: &mut BufWriter<S>,
) -> Result<ExecResult, RpcError> {
    let deadline = req.timeout_ms.map(|ms| started + Duration::from_millis(ms));
    let cap = req.max_output_bytes.unwrap_or(u64::MAX);
    let mut result = ExecResult::default();
    let mut host_gone = false;
    let mut buf = vec![0u8; CHUNK];
    while pipes.iter().any(Option::is_some) {
        let timeout = deadline
            .filter(|_| !result.timed_out)
            .map(|d| d.saturating_duration_since(Instant::now()));
        let host = (!host_gone).then(|| out.get_ref().as_fd());
        let (ready, hung_up) = wait(&pipes, host, timeout).map_err(|e| {
            kill_group(pgid);
            RpcError {
                kind: "internal",
                message: format!("poll: {e}"),
            }
        })?;
        if hung_up {
            host_gone = true;
            kill_group(pgid);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) && !result.timed_out {
            result.timed_out = true;
            kill_group(pgid);
        }
        for (i, stream) in STREAMS.into_iter().enumerate() {
            let Some(pipe) = pipes[i].as_mut().filter(|_| ready[i]) else {
                continue;
            };
            let n = match pipe.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                read => read.unwrap_or(0),
            };
            if n == 0 {
                pipes[i] = None;
                continue;
            }
            let (count, truncated) = match stream {
                Stream::Stdout => (&mut result.stdout_bytes, &mut result.stdout_truncated),
                Stream::Stderr => (&mut result.stderr_bytes, &mut result.stderr_truncated),
            };
            let room = cap.saturating_sub(*count) as usize;
            *count += n as u64;
            let send = &buf[..n.min(room)];
            *truncated |= send.len() < n;
            if !send.is_empty() && !host_gone {
                // The host went away: keep draining so the command is
                // not blocked on a full pipe, then kill it.
                host_gone = rpc::write_frame(out, &Event::Output { stream }, send)
                    .and_then(|_| out.flush())
                    .is_err();
                if host_gone {
                    kill_group(pgid);
                }
            }
        }
    }
    let status = exited.recv().map_err(|_| RpcError {
        kind: "internal",
        message: "lost the exit status".into(),
    })?;
    result.exit_code = status.exit_status();
    result.signal = status.terminating_signal();
    result.duration_ms = started.elapsed().as_millis() as u64;
    // Children that outlived the command (daemons it forked) go with it.
    kill_group(pgid);
    Ok(result)
}

const STREAMS: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

/// Waits until a pipe has data or reached its end, the host hung up, or
/// `timeout` passed. Returns which pipes to read and whether the host
/// went away.
fn wait(
    pipes: &[Option<File>; 2],
    host: Option<BorrowedFd<'_>>,
    timeout: Option<Duration>,
) -> std::io::Result<([bool; 2], bool)> {
    let timeout = timeout
        .map(Timespec::try_from)
        .transpose()
        .map_err(|_| std::io::Error::other("timeout out of range"))?;
    let mut fds = Vec::with_capacity(3);
    let mut which = Vec::with_capacity(2);
    for (i, pipe) in pipes.iter().enumerate() {
        if let Some(p) = pipe {
            fds.push(PollFd::new(p, PollFlags::IN));
            which.push(i);
        }
    }
    if let Some(h) = &host {
        fds.push(PollFd::new(h, PollFlags::RDHUP));
    }
    loop {
        match poll(&mut fds, timeout.as_ref()) {
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let mut ready = [false; 2];
    for (fd, i) in fds.iter().zip(&which) {
        ready[*i] = !fd.revents().is_empty();
    }
    let hung_up = host.is_some() && fds.last().is_some_and(|fd| !fd.revents().is_empty());
    Ok((ready, hung_up))
}

fn kill_group(pgid: i32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}
