//! PID 1 inherits every orphan and must reap it.

use rustix::io::Errno;
use rustix::process::{waitpid, WaitOptions};
use std::time::Duration;

/// Waits for children forever. With no children at all `waitpid` returns
/// ECHILD at once, so then it naps instead of spinning.
pub fn reap_forever() -> ! {
    loop {
        match waitpid(None, WaitOptions::empty()) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}
