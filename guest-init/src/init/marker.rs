//! Messages to the VMM's guest-signal device (see `proto::marker`).

use super::log;
use pyro_proto::marker;
use std::os::unix::fs::FileExt;

/// Sends one event; failures are logged, never fatal (the VMM has timeouts).
pub fn send(event: u8, value: u64) {
    let msg = marker::encode(event, value);
    match std::fs::OpenOptions::new().write(true).open("/dev/mem") {
        Ok(port) => {
            if let Err(e) = port.write_at(&msg, marker::ADDR) {
                log(&format!("marker {event}: write /dev/mem: {e}"));
            }
        }
        Err(e) => log(&format!("marker {event}: open /dev/mem: {e}")),
    }
}
