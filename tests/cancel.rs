//! Cancelling a one-shot run: once its `Cancel` fires, the guest kills
//! the command and the run ends at once, its VM and files gone. (In a
//! file of its own so that its VM does not crowd `tests/run.rs`'s four
//! parallel runs.)

mod common;

use common::{leftovers, pyro_with_own_data};
use pyro::workspace::{Cancel, NoProgress, RunOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn a_cancelled_run_ends_at_once_and_leaves_nothing() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let data = common::scratch();
    let pyro = pyro_with_own_data(data.path());
    let go = Arc::new(AtomicBool::new(false));
    let opts = RunOptions {
        timeout: Duration::from_secs(120),
        cancel: Cancel::when({
            let go = go.clone();
            move || go.load(Ordering::SeqCst)
        }),
        ..RunOptions::default()
    };
    let mut cancelled_at = None;
    let err = pyro
        .run(
            &opts,
            &[
                "sh".into(),
                "-c".into(),
                "echo started; sleep 300; echo never".into(),
            ],
            &NoProgress,
            |_, b| {
                assert_eq!(b, b"started\n");
                cancelled_at = Some(Instant::now());
                go.store(true, Ordering::SeqCst);
            },
        )
        .expect_err("a cancelled run fails");
    let took = cancelled_at.expect("the command started").elapsed();
    eprintln!("the run ended {took:?} after the cancel: {err}");
    assert_eq!(err.kind(), "cancelled", "{err}");
    // Under 5 s: the guest reported the kill before the SDK's grace ran
    // out (a guest that ignores the hang-up runs into it; before
    // cancellation existed, the run waited for the 120 s timeout).
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(
        leftovers(data.path()).is_empty(),
        "{:?}",
        leftovers(data.path())
    );
}
