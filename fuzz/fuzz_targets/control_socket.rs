//! The VMM's control socket, both ways: the requests a `pyro __vmm`
//! process reads (from any local caller of its socket) and the replies
//! and exit records the host reads back from a VMM (which runs beside a
//! hostile guest). Any line parses or is refused, never a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pyro_vmm::control::{ControlReply, ControlRequest, ExitRecord};

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(req) = serde_json::from_str::<ControlRequest>(line) {
        let _ = (req.needs_vm(), req.reply_timeout());
        let _ = serde_json::to_string(&req);
    }
    if let Ok(reply) = serde_json::from_str::<ControlReply>(line) {
        let _ = serde_json::to_string(&reply);
    }
    if let Ok(record) = serde_json::from_str::<ExitRecord>(line) {
        let _ = record.reason.to_string();
    }
});
