//! How results and errors are printed, and nothing else: each result
//! the SDK returns has one [`Render`] (in [`workspace`], [`shell`], [`service`], [`network`] and
//! [`host`];
//! `mcp config`, which has no JSON, prints through [`mcp`]),
//! and the [`Printer`] shows it either as human text (the result on
//! stdout, a one-line `[command] key=value` summary on stderr) or, with
//! `--json`, as one JSON document on stdout (the summary still goes to
//! stderr). Errors are printed once, by [`error`].

pub mod host;
pub mod mcp;
pub mod network;
pub mod service;
pub mod shell;
pub mod workspace;

use pyro_workspace::Error;
use serde::Serialize;
use std::io::{self, Write};

/// One result, as a human reads it and as `--json` prints it.
pub trait Render {
    /// What `--json` prints.
    type Json: Serialize + ?Sized;
    fn json(&self) -> &Self::Json;
    /// The human result on stdout (nothing for `run` and `exec`, whose
    /// output streamed while they ran).
    fn human(&self, out: &mut dyn Write) -> io::Result<()>;
    /// The `[command] key=value ...` line for stderr, if the command has
    /// one.
    fn summary(&self) -> Option<String>;
    /// Lines for stderr after the summary, in human mode only (the JSON
    /// carries the same facts): what a human should notice, such as the
    /// connections a run's network policy refused.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Prints results the way the command line asked: human or `--json`.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub json: bool,
}

impl Printer {
    pub fn new(json: bool) -> Printer {
        Printer { json }
    }

    /// Prints a result and its summary.
    pub fn print(&self, result: &impl Render) {
        if self.json {
            json(result.json());
        } else {
            stdout(|out| result.human(out));
        }
        if let Some(line) = result.summary() {
            eprintln!("{line}");
        }
        if !self.json {
            for line in result.notes() {
                eprintln!("{line}");
            }
        }
    }

    /// Where a guest command's output goes while it runs (`run`,
    /// `workspace exec`): streamed to ours, unless `--json` collects it
    /// into the one document.
    pub fn guest_output(&self) -> impl FnMut(pyro_workspace::Stream, &[u8]) {
        let stream = !self.json;
        move |s, bytes| {
            if stream {
                let _ = match s {
                    pyro_workspace::Stream::Stdout => io::stdout()
                        .write_all(bytes)
                        .and_then(|_| io::stdout().flush()),
                    pyro_workspace::Stream::Stderr => io::stderr().write_all(bytes),
                };
            }
        }
    }
}

/// Prints `value` as pretty JSON on stdout.
pub fn json<T: Serialize + ?Sized>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => stdout(|out| writeln!(out, "{text}")),
        Err(e) => eprintln!("[error] cannot encode result: {e}"),
    }
}

/// Writes to stdout, which every result goes through. When the reader
/// has gone (`pyro workspace logs ID | head -1`: a broken pipe), pyro
/// ends at once, quietly, with exit code 0, as ripgrep and fd do: the
/// reader took what it wanted, so there is nothing to report (no panic,
/// no error line, no summary). Any other failure of stdout is ignored:
/// there is nowhere better to say it. A result that prints nothing
/// (`exec`, whose output streamed) does not touch stdout, so an `exec`
/// whose reader left keeps its command's exit code.
pub fn stdout(write: impl FnOnce(&mut dyn Write) -> io::Result<()>) {
    let mut out = Stdout(None);
    let written = write(&mut out).and_then(|_| out.flush());
    if written.is_err_and(|e| e.kind() == io::ErrorKind::BrokenPipe) {
        std::process::exit(0);
    }
}

/// Stdout, locked at the first byte written (see [`stdout`]).
struct Stdout(Option<io::StdoutLock<'static>>);

impl Write for Stdout {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if bytes.is_empty() {
            return Ok(0);
        }
        self.0
            .get_or_insert_with(|| io::stdout().lock())
            .write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.as_mut().map_or(Ok(()), |out| out.flush())
    }
}

/// Prints an error; returns the exit code: 2 for bad input (a usage
/// error: [`Error::is_bad_input`]), 1 for everything else.
pub fn error(as_json: bool, err: &Error) -> i32 {
    if as_json {
        json(&serde_json::json!({
            "ok": false,
            "error": { "kind": err.kind(), "message": err.to_string() },
        }));
    } else {
        eprintln!("[error] {err}");
    }
    if err.is_bad_input() {
        2
    } else {
        1
    }
}

/// `~/x` instead of `/root/x` for paths under $HOME.
pub fn path(p: &std::path::Path) -> String {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    match home.as_deref().and_then(|h| p.strip_prefix(h).ok()) {
        Some(rest) => format!("~/{}", rest.display()),
        None => p.display().to_string(),
    }
}
