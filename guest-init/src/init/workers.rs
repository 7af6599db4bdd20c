//! Threads that serve connections, kept between them.
//!
//! Why: starting a thread in the guest took 40-80 ms of emulated kernel
//! work on PVM hosts (its stack, its malloc arena, their page faults),
//! and every CLI call opens a connection of its own. Measured with
//! `workspace exec ID -- true` (CLI wall, median of 11): 0.66-0.69 s
//! with a thread per connection, 0.55-0.58 s with these.
//!
//! A connection goes to a parked worker if one waits, else to a new
//! thread, so connections never queue behind each other (a shell or a
//! long exec holds its thread for as long as it runs). A worker whose
//! connection ends parks again unless `IDLE` others already wait.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};

/// Workers kept waiting, at most (and made by `prestart`).
pub const IDLE: usize = 4;

pub struct Workers<T: Send + 'static> {
    /// Workers parked (or about to park) in `work`; each one counted
    /// here takes exactly one item from `items`.
    idle: Mutex<usize>,
    sender: Sender<T>,
    items: Mutex<Receiver<T>>,
    serve: fn(T),
}

impl<T: Send + 'static> Workers<T> {
    /// A pool whose workers run `serve` on each item.
    pub fn new(serve: fn(T)) -> Arc<Self> {
        let (sender, items) = channel();
        Arc::new(Workers {
            idle: Mutex::new(0),
            sender,
            items: Mutex::new(items),
            serve,
        })
    }

    /// Starts `IDLE` parked workers.
    pub fn prestart(self: &Arc<Self>) {
        for _ in 0..IDLE {
            self.start(None);
        }
    }

    /// Hands `item` to a parked worker, or to a new one if none waits.
    pub fn dispatch(self: &Arc<Self>, item: T) {
        let mut idle = lock(&self.idle);
        if *idle > 0 {
            *idle -= 1;
            // The worker this reserves receives it; the channel lives as
            // long as `self`, which every worker holds.
            let _ = self.sender.send(item);
            return;
        }
        drop(idle);
        self.start(Some(item));
    }

    fn start(self: &Arc<Self>, first: Option<T>) {
        let workers = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("rpc".into())
            .spawn(move || workers.work(first));
        if let Err(e) = spawned {
            super::log(&format!("agent: cannot start a connection thread: {e}"));
        }
    }

    /// Serves `first`, then one item after another while fewer than
    /// `IDLE` other workers wait.
    fn work(&self, first: Option<T>) {
        if let Some(item) = first {
            (self.serve)(item);
        }
        loop {
            {
                let mut idle = lock(&self.idle);
                if *idle >= IDLE {
                    return;
                }
                *idle += 1;
            }
            // Not in the match's scrutinee: its guard would be held
            // while the item is served, and parked workers could not take
            // the next one.
            let item = lock(&self.items).recv();
            match item {
                Ok(item) => (self.serve)(item),
                Err(_) => return,
            }
        }
    }

    #[cfg(test)]
    fn parked(&self) -> usize {
        *lock(&self.idle)
    }
}

/// A poisoned lock (a panic elsewhere) still guards a valid count.
fn lock<V>(m: &Mutex<V>) -> MutexGuard<'_, V> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::SyncSender;
    use std::time::{Duration, Instant};

    /// Each item: a channel to say it started on, and one to wait on.
    type Item = (SyncSender<std::thread::ThreadId>, Receiver<()>);

    fn serve((started, release): Item) {
        let _ = started.send(std::thread::current().id());
        let _ = release.recv();
    }

    fn wait_until(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn items_never_wait_for_each_other_and_threads_are_kept() {
        let workers = Workers::new(serve);
        workers.prestart();
        wait_until("the prestarted workers park", || workers.parked() == IDLE);
        // Twice as many items as parked workers, none finishing: each
        // still starts at once, on a thread of its own.
        let mut releases = Vec::new();
        let mut threads = std::collections::HashSet::new();
        for _ in 0..2 * IDLE {
            let (started_tx, started_rx) = std::sync::mpsc::sync_channel(1);
            let (release_tx, release_rx) = channel();
            workers.dispatch((started_tx, release_rx));
            let thread = started_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("an item waited behind busy workers");
            threads.insert(thread);
            releases.push(release_tx);
        }
        assert_eq!(threads.len(), 2 * IDLE);
        assert_eq!(workers.parked(), 0);
        // When they end, IDLE park again and the rest exit.
        drop(releases);
        wait_until("the pool is back to IDLE", || workers.parked() == IDLE);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(workers.parked(), IDLE);
        // The next item goes to a kept thread.
        let (started_tx, started_rx) = std::sync::mpsc::sync_channel(1);
        let (release_tx, release_rx) = channel();
        workers.dispatch((started_tx, release_rx));
        let thread = started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(threads.contains(&thread), "served on a thread made earlier");
        drop(release_tx);
    }
}
