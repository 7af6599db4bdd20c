//! Ending the VM.

use super::{log, marker};
use pyro_proto::marker::EVENT_POWER_OFF;
use rustix::system::{reboot, RebootCommand};

/// Syncs the disks, tells the VMM the exit status, and resets the machine.
///
/// The marker ends the VM at once; the reset (the VMM boots the kernel with
/// `reboot=k`, so it goes through the i8042) is the fallback that ends it
/// with status "reset" if the marker did not get through.
pub fn power_off(status: u8) -> ! {
    rustix::fs::sync();
    marker::send(EVENT_POWER_OFF, u64::from(status));
    if let Err(e) = reboot(RebootCommand::Restart) {
        log(&format!("reboot: {e}"));
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
