//! Host processes known by identity: a pid together with the time the
//! process started (`/proc/PID/stat`, field 22), so that a pid the kernel
//! has since handed to another process is never taken for the one
//! recorded. Used for a workspace VM's VMM process (`vm/vmm-pid.json`: a VMM
//! that does not answer its control socket is made sure of, and killed,
//! before its files go) and for the process creating a workspace (its
//! `creating.json` marker: a create whose process died is swept).

use serde::{Deserialize, Serialize};

/// A process: its pid and start time (clock ticks after boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProcessId {
    pub pid: u32,
    pub start_ticks: u64,
}

impl ProcessId {
    /// This process.
    pub fn current() -> Option<ProcessId> {
        ProcessId::of(std::process::id())
    }

    /// Process `pid` as it is now, if there is one (a zombie counts as
    /// gone: it runs nothing and holds nothing but its pid).
    pub fn of(pid: u32) -> Option<ProcessId> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (state, start_ticks) = parse_stat(&stat)?;
        (state != 'Z' && state != 'X').then_some(ProcessId { pid, start_ticks })
    }

    /// The same process still runs.
    pub fn alive(&self) -> bool {
        ProcessId::of(self.pid) == Some(*self)
    }

    /// Kills the process group this process leads (SIGKILL), if it is
    /// still this process, and waits (up to `wait`) until it is gone.
    /// Whether it is gone.
    pub fn kill_group(&self, wait: std::time::Duration) -> bool {
        if !self.alive() {
            return true;
        }
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let started = std::time::Instant::now();
        while self.alive() {
            if started.elapsed() > wait {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        true
    }
}

/// The state letter and start time of a `/proc/PID/stat` line. The
/// command name (field 2) is in parentheses and may hold spaces and
/// parentheses itself, so the fields after it are counted from the last
/// `)`.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 3 is the state; the start time is field 22, 19 further on.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_whatever_the_command_name() {
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000 100 18446744073709551615";
        assert_eq!(parse_stat(line), Some(('S', 987654)));
        assert_eq!(parse_stat("1 (x) Z"), None, "cut short");
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_not_it() {
        let me = ProcessId::current().expect("/proc/self");
        assert!(me.alive());
        let other = ProcessId {
            start_ticks: me.start_ticks + 1,
            ..me
        };
        assert!(!other.alive(), "same pid, another start: another process");
    }

    #[test]
    fn a_killed_group_is_gone() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .process_group(0)
            .spawn()
            .unwrap();
        let id = ProcessId::of(child.id()).unwrap();
        // Reaped as it dies, as `DetachedVm::spawn`'s thread does.
        let reaper = std::thread::spawn(move || child.wait());
        assert!(id.kill_group(std::time::Duration::from_secs(5)));
        assert!(!id.alive());
        reaper.join().unwrap().unwrap();
    }
}
