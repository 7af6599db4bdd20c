//! Services: long-running commands the guest agent supervises (see
//! `docs/services.md`). Each runs as a process group of its own, its
//! stdout and stderr kept in rings of [`LOG_BYTES`] each (the oldest
//! bytes drop first; the count dropped is reported). Readiness is probed
//! in the guest, so `start` answers in one round trip once the service
//! is ready, failed or gone. The requests are `rpc::Request::Service*`.

use serde::{Deserialize, Serialize};

/// Services one guest keeps at once (ended ones count until a start
/// needs their room: the oldest ended one is forgotten then).
pub const MAX_SERVICES: usize = 32;
/// Output kept per stream of a service.
pub const LOG_BYTES: usize = 256 << 10;
/// Largest command line, probe argument (path, host, URL or command)
/// and working directory. With control characters other than tab and
/// newline refused, these keep a list of [`MAX_SERVICES`] services
/// inside one reply header (`rpc::MAX_HEADER`), however they are
/// escaped; a longer script belongs in a file.
pub const MAX_COMMAND_BYTES: usize = 4096;
pub const MAX_PROBE_BYTES: usize = 2048;
pub const MAX_CWD_BYTES: usize = 1024;
/// Readiness timeout: default and bounds, seconds.
pub const DEFAULT_READY_TIMEOUT_S: u64 = 30;
pub const MAX_READY_TIMEOUT_S: u64 = 3600;
/// How long stop waits after SIGTERM before SIGKILL, by default and at
/// most, milliseconds.
pub const DEFAULT_STOP_GRACE_MS: u64 = 5_000;
pub const MAX_STOP_GRACE_MS: u64 = 60_000;
/// Most ports one service publishes.
pub const MAX_PUBLISH: usize = 16;
/// How long a failed service gets after SIGTERM before SIGKILL, ms.
pub const FAIL_GRACE_MS: u64 = 2_000;
/// How long the agent waits for a main process after SIGKILL, ms: it
/// cannot refuse, but the kernel may be slow (D state on a slow disk).
/// Host reply deadlines add it to the waits they ask for.
pub const KILL_WAIT_MS: u64 = 10_000;
/// Most lines a `logs` tail returns per stream.
pub const MAX_TAIL_LINES: u64 = 100_000;

/// When a service counts as ready.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Probe {
    /// The path exists (inside /workspace; relative paths resolve
    /// under it).
    File { path: String },
    /// A TCP connection to `host:port` in the guest succeeds.
    Tcp { host: String, port: u16 },
    /// An HTTP GET of `url` (`http://` only) answers with a status
    /// below 400.
    Http { url: String },
    /// `/bin/sh -c COMMAND` exits 0 (in the service's directory, with
    /// its environment).
    Command { command: String },
}

impl Probe {
    /// The probe as a person would name it in an error.
    pub fn describe(&self) -> String {
        match self {
            Probe::File { path } => format!("file {path}"),
            Probe::Tcp { host, port } => format!("tcp {host}:{port}"),
            Probe::Http { url } => format!("http {url}"),
            Probe::Command { command } => format!("command {command:?}"),
        }
    }
}

/// Start a service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StartRequest {
    pub name: String,
    /// Run as `/bin/sh -c COMMAND`.
    pub command: String,
    /// Absolute, inside /workspace.
    pub cwd: String,
    /// Extra environment variables (names as `shell::valid_env_name`).
    #[serde(default)]
    pub env: Vec<(String, String)>,
    pub probe: Option<Probe>,
    /// How long readiness may take before the service is failed (and
    /// its process group killed).
    pub ready_timeout_ms: u64,
    /// Opaque to the agent, kept and reported back: the host's port
    /// mappings for this service, so any host finds them again.
    #[serde(default)]
    pub publish: Vec<Publish>,
}

/// A port the host publishes while the service runs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Publish {
    /// The host port asked for; `None`: an ephemeral one.
    pub host: Option<u16>,
    pub guest: u16,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Running, readiness not yet seen.
    Starting,
    /// Running, and its probe succeeded (or it has none).
    Ready,
    /// Its main process ended on its own (`exit_code` or `exit_signal`).
    Exited,
    /// The agent gave up on it (`reason`); its process group was killed.
    Failed,
    /// Stopped on request.
    Stopped,
}

