//! The RPC agent: listens on vsock, one thread per connection (kept for
//! later ones: `workers.rs`), requests on a connection served in order
//! (see `proto::rpc`).
//!
//! A request whose handler panics is answered with an `agent_panic`
//! error and the connection goes on: one bad request must not take the
//! VM down (`isolated`; the panic hook in `main.rs` logs the panic to the
//! console and powers off only for PID 1's main thread).

use super::body::Body;
use super::workers::Workers;
use super::{archive, exec, files, freeze, log, patch_apply, secrets, service, shell, RpcError};
use pyro_proto::rpc::{self, Event, Reply, Request};
use std::io::{BufReader, BufWriter, Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;
use vsock::{VsockListener, VsockStream, VMADDR_CID_ANY};

/// The exec argv (one word) that panics instead of running, from
/// `proto::cmdline::TEST_PANIC_KEY`: set only by tests of the isolation.
static TEST_PANIC: OnceLock<String> = OnceLock::new();

/// Arms the test-only panic trigger (see [`TEST_PANIC`]).
pub fn arm_test_panic(word: &str) {
    log(&format!("test: an exec of {word:?} panics in the agent"));
    let _ = TEST_PANIC.set(word.to_string());
}

/// Whether `word` is the armed test-only panic trigger (see
/// [`TEST_PANIC`]): a helper thread given it panics, for tests of its
/// isolation.
pub fn is_test_panic(word: &str) -> bool {
    TEST_PANIC.get().is_some_and(|w| w == word)
}

/// What a caught panic said.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

/// Binds the agent port; failure is fatal for a serving guest.
pub fn listen() -> std::io::Result<VsockListener> {
    VsockListener::bind_with_cid_port(VMADDR_CID_ANY, rpc::AGENT_PORT)
}

/// Accepts connections forever, each served by a thread of its own
/// (kept for the next one: `Workers`).
pub fn serve(listener: VsockListener) {
    // Made now, so that a warm snapshot holds them.
    let workers = Workers::new(connection);
    workers.prestart();
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => workers.dispatch(stream),
            Err(e) => log(&format!("agent: accept: {e}")),
        }
    }
}

fn connection(stream: VsockStream) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::with_capacity(rpc::CHUNK + 64, read_half);
    // Room for a whole chunk frame, so a header and its data leave in one
    // write (each guest syscall costs ~160 us on PVM hosts).
    let mut writer = BufWriter::with_capacity(rpc::CHUNK + 64, stream);
    loop {
        let request = match rpc::read_frame::<Request>(&mut reader) {
            Ok(Some((request, data))) => (request, data),
            Ok(None) => return,
            Err(e) => return bad_frame(&mut writer, e.to_string()),
        };
        let (request, data) = request;
        // A freeze holds this connection until its thaw (`freeze.rs`).
        if let Request::Freeze { hold_ms } = request {
            if freeze::serve(hold_ms, &mut reader, &mut writer) {
                continue;
            }
            return;
        }
        let mut body = Body::new(&mut reader, has_body(&request));
        let durable = changes_files(&request);
        // Whatever the handler left half done is dropped; the body is
        // drained below and replies are whole frames, so the connection
        // stays in step after a panic.
        let mut done = isolated(AssertUnwindSafe(|| {
            handle(request, data, &mut body, &mut writer)
        }));
        // Acknowledged work must survive a VMM killed right after: flush
        // /workspace (journal included) before answering. A command's own
        // writes count too: an agent that saw "exit 0" relies on them.
        // A body that failed on its way in (a staged piece that could not
        // be read) says why better than the handler that read it.
        if let (Err(_), Some(e)) = (&done, body.failure()) {
            done = Err(e);
        }
        if durable && done.is_ok() {
            if let Err(e) = files::sync() {
                done = Err(e);
            }
        }
        // The host sends the whole body whatever happens; read what the
        // handler left so the next frame is a request again.
        if let Err(e) = body.drain() {
            return bad_frame(&mut writer, e.to_string());
        }
        let event = match done {
            Ok(reply) => Event::Done(reply),
            Err(e) if e.kind == "host_gone" => return,
            Err(e) => Event::Error {
                kind: e.kind.into(),
                message: e.message,
            },
        };
        // A reply too large for one frame is refused before any byte is
        // written; the host gets an error instead of a connection cut.
        let sent = match rpc::write_frame(&mut writer, &event, &[]) {
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                let error = Event::Error {
                    kind: "reply_too_large".into(),
                    message: e.to_string(),
                };
                rpc::write_frame(&mut writer, &error, &[])
            }
            other => other,
        };
        if sent.and_then(|_| writer.flush()).is_err() {
            return;
        }
    }
}

