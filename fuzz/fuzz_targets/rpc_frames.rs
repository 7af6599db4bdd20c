//! The RPC frame reader, as both ends use it on what the other sent
//! (the host reads the guest's events, the guest the host's requests),
//! and the host's reader of streamed listings: any bytes give frames or
//! an error, never a crash, a hang or unbounded memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pyro_proto::rpc::{self, Event, ListReader, Request};

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    while let Ok(Some(_)) = rpc::read_frame::<Request>(&mut r) {}
    let mut r = data;
    while let Ok(Some(_)) = rpc::read_frame::<Event>(&mut r) {}
    let mut list = ListReader::default();
    if list.push(data).is_ok() {
        let _ = list.finish();
    }
});