impl State {
    /// Starting or ready: its process runs.
    pub fn running(self) -> bool {
        matches!(self, State::Starting | State::Ready)
    }
}

/// A service as the agent reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Info {
    pub name: String,
    pub state: State,
    pub command: String,
    pub cwd: String,
    /// The main process, also the process group's id.
    pub pid: u32,
    pub probe: Option<Probe>,
    pub publish: Vec<Publish>,
    /// Seconds since the epoch, by the guest's clock.
    pub started_at: u64,
    /// Milliseconds from start to ready.
    pub ready_after_ms: Option<u64>,
    pub ended_at: Option<u64>,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
    /// Why it failed, or how it was stopped.
    pub reason: Option<String>,
    /// Bytes written to each stream so far (the rings keep the last
    /// [`LOG_BYTES`] of each).
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
}

/// A service's logs: the reply to `ServiceLogs`; the bytes travel in
/// data frames, stdout's first, then stderr's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogsResult {
    pub service: Info,
    /// How many of the data bytes are stdout's.
    pub stdout_len: u64,
    /// Bytes of each stream that are no longer kept (ring overflow or
    /// the tail asked for).
    pub stdout_omitted: u64,
    pub stderr_omitted: u64,
}

/// A service name: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`.
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && name.len() <= 64
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Why a name is refused, if it is.
pub fn check_name(name: &str) -> Result<(), String> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(format!(
            "service name {name:?}: 1-64 of [A-Za-z0-9._-], starting with a letter or digit"
        ))
    }
}

/// Why a logs request's `tail_lines` is refused, if it is.
pub fn check_tail_lines(tail_lines: Option<u64>) -> Result<(), String> {
    match tail_lines {
        Some(n) if !(1..=MAX_TAIL_LINES).contains(&n) => {
            Err(format!("tail_lines must be 1-{MAX_TAIL_LINES} (got {n})"))
        }
        _ => Ok(()),
    }
}

/// Why a stop's grace is refused, if it is.
pub fn check_grace_ms(grace_ms: u64) -> Result<(), String> {
    if grace_ms > MAX_STOP_GRACE_MS {
        Err(format!(
            "grace must be at most {} s",
            MAX_STOP_GRACE_MS / 1000
        ))
    } else {
        Ok(())
    }
}

/// Why a start request is refused, if it is (the path in a file probe
/// and the cwd are checked where they are resolved).
pub fn check_start(req: &StartRequest) -> Result<(), String> {
    check_name(&req.name)?;
    if req.command.trim().is_empty() {
        return Err("no command: give the service's command after --".into());
    }
    check_text("command", &req.command, MAX_COMMAND_BYTES)?;
    check_text("cwd", &req.cwd, MAX_CWD_BYTES)?;
    if let Some(probe) = &req.probe {
        let (Probe::File { path: arg }
        | Probe::Tcp { host: arg, .. }
        | Probe::Http { url: arg }
        | Probe::Command { command: arg }) = probe;
        check_text("readiness probe", arg, MAX_PROBE_BYTES)?;
    }
    crate::shell::check_env(&req.env)?;
    if req.publish.len() > MAX_PUBLISH {
        return Err(format!("at most {MAX_PUBLISH} published ports per service"));
    }
    if !(1..=MAX_READY_TIMEOUT_S * 1000).contains(&req.ready_timeout_ms) {
        return Err(format!(
            "ready timeout must be 1 ms to {MAX_READY_TIMEOUT_S} s"
        ));
    }
    match &req.probe {
        Some(Probe::Tcp { host, port }) if host.is_empty() || *port == 0 => Err(format!(
            "tcp probe {host}:{port}: give HOST:PORT, port 1-65535"
        )),
        Some(Probe::Http { url }) => parse_http_url(url).map(|_| ()),
        Some(Probe::Command { command }) if command.trim().is_empty() => {
            Err("command probe: empty command".into())
        }
        _ => Ok(()),
    }
}

