//! Services: commands the agent starts and supervises (`pyro workspace
//! service ...`). Each runs as `/bin/sh -c COMMAND` in a process group
//! of its own, so stop and failure reach everything it started. Three
//! threads per service: two copy stdout and stderr into rings of
//! [`service::LOG_BYTES`] (bounded: the oldest bytes drop), one waits for
//! the exit status; a fourth polls the readiness probe while the service
//! is starting (the start request owns the deadline). Probes run here, in the guest: a start is one round
//! trip, not a host poll loop over vsock.

use super::ring::Ring;
use super::{exec, RpcError};
use pyro_proto::rpc::{self, workspace_absolute, workspace_relative, Event, Reply};
use pyro_proto::service::{self, Info, LogsResult, Probe, Publish, StartRequest, State};
use rustix::process::{kill_process_group, Pid, Signal};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Between two probes of a file, port or URL.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// Between two runs of a command probe (a process spawn is ~0.6 s on PVM
/// hosts; no need to queue them).
const COMMAND_PROBE_EVERY: Duration = Duration::from_millis(500);
/// One TCP or HTTP probe's connect and answer.
const NET_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const FAIL_GRACE: Duration = Duration::from_millis(service::FAIL_GRACE_MS);
const KILL_WAIT: Duration = Duration::from_millis(service::KILL_WAIT_MS);

struct Service {
    name: String,
    command: String,
    cwd: String,
    env: Vec<(String, String)>,
    probe: Option<Probe>,
    publish: Vec<Publish>,
    pid: i32,
    started_at: u64,
    started: Instant,
    status: Mutex<Status>,
    /// Signalled on every change of state and on the main process's exit.
    changed: Condvar,
}

struct Status {
    state: State,
    ready_after_ms: Option<u64>,
    ended_at: Option<u64>,
    exit: Option<(Option<i32>, Option<i32>)>,
    reason: Option<String>,
    stdout: Ring,
    stderr: Ring,
}

/// Services in start order (at most [`service::MAX_SERVICES`]).
fn services() -> MutexGuard<'static, Vec<Arc<Service>>> {
    static SERVICES: OnceLock<Mutex<Vec<Arc<Service>>>> = OnceLock::new();
    SERVICES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

fn get(name: &str) -> Result<Arc<Service>, RpcError> {
    services()
        .iter()
        .find(|s| s.name == name)
        .cloned()
        .ok_or_else(|| {
            RpcError::new(
                "not_found",
                format!(
                    "no service {name:?} (never started, or the workspace was stopped or reset since)"
                ),
            )
        })
}

