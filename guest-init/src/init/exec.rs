//! `exec`: run a command, stream its output as produced, enforce a timeout
//! on its whole process group, report how it ended.

use super::{reaper, RpcError};
use pyro_guest_init::proto::rpc::{self, Event, ExecRequest, ExecResult, Stream};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::time::{Duration, Instant};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const CHUNK: usize = 64 * 1024;

/// Runs `req`; `stdin` is the request body when `req.stdin` is set (it is
/// read to its end in every case, so the connection stays in step).
pub fn run(
    req: &ExecRequest,
    stdin: Option<&mut (dyn Read + Send)>,
    out: &mut impl Write,
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
    cmd.args(&argv[1..])
        .current_dir(&cwd)
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8")
        .envs(std::env::vars().filter(|(k, _)| k == "GLIBC_TUNABLES"))
        .envs(req.env.iter().cloned())
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

fn stream_output(
    req: &ExecRequest,
    child: &mut std::process::Child,
    pgid: i32,
    started: Instant,
    exited: std::sync::mpsc::Receiver<rustix::process::WaitStatus>,
    out: &mut impl Write,
) -> Result<ExecResult, RpcError> {
    // Both pipes feed one channel so output goes out in the order produced.
    let (tx, rx) = channel::<(Stream, Vec<u8>)>();
    let mut readers = Vec::new();
    for (stream, pipe) in [
        (
            Stream::Stdout,
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
        (
            Stream::Stderr,
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
    ] {
        let Some(mut pipe) = pipe else { continue };
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send((stream, buf[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                }
            }
        }));
    }
    drop(tx);

    let deadline = req.timeout_ms.map(|ms| started + Duration::from_millis(ms));
    let cap = req.max_output_bytes.unwrap_or(u64::MAX);
    let mut result = ExecResult::default();
    let mut host_gone = false;
    loop {
        let wait = deadline.map_or(Duration::from_secs(3600), |d| {
            d.saturating_duration_since(Instant::now())
        });
        match rx.recv_timeout(wait) {
            Ok((stream, bytes)) => {
                let (count, truncated) = match stream {
                    Stream::Stdout => (&mut result.stdout_bytes, &mut result.stdout_truncated),
                    Stream::Stderr => (&mut result.stderr_bytes, &mut result.stderr_truncated),
                };
                let room = cap.saturating_sub(*count) as usize;
                *count += bytes.len() as u64;
                let send = &bytes[..bytes.len().min(room)];
                *truncated |= send.len() < bytes.len();
                if !send.is_empty() && !host_gone {
                    // The host went away: keep draining so the command is
                    // not blocked on a full pipe, then kill it below.
                    host_gone = rpc::write_frame(out, &Event::Output { stream }, send)
                        .and_then(|_| out.flush())
                        .is_err();
                    if host_gone {
                        kill_group(pgid);
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if deadline.is_some_and(|d| Instant::now() >= d) && !result.timed_out {
                    result.timed_out = true;
                    kill_group(pgid);
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    for r in readers {
        let _ = r.join();
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

fn kill_group(pgid: i32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}
