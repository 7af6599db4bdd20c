//! Runs the block device on the VMM's event thread: the guest's kick of
//! its one queue (an ioeventfd) processes the queued requests.

use super::device::Block;
use crate::virtio::VirtioDevice;
use event_manager::{EventOps, Events, MutEventSubscriber};
use std::sync::{Arc, Mutex};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

pub struct BlockHandler {
    device: Arc<Mutex<Block>>,
    kicks: Vec<EventFd>,
}

impl BlockHandler {
    /// `kicks[i]` is the ioeventfd KVM signals for queue `i`.
    pub fn new(device: Arc<Mutex<Block>>, kicks: Vec<EventFd>) -> Self {
        Self { device, kicks }
    }
}

impl MutEventSubscriber for BlockHandler {
    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let index = events.data() as usize;
        let Some(kick) = self.kicks.get(index) else {
            return;
        };
        // Drain the counter; a spurious wake-up just finds an empty queue.
        let _ = kick.read();
        self.device
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .process_queue(index);
    }

    fn init(&mut self, ops: &mut EventOps) {
        for (i, kick) in self.kicks.iter().enumerate() {
            // Registration only fails on a closed epoll fd, which would be
            // a VMM bug; the device then simply never runs.
            let _ = ops.add(Events::with_data(kick, i as u32, EventSet::IN));
        }
    }
}
