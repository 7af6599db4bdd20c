//! Device state in snapshots: each virtio device saves and restores its
//! own typed state ([`Persist`]); the transport keeps it, tagged by
//! device kind ([`DeviceState`]), next to its registers. A state that
//! does not fit the device it is restored into is a [`RestoreError`].

use super::block::persist::BlockState;
use super::net::persist::NetState;
use super::vsock::persist::VsockState;
use super::{GuestMem, Interrupt, QueueSnapshot};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use virtio_queue::{Queue, QueueT};

/// A device whose state survives a snapshot.
pub trait Persist {
    /// What a snapshot keeps of the device.
    type State: Serialize + DeserializeOwned;

    /// The device's state now (the VM frozen, the device locked).
    fn save(&self) -> Self::State;

    /// Puts a freshly built device (same config, fresh host resources)
    /// where `state` left it; an active device is re-activated with its
    /// queues. Nothing host-side (open connections) comes back.
    fn restore(&mut self, ctx: RestoreContext, state: &Self::State) -> Result<(), RestoreError>;
}

/// What a device needs to come back active.
pub struct RestoreContext {
    pub mem: GuestMem,
    pub interrupt: Interrupt,
}

/// One device's state, tagged by kind: adding a device is one arm here.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeviceState {
    Block(BlockState),
    Vsock(VsockState),
    Net(NetState),
}

impl DeviceState {
    pub fn kind(&self) -> &'static str {
        match self {
            DeviceState::Block(_) => "block",
            DeviceState::Vsock(_) => "vsock",
            DeviceState::Net(_) => "net",
        }
    }
}

/// Why a saved state cannot be restored into this VM's device.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("device type {saved} in the snapshot, {here} in this VM; take the snapshot again")]
    DeviceType { saved: u32, here: u32 },
    #[error("a {saved} device's state in the snapshot, but a {here} device here")]
    StateKind {
        saved: &'static str,
        here: &'static str,
    },
    #[error("device {device}: queues {saved:?} in the snapshot, {here:?} here")]
    QueueSizes {
        device: u32,
        saved: Vec<u16>,
        here: Vec<u16>,
    },
    #[error("bad queue in the snapshot: {0}")]
    BadQueue(String),
    #[error("device {device}: a queue lies outside guest memory")]
    QueueOutsideMemory { device: u32 },
    #[error("device {device}: the driver accepted features {features:#x} this device does not offer ({offered:#x})")]
    Features {
        device: u32,
        features: u64,
        offered: u64,
    },
    #[error("block: the disk was {} in the snapshot, {} here", rw(*.saved), rw(*.here))]
    BlockReadOnly { saved: bool, here: bool },
    #[error("vsock: guest CID {saved} in the snapshot, {here} here")]
    VsockCid { saved: u64, here: u64 },
    #[error("serial: {0}")]
    Serial(String),
}

fn rw(read_only: bool) -> &'static str {
    if read_only {
        "read-only"
    } else {
        "writable"
    }
}

/// Rebuilds saved queues for a device of type `device` whose queues have
/// `max_sizes`: the sizes must match and every ready queue must lie in
/// guest memory, so a damaged snapshot is refused instead of run.
pub fn restore_queues(
    device: u32,
    saved: &[QueueSnapshot],
    max_sizes: &[u16],
    mem: &GuestMem,
) -> Result<Vec<Queue>, RestoreError> {
    let saved_sizes: Vec<u16> = saved.iter().map(|q| q.max_size).collect();
    if saved_sizes != max_sizes {
        return Err(RestoreError::QueueSizes {
            device,
            saved: saved_sizes,
            here: max_sizes.to_vec(),
        });
    }
    let queues = saved
        .iter()
        .map(QueueSnapshot::queue)
        .collect::<Result<Vec<_>, _>>()?;
    if queues.iter().any(|q| q.ready() && !q.is_valid(mem)) {
        return Err(RestoreError::QueueOutsideMemory { device });
    }
    Ok(queues)
}