/// Runs one request's handler; a panic in it becomes an `agent_panic`
/// error for that request. The panic hook has already written the panic
/// and where it happened to the console.
fn isolated<T>(
    handler: AssertUnwindSafe<impl FnOnce() -> Result<T, RpcError>>,
) -> Result<T, RpcError> {
    catch_unwind(handler).unwrap_or_else(|payload| {
        let what = panic_message(&*payload);
        Err(RpcError::new(
            "agent_panic",
            format!(
                "the guest agent failed on this request ({what}); it goes on serving, \
                 and the VM's console log says where"
            ),
        ))
    })
}

/// Says why a frame was refused and closes the connection: after a bad
/// frame we cannot know where the next one starts.
fn bad_frame(writer: &mut impl Write, message: String) {
    let error = Event::Error {
        kind: "bad_frame".into(),
        message,
    };
    let _ = rpc::write_frame(writer, &error, &[]);
    let _ = writer.flush();
}

fn changes_files(request: &Request) -> bool {
    matches!(
        request,
        Request::Exec(_)
            | Request::Write { .. }
            | Request::Mkdir { .. }
            | Request::Remove { .. }
            | Request::Upload { .. }
            | Request::PatchApply
    )
}

fn has_body(request: &Request) -> bool {
    match request {
        Request::Write { .. } | Request::Upload { .. } => true,
        Request::Exec(req) => req.stdin,
        _ => false,
    }
}

fn handle(
    request: Request,
    data: Vec<u8>,
    body: &mut Body<'_>,
    out: &mut BufWriter<VsockStream>,
) -> Result<Reply, RpcError> {
    if let (Some(word), Request::Exec(req)) = (TEST_PANIC.get(), &request) {
        if req.argv == [word.as_str()] {
            panic!("test panic for an exec of {word:?}");
        }
    }
    match request {
        Request::Ping => Ok(Reply::Pong {
            uptime_ms: super::clock::monotonic_us() / 1000,
            hostname: hostname(),
        }),
        Request::Exec(req) => {
            let stdin = req.stdin.then_some(body as &mut (dyn Read + Send));
            exec::run(&req, stdin, out).map(Reply::Exec)
        }
        Request::Stat { path } => files::stat(&path),
        Request::List { path, recursive } => files::list(&path, recursive, out),
        Request::Read {
            path,
            offset,
            max_bytes,
        } => files::read(&path, offset, max_bytes, out),
        Request::Write {
            path,
            mode,
            parents,
        } => files::write(&path, mode, parents, body),
        Request::Mkdir { path, parents } => files::mkdir(&path, parents),
        Request::Remove { path, recursive } => files::remove(&path, recursive),
        Request::Upload { dest } => archive::upload(&dest, body),
        Request::Download { path } => archive::download(&path, out),
        Request::Sync => files::sync().map(|_| Reply::Synced),
        Request::Freeze { .. } | Request::Thaw => Err(RpcError::new(
            "bad_request",
            "a thaw without a freeze on this connection".into(),
        )),
        Request::Restored {
            hostname,
            entropy,
            unix_ns,
            workspace,
            system,
        } => restored(
            hostname.as_deref(),
            &entropy,
            unix_ns,
            workspace.as_deref(),
            system.as_deref(),
        )
        .map(|_| Reply::Restored),
        Request::PatchApply => patch_apply::apply(&data),
        Request::Secrets { entries } => secrets::install(&entries, &data),
        Request::ShellOpen(req) => shell::open(req),
        Request::ShellRead(req) => shell::read(req, out),
        Request::ShellWrite { id } => shell::write(&id, &data),
        Request::ShellResize { id, cols, rows } => shell::resize(&id, cols, rows),
        Request::ShellSignal { id, signal } => shell::signal(&id, signal),
        Request::ShellClose { id } => shell::close(&id),
        Request::ShellList => Ok(shell::list()),
        Request::ServiceStart(req) => service::start(req),
        Request::ServiceStatus { name } => service::status(&name),
        Request::ServiceLogs { name, tail_lines } => service::logs(&name, tail_lines, out),
        Request::ServiceStop { name, grace_ms } => service::stop(&name, grace_ms),
        Request::ServiceList => Ok(service::list()),
        Request::Data | Request::Staged { .. } => Err(RpcError::new(
            "bad_request",
            "a data frame outside a request body".into(),
        )),
    }
}

