//! `exec`: run a command, stream its output as produced, enforce a timeout
//! on its whole process group, kill that group if the host goes away,
//! report how it ended.

use super::{reaper, RpcError};
use pyro_proto::rpc::{self, Event, ExecRequest, ExecResult, Stream};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
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
    let mut cmd = Command::new(program);
    super::clean_env(&mut cmd, &req.env)
        .args(&argv[1..])
        .current_dir(&cwd)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let started = Instant::now();
    let (mut child, exited) = reaper::spawn(|| cmd.spawn(), |c| c.id()).map_err(|e| RpcError {
        kind: if e.kind() == std::io::ErrorKind::NotFound {
            "not_found"
        } else {
            "spawn_failed"
        },
        message: format!("{program}: {e} (cwd {cwd})"),
    })?;
    let pgid = child.id() as i32;
    let child_stdin = child.stdin.take();
    std::thread::scope(|scope| {
        if let (Some(body), Some(pipe)) = (stdin, child_stdin) {
            scope.spawn(move || feed_stdin(body, pipe));
        }
        stream_output(req, &mut child, pgid, started, exited, out)
    })
}

/// Copies the body into the command's stdin, then closes it. Whatever
/// the command does not read is drained by the agent after the request.
fn feed_stdin(body: &mut (dyn Read + Send), mut pipe: std::process::ChildStdin) {
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
    child: &mut std::process::Child,
    pgid: i32,
    started: Instant,
    exited: std::sync::mpsc::Receiver<rustix::process::WaitStatus>,
    out: &mut BufWriter<S>,
) -> Result<ExecResult, RpcError> {
    // Indexed as `STREAMS`; `None` once a pipe reached its end.
    let mut pipes = [
        child.stdout.take().map(|p| File::from(OwnedFd::from(p))),
        child.stderr.take().map(|p| File::from(OwnedFd::from(p))),
    ];
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