fn invalid(message: String) -> RpcError {
    RpcError::new("invalid_argument", message)
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn start(req: StartRequest) -> Result<Reply, RpcError> {
    service::check_start(&req).map_err(invalid)?;
    let cwd = workspace_relative(&req.cwd)
        .map(|rel| workspace_absolute(&rel))
        .map_err(|e| invalid(format!("cwd: {e}")))?;
    let probe = match req.probe {
        Some(Probe::File { path }) => Some(Probe::File {
            path: workspace_relative(&path)
                .map(|rel| workspace_absolute(&rel))
                .map_err(|e| invalid(format!("ready file: {e}")))?,
        }),
        other => other,
    };
    // Refused early, before anything is spawned; checked again below, as
    // the table is not held across the spawn (~0.6 s on PVM hosts, when
    // other services' requests would wait).
    make_room(&mut services(), &req.name)?;
    let exec::Started { pid, exited, pipes } = exec::spawn_sh(&req.command, &req.env, &cwd, true)
        .map_err(|e| {
        RpcError::new(
            "spawn_failed",
            format!("start service {}: /bin/sh: {e} (cwd {cwd})", req.name),
        )
    })?;
    let ready_now = probe.is_none();
    let svc = Arc::new(Service {
        name: req.name.clone(),
        command: req.command,
        cwd,
        env: req.env,
        probe,
        publish: req.publish,
        pid,
        started_at: now_s(),
        started: Instant::now(),
        status: Mutex::new(Status {
            state: if ready_now {
                State::Ready
            } else {
                State::Starting
            },
            ready_after_ms: ready_now.then_some(0),
            ended_at: None,
            exit: None,
            reason: None,
            stdout: Ring::new(service::LOG_BYTES),
            stderr: Ring::new(service::LOG_BYTES),
        }),
        changed: Condvar::new(),
    });
    let mut all = services();
    if let Err(e) = make_room(&mut all, &req.name) {
        // Another start took the name (or the last room) meanwhile.
        drop(all);
        if let Some(group) = Pid::from_raw(svc.pid) {
            let _ = kill_process_group(group, Signal::KILL);
        }
        return Err(e);
    }
    all.push(svc.clone());
    drop(all);
    let (stdout, stderr) = match pipes {
        Some((out, err)) => (Some(out), Some(err)),
        None => (None, None),
    };
    let (a, b, c) = (svc.clone(), svc.clone(), svc.clone());
    let spawned = thread(&svc, "svc-out", move || {
        if let Some(p) = stdout {
            pump(&a, p, true)
        }
    })
    .and_then(|_| {
        thread(&svc, "svc-err", move || {
            if let Some(p) = stderr {
                pump(&b, p, false)
            }
        })
    })
    .and_then(|_| thread(&svc, "svc-wait", move || wait(&c, exited)));
    let spawned = match (spawned, ready_now) {
        (Ok(()), false) => {
            let d = svc.clone();
            let timeout = Duration::from_millis(req.ready_timeout_ms);
            thread(&svc, "svc-probe", move || probe_until_ready(&d, timeout))
        }
        (other, _) => other,
    };
    if let Err(e) = spawned {
        fail(&svc, format!("the agent could not start a thread: {e}"));
        return Ok(Reply::Service(Box::new(svc.info())));
    }
    // Answer once it is ready, failed or gone. The deadline is this
    // request's, not the probe thread's: one probe attempt can take
    // longer than the time left (a first connect in a freshly restored
    // guest took seconds), and the answer must not wait for it.
    let timeout = Duration::from_millis(req.ready_timeout_ms);
    let deadline = svc.started + timeout;
    let mut st = svc.lock();
    let timed_out = loop {
        let now = Instant::now();
        if st.state != State::Starting {
            break false;
        }
        if now >= deadline {
            break true;
        }
        st = svc.wait_until(st, deadline);
    };
    drop(st);
    if let (true, Some(probe)) = (timed_out, &svc.probe) {
        fail(&svc, not_ready(probe, timeout));
    }
    Ok(Reply::Service(Box::new(svc.info())))
}

fn not_ready(probe: &Probe, timeout: Duration) -> String {
    format!(
        "readiness probe {} did not succeed within {:.1} s",
        probe.describe(),
        timeout.as_secs_f64()
    )
}

/// Runs `f`, one of `svc`'s helpers, on a thread of its own. A helper
/// that panics would leave the service's state stuck (no exit seen, no
/// output kept, no probe): it is failed instead, with the reason, and its
/// process group ended. The agent and PID 1 go on (the panic hook logs
/// the panic to the console).
fn thread(
    svc: &Arc<Service>,
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> Result<(), std::io::Error> {
    let (svc, what) = (svc.clone(), name.to_string());
    let test_panic = super::agent::is_test_panic(&svc.command) && name == "svc-wait";
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if test_panic {
                    panic!("test panic in a service's helper thread");
                }
                f()
            }));
            if let Err(payload) = ran {
                let message = super::agent::panic_message(&*payload).to_string();
                fail(
                    &svc,
                    format!(
                        "the agent's {what} thread failed ({message}); the service was stopped"
                    ),
                );
            }
        })
        .map(|_| ())
}

/// Room for a service `name`: a running one of that name is a conflict;
/// an ended one of that name, or else the oldest ended one when the
/// table is full, is forgotten.
fn make_room(all: &mut Vec<Arc<Service>>, name: &str) -> Result<(), RpcError> {
    if let Some(at) = all.iter().position(|s| s.name == name) {
        if all[at].lock().state.running() {
            return Err(RpcError::new(
                "conflict",
                format!("service {name:?} is running: stop it first"),
            ));
        }
        all.remove(at);
    }
    if all.len() >= service::MAX_SERVICES {
        match all.iter().position(|s| !s.lock().state.running()) {
            Some(at) => {
                all.remove(at);
            }
            None => {
                return Err(RpcError::new(
                    "too_many_services",
                    format!(
                        "{} services are running, the most a workspace keeps: stop one first",
                        service::MAX_SERVICES
                    ),
                ))
            }
        }
    }
    Ok(())
}

