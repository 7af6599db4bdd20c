//! The guest agent over virtio-vsock, on one real booted guest: commands
//! run, exit codes and signals come back, output streams stay separate and
//! byte-exact, large output is neither lost nor silently cut, timeouts kill,
//! and so does cancelling an exec.

mod common;

use pyro::workspace::{Cancel, ExecRequest, GuestClient, GuestError, Stream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn argv(words: &[&str]) -> ExecRequest {
    ExecRequest {
        argv: words.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// Runs `req`, collecting (stdout, stderr, result).
fn run(
    client: &mut GuestClient,
    req: ExecRequest,
) -> (Vec<u8>, Vec<u8>, pyro::workspace::ExecResult) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let result = client
        .exec(req, |stream, bytes| match stream {
            Stream::Stdout => out.extend_from_slice(bytes),
            Stream::Stderr => err.extend_from_slice(bytes),
        })
        .expect("exec");
    (out, err, result)
}

#[test]
fn agent_serves_exec_over_vsock_on_a_real_guest() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let dir = common::scratch();
    let (_vm, uds) = common::serving_vm("debian:12", dir.path());
    let mut client = GuestClient::connect(&uds).expect("connect");

    let (uptime_ms, _host) = client.ping().expect("ping");
    assert!(uptime_ms > 0);

    // git --version works.
    let (out, _, r) = run(&mut client, argv(&["git", "--version"]));
    assert_eq!(r.exit_code, Some(0), "{r:?}");
    assert!(
        String::from_utf8_lossy(&out).starts_with("git version 2."),
        "{out:?}"
    );

    // Exit codes propagate; stdout and stderr stay separate.
    let (out, err, r) = run(
        &mut client,
        argv(&["sh", "-c", "echo out; echo err >&2; exit 7"]),
    );
    assert_eq!(
        (r.exit_code, out.as_slice(), err.as_slice()),
        (Some(7), &b"out\n"[..], &b"err\n"[..])
    );

    // Binary output round-trips byte for byte.
    let (out, _, r) = run(
        &mut client,
        argv(&["sh", "-c", "printf '\\000\\001\\377\\376abc'"]),
    );
    assert_eq!(r.exit_code, Some(0));
    assert_eq!(out, b"\x00\x01\xff\xfeabc");

    // 10 MiB of output arrives whole and unchanged. Not zeros: the bug this
    // guards against zeroed 16-byte blocks (see the next step).
    let (out, _, r) = run(
        &mut client,
        argv(&["sh", "-c", "head -c 10485760 /dev/zero | tr '\\000' x"]),
    );
    assert_eq!(
        (r.exit_code, out.len(), r.stdout_bytes, r.stdout_truncated),
        (Some(0), 10 << 20, 10 << 20, false)
    );
    if let Some(at) = out.iter().position(|b| *b != b'x') {
        panic!(
            "output corrupted at byte {at}: {:?}",
            &out[at..(at + 32).min(out.len())]
        );
    }

    // On PVM hosts the guest kernel (noxsave) does not save the upper
    // halves of AVX registers, so glibc in the guest must not use its AVX
    // memcpy: every process gets GLIBC_TUNABLES from the kernel command
    // line. This is what let preempted copies zero 16-byte blocks.
    if pyro::vmm::HostKind::detect().needs_emulator_quirks() {
        let (out, _, r) = run(
            &mut client,
            argv(&["/lib64/ld-linux-x86-64.so.2", "--list-diagnostics"]),
        );
        assert_eq!(r.exit_code, Some(0));
        let diag = String::from_utf8_lossy(&out);
        let line = "x86.cpu_features.preferred.AVX_Fast_Unaligned_Load=0x0";
        assert!(diag.contains(line), "guest glibc lacks {line}:\n{diag}");
    }

    // A cap truncates, and says so.
    let mut capped = argv(&["head", "-c", "100000", "/dev/zero"]);
    capped.max_output_bytes = Some(1000);
    let (out, _, r) = run(&mut client, capped);
    assert_eq!(
        (out.len(), r.stdout_bytes, r.stdout_truncated),
        (1000, 100_000, true)
    );

    // A timeout kills the command's whole process group and says so.
    let mut slow = argv(&["sh", "-c", "sleep 30 & sleep 30"]);
    slow.timeout_ms = Some(1500);
    let (_, _, r) = run(&mut client, slow);
    assert!(r.timed_out && r.signal == Some(9), "{r:?}");
    assert!(r.duration_ms < 10_000, "{r:?}");

    // A missing program is a clear error, and the connection survives it.
    let err = client
        .exec(argv(&["no-such-program"]), |_, _| {})
        .expect_err("must fail");
    assert!(err.to_string().contains("no-such-program"), "{err}");
    client.ping().expect("still serving");

    // A second connection works while the first is open.
    let mut second = GuestClient::connect(&uds).expect("second connection");
    let (out, _, _) = run(&mut second, argv(&["echo", "two"]));
    assert_eq!(out, b"two\n");

    // Cancelling an exec kills the command's whole process group: the
    // shell, its `sleep 300` and the background job that would write
    // late.txt. The guest reports the kill.
    let go = Arc::new(AtomicBool::new(false));
    let cancel = Cancel::when({
        let go = go.clone();
        move || go.load(Ordering::SeqCst)
    });
    let script = "(sleep 3; echo late > late.txt) & echo started; sleep 300";
    let mut slow = argv(&["sh", "-c", script]);
    slow.timeout_ms = Some(120_000);
    let mut cancelled_at = None;
    let err = second
        .exec_cancellable(slow, None, &cancel, |_, bytes| {
            assert_eq!(bytes, b"started\n");
            cancelled_at = Some(Instant::now());
            go.store(true, Ordering::SeqCst);
        })
        .expect_err("a cancelled exec fails");
    let took = cancelled_at.expect("the command started").elapsed();
    match err {
        GuestError::Cancelled(Some(r)) => {
            assert!(r.signal == Some(9) && !r.timed_out, "{r:?}")
        }
        other => panic!("expected a cancellation the guest confirmed, got {other:?}"),
    }
    eprintln!("a cancelled exec ended {took:?} after the cancel");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // No `sleep` is left (the guest has no pgrep; /proc has the names).
    let count = "cat /proc/[0-9]*/comm 2>/dev/null | grep -cx sleep";
    let (out, _, _) = run(&mut client, argv(&["sh", "-c", count]));
    assert_eq!(out, b"0\n", "sleep processes left");
    std::thread::sleep(Duration::from_secs(4).saturating_sub(took));
    let (_, _, r) = run(&mut client, argv(&["test", "-e", "late.txt"]));
    assert_eq!(r.exit_code, Some(1), "the background job wrote late.txt");
}