/// `text` is at most `max` bytes, without control characters other than
/// tab and newline.
fn check_text(what: &str, text: &str, max: usize) -> Result<(), String> {
    if text.len() > max {
        return Err(format!("{what}: at most {max} bytes (got {})", text.len()));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\t' && c != '\n')
    {
        return Err(format!(
            "{what}: no control characters other than tab and newline"
        ));
    }
    Ok(())
}

/// The one probe a caller asked for, from the four ways to ask (CLI
/// flags, MCP parameters): `--ready-file`, `--ready-tcp` (parsed with
/// [`parse_tcp`]), `--ready-http`, `--ready-command`. More than one is
/// refused; none is `None`.
pub fn one_probe(
    file: Option<&str>,
    tcp: Option<&str>,
    http: Option<&str>,
    command: Option<&str>,
) -> Result<Option<Probe>, String> {
    let given = [&file, &tcp, &http, &command];
    if given.iter().filter(|g| g.is_some()).count() > 1 {
        return Err("give at most one readiness probe (file, tcp, http or command)".into());
    }
    Ok(match (file, tcp, http, command) {
        (Some(path), ..) => Some(Probe::File { path: path.into() }),
        (_, Some(spec), ..) => Some(parse_tcp(spec)?),
        (_, _, Some(url), _) => Some(Probe::Http { url: url.into() }),
        (.., Some(command)) => Some(Probe::Command {
            command: command.into(),
        }),
        _ => None,
    })
}

/// `host:port` as a TCP probe (host defaults to 127.0.0.1: `:8080`
/// or `8080`).
pub fn parse_tcp(spec: &str) -> Result<Probe, String> {
    let (host, port) = match spec.rsplit_once(':') {
        Some((h, p)) => (if h.is_empty() { "127.0.0.1" } else { h }, p),
        None => ("127.0.0.1", spec),
    };
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(Probe::Tcp {
            host: host.to_string(),
            port,
        }),
        _ => Err(format!("tcp probe {spec:?}: give HOST:PORT (port 1-65535)")),
    }
}

/// The parts of an `http://host[:port][/path]` URL: host, port, path.
pub fn parse_http_url(url: &str) -> Result<(String, u16, String), String> {
    let bad = |why: &str| Err(format!("http probe {url:?}: {why}"));
    let Some(rest) = url.strip_prefix("http://") else {
        return bad("only http:// URLs are probed");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return bad("the path has spaces or control characters");
    }
    // `[v6]:port`, `[v6]`, `host:port` or `host`.
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, "")) => (h, None),
            Some((h, p)) => (h, Some(p.strip_prefix(':').unwrap_or(p))),
            None => return bad("an unclosed ["),
        },
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = match port.map(str::parse::<u16>) {
        None => 80,
        Some(Ok(port)) if port > 0 => port,
        Some(_) => return bad("the port must be 1-65535"),
    };
    if host.is_empty() || host.contains('@') {
        return bad("give a host (no user info)");
    }
    Ok((host.to_string(), port, path.to_string()))
}

