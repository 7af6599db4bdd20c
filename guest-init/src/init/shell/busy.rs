//! Whether the command in a shell's foreground is working: some process
//! of the terminal's foreground group is running or waiting for the
//! disk (state `R` or `D` in `/proc/PID/task/TID/stat`, any thread),
//! not asleep waiting for input or a timer. Idle waits use it while a line typed has not
//! brought the prompt back: a program starting up on a slow guest (exec
//! and library loading run in the emulated guest kernel on PVM hosts,
//! seconds when the host is busy) prints nothing for a while, yet it
//! has not finished. A background job has its own group, so a busy one
//! does not hold reads.

use std::io::Read;

/// A `stat` line is far shorter; more is not a stat line.
const STAT_MAX: u64 = 4096;

/// Some process of group `pgrp` is running or in an uninterruptible
/// (disk) wait.
pub fn working(pgrp: i32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten()
        .filter(|entry| entry.file_name().to_str().is_some_and(is_pid))
        .any(|entry| {
            let process = entry.path();
            match read_stat(&process.join("stat"))
                .as_deref()
                .and_then(state_and_group)
            {
                Some((state, group)) if group == pgrp => {
                    busy(state) || any_thread_busy(&process.join("task"))
                }
                _ => false,
            }
        })
}

/// The process's own line shows its main thread only; a program may
/// work in another (a compiler, a runtime).
fn any_thread_busy(tasks: &std::path::Path) -> bool {
    let Ok(dir) = std::fs::read_dir(tasks) else {
        return false;
    };
    dir.flatten()
        .filter_map(|task| read_stat(&task.path().join("stat")))
        .filter_map(|stat| state_and_group(&stat))
        .any(|(state, _)| busy(state))
}

fn busy(state: char) -> bool {
    matches!(state, 'R' | 'D')
}

fn is_pid(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit())
}

fn read_stat(path: &std::path::Path) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(STAT_MAX)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// The state letter and process group of a `/proc/PID/stat` line:
/// `pid (comm) state ppid pgrp ...`. The command name may hold spaces
/// and parentheses, so the fields start after the last `)`.
fn state_and_group(stat: &str) -> Option<(char, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let group = fields.next()?.parse().ok()?;
    Some((state, group))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_and_group_come_after_the_last_parenthesis() {
        let line = "812 (a (b) c) R 800 812 790 34816 812 4194304 1 0 0 0";
        assert_eq!(state_and_group(line), Some(('R', 812)));
        assert_eq!(state_and_group("9 (sh) S 1 9 9 0"), Some(('S', 9)));
        assert_eq!(state_and_group("9 (sh) S 1"), None);
        assert_eq!(state_and_group("garbage"), None);
        assert!(is_pid("123") && !is_pid("self") && !is_pid(""));
    }

    #[test]
    fn a_spinning_group_works_and_a_sleeping_one_does_not() {
        use std::os::unix::process::CommandExt;
        let start = |script: &str| {
            std::process::Command::new("sh")
                .args(["-c", script])
                .process_group(0)
                .spawn()
                .expect("sh")
        };
        let mut spinning = start("while :; do :; done");
        let mut sleeping = start("exec sleep 30");
        std::thread::sleep(std::time::Duration::from_millis(300));
        let spins = working(spinning.id() as i32);
        let sleeps = working(sleeping.id() as i32);
        for child in [&mut spinning, &mut sleeping] {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(spins && !sleeps, "spinning {spins}, sleeping {sleeps}");
        assert!(!working(i32::MAX));
    }
}
