//! Freezing /workspace so the host can read its disk image as one
//! instant (`Request::Freeze`): list, read, export and diff of a running
//! workspace are served from the image on the host, where every byte and
//! system call costs nothing like what it costs in an emulated guest
//! kernel.
//!
//! The freeze belongs to the connection that asked for it and ends with
//! it: at `Thaw`, when the host goes away, or at the request's deadline,
//! whichever comes first. A host that died mid-read can therefore never
//! leave the guest's /workspace frozen for longer than the deadline.

use super::{log, RpcError};
use pyro_proto::rpc::{self, Event, Reply, Request, FREEZE_MAX_DIRTY_BYTES, MAX_FREEZE_MS};
use rustix::fs::{openat, Mode, OFlags};
use std::io::{BufReader, Write};
use std::os::fd::OwnedFd;
use std::time::Duration;
use vsock::VsockStream;

/// /workspace frozen; thawed when dropped.
struct Frozen(OwnedFd);

impl Drop for Frozen {
    fn drop(&mut self) {
        // EINVAL: someone in the guest thawed it already.
        if let Err(e) = pyro_fsfreeze::thaw(&self.0) {
            log(&format!("freeze: thaw of /workspace: {e}"));
        }
    }
}

/// Why /workspace cannot be frozen for the host to read, from the
/// agent's `/proc/self/mountinfo`: it must be a disk's own mount, with
/// nothing mounted below it (the image would not hold that).
fn unfreezable(mountinfo: &str) -> Option<String> {
    let mut source = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(point) = fields.get(4) else { continue };
        let after_dash = fields.iter().position(|f| *f == "-");
        let src = after_dash.and_then(|i| fields.get(i + 2)).copied();
        if *point == rpc::WORKSPACE {
            source = src; // the last mount there is the one seen
        } else if point.starts_with("/workspace/") {
            return Some(format!(
                "{point} is mounted below /workspace, and the disk image does not hold it"
            ));
        }
    }
    match source {
        Some(s) if s.starts_with("/dev/vd") => None,
        Some(s) => Some(format!("/workspace is {s}, not a disk of its own")),
        None => Some("/workspace is not mounted".into()),
    }
}

/// Bytes the kernel still has to write out (`Dirty` and `Writeback` of
/// `/proc/meminfo`, which count kB).
fn dirty_bytes(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .filter(|l| l.starts_with("Dirty:") || l.starts_with("Writeback:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum::<u64>()
        * 1024
}

fn freeze() -> Result<Frozen, RpcError> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    if let Some(why) = unfreezable(&read("/proc/self/mountinfo")) {
        return Err(RpcError::new("unsupported", why));
    }
    let dirty = dirty_bytes(&read("/proc/meminfo"));
    if dirty > FREEZE_MAX_DIRTY_BYTES {
        return Err(RpcError::new(
            "busy",
            format!("{dirty} bytes wait to be written out; the host reads through the agent"),
        ));
    }
    let dir = openat(
        rustix::fs::CWD,
        rpc::WORKSPACE,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RpcError::new("io", format!("/workspace: {e}")))?;
    match pyro_fsfreeze::freeze(&dir) {
        Ok(()) => Ok(Frozen(dir)),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => {
            Err(RpcError::new(
                "busy",
                "/workspace is frozen already (fsfreeze in the guest?)".into(),
            ))
        }
        Err(e) => Err(RpcError::new("unsupported", format!("FIFREEZE: {e}"))),
    }
}

fn send(writer: &mut impl Write, event: &Event) -> bool {
    rpc::write_frame(writer, event, &[]).is_ok() && writer.flush().is_ok()
}

/// Serves a `Freeze` on this connection, up to the thaw. Returns whether
/// the connection goes on (it ends if the freeze outlived its deadline,
/// so a late `Thaw` fails and the host knows its read may be torn).
pub fn serve(hold_ms: u64, reader: &mut BufReader<VsockStream>, writer: &mut impl Write) -> bool {
    let frozen = match freeze() {
        Ok(frozen) => frozen,
        Err(e) => {
            let error = Event::Error {
                kind: e.kind.into(),
                message: e.message,
            };
            return send(writer, &error);
        }
    };
    if !send(writer, &Event::Done(Reply::Frozen)) {
        return false;
    }
    let hold = Duration::from_millis(hold_ms.clamp(1, MAX_FREEZE_MS));
    if reader.get_ref().set_read_timeout(Some(hold)).is_err() {
        return false;
    }
    let next = rpc::read_frame::<Request>(reader);
    drop(frozen);
    match next {
        Ok(Some((Request::Thaw, _))) => {
            reader.get_ref().set_read_timeout(None).is_ok()
                && send(writer, &Event::Done(Reply::Thawed))
        }
        Ok(None) => false,
        Ok(Some((other, _))) => {
            log(&format!(
                "freeze: {other:?} before the thaw; connection closed"
            ));
            false
        }
        Err(e) => {
            log(&format!(
                "freeze: held past its deadline or cut ({e}); thawed"
            ));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "22 1 254:0 / / ro,relatime shared:1 - ext4 /dev/vda ro\n";

    #[test]
    fn only_a_disk_of_its_own_with_nothing_below_is_frozen() {
        let disk = format!("{ROOT}30 22 254:16 / /workspace rw,relatime - ext4 /dev/vdb rw\n");
        assert_eq!(unfreezable(&disk), None);
        let below = format!("{disk}31 30 0:40 / /workspace/tmp rw - tmpfs tmpfs rw\n");
        assert!(unfreezable(&below).unwrap().contains("/workspace/tmp"));
        let tmpfs = format!("{ROOT}30 22 0:41 / /workspace rw - tmpfs tmpfs rw\n");
        assert!(unfreezable(&tmpfs).unwrap().contains("not a disk"));
        assert!(unfreezable(ROOT).unwrap().contains("not mounted"));
        // A name that only starts like it is another directory.
        let near = format!("{disk}32 22 0:42 / /workspace2 rw - tmpfs tmpfs rw\n");
        assert_eq!(unfreezable(&near), None);
    }

    #[test]
    fn dirty_bytes_count_dirty_and_writeback() {
        let meminfo = "MemFree: 1000 kB\nDirty:  12 kB\nWriteback:   4 kB\nWritebackTmp: 9 kB\n";
        assert_eq!(dirty_bytes(meminfo), 16 * 1024);
    }
}
