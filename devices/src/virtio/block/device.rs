//! The virtio-blk device, backed by a host file.
//!
//! Every request is checked before it touches the file: the header must be
//! complete, the status byte must be the last writable byte, data must go
//! the right direction, and the whole range must lie inside the disk. A bad
//! request gets an error status (or, if it has no status byte at all, is
//! returned with nothing written); it never stops the device.

use crate::virtio::persist::{DeviceState, Persist, RestoreContext, RestoreError};
use crate::virtio::{read_config_bytes, GuestMem, Interrupt, VirtioDevice, VIRTIO_F_VERSION_1};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use virtio_queue::{DescriptorChain, Queue, QueueT, Reader, Writer};

pub const DEVICE_TYPE: u32 = 2;
pub(super) const QUEUE_SIZE: u16 = 256;
pub const SECTOR: u64 = 512;

/// `seg_max` in the config is valid. Without it Linux sends one segment
/// per request, which is one 4 KiB page of the page cache: on PVM hosts,
/// where each request costs the guest kernel a millisecond of emulated
/// work, that made a 10 MiB write take seconds.
pub(super) const F_SEG_MAX: u64 = 1 << 2;
pub(super) const F_RO: u64 = 1 << 5;
pub(super) const F_FLUSH: u64 = 1 << 9;

pub(super) const T_IN: u32 = 0;
pub(super) const T_OUT: u32 = 1;
pub(super) const T_FLUSH: u32 = 4;
pub(super) const T_GET_ID: u32 = 8;

pub const S_OK: u8 = 0;
pub const S_IOERR: u8 = 1;
pub const S_UNSUPP: u8 = 2;

pub(super) const ID_LEN: usize = 20;
/// Segments one request may have ([`F_SEG_MAX`]); two such requests fit
/// the queue at once, with their header and status descriptors.
pub(super) const SEG_MAX: u32 = QUEUE_SIZE as u32 / 2 - 2;
/// Requests are copied through a bounce buffer of at most this size.
pub(super) const CHUNK: usize = 128 * 1024;

pub(super) struct Active {
    pub mem: GuestMem,
    pub queue: Queue,
    pub interrupt: Interrupt,
}

pub struct Block {
    file: File,
    pub(super) read_only: bool,
    capacity: u64,
    id: [u8; ID_LEN],
    /// `capacity` (sectors), `size_max` (unused), `seg_max`.
    config: [u8; 16],
    pub(super) active: Option<Active>,
}

