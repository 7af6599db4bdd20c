//! Progress reporting for long builds, supplied by the caller.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Receives progress of long work.
///
/// `step` names the thing being built (`"kernel"`, `"guest-init"`, or an
/// environment name such as `"debian:12"`); `detail` starts with the phase
/// (`"extract"`, `"patch"`, `"configure"`, `"compile"`, `"install"`,
/// `"mmdebstrap"`, `"mkfs"`, ...) followed by `": "` and free text.
/// `phase` starts a phase (or reports a notable event), `tick` updates the
/// running phase (about once a second), `done` ends the whole step.
pub trait Progress: Send + Sync {
    fn phase(&self, step: &str, detail: &str);
    fn tick(&self, step: &str, detail: &str);
    fn done(&self, step: &str, detail: &str);
}

/// Ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn phase(&self, _: &str, _: &str) {}
    fn tick(&self, _: &str, _: &str) {}
    fn done(&self, _: &str, _: &str) {}
}

/// Prints `[step] detail` lines on stderr.
///
/// On a terminal, ticks rewrite the current line; otherwise a tick is
/// printed at most every 5 seconds.
#[derive(Debug, Default)]
pub struct StderrProgress {
    state: Mutex<TickState>,
}

#[derive(Debug, Default)]
struct TickState {
    /// A tick line was written without its newline (terminal only).
    line_open: bool,
    last_printed: Option<Instant>,
}

const TICK_INTERVAL: Duration = Duration::from_secs(5);

impl StderrProgress {
    pub fn new() -> Self {
        Self::default()
    }

    fn line(&self, step: &str, detail: &str) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut err = std::io::stderr().lock();
        let prefix = if st.line_open { "\r\x1b[K" } else { "" };
        let _ = writeln!(err, "{prefix}[{step}] {detail}");
        st.line_open = false;
        st.last_printed = None;
    }
}

impl Progress for StderrProgress {
    fn phase(&self, step: &str, detail: &str) {
        self.line(step, detail);
    }

    fn tick(&self, step: &str, detail: &str) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut err = std::io::stderr().lock();
        if err.is_terminal() {
            let _ = write!(err, "\r\x1b[K[{step}] {detail}");
            let _ = err.flush();
            st.line_open = true;
        } else if st.last_printed.is_none_or(|t| t.elapsed() >= TICK_INTERVAL) {
            let _ = writeln!(err, "[{step}] {detail}");
            st.last_printed = Some(Instant::now());
        }
    }

    fn done(&self, step: &str, detail: &str) {
        self.line(step, detail);
    }
}