/// Copies one output stream into its ring until it ends.
fn pump(svc: &Service, mut pipe: impl Read, stdout: bool) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let mut st = svc.lock();
                let ring = if stdout {
                    &mut st.stdout
                } else {
                    &mut st.stderr
                };
                ring.push(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

/// Waits for the main process and records how it ended.
fn wait(svc: &Service, exited: Receiver<rustix::process::WaitStatus>) {
    let status = exited.recv().ok();
    let mut st = svc.lock();
    st.exit = Some(status.map_or((None, None), |s| (s.exit_status(), s.terminating_signal())));
    st.ended_at = Some(now_s());
    if st.state.running() {
        if st.state == State::Starting {
            st.reason = Some(format!(
                "exited before it was ready ({})",
                svc.probe.as_ref().map_or(String::new(), Probe::describe)
            ));
        }
        st.state = State::Exited;
    }
    drop(st);
    svc.changed.notify_all();
}

/// Polls the probe while the service is starting: until it succeeds, or
/// the service ended or was failed (by `start`, at the deadline).
fn probe_until_ready(svc: &Service, timeout: Duration) {
    let Some(probe) = svc.probe.clone() else {
        return;
    };
    // Bounds a command probe's run.
    let deadline = svc.started + timeout;
    let every = match probe {
        Probe::Command { .. } => COMMAND_PROBE_EVERY,
        _ => PROBE_EVERY,
    };
    loop {
        if svc.lock().state != State::Starting {
            return;
        }
        let tried = Instant::now();
        let ready = match &probe {
            Probe::File { path } => std::fs::symlink_metadata(path).is_ok(),
            Probe::Tcp { host, port } => tcp_ready(host, *port),
            Probe::Http { url } => http_ready(url),
            Probe::Command { command } => command_ready(svc, command, deadline),
        };
        let mut st = svc.lock();
        if st.state != State::Starting {
            return;
        }
        if ready {
            st.state = State::Ready;
            st.ready_after_ms = Some(svc.started.elapsed().as_millis() as u64);
            drop(st);
            svc.changed.notify_all();
            return;
        }
        // Until the next try, or until it is no longer starting.
        drop(svc.wait_until(st, tried + every));
    }
}

fn tcp_ready(host: &str, port: u16) -> bool {
    connect(host, port).is_some()
}

fn connect(host: &str, port: u16) -> Option<TcpStream> {
    let addrs = (host, port).to_socket_addrs().ok()?;
    addrs
        .into_iter()
        .find_map(|a| TcpStream::connect_timeout(&a, NET_PROBE_TIMEOUT).ok())
}

/// A GET answered with a status below 400.
fn http_ready(url: &str) -> bool {
    let Ok((host, port, path)) = service::parse_http_url(url) else {
        return false;
    };
    let Some(mut conn) = connect(&host, port) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(NET_PROBE_TIMEOUT));
    let _ = conn.set_write_timeout(Some(NET_PROBE_TIMEOUT));
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: pyro-probe\r\nConnection: close\r\n\r\n"
    );
    if conn.write_all(request.as_bytes()).is_err() {
        return false;
    }
    // The status line is all we need: `HTTP/1.x NNN ...`, in the first
    // bytes (bounded: a hostile or odd server cannot make us buffer more).
    let mut head = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        match conn.read(&mut head[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    let line = String::from_utf8_lossy(&head[..got]);
    let mut words = line.split_whitespace();
    matches!(
        (words.next(), words.next().and_then(|c| c.parse::<u16>().ok())),
        (Some(v), Some(code)) if v.starts_with("HTTP/") && (100..400).contains(&code)
    )
}

/// `sh -c COMMAND` exits 0 (killed, with its group, if it runs past the
/// readiness deadline).
fn command_ready(svc: &Service, command: &str, deadline: Instant) -> bool {
    let Ok(exec::Started { pid, exited, .. }) = exec::spawn_sh(command, &svc.env, &svc.cwd, false)
    else {
        return false;
    };
    let left = deadline.saturating_duration_since(Instant::now());
    match exited.recv_timeout(left.max(Duration::from_millis(100))) {
        Ok(status) => status.exit_status() == Some(0),
        Err(_) => {
            if let Some(group) = Pid::from_raw(pid) {
                let _ = kill_process_group(group, Signal::KILL);
            }
            let _ = exited.recv_timeout(KILL_WAIT);
            false
        }
    }
}

/// Marks the service failed for `reason` and ends its process group.
fn fail(svc: &Service, reason: String) {
    let mut st = svc.lock();
    if !st.state.running() {
        return;
    }
    st.state = State::Failed;
    st.reason = Some(reason);
    drop(st);
    svc.changed.notify_all();
    terminate(svc, FAIL_GRACE);
}

/// SIGTERM to the group, SIGKILL after `grace`, then SIGKILL to what is
/// left of the group once the main process is gone. Returns whether
/// SIGKILL was needed for the main process.
fn terminate(svc: &Service, grace: Duration) -> bool {
    let Some(group) = Pid::from_raw(svc.pid) else {
        return false;
    };
    let _ = kill_process_group(group, Signal::TERM);
    let mut killed = false;
    let mut st = svc.lock();
    let mut deadline = Instant::now() + grace;
    while st.exit.is_none() {
        let now = Instant::now();
        if now >= deadline {
            if killed {
                break;
            }
            let _ = kill_process_group(group, Signal::KILL);
            killed = true;
            deadline = now + KILL_WAIT;
            continue;
        }
        st = svc.wait_until(st, deadline);
    }
    drop(st);
    // Children that outlived the main process (or ignored SIGTERM) go too.
    let _ = kill_process_group(group, Signal::KILL);
    killed
}

pub fn stop(name: &str, grace_ms: u64) -> Result<Reply, RpcError> {
    service::check_grace_ms(grace_ms).map_err(invalid)?;
    let svc = get(name)?;
    let mut st = svc.lock();
    if !st.state.running() {
        // Ended already: nothing to stop, but a child that outlived the
        // main process must not stay behind.
        drop(st);
        if let Some(group) = Pid::from_raw(svc.pid) {
            let _ = kill_process_group(group, Signal::KILL);
        }
        return Ok(Reply::Service(Box::new(svc.info())));
    }
    st.state = State::Stopped;
    drop(st);
    svc.changed.notify_all();
    let grace = Duration::from_millis(grace_ms);
    let killed = terminate(&svc, grace);
    svc.lock().reason = Some(if killed {
        format!(
            "stopped: SIGTERM, then SIGKILL after {:.1} s",
            grace.as_secs_f64()
        )
    } else {
        "stopped: SIGTERM".into()
    });
    Ok(Reply::Service(Box::new(svc.info())))
}

pub fn status(name: &str) -> Result<Reply, RpcError> {
    Ok(Reply::Service(Box::new(get(name)?.info())))
}

pub fn list() -> Reply {
    let all: Vec<Arc<Service>> = services().clone();
    Reply::Services {
        services: all.iter().map(|s| s.info()).collect(),
    }
}

pub fn logs(name: &str, tail: Option<u64>, out: &mut impl Write) -> Result<Reply, RpcError> {
    service::check_tail_lines(tail).map_err(invalid)?;
    let svc = get(name)?;
    let st = svc.lock();
    let all = |ring: &Ring| -> (Vec<u8>, u64) {
        let mut bytes = ring
            .read(ring.start(), service::LOG_BYTES)
            .map(|s| s.bytes)
            .unwrap_or_default();
        if let Some(n) = tail {
            let cut = bytes.len() - service::tail_lines(&bytes, n).len();
            bytes.drain(..cut);
        }
        let omitted = ring.end() - bytes.len() as u64;
        (bytes, omitted)
    };
    let (stdout, stdout_omitted) = all(&st.stdout);
    let (stderr, stderr_omitted) = all(&st.stderr);
    let result = LogsResult {
        service: svc.info_of(&st),
        stdout_len: stdout.len() as u64,
        stdout_omitted,
        stderr_omitted,
    };
    drop(st);
    for piece in stdout.chunks(rpc::CHUNK).chain(stderr.chunks(rpc::CHUNK)) {
        rpc::write_frame(out, &Event::Data, piece).map_err(RpcError::host_gone)?;
    }
    Ok(Reply::ServiceLogs(Box::new(result)))
}

impl Service {
    fn lock(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn info(&self) -> Info {
        self.info_of(&self.lock())
    }

    /// Waits on `st` for a change, until `deadline` at the latest.
    fn wait_until<'a>(
        &self,
        st: MutexGuard<'a, Status>,
        deadline: Instant,
    ) -> MutexGuard<'a, Status> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.changed
            .wait_timeout(st, left)
            .unwrap_or_else(|p| p.into_inner())
            .0
    }

    fn info_of(&self, st: &Status) -> Info {
        Info {
            name: self.name.clone(),
            state: st.state,
            command: self.command.clone(),
            cwd: self.cwd.clone(),
            pid: self.pid as u32,
            probe: self.probe.clone(),
            publish: self.publish.clone(),
            started_at: self.started_at,
            ready_after_ms: st.ready_after_ms,
            ended_at: st.ended_at,
            exit_code: st.exit.and_then(|e| e.0),
            exit_signal: st.exit.and_then(|e| e.1),
            reason: st.reason.clone(),
            stdout_bytes: st.stdout.end(),
            stderr_bytes: st.stderr.end(),
        }
    }
}
