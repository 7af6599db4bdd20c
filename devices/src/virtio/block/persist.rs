//! What a snapshot keeps of a block device: its queue (while active) and
//! whether the guest saw it read-only. The file and its size come from
//! the config at restore; a size change is the transport's business (a
//! config-change interrupt), not an error.

use super::device::{Active, Block, DEVICE_TYPE};
use crate::virtio::persist::{restore_queues, Persist, RestoreContext, RestoreError};
use crate::virtio::{QueueSnapshot, VirtioDevice};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlockState {
    pub read_only: bool,
    /// The request queue while the device is active; empty before.
    pub queues: Vec<QueueSnapshot>,
}

impl Persist for Block {
    type State = BlockState;

    fn save(&self) -> BlockState {
        BlockState {
            read_only: self.read_only,
            queues: self
                .active
                .iter()
                .map(|a| QueueSnapshot::of(&a.queue))
                .collect(),
        }
    }

    fn restore(&mut self, ctx: RestoreContext, state: &BlockState) -> Result<(), RestoreError> {
        if state.read_only != self.read_only {
            return Err(RestoreError::BlockReadOnly {
                saved: state.read_only,
                here: self.read_only,
            });
        }
        if state.queues.is_empty() {
            return Ok(());
        }
        let mut queues =
            restore_queues(DEVICE_TYPE, &state.queues, self.queue_max_sizes(), &ctx.mem)?;
        self.active = queues.pop().map(|queue| Active {
            mem: ctx.mem,
            queue,
            interrupt: ctx.interrupt,
        });
        Ok(())
    }
}
