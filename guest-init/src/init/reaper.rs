//! PID 1 inherits every orphan and must reap it; the agent's own children
//! must get their exit status. One thread reaps everything with
//! `wait` (any child) and hands statuses of registered children to whoever
//! spawned them, so the two never race for a status.

use rustix::io::Errno;
use rustix::process::{wait, WaitOptions, WaitStatus};
use std::collections::HashMap;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

#[derive(Default)]
struct Registry {
    waiting: HashMap<i32, Sender<WaitStatus>>,
}

struct Shared {
    registry: Mutex<Registry>,
    /// Signalled when a child is spawned, to wake a reaper with none.
    spawned: Condvar,
}

fn shared() -> &'static Arc<Shared> {
    static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();
    SHARED.get_or_init(|| {
        Arc::new(Shared {
            registry: Mutex::default(),
            spawned: Condvar::new(),
        })
    })
}

/// Where a spawned child's exit status arrives.
pub type Exited = Receiver<WaitStatus>;

/// Spawns a child through `spawn` and returns it with a receiver for its
/// exit status. The registry lock is held across the spawn, so the reaper
/// cannot reap the child before it is registered.
fn spawn<T>(
    spawn: impl FnOnce() -> std::io::Result<T>,
    pid_of: impl Fn(&T) -> u32,
) -> std::io::Result<(T, Receiver<WaitStatus>)> {
    let shared = shared();
    let mut registry = shared.registry.lock().unwrap_or_else(|p| p.into_inner());
    let child = spawn()?;
    let (tx, rx) = channel();
    registry.waiting.insert(pid_of(&child) as i32, tx);
    drop(registry);
    shared.spawned.notify_all();
    Ok((child, rx))
}

/// Starts `s` with `posix_spawn` ([`pyro_spawn`]) through [`spawn`]:
/// its pid, and where its exit status arrives. How the agent starts every
/// process (commands, services and their checks, shells).
pub fn start(s: &pyro_spawn::Spawn<'_>) -> std::io::Result<(i32, Exited)> {
    spawn(|| pyro_spawn::spawn(s), |pid| *pid as u32)
}

/// Reaps forever (run on its own thread, or as PID 1's main loop).
pub fn reap_forever() -> ! {
    let shared = shared();
    loop {
        // `wait`, not `waitpid(None)`: the latter is pid 0, children in our
        // own process group only, and commands run in groups of their own.
        match wait(WaitOptions::empty()) {
            Ok(Some((pid, status))) => {
                let mut registry = shared.registry.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(tx) = registry.waiting.remove(&pid.as_raw_nonzero().get()) {
                    let _ = tx.send(status);
                }
            }
            Ok(None) | Err(Errno::INTR) => {}
            Err(_) => {
                // No children: sleep until one is spawned. With none,
                // no other user process exists (every one descends from
                // PID 1, and orphans come back to it), so none can be
                // re-parented here meanwhile; the minute is only a safety
                // net. An idle guest must not wake each second: on PVM
                // hosts every wakeup is emulated kernel work (issue 20).
                // A child registered since `wait` said ECHILD: go round at
                // once (checked under the lock spawn() holds, so no race).
                let registry = shared.registry.lock().unwrap_or_else(|p| p.into_inner());
                if registry.waiting.is_empty() {
                    let _ = shared
                        .spawned
                        .wait_timeout(registry, std::time::Duration::from_secs(60));
                }
            }
        }
    }
}
