//! Network benches, one booted VM talking to servers on this host's
//! loopback (allowed explicitly; nothing leaves the machine):
//!
//! - `net/net_connect`: one guest TCP connect to the host, a small
//!   request and its answer (bash's `/dev/tcp`, so no process spawn per
//!   connect); timed inside the guest, per connect.
//! - `net/net_download`: `PYRO_BENCH_NET_MIB` (default 64) MiB from a
//!   host server into `cat > /dev/null` in the guest, in bytes per second.
//! - `net/guest_copy`: the same number of bytes through the guest kernel
//!   alone (`dd if=/dev/zero of=/dev/null`), the ceiling the download is
//!   measured against.
//!
//! Times come from the guest's own clock (`$EPOCHREALTIME`) around the
//! work, so the exec round trip is not in them.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pyro::vmm::net::policy::{NetRules, NetworkPolicy};
use pyro::vmm::{NetConfig, Vm, VsockConfig};
use pyro::workspace::{ExecRequest, GuestClient};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

/// Serves every connection with `reply(request)` on 127.0.0.1; returns
/// the port.
fn serve(reply: impl Fn(&mut std::net::TcpStream) + Send + Sync + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let reply = std::sync::Arc::new(reply);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let reply = reply.clone();
            std::thread::spawn(move || {
                let mut conn = conn;
                reply(&mut conn);
            });
        }
    });
    port
}

/// Runs `script` in the guest; it prints one line `START END` (guest
/// seconds); returns END - START.
fn guest_timed(client: &mut GuestClient, script: &str) -> Duration {
    let req = ExecRequest {
        argv: vec![
            "bash".into(),
            "-c".into(),
            format!("s=$EPOCHREALTIME; {script}; e=$EPOCHREALTIME; echo \"$s $e\""),
        ],
        timeout_ms: Some(3_600_000),
        ..Default::default()
    };
    let mut out = Vec::new();
    let r = client
        .exec(req, |_, b| out.extend_from_slice(b))
        .expect("exec");
    assert_eq!(r.exit_code, Some(0), "{}", String::from_utf8_lossy(&out));
    let text = String::from_utf8_lossy(&out);
    let times: Vec<f64> = text
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .map(|t| t.parse().expect("time"))
        .collect();
    Duration::from_secs_f64(times[1] - times[0])
}

fn net(c: &mut Criterion) {
    let mib: u64 = std::env::var("PYRO_BENCH_NET_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let bytes = mib << 20;
    let pong = serve(|conn| {
        let mut buf = [0u8; 256];
        let _ = conn.read(&mut buf);
        let _ = conn.write_all(b"HTTP/1.0 200 OK\r\n\r\npong\n");
    });
    let bulk = serve(move |conn| {
        let chunk = vec![b'x'; 1 << 20];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            if conn.write_all(&chunk[..n]).is_err() {
                return;
            }
            left -= n as u64;
        }
    });

    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("vsock.sock");
    let mut config = common::default_env_vm();
    config.set_vsock(VsockConfig {
        cid: 3,
        uds: uds.clone(),
    });
    config.set_net(NetConfig {
        rules: NetRules {
            policy: NetworkPolicy::Egress,
            allow: vec![
                format!("127.0.0.1:{pong}").parse().unwrap(),
                format!("127.0.0.1:{bulk}").parse().unwrap(),
            ],
            add_hosts: Vec::new(),
        },
        publish: Vec::new(),
    });
    let mut vm = Vm::start(&config).expect("start");
    vm.wait_for_init(Duration::from_secs(120)).expect("init");
    let mut client = GuestClient::wait_ready(&uds, Duration::from_secs(60)).expect("agent");

    let connect = |n: u64| {
        format!(
            "for ((i=0;i<{n};i++)); do exec 3<>/dev/tcp/10.0.2.2/{pong}; \
             printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; read -r line <&3; exec 3<&-; \
             [ \"${{line:0:12}}\" = 'HTTP/1.0 200' ] || exit 9; done"
        )
    };
    guest_timed(&mut client, &connect(3)); // warm the page cache and ARP

    let mut group = c.benchmark_group("net");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(30));
    group.bench_function("net_connect", |b| {
        b.iter_custom(|iters| guest_timed(&mut client, &connect(iters)))
    });
    group.throughput(Throughput::Bytes(bytes));
    group.measurement_time(Duration::from_secs(30));
    group.bench_function("guest_copy", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    guest_timed(
                        &mut client,
                        &format!("dd if=/dev/zero of=/dev/null bs=1M count={mib} 2>/dev/null"),
                    )
                })
                .sum()
        })
    });
    group.measurement_time(Duration::from_secs(60));
    group.bench_function("net_download", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    guest_timed(
                        &mut client,
                        &format!("cat < /dev/tcp/10.0.2.2/{bulk} > /dev/null"),
                    )
                })
                .sum()
        })
    });
    group.finish();
    drop(client);
    vm.shutdown();
}

criterion_group!(benches, net);
criterion_main!(benches);
