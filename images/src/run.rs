//! Running long external commands: output to a log file, a running count
//! or status line to the caller's [`Progress`], the log's tail on failure.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;

/// How many lines of the log a failure shows.
pub(crate) const TAIL_LINES: usize = 30;

/// What a line of output means for progress.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// One more unit of work done (e.g. an object compiled).
    Count,
    /// A new status to show.
    Status(String),
    Other,
}

/// A command's place in a build.
pub(crate) struct Job<'a> {
    pub step: &'a str,
    pub phase: &'a str,
    pub progress: &'a dyn Progress,
    /// Output (stdout and stderr interleaved) is appended here.
    pub log: &'a Path,
    /// Name of what [`Line::Count`] counts, e.g. `"objects"`.
    pub unit: &'a str,
    pub classify: fn(&str) -> Line,
}

/// What a finished command did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Finished {
    pub count: u64,
}

const TICK_EVERY: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(200);

/// Runs `cmd` to completion; fails with [`Error::Build`] (log path and
/// tail included) when it cannot start or exits unsuccessfully.
pub(crate) fn run(mut cmd: Command, job: &Job) -> Result<Finished> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(job.log)
        .ctx(|| format!("open log {}", job.log.display()))?;
    writeln!(log, "$ {cmd:?}").ctx(|| format!("write {}", job.log.display()))?;
    let (reader, writer) = std::io::pipe().ctx(|| "create pipe".to_string())?;
    let writer2 = writer.try_clone().ctx(|| "dup pipe".to_string())?;
    cmd.stdin(Stdio::null()).stdout(writer).stderr(writer2);
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| {
        Error::build(
            format!("{} {}", job.step, job.phase),
            format!("cannot start {program}: {e}"),
        )
    })?;
    // The Command holds the pipe's write ends; close them here so that the
    // reader sees end-of-file when the child exits.
    drop(cmd);

    let count = AtomicU64::new(0);
    let status_line = Mutex::new(String::new());
    let detail = |secs: u64| {
        let status = status_line.lock().map(|s| s.clone()).unwrap_or_default();
        let mut d = if job.unit.is_empty() {
            format!("{}: {secs}s", job.phase)
        } else {
            format!(
                "{}: {} {}, {secs}s",
                job.phase,
                count.load(Ordering::Relaxed),
                job.unit
            )
        };
        if !status.is_empty() {
            d.push_str(&format!(" ({status})"));
        }
        d
    };

    let waited = std::thread::scope(|s| {
        let log_ref = &mut log;
        let pump = s.spawn(|| pump(reader, log_ref, &count, &status_line, job.classify));
        let mut last_tick = Instant::now();
        let waited = loop {
            match child.try_wait() {
                Ok(Some(st)) => break Ok(st),
                Ok(None) => {}
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(e);
                }
            }
            std::thread::sleep(POLL);
            if last_tick.elapsed() >= TICK_EVERY {
                job.progress
                    .tick(job.step, &detail(start.elapsed().as_secs()));
                last_tick = Instant::now();
            }
        };
        let _ = pump.join();
        waited
    });
    let status = waited.ctx(|| format!("wait for {program}"))?;
    let elapsed = start.elapsed();
    let _ = writeln!(
        log,
        "# {program}: {status} after {:.1}s",
        elapsed.as_secs_f64()
    );
    drop(log);
    if !status.success() {
        return Err(Error::Build {
            step: format!("{} {}", job.step, job.phase),
            message: format!("{program} exited with {status}"),
            log: Some(job.log.to_path_buf()),
            tail: tail(job.log, TAIL_LINES),
        });
    }
    Ok(Finished {
        count: count.load(Ordering::Relaxed),
    })
}

fn pump(
    reader: std::io::PipeReader,
    log: &mut File,
    count: &AtomicU64,
    status: &Mutex<String>,
    classify: fn(&str) -> Line,
) {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let _ = log.write_all(&buf);
        let line = String::from_utf8_lossy(&buf);
        match classify(line.trim_end()) {
            Line::Count => {
                count.fetch_add(1, Ordering::Relaxed);
            }
            Line::Status(s) => {
                if let Ok(mut st) = status.lock() {
                    *st = s;
                }
            }
            Line::Other => {}
        }
    }
}

/// The last `n` lines of a file (lossy UTF-8); empty if unreadable.
pub(crate) fn tail(path: &Path, n: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs a short command and returns its stdout, or `None` if it could not
/// run or failed.
pub(crate) fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    fn count_x(l: &str) -> Line {
        if l.starts_with('x') {
            Line::Count
        } else {
            Line::Other
        }
    }

    #[test]
    fn counts_and_logs_and_reports_tail() {
        let dir = std::env::temp_dir().join(format!("pyro-images-run-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        let job = Job {
            step: "t",
            phase: "p",
            progress: &NoProgress,
            log: &log,
            unit: "xs",
            classify: count_x,
        };
        let mut ok = Command::new("sh");
        ok.args(["-c", "echo x1; echo y; echo x2 >&2"]);
        assert_eq!(run(ok, &job).unwrap().count, 2);
        let mut bad = Command::new("sh");
        bad.args(["-c", "for i in $(seq 1 40); do echo line$i; done; exit 3"]);
        let err = run(bad, &job).unwrap_err().to_string();
        assert!(err.contains("line40") && err.contains("line12"), "{err}");
        assert!(!err.contains("line10"), "{err}");
        assert!(err.contains(&log.display().to_string()), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
