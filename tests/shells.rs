//! Shells end to end in real guests, the way an agent uses them: open
//! one, type commands, read their output (raw, and rendered with
//! `--plain`, also for a program that redraws its line), come back from
//! new clients, run an exec beside it, interrupt, resize, exhaust the
//! limit, watch one exit; and shells ending with stop and reset while a
//! suspended workspace keeps them.

mod common;

use common::pyro_with_own_data;
use pyro::workspace::{
    CreateOptions, NoProgress, Pyro, ShellOptions, ShellReadOptions, ShellSignal, ShellState,
};
use std::time::{Duration, Instant};

/// Guest-heavy tests, one at a time (the host has two cores).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn create(pyro: &Pyro) -> String {
    let opts = CreateOptions {
        ttl_seconds: Some(1800),
        ..CreateOptions::default()
    };
    pyro.workspace_create(&opts, &NoProgress)
        .expect("create")
        .record
        .workspace_id
}

/// Reads on from `cursor` once the shell has been quiet for 300 ms;
/// returns the output and the next cursor.
fn read(pyro: &Pyro, ws: &str, shell: &str, cursor: u64, plain: bool) -> (String, u64) {
    let r = pyro
        .workspace_shell_read(
            ws,
            shell,
            &ShellReadOptions {
                cursor,
                plain,
                wait_for_idle_ms: Some(300),
                ..Default::default()
            },
        )
        .expect("read");
    (r.output, r.next_cursor)
}

/// Types `line`, then does the one read (plain, waiting for quiet) an
/// agent would; returns its output and moves `cursor` on.
fn type_and_read(pyro: &Pyro, ws: &str, shell: &str, cursor: &mut u64, line: &str) -> String {
    pyro.workspace_shell_write(ws, shell, line, true)
        .expect("write");
    let (out, next) = read(pyro, ws, shell, *cursor, true);
    *cursor = next;
    out
}

/// Types `line`, then reads until `want` shows (a slow guest may be
/// quiet for a while mid-command); returns the plain output read.
fn run_line(
    pyro: &Pyro,
    ws: &str,
    shell: &str,
    cursor: &mut u64,
    line: &str,
    want: &str,
) -> String {
    pyro.workspace_shell_write(ws, shell, line, true)
        .expect("write");
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.contains(want) {
        let from = seen.char_indices().rev().nth(2000).map_or(0, |(i, _)| i);
        let tail = &seen[from..];
        assert!(Instant::now() < deadline, "{want:?} never came: {tail:?}");
        let (out, next) = read(pyro, ws, shell, *cursor, true);
        seen.push_str(&out);
        *cursor = next;
    }
    seen
}

