//! Reads of a running workspace served from its disk image on the host
//! (the data-path issue): `file list`, `file read`, `export` and `diff`.
//!
//! On our PVM hosts every byte and system call through the guest kernel
//! is emulated: a recursive listing of 10,000 files through the agent
//! takes minutes. The host reads the same ext4 image in milliseconds. To
//! read one instant of it, the agent freezes /workspace first
//! (`Request::Freeze`: `FIFREEZE` writes out dirty data and the journal
//! and holds new writes, each write system call whole or not at all),
//! the host reads the image with the reader of the disk tools, in its
//! confined helper process (`image_reader.rs`: bounded, symlinks never
//! followed, a panic an error, a system call allowlist), and the agent
//! thaws. The freeze belongs to one agent
//! connection and ends with it or at its deadline, so a host that dies
//! mid-read leaves no frozen guest behind.
//!
//! Any of these falls back to the agent, which gives the answer (or the
//! error) as before: the guest will not freeze (more than
//! `FREEZE_MAX_DIRTY_BYTES` to write out, a file system mounted below
//! /workspace, frozen already), the reader fails or refuses (a damaged
//! image, a path through a symlink, a missing path: the agent's error
//! says it best), or the freeze ended before the thaw (the read may be
//! torn, so it is dropped). Results say which side served them
//! (`served_by`). `PYRO_HOST_READS=0` turns the host side off.

use super::handle::WorkspaceHandle;
use super::image_reader::ImageReader;
use crate::detached::VmState;
use crate::guest::GuestClient;
use crate::Error;
use std::time::Duration;

super::records::words! {
    /// Which side served a read of a workspace's files.
    pub enum ServedBy {
        /// The disk image, read on the host (frozen, if the VM runs).
        HostImage = "host_image",
        /// The guest agent, through the guest kernel.
        GuestAgent = "guest_agent",
    }
}

/// The environment variable that turns host-side reads off (`0`).
pub const HOST_READS_ENV: &str = "PYRO_HOST_READS";

/// Longest the guest keeps /workspace frozen for one read: its writers
/// wait meanwhile. A read that needs longer is dropped and redone by the
/// agent.
const FREEZE_HOLD: Duration = Duration::from_secs(60);
/// Longest the freeze itself may take: it writes out at most
/// `FREEZE_MAX_DIRTY_BYTES` first.
const FREEZE_REPLY: Duration = Duration::from_secs(60);

/// A running workspace's /workspace, frozen by the agent for the host
/// to read its image; thawed by [`Frozen::thaw`] or when dropped (the
/// connection's end thaws it).
pub(super) struct Frozen<'a> {
    ws: &'a WorkspaceHandle,
    agent: GuestClient,
}

impl<'a> Frozen<'a> {
    /// Freezes `ws`'s /workspace, or `None` if the host should not read
    /// it (host reads off, the VM not running, the guest refusing).
    pub fn new(ws: &'a WorkspaceHandle) -> Option<Frozen<'a>> {
        if std::env::var(HOST_READS_ENV).is_ok_and(|v| v == "0") {
            return None;
        }
        if !matches!(ws.vm().state(), VmState::Running { paused: false, .. }) {
            return None;
        }
        let mut agent = ws.agent().ok()?;
        agent.set_reply_timeout(Some(FREEZE_REPLY)).ok()?;
        agent.freeze(FREEZE_HOLD).ok()?;
        Some(Frozen { ws, agent })
    }

    /// A confined reader of the frozen image.
    pub fn reader(&self) -> Result<ImageReader, Error> {
        ImageReader::open(&self.ws.dir.disk(), &self.ws.given)
    }

    /// Ends the freeze; an error means it had ended already (its
    /// deadline), so what was read may not be one instant.
    pub fn thaw(mut self) -> Result<(), Error> {
        self.agent.thaw().map_err(|e| {
            Error::Guest(format!(
                "workspace {}: the freeze ended before the host's read did ({e})",
                self.ws.given
            ))
        })
    }
}

/// `host` on `ws`'s frozen image for the request path `path` (made
/// relative), else `guest` through the agent; and which one served it.
pub(super) fn host_or_guest<T>(
    ws: &WorkspaceHandle,
    path: &str,
    host: impl FnOnce(&mut ImageReader, &str) -> Result<T, Error>,
    guest: impl FnOnce() -> Result<T, Error>,
) -> Result<(T, ServedBy), Error> {
    let on_host = pyro_proto::rpc::workspace_relative(path)
        .ok()
        .and_then(|rel| on_image(ws, |image| host(image, &rel)));
    match on_host {
        Some(t) => Ok((t, ServedBy::HostImage)),
        None => Ok((guest()?, ServedBy::GuestAgent)),
    }
}

/// `f` on `ws`'s frozen image, or `None` where the agent must serve the
/// read instead (see the module docs).
pub(super) fn on_image<T>(
    ws: &WorkspaceHandle,
    f: impl FnOnce(&mut ImageReader) -> Result<T, Error>,
) -> Option<T> {
    let frozen = Frozen::new(ws)?;
    let out = frozen.reader().and_then(|mut reader| f(&mut reader));
    frozen.thaw().ok()?;
    out.ok()
}
