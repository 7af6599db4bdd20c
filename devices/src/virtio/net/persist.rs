//! What a snapshot keeps of a net device: its two queues while active.
//! The stack is not saved: no connection survives a snapshot (their host
//! ends belonged to another process), and the guest's next segment on an
//! old connection is answered with RST. The link status comes from the
//! new VM's policy; a change is the transport's business (a config
//! interrupt after the restore).

use super::device::{Active, Net, DEVICE_TYPE};
use crate::virtio::persist::{restore_queues, Persist, RestoreContext, RestoreError};
use crate::virtio::{QueueSnapshot, VirtioDevice};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetState {
    /// RX and TX while the device is active; empty before.
    pub queues: Vec<QueueSnapshot>,
}

impl Persist for Net {
    type State = NetState;

    fn save(&self) -> NetState {
        NetState {
            queues: self
                .active
                .iter()
                .flat_map(|a| a.queues.iter().map(QueueSnapshot::of))
                .collect(),
        }
    }

    fn restore(&mut self, ctx: RestoreContext, state: &NetState) -> Result<(), RestoreError> {
        if state.queues.is_empty() {
            return Ok(());
        }
        let queues = restore_queues(DEVICE_TYPE, &state.queues, self.queue_max_sizes(), &ctx.mem)?;
        self.active = Some(Active {
            mem: ctx.mem,
            queues,
            interrupt: ctx.interrupt,
        });
        Ok(())
    }
}
