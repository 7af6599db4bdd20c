//! What a snapshot keeps of the vsock device: the guest's CID and its
//! three queues (while active). No stream survives (their host ends
//! belonged to another process); the restored device tells the guest so
//! (TRANSPORT_RESET, see `VirtioDevice::restored`).

use super::device::{Active, Vsock, DEVICE_TYPE};
use crate::virtio::persist::{restore_queues, Persist, RestoreContext, RestoreError};
use crate::virtio::{QueueSnapshot, VirtioDevice};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VsockState {
    pub cid: u64,
    /// RX, TX and event queues while the device is active; empty before.
    pub queues: Vec<QueueSnapshot>,
}

impl Persist for Vsock {
    type State = VsockState;

    fn save(&self) -> VsockState {
        VsockState {
            cid: self.cid,
            queues: self
                .active
                .iter()
                .flat_map(|a| a.queues.iter().map(QueueSnapshot::of))
                .collect(),
        }
    }

    fn restore(&mut self, ctx: RestoreContext, state: &VsockState) -> Result<(), RestoreError> {
        if state.cid != self.cid {
            return Err(RestoreError::VsockCid {
                saved: state.cid,
                here: self.cid,
            });
        }
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
