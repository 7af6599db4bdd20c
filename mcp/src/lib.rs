//! `pyro-mcp`: the MCP server of pyro, and the configuration MCP hosts
//! need to start it.
//!
//! Owns `pyro mcp serve` (stdio, the official Rust SDK `rmcp`): the tools
//! (`vm_run`, `workspace_*`, `snapshot_*`, see [`Profile`] for which a
//! profile exposes), their JSON schemas, how a call runs (on the blocking
//! pool, with progress notifications and cancellation, see `call.rs`),
//! and `pyro mcp config` ([`config`]: the snippet or command for Claude
//! Code, Codex and OpenCode, and installing it). Each tool is a thin call
//! into the `pyro-workspace` SDK whose structured result is the JSON the
//! CLI prints with `--json`.

#![forbid(unsafe_code)]

mod call;
pub mod config;
mod profile;
mod server;
mod tools;

pub use profile::Profile;
pub use server::{PyroServer, INSTRUCTIONS};

use rmcp::ServiceExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// Serves `profile`'s tools over stdin/stdout until the client closes the
/// connection. Returns once every SDK call still running has finished
/// (the runtime waits for its blocking pool), so no VM is left half made.
///
/// SIGINT, SIGTERM and SIGHUP end it the same way: calls in flight finish
/// (counting as cancelled), new ones are refused, then the process exits
/// with 128 + the signal. A second signal exits at once; one-shot runs'
/// VMs live in this process and stop with it.
pub fn serve(pyro: pyro_workspace::Pyro, profile: Profile) -> std::io::Result<()> {
    let server = PyroServer::new(pyro, profile);
    finish_then_exit_on_signals(&server)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let served = runtime.block_on(async {
        let closed = server.session_closed.clone();
        eprintln!(
            "[mcp] pyro {} serving {} tools (profile {profile}) on stdio",
            env!("CARGO_PKG_VERSION"),
            server.tool_names().len()
        );
        let (stdin, stdout) = rmcp::transport::stdio_pipes();
        let stdin = EofFlag {
            inner: stdin,
            closed,
        };
        let service = server
            .serve((stdin, stdout))
            .await
            .map_err(|e| std::io::Error::other(format!("MCP session did not start: {e}")))?;
        service
            .waiting()
            .await
            .map_err(|e| std::io::Error::other(format!("MCP session failed: {e}")))?;
        Ok(())
    });
    // Dropping the runtime waits for SDK calls still on the blocking pool.
    drop(runtime);
    served
}

/// Handles the first SIGINT/SIGTERM/SIGHUP by letting the calls in flight
/// finish, then exiting; a second one exits at once.
fn finish_then_exit_on_signals(server: &PyroServer) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let closed = server.session_closed.clone();
    let in_flight = server.in_flight.clone();
    std::thread::spawn(move || {
        let Some(signal) = signals.forever().next() else {
            return;
        };
        closed.store(true, Ordering::SeqCst);
        let running = in_flight.load(Ordering::SeqCst);
        if running > 0 {
            eprintln!(
                "[mcp] signal {signal}: finishing {running} call(s) in flight (a VM must not be \
                 left half made); a second signal stops at once"
            );
        }
        while in_flight.load(Ordering::SeqCst) > 0 {
            if let Some(again) = signals.pending().next() {
                pyro_workspace::abandon_runs();
                eprintln!("[mcp] signal {again}: stopped with calls in flight");
                std::process::exit(128 + again);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        std::process::exit(128 + signal);
    });
    Ok(())
}

/// Standard input that raises a flag at end of file: the client is gone,
/// so calls still running count as cancelled.
struct EofFlag<R> {
    inner: R,
    closed: Arc<AtomicBool>,
}

impl<R: AsyncRead + Unpin> AsyncRead for EofFlag<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let (room, before) = (buf.remaining(), buf.filled().len());
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(result) = &poll {
            if result.is_err() || (room > 0 && buf.filled().len() == before) {
                this.closed.store(true, Ordering::SeqCst);
            }
        }
        poll
    }
}
