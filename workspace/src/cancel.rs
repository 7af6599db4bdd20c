//! Giving up on a command in flight. [`Cancel`] says when; the exec path
//! (`GuestClient::exec_cancellable`) then ends its side of the guest
//! connection, and the guest agent answers a host that hung up by killing
//! the command's whole process group.

use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

/// How often a running exec asks its [`Cancel`].
const POLL: Duration = Duration::from_millis(100);
/// How long a cancelled exec waits for the guest to report the killed
/// command before it drops the connection outright.
const GRACE: Duration = Duration::from_secs(5);

/// When to give up on a command: a check that exec calls ask every
/// 100 ms while the command runs. Cheap to clone; the default never
/// cancels.
#[derive(Clone, Default)]
pub struct Cancel(Option<Arc<dyn Fn() -> bool + Send + Sync>>);

impl Cancel {
    /// Never cancels.
    pub fn never() -> Cancel {
        Cancel(None)
    }

    /// Cancels once `check` returns true (a flag set elsewhere, a request
    /// given up on, a deadline).
    pub fn when(check: impl Fn() -> bool + Send + Sync + 'static) -> Cancel {
        Cancel(Some(Arc::new(check)))
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.as_ref().is_some_and(|check| check())
    }

    /// Runs `work` while a second thread asks this `Cancel`. Once it
    /// fires, the thread shuts down the sending side of `stream` (the
    /// guest kills the command and answers), and after [`GRACE`] without
    /// `work` ending, the whole stream (a guest that does not answer).
    /// Returns what `work` returned and whether it was cancelled.
    pub(crate) fn watch<T>(&self, stream: &UnixStream, work: impl FnOnce() -> T) -> (T, bool) {
        if self.0.is_none() {
            return (work(), false);
        }
        let fired = AtomicBool::new(false);
        let (done, ended) = channel::<()>();
        let fired_ref = &fired;
        let out = std::thread::scope(|scope| {
            scope.spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = ended.recv_timeout(POLL) {
                    if self.is_cancelled() {
                        fired_ref.store(true, Ordering::SeqCst);
                        let _ = stream.shutdown(std::net::Shutdown::Write);
                        if let Err(RecvTimeoutError::Timeout) = ended.recv_timeout(GRACE) {
                            let _ = stream.shutdown(std::net::Shutdown::Both);
                        }
                        return;
                    }
                }
            });
            let out = work();
            drop(done);
            out
        });
        (out, fired.load(Ordering::SeqCst))
    }
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Cancel::when(..)"
        } else {
            "Cancel::never()"
        })
    }
}