/// Makes a guest restored from a shared snapshot its own VM (or one
/// resumed from its own memory current again: clock, RNG).
fn restored(
    hostname: Option<&str>,
    entropy: &[u8],
    unix_ns: u64,
    workspace: Option<&str>,
    system: Option<&str>,
) -> Result<(), RpcError> {
    let fail = |what: &str, e: String| RpcError::new("restore_failed", format!("{what}: {e}"));
    let bad_hostname = hostname.is_some_and(|h| h.is_empty() || h.len() > 64);
    if bad_hostname || entropy.len() < 32 || entropy.len() > 2048 {
        return Err(RpcError::new(
            "bad_request",
            "hostname must be 1-64 bytes and entropy 32-2048 bytes".into(),
        ));
    }
    if let Some(hostname) = hostname {
        rustix::system::sethostname(hostname.as_bytes())
            .map_err(|e| fail("sethostname", e.to_string()))?;
    }
    let now = rustix::time::Timespec {
        tv_sec: (unix_ns / 1_000_000_000) as i64,
        tv_nsec: (unix_ns % 1_000_000_000) as _,
    };
    rustix::time::clock_settime(rustix::time::ClockId::Realtime, now)
        .map_err(|e| fail("clock_settime", e.to_string()))?;
    // Mixed in and credited, then a reseed at once: without it the
    // kernel would go on drawing from the state every clone shares until
    // its next scheduled reseed (up to a minute away).
    linux_crng_ioctl::ioctl::add_randomness_to_kernel(entropy, (entropy.len() * 8) as u32)
        .map_err(|e| fail("RNDADDENTROPY", e.to_string()))?;
    linux_crng_ioctl::ioctl::force_kernel_crng_reseed()
        .map_err(|e| fail("RNDRESEEDCRNG", e.to_string()))?;
    // The system first: /workspace is mounted into the new root.
    if let Some(value) = system {
        let upper = super::system::Upper::parse(value).ok_or_else(|| {
            RpcError::new(
                "bad_request",
                format!("system upper {value:?}: not tmpfs or /dev/vdX"),
            )
        })?;
        super::system::make_writable(upper).map_err(|e| RpcError::new("system_mount_failed", e))?;
    }
    if let Some(device) = workspace {
        super::mounts::mount_attached_workspace(device)
            .map_err(|e| RpcError::new("workspace_mount_failed", e))?;
    }
    Ok(())
}

fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_handler_becomes_an_error_for_its_request() {
        let done: Result<u8, RpcError> = isolated(AssertUnwindSafe(|| panic!("boom")));
        let e = done.unwrap_err();
        assert_eq!(e.kind, "agent_panic");
        assert!(e.message.contains("(boom)"), "{}", e.message);

        let n = 7;
        let done: Result<u8, RpcError> = isolated(AssertUnwindSafe(|| panic!("index {n}")));
        assert!(done.unwrap_err().message.contains("(index 7)"));

        // Results pass through untouched, errors included.
        assert_eq!(
            isolated(AssertUnwindSafe(|| Ok::<_, RpcError>(3))).unwrap(),
            3
        );
        let e = isolated(AssertUnwindSafe(|| {
            Err::<u8, _>(RpcError::new("not_found", "x".into()))
        }))
        .unwrap_err();
        assert_eq!(e.kind, "not_found");
    }
}