/// The last `lines` lines of `bytes` (a final line without a newline
/// counts as a line).
pub fn tail_lines(bytes: &[u8], lines: u64) -> &[u8] {
    if lines == 0 {
        return &bytes[bytes.len()..];
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == lines {
                return &bytes[i + 1..];
            }
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_label_key_rule() {
        assert!(valid_name("app"));
        assert!(valid_name("web.v2_a-1"));
        assert!(!valid_name(""));
        assert!(!valid_name("-app"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(&"a".repeat(65)));
        assert!(check_name("x y").unwrap_err().contains("1-64"));
    }

    #[test]
    fn probes_parse_and_bad_ones_are_named() {
        assert_eq!(
            parse_tcp("8080").unwrap(),
            Probe::Tcp {
                host: "127.0.0.1".into(),
                port: 8080
            }
        );
        assert_eq!(
            parse_tcp("localhost:5432").unwrap(),
            Probe::Tcp {
                host: "localhost".into(),
                port: 5432
            }
        );
        assert!(parse_tcp("x:0").is_err() && parse_tcp("x:y").is_err());
        assert_eq!(
            parse_http_url("http://127.0.0.1:8000/health?x=1").unwrap(),
            ("127.0.0.1".into(), 8000, "/health?x=1".into())
        );
        assert_eq!(
            parse_http_url("http://localhost").unwrap(),
            ("localhost".into(), 80, "/".into())
        );
        assert!(parse_http_url("https://x/")
            .unwrap_err()
            .contains("http://"));
        assert!(parse_http_url("http://x:99999/").is_err());
        assert!(parse_http_url("http:///x").is_err());
        assert!(parse_http_url("http://x/a b").is_err());
    }

    #[test]
    fn one_probe_at_most() {
        assert_eq!(one_probe(None, None, None, None), Ok(None));
        assert_eq!(
            one_probe(None, Some("8000"), None, None),
            Ok(Some(parse_tcp("8000").unwrap()))
        );
        assert_eq!(
            one_probe(None, None, None, Some("true")),
            Ok(Some(Probe::Command {
                command: "true".into()
            }))
        );
        assert!(one_probe(Some("f"), None, Some("http://x/"), None)
            .unwrap_err()
            .contains("at most one"));
    }

    #[test]
    fn a_start_needs_a_command_and_a_sane_timeout() {
        let mut req = StartRequest {
            name: "app".into(),
            command: "sleep 1".into(),
            cwd: "/workspace".into(),
            env: vec![],
            probe: None,
            ready_timeout_ms: 1000,
            publish: vec![],
        };
        assert!(check_start(&req).is_ok());
        req.command = "  ".into();
        assert!(check_start(&req).unwrap_err().contains("no command"));
        req.command = "x".into();
        req.ready_timeout_ms = 0;
        assert!(check_start(&req).is_err());
    }

    /// The most services with the longest fields, each escaped as much
    /// as JSON can (a quote or backslash doubles; `describe` escapes a
    /// command once more), list in one reply header.
    #[test]
    fn a_full_list_fits_one_reply_header() {
        let worst = |n: usize| "\"".repeat(n);
        let probe = Probe::Command {
            command: worst(MAX_PROBE_BYTES),
        };
        let mut req = StartRequest {
            name: "a".repeat(64),
            command: worst(MAX_COMMAND_BYTES),
            cwd: worst(MAX_CWD_BYTES),
            env: vec![],
            probe: Some(probe.clone()),
            ready_timeout_ms: 1000,
            publish: vec![
                Publish {
                    host: Some(65535),
                    guest: 65535
                };
                MAX_PUBLISH
            ],
        };
        assert!(check_start(&req).is_ok());
        let info = Info {
            name: req.name.clone(),
            state: State::Failed,
            command: req.command.clone(),
            cwd: req.cwd.clone(),
            pid: u32::MAX,
            probe: Some(probe.clone()),
            publish: req.publish.clone(),
            started_at: u64::MAX,
            ready_after_ms: Some(u64::MAX),
            ended_at: Some(u64::MAX),
            exit_code: Some(i32::MIN),
            exit_signal: Some(i32::MIN),
            reason: Some(format!(
                "readiness probe {} did not succeed within 3600.0 s",
                probe.describe()
            )),
            stdout_bytes: u64::MAX,
            stderr_bytes: u64::MAX,
        };
        let reply = crate::rpc::Event::Done(crate::rpc::Reply::Services {
            services: vec![info; MAX_SERVICES],
        });
        let len = serde_json::to_vec(&reply).unwrap().len();
        assert!(len < crate::rpc::MAX_HEADER as usize, "{len}");
        req.command.push('x');
        assert!(check_start(&req).unwrap_err().contains("at most 4096"));
        req.command = "echo \u{1b}[31m".into();
        assert!(check_start(&req).unwrap_err().contains("control"));
    }

    #[test]
    fn tails_count_lines_from_the_end() {
        assert_eq!(tail_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail_lines(b"a\nb\nc", 2), b"b\nc");
        assert_eq!(tail_lines(b"a\nb\n", 5), b"a\nb\n");
        assert_eq!(tail_lines(b"a\nb\n", 0), b"");
        assert_eq!(tail_lines(b"", 3), b"");
    }
}