impl Block {
    /// Opens `path`. The disk size is the file size rounded down to sectors.
    pub fn open(path: &Path, read_only: bool, id: &str) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)?;
        let capacity = file.metadata()?.len() / SECTOR * SECTOR;
        let mut id_bytes = [0u8; ID_LEN];
        let n = id.len().min(ID_LEN);
        id_bytes[..n].copy_from_slice(&id.as_bytes()[..n]);
        Ok(Self {
            file,
            read_only,
            capacity,
            id: id_bytes,
            config: config(capacity),
            active: None,
        })
    }

    /// Runs one request; returns the bytes written into the chain.
    fn handle<M>(&self, mem: &GuestMem, chain: DescriptorChain<M>) -> u32
    where
        M: std::ops::Deref<Target = GuestMem> + Clone,
    {
        let (Ok(mut reader), Ok(mut writer)) =
            (Reader::new(mem, chain.clone()), Writer::new(mem, chain))
        else {
            return 0; // descriptors outside guest memory: nothing to answer into
        };
        let writable = writer.available_bytes();
        if writable == 0 {
            return 0; // no status byte
        }
        let Ok(mut status_byte) = writer.split_at(writable - 1) else {
            return 0;
        };
        let status = match self.execute(&mut reader, &mut writer) {
            Ok(()) => S_OK,
            Err(status) => status,
        };
        let _ = status_byte.write_all(&[status]);
        (writer.bytes_written() + 1) as u32
    }

    fn execute(&self, reader: &mut Reader<'_>, writer: &mut Writer<'_>) -> Result<(), u8> {
        let mut header = [0u8; 16];
        reader.read_exact(&mut header).map_err(|_| S_IOERR)?;
        let kind = u32::from_le_bytes(header[0..4].try_into().unwrap());
        let sector = u64::from_le_bytes(header[8..16].try_into().unwrap());
        match kind {
            T_IN => {
                let len = writer.available_bytes() as u64;
                let offset = self.check_range(sector, len)?;
                self.copy_to_guest(offset, len, writer)
            }
            T_OUT if self.read_only => Err(S_IOERR),
            T_OUT => {
                let len = reader.available_bytes() as u64;
                let offset = self.check_range(sector, len)?;
                self.copy_from_guest(offset, len, reader)
            }
            T_FLUSH if self.read_only => Ok(()),
            T_FLUSH => self.file.sync_data().map_err(|_| S_IOERR),
            T_GET_ID => {
                let n = writer.available_bytes().min(ID_LEN);
                writer.write_all(&self.id[..n]).map_err(|_| S_IOERR)
            }
            _ => Err(S_UNSUPP),
        }
    }

    /// The byte offset of `sector` if `len` bytes from there fit the disk.
    fn check_range(&self, sector: u64, len: u64) -> Result<u64, u8> {
        let offset = sector.checked_mul(SECTOR).ok_or(S_IOERR)?;
        let end = offset.checked_add(len).ok_or(S_IOERR)?;
        if end > self.capacity {
            return Err(S_IOERR);
        }
        Ok(offset)
    }

    fn copy_to_guest(&self, mut offset: u64, len: u64, writer: &mut Writer<'_>) -> Result<(), u8> {
        let mut buf = vec![0u8; CHUNK.min(len as usize)];
        let mut left = len as usize;
        while left > 0 {
            let n = left.min(CHUNK);
            self.file
                .read_exact_at(&mut buf[..n], offset)
                .map_err(|_| S_IOERR)?;
            writer.write_all(&buf[..n]).map_err(|_| S_IOERR)?;
            offset += n as u64;
            left -= n;
        }
        Ok(())
    }

    fn copy_from_guest(
        &self,
        mut offset: u64,
        len: u64,
        reader: &mut Reader<'_>,
    ) -> Result<(), u8> {
        let mut buf = vec![0u8; CHUNK.min(len as usize)];
        let mut left = len as usize;
        while left > 0 {
            let n = left.min(CHUNK);
            reader.read_exact(&mut buf[..n]).map_err(|_| S_IOERR)?;
            self.file
                .write_all_at(&buf[..n], offset)
                .map_err(|_| S_IOERR)?;
            offset += n as u64;
            left -= n;
        }
        Ok(())
    }
}

/// The config space: capacity in sectors, `size_max` (not offered, so
/// zero), `seg_max`.
fn config(capacity: u64) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[..8].copy_from_slice(&(capacity / SECTOR).to_le_bytes());
    c[12..].copy_from_slice(&SEG_MAX.to_le_bytes());
    c
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        DEVICE_TYPE
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | F_FLUSH | F_SEG_MAX | if self.read_only { F_RO } else { 0 }
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    fn activate(&mut self, mem: GuestMem, mut queues: Vec<Queue>, interrupt: Interrupt) {
        if let Some(queue) = queues.pop() {
            self.active = Some(Active {
                mem,
                queue,
                interrupt,
            });
            // Requests queued before activation have no kick coming.
            self.process_queue(0);
        }
    }

    fn reset(&mut self) {
        self.active = None;
    }

    fn save_state(&self) -> DeviceState {
        DeviceState::Block(Persist::save(self))
    }

    fn restore_state(
        &mut self,
        ctx: RestoreContext,
        state: &DeviceState,
    ) -> Result<(), RestoreError> {
        match state {
            DeviceState::Block(s) => Persist::restore(self, ctx, s),
            other => Err(RestoreError::StateKind {
                saved: other.kind(),
                here: "block",
            }),
        }
    }

    fn sync_backend(&self) -> std::io::Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.file.sync_data()
    }

    fn process_queue(&mut self, _index: usize) {
        let Some(mut active) = self.active.take() else {
            return;
        };
        let mem = active.mem.clone();
        let mut used_any = false;
        while let Some(chain) = active.queue.pop_descriptor_chain(&mem) {
            let head = chain.head_index();
            let len = self.handle(&mem, chain);
            // Only fails for a head index the queue itself handed out.
            let _ = active.queue.add_used(&mem, head, len);
            used_any = true;
        }
        if used_any && active.queue.needs_notification(&mem).unwrap_or(true) {
            active.interrupt.signal_used();
        }
        self.active = Some(active);
    }
}
