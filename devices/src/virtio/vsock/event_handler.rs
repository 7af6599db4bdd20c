//! Runs the vsock device on the VMM's event thread: queue kicks, the
//! listening socket, and every host stream, with epoll interest kept in
//! step with what each stream can do (so a stalled stream is not polled).

use super::unix::muxer::Key;
use super::Vsock;
use event_manager::{EventOps, Events, MutEventSubscriber};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

const LISTENER: u32 = 16;
const STREAM_BASE: u32 = 32;

pub struct VsockHandler {
    device: Arc<Mutex<Vsock>>,
    kicks: Vec<EventFd>,
    /// Registered stream fds: which stream, and the interest set.
    streams: HashMap<RawFd, (Key, EventSet)>,
}

impl VsockHandler {
    pub fn new(device: Arc<Mutex<Vsock>>, kicks: Vec<EventFd>) -> Self {
        Self {
            device,
            kicks,
            streams: HashMap::new(),
        }
    }

    /// Brings epoll registrations in line with the device's streams, and
    /// drops closed streams after unregistering them (while their fds are
    /// still open, so a reused fd number cannot be confused).
    fn sync(&mut self, dev: &mut Vsock, ops: &mut EventOps) {
        let wanted: HashMap<RawFd, (Key, EventSet)> = dev
            .muxer()
            .interest()
            .into_iter()
            .map(|(key, fd, read, write)| {
                let mut set = EventSet::empty();
                if read {
                    set |= EventSet::IN;
                }
                if write {
                    set |= EventSet::OUT;
                }
                (fd, (key, set))
            })
            .collect();
        let stale: Vec<RawFd> = self
            .streams
            .keys()
            .filter(|fd| wanted.get(fd).map(|w| w.0) != self.streams.get(fd).map(|s| s.0))
            .copied()
            .collect();
        for fd in stale {
            if let Some((_, set)) = self.streams.remove(&fd) {
                let _ = ops.remove(Events::with_data_raw(fd, 0, set));
            }
        }
        for closed in dev.muxer().take_closed() {
            let fd = closed.stream.as_raw_fd();
            if let Some((_, set)) = self.streams.remove(&fd) {
                let _ = ops.remove(Events::with_data_raw(fd, 0, set));
            }
        }
        for (fd, (key, set)) in wanted {
            let data = STREAM_BASE + (fd as u32);
            match self.streams.get(&fd) {
                Some((_, old)) if *old == set => {}
                Some(_) => {
                    let _ = ops.modify(Events::with_data_raw(fd, data, set));
                    self.streams.insert(fd, (key, set));
                }
                None => {
                    if ops.add(Events::with_data_raw(fd, data, set)).is_ok() {
                        self.streams.insert(fd, (key, set));
                    }
                }
            }
        }
    }
}

impl MutEventSubscriber for VsockHandler {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let device = self.device.clone();
        let mut dev = device.lock().unwrap_or_else(|p| p.into_inner());
        let data = events.data();
        let set = events.event_set();
        if (data as usize) < self.kicks.len() {
            let _ = self.kicks[data as usize].read();
            crate::virtio::VirtioDevice::process_queue(&mut *dev, data as usize);
        } else if data == LISTENER {
            dev.muxer().accept_all();
        } else if data >= STREAM_BASE {
            let fd = (data - STREAM_BASE) as RawFd;
            if let Some((key, _)) = self.streams.get(&fd) {
                let hangup =
                    set.intersects(EventSet::HANG_UP | EventSet::READ_HANG_UP | EventSet::ERROR);
                dev.muxer().stream_event(
                    *key,
                    set.contains(EventSet::IN),
                    set.contains(EventSet::OUT),
                    hangup,
                );
            }
        }
        dev.pump();
        self.sync(&mut dev, ops);
    }

    fn init(&mut self, ops: &mut EventOps) {
        for (i, kick) in self.kicks.iter().enumerate() {
            let _ = ops.add(Events::with_data(kick, i as u32, EventSet::IN));
        }
        let mut dev = self.device.lock().unwrap_or_else(|p| p.into_inner());
        let _ = ops.add(Events::with_data(
            dev.muxer().listener(),
            LISTENER,
            EventSet::IN,
        ));
    }
}
