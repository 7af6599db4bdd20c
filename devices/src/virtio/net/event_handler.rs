//! Runs the net device on the VMM's event thread: queue kicks, the
//! stack's poll fd (its host sockets, listeners and wake-ups), and a
//! timer for the stack's timed work (retransmissions, dial timeouts).

use super::Net;
use crate::virtio::VirtioDevice;
use event_manager::{EventOps, Events, MutEventSubscriber};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::timerfd::TimerFd;

const STACK: u32 = 16;
const TIMER: u32 = 17;

pub struct NetHandler {
    device: Arc<Mutex<Net>>,
    kicks: Vec<EventFd>,
    timer: Option<TimerFd>,
}

impl NetHandler {
    pub fn new(device: Arc<Mutex<Net>>, kicks: Vec<EventFd>) -> Self {
        Self {
            device,
            kicks,
            timer: TimerFd::new().ok(),
        }
    }

    /// Arms the timer for the stack's next timed work.
    fn arm(&mut self, dev: &mut Net) {
        let Some(timer) = self.timer.as_mut() else {
            return;
        };
        match dev.stack().next_timeout() {
            // Zero would disarm: "now" is one millisecond away.
            Some(d) => {
                let _ = timer.reset(d.max(Duration::from_millis(1)), None);
            }
            None => {
                let _ = timer.clear();
            }
        }
    }
}

impl MutEventSubscriber for NetHandler {
    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let device = self.device.clone();
        let mut dev = device.lock().unwrap_or_else(|p| p.into_inner());
        match events.data() {
            i if (i as usize) < self.kicks.len() => {
                let _ = self.kicks[i as usize].read();
                dev.process_queue(i as usize);
            }
            STACK => {
                dev.stack().on_ready();
                dev.pump();
            }
            TIMER => {
                if let Some(t) = self.timer.as_mut() {
                    let _ = t.wait();
                }
                dev.pump();
            }
            _ => {}
        }
        self.arm(&mut dev);
    }

    fn init(&mut self, ops: &mut EventOps) {
        for (i, kick) in self.kicks.iter().enumerate() {
            let _ = ops.add(Events::with_data(kick, i as u32, EventSet::IN));
        }
        let fd = self
            .device
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stack()
            .fd();
        let _ = ops.add(Events::with_data_raw(fd, STACK, EventSet::IN));
        if let Some(timer) = self.timer.as_ref() {
            let _ = ops.add(Events::with_data(timer, TIMER, EventSet::IN));
        }
    }
}
