//! Talking to guest-init's agent over the VMM's vsock socket (hybrid
//! convention: `CONNECT <port>\n` -> `OK <n>\n`, then the stream).

use pyro_guest_init::proto::rpc::{self, Event, ExecRequest, ExecResult, Reply, Request, Stream};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Errors talking to the guest.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("the guest agent did not answer on {uds} within {seconds:.1}s (last error: {last})")]
    NotReady {
        uds: PathBuf,
        seconds: f64,
        last: String,
    },
    #[error("lost the connection to the guest agent: {0}")]
    Io(#[from] std::io::Error),
    #[error("the guest agent said {kind}: {message}")]
    Remote { kind: String, message: String },
    #[error("the guest agent sent an unexpected reply: {0}")]
    Protocol(String),
}

/// A connection to the agent. Requests on one connection run in order.
pub struct GuestClient {
    reader: BufReader<UnixStream>,
    writer: BufWriter<UnixStream>,
}

impl GuestClient {
    /// Connects once; fails if the agent is not listening.
    pub fn connect(uds: &Path) -> std::io::Result<GuestClient> {
        let mut stream = UnixStream::connect(uds)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(format!("CONNECT {}\n", rpc::AGENT_PORT).as_bytes())?;
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while line.len() < 32 {
            stream.read_exact(&mut byte)?;
            if byte[0] == b'\n' {
                break;
            }
            line.push(byte[0]);
        }
        if !line.starts_with(b"OK ") {
            return Err(std::io::Error::other(format!(
                "vsock handshake: {:?}",
                String::from_utf8_lossy(&line)
            )));
        }
        stream.set_read_timeout(None)?;
        Ok(GuestClient {
            reader: BufReader::new(stream.try_clone()?),
            writer: BufWriter::new(stream),
        })
    }

    /// Connects, retrying until the agent listens or `timeout` passes.
    pub fn wait_ready(uds: &Path, timeout: Duration) -> Result<GuestClient, GuestError> {
        let started = Instant::now();
        loop {
            let last = match GuestClient::connect(uds) {
                Ok(client) => return Ok(client),
                Err(e) => e.to_string(),
            };
            if started.elapsed() >= timeout {
                return Err(GuestError::NotReady {
                    uds: uds.into(),
                    seconds: timeout.as_secs_f64(),
                    last,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn send(&mut self, request: &Request) -> Result<(), GuestError> {
        rpc::write_frame(&mut self.writer, request, &[])?;
        self.writer.flush()?;
        Ok(())
    }

    /// Reads frames until the final one, passing output to `on_output`.
    fn finish(&mut self, mut on_output: impl FnMut(Stream, &[u8])) -> Result<Reply, GuestError> {
        loop {
            let Some((event, data)) = rpc::read_frame::<Event>(&mut self.reader)? else {
                return Err(GuestError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            };
            match event {
                Event::Output { stream } => on_output(stream, &data),
                Event::Done(reply) => return Ok(reply),
                Event::Error { kind, message } => return Err(GuestError::Remote { kind, message }),
            }
        }
    }

    /// Round trip; returns the guest's uptime and hostname.
    pub fn ping(&mut self) -> Result<(u64, String), GuestError> {
        self.send(&Request::Ping)?;
        match self.finish(|_, _| {})? {
            Reply::Pong {
                uptime_ms,
                hostname,
            } => Ok((uptime_ms, hostname)),
            other => Err(GuestError::Protocol(format!("{other:?}"))),
        }
    }

    /// Runs a command, handing output to `on_output` as it arrives.
    pub fn exec(
        &mut self,
        request: ExecRequest,
        on_output: impl FnMut(Stream, &[u8]),
    ) -> Result<ExecResult, GuestError> {
        self.send(&Request::Exec(request))?;
        match self.finish(on_output)? {
            Reply::Exec(result) => Ok(result),
            other => Err(GuestError::Protocol(format!("{other:?}"))),
        }
    }
}