#[test]
fn an_agent_works_in_a_shell_across_clients_beside_an_exec() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let data = common::scratch();
    let pyro = pyro_with_own_data(data.path());
    let ws = create(&pyro);
    let _cleanup = common::delete_on_drop(&pyro, &ws);

    let shell = pyro
        .workspace_shell_open(&ws, &ShellOptions::default())
        .expect("open");
    assert_eq!(
        (shell.state, shell.cwd.as_str(), shell.cols, shell.rows),
        (ShellState::Running, "/workspace", 120, 30)
    );
    let id = shell.shell_id.clone();
    let mut cursor = 0;
    let seen = run_line(
        &pyro,
        &ws,
        &id,
        &mut cursor,
        "echo hi-$((40+2)) in $PWD",
        "hi-42 in /workspace",
    );
    assert!(seen.contains("pyro$"), "the prompt: {seen:?}");

    // The reference's review loop: type a command, then one read that
    // waits for quiet has its output, though the command is silent while
    // it starts (a process start takes ~0.6 s in these guests).
    let out = type_and_read(&pyro, &ws, &id, &mut cursor, "cat /etc/os-release");
    assert!(
        out.contains("Debian") && out.ends_with("pyro$\n"),
        "{out:?}"
    );

    // A command that computes silently for longer than the 2 s a busy
    // shell must be quiet: the agent sees it working (state R), so one
    // read still waits for its answer.
    let out = type_and_read(
        &pyro,
        &ws,
        &id,
        &mut cursor,
        "end=$((SECONDS+4)); while [ $SECONDS -lt $end ]; do :; done; echo computed",
    );
    assert!(
        out.contains("\ncomputed\n") && out.ends_with("pyro$\n"),
        "{out:?}"
    );

    // Five clients in turn (each its own SDK instance and connections)
    // find the same shell, with its state (a variable) kept.
    run_line(&pyro, &ws, &id, &mut cursor, "KEPT=yes", "pyro$");
    for round in 0..5 {
        let client = pyro_with_own_data(data.path());
        let seen = run_line(
            &client,
            &ws,
            &id,
            &mut cursor,
            &format!("echo round-{round} kept=$KEPT"),
            &format!("round-{round} kept=yes"),
        );
        assert!(
            !seen.contains('\x1b'),
            "plain output has no escapes: {seen:?}"
        );
    }
    let listed = pyro.workspace_shell_list(&ws).expect("list").shells;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].shell_id.as_str(), listed[0].pid),
        (id.as_str(), shell.pid)
    );

    // A program that redraws its line: read with --plain, its output
    // is the screen's text (the last frame); raw, every frame.
    let start = cursor;
    run_line(
        &pyro,
        &ws,
        &id,
        &mut cursor,
        "for i in 1 2 3 4 5; do printf '\\rprogress %d/5' $i; sleep 0.1; done; echo; echo fin$((1))ished",
        "fin1ished\n",
    );
    let whole = |plain| {
        let opts = ShellReadOptions {
            cursor: start,
            plain,
            ..Default::default()
        };
        pyro.workspace_shell_read(&ws, &id, &opts)
            .expect("read")
            .output
    };
    let (plain, raw) = (whole(true), whole(false));
    assert!(
        plain.contains("\nprogress 5/5\nfin1ished\n"),
        "{plain:?} from {raw:?}"
    );
    assert!(
        !plain.contains("progress 1/5"),
        "redrawn frames are gone: {plain:?}"
    );
    assert!(raw.contains("\rprogress 1/5\rprogress 2/5"), "{raw:?}");

    // A shell read does not wait for an exec that runs, nor the other way.
    std::thread::scope(|s| {
        let exec = s.spawn(|| {
            let sleep = ["sh".into(), "-c".into(), "sleep 4; echo slept".into()];
            pyro.workspace_exec(&ws, &sleep, Duration::from_secs(60), |_, _| {})
        });
        std::thread::sleep(Duration::from_millis(500));
        let t = Instant::now();
        run_line(&pyro, &ws, &id, &mut cursor, "echo beside", "\nbeside\n");
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "waited for the exec: {:?}",
            t.elapsed()
        );
        let r = exec.join().unwrap().expect("exec");
        assert_eq!(String::from_utf8_lossy(&r.stdout), "slept\n");
    });
    pyro.workspace_shell_write(&ws, &id, "sleep 30", true)
        .unwrap();
    let from = cursor;
    cursor = std::thread::scope(|s| {
        let t = Instant::now();
        let waiting = s.spawn(|| {
            pyro.workspace_shell_read(
                &ws,
                &id,
                &ShellReadOptions {
                    cursor: from,
                    wait_for_idle_ms: Some(8000),
                    ..Default::default()
                },
            )
        });
        let echo = ["echo".into(), "quick".into()];
        let r = pyro
            .workspace_exec(&ws, &echo, Duration::from_secs(60), |_, _| {})
            .expect("exec");
        assert_eq!(String::from_utf8_lossy(&r.stdout), "quick\n");
        let exec_took = t.elapsed();
        let read = waiting.join().unwrap().expect("read");
        assert!(
            read.idle && read.waited_ms >= 8000 && exec_took < Duration::from_secs(8),
            "the exec ({exec_took:?}) ran while the read waited: {read:?}"
        );
        read.next_cursor
    });

    // Ctrl-C by signal: the sleep ends, the shell stays.
    let sent = pyro
        .workspace_shell_signal(&ws, &id, ShellSignal::Int)
        .expect("signal");
    assert_eq!(sent.shell.state, ShellState::Running);
    run_line(
        &pyro,
        &ws,
        &id,
        &mut cursor,
        "echo after-int $?",
        "after-int 130",
    );

    // Resize: programs see the new size.
    let resized = pyro
        .workspace_shell_resize(&ws, &id, 100, 40)
        .expect("resize");
    assert_eq!((resized.cols, resized.rows), (100, 40));
    run_line(&pyro, &ws, &id, &mut cursor, "stty size", "40 100");

    // Bad input gets clear errors.
    let e = pyro
        .workspace_shell_read(&ws, "sh-00000000", &ShellReadOptions::default())
        .unwrap_err();
    assert_eq!(e.kind(), "not_found", "{e}");
    let e = pyro
        .workspace_shell_write(&ws, &id, &"x".repeat(70_000), false)
        .unwrap_err();
    assert_eq!(e.kind(), "invalid_argument", "{e}");
    let e = pyro
        .workspace_shell_read(
            &ws,
            &id,
            &ShellReadOptions {
                cursor: u64::MAX / 2,
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(
        e.kind() == "invalid_argument" && e.to_string().contains("past the end"),
        "{e}"
    );

    // Several shells, up to the limit; an exited one keeps its output
    // and exit code until closed.
    let mut others = Vec::new();
    for _ in 1..pyro::workspace::shell_limits::MAX_SHELLS {
        others.push(
            pyro.workspace_shell_open(&ws, &ShellOptions::default())
                .expect("open")
                .shell_id,
        );
    }
    let e = pyro
        .workspace_shell_open(&ws, &ShellOptions::default())
        .unwrap_err();
    assert_eq!(e.kind(), "too_many_shells", "{e}");
    let last = others.last().unwrap().clone();
    pyro.workspace_shell_write(&ws, &last, "exit 3", true)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let ended = loop {
        let r = pyro
            .workspace_shell_read(
                &ws,
                &last,
                &ShellReadOptions {
                    wait_for_idle_ms: Some(300),
                    ..Default::default()
                },
            )
            .unwrap();
        if r.shell.state == ShellState::Exited || Instant::now() > deadline {
            break r;
        }
    };
    assert_eq!(
        (ended.shell.state, ended.shell.exit_code),
        (ShellState::Exited, Some(3))
    );
    let e = pyro
        .workspace_shell_write(&ws, &last, "echo", true)
        .unwrap_err();
    assert_eq!(e.kind(), "conflict", "{e}");
    for other in &others {
        assert!(
            pyro.workspace_shell_close(&ws, other)
                .expect("close")
                .closed
        );
    }
    let closed = pyro.workspace_shell_close(&ws, &id).expect("close");
    assert!(closed.closed);
    let e = pyro
        .workspace_shell_read(&ws, &id, &ShellReadOptions::default())
        .unwrap_err();
    assert_eq!(e.kind(), "not_found", "{e}");
    assert!(pyro.workspace_shell_list(&ws).unwrap().shells.is_empty());
}

#[test]
fn shells_end_with_stop_and_reset_but_survive_suspend() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let data = common::scratch();
    let pyro = pyro_with_own_data(data.path());
    let ws = create(&pyro);
    let _cleanup = common::delete_on_drop(&pyro, &ws);
    let open = || {
        pyro.workspace_shell_open(&ws, &ShellOptions::default())
            .expect("open")
            .shell_id
    };
    let mut cursor = 0;

    // Suspend and resume: the same machine, the shell still there.
    let id = open();
    run_line(&pyro, &ws, &id, &mut cursor, "KEPT=across", "pyro$");
    pyro.workspace_suspend(&ws).expect("suspend");
    assert!(
        pyro.workspace_shell_list(&ws).unwrap().shells.is_empty(),
        "none while suspended"
    );
    pyro.workspace_start(&ws, &NoProgress).expect("resume");
    run_line(
        &pyro,
        &ws,
        &id,
        &mut cursor,
        "echo still-$KEPT",
        "still-across",
    );

    // Stop: gone, and a new start does not bring it back.
    pyro.workspace_stop(&ws).expect("stop");
    assert!(pyro.workspace_shell_list(&ws).unwrap().shells.is_empty());
    pyro.workspace_start(&ws, &NoProgress).expect("start");
    assert!(pyro.workspace_shell_list(&ws).unwrap().shells.is_empty());
    let e = pyro
        .workspace_shell_read(&ws, &id, &ShellReadOptions::default())
        .unwrap_err();
    assert_eq!(e.kind(), "not_found", "{e}");

    // Reset: gone too.
    let id = open();
    assert_eq!(pyro.workspace_shell_list(&ws).unwrap().shells.len(), 1);
    pyro.workspace_reset(&ws, "baseline", &NoProgress)
        .expect("reset");
    assert!(pyro.workspace_shell_list(&ws).unwrap().shells.is_empty());
    let e = pyro
        .workspace_shell_write(&ws, &id, "echo", true)
        .unwrap_err();
    assert_eq!(e.kind(), "not_found", "{e}");
}
