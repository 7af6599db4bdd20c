//! The user-space network stack (`pyro-net`) as the virtio-net device
//! drives it: Ethernet frames from the guest, any bytes at all (ARP,
//! IPv4, TCP, UDP, DNS queries to the gateway), each followed by a turn
//! of the stack and a drain of what it sends back. Only 127.0.0.1 and one
//! static name are allowed, so nothing leaves this machine and no lookup
//! reaches a DNS server. A finding: a crash, a hang, or frames for the
//! guest without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pyro_net::policy::{NetRules, NetworkPolicy};
use pyro_net::stack::{NetConfig, Stack};

/// Frames a turn may hand the guest before the target calls it a flood.
const MAX_OUT: usize = 10_000;

fuzz_target!(|data: &[u8]| {
    let config = NetConfig {
        rules: NetRules {
            policy: NetworkPolicy::EgressPublishedPorts,
            allow: vec!["127.0.0.1".parse().unwrap(), "fuzz.test".parse().unwrap()],
            add_hosts: vec!["fuzz.test:127.0.0.1".parse().unwrap()],
        },
        publish: Vec::new(),
    };
    let Ok(mut stack) = Stack::new(&config) else {
        return;
    };
    // Frames: a u16 LE length, then that many bytes.
    let mut rest = data;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
        let frame = &rest[..len.min(rest.len())];
        rest = &rest[frame.len()..];
        stack.from_guest(frame.to_vec());
        stack.run();
        stack.on_ready();
        let mut out = 0;
        while stack.to_guest().is_some() {
            out += 1;
            assert!(out < MAX_OUT, "the stack floods the guest");
        }
    }
});
