//! `Pyro::run` under stress: runs in parallel stay apart, and a guest that
//! dies in the middle of a command is reported as such, with nothing left
//! behind either way.

mod common;

use common::{leftovers, pyro_with_own_data};
use pyro::workspace::{NoProgress, RunOptions, Stream};

fn argv(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

#[test]
fn four_runs_in_parallel_stay_isolated() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let data = common::scratch();
    let pyro = pyro_with_own_data(data.path());
    let results: Vec<_> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..4)
            .map(|i| {
                let pyro = &pyro;
                scope.spawn(move || {
                    // Each run leaves a mark in its /workspace and /tmp, waits
                    // for the others to have done the same, and lists both.
                    let script = format!(
                        "echo {i} > /workspace/mark-{i}; echo {i} > /tmp/mark-{i}; sleep 3; \
                         cat /workspace/mark-* /tmp/mark-*"
                    );
                    let mut streamed = Vec::new();
                    let r = pyro
                        .run(
                            // Four guests share this host's cores: on a
                            // PVM host each spawn takes seconds then, and
                            // the default 30 s is not what this tests.
                            &RunOptions {
                                timeout: std::time::Duration::from_secs(180),
                                ..RunOptions::default()
                            },
                            &argv(&script),
                            &NoProgress,
                            |s, b| {
                                if s == Stream::Stdout {
                                    streamed.extend_from_slice(b)
                                }
                            },
                        )
                        .expect("run");
                    (i, r, streamed)
                })
            })
            .collect();
        runs.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for (i, r, streamed) in results {
        assert_eq!(r.exit_code, Some(0), "run {i}: {r:?}");
        assert_eq!(
            String::from_utf8_lossy(&r.stdout),
            format!("{i}\n{i}\n"),
            "run {i} saw another run's files"
        );
        assert_eq!(streamed, r.stdout, "run {i}: streamed output differs");
    }
    assert!(
        leftovers(data.path()).is_empty(),
        "{:?}",
        leftovers(data.path())
    );
}

#[test]
fn a_guest_that_dies_mid_command_is_a_clear_error() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let data = common::scratch();
    let pyro = pyro_with_own_data(data.path());
    // The command powers the VM off from inside (status 7) the way
    // guest-init does: one 9-byte write to the VMM's signal page.
    let script = "echo started; \
        printf '\\007\\000\\000\\000\\000\\000\\000\\000\\002' | \
        dd of=/dev/mem bs=9 count=1 seek=851968 oflag=seek_bytes conv=notrunc 2>/dev/null; \
        sleep 60; echo never";
    let mut out = Vec::new();
    let mut first_output = None;
    let err = pyro
        .run(
            &RunOptions::default(),
            &argv(script),
            &NoProgress,
            |_, b| {
                first_output.get_or_insert_with(std::time::Instant::now);
                out.extend_from_slice(b)
            },
        )
        .expect_err("the VM died; run must fail");
    let msg = err.to_string();
    assert!(
        msg.contains("the VM stopped while the command was running")
            && msg.contains("powered off with status 7"),
        "{msg}"
    );
    assert_eq!(out, b"started\n");
    // The guest's command would have slept 60 s more; the run must not
    // have waited for it (however slow the host, the VM was gone).
    let after_output = first_output.expect("output arrived").elapsed();
    assert!(
        after_output.as_secs() < 60,
        "run returned {after_output:?} after the guest died"
    );
    assert!(
        leftovers(data.path()).is_empty(),
        "{:?}",
        leftovers(data.path())
    );
}
