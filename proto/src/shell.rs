//! Shells: persistent PTY sessions the guest agent keeps (see
//! `docs/shells.md`). The agent runs each shell on a pseudo-terminal and
//! keeps its output in a ring of [`RING_BYTES`]; a cursor counts every
//! byte the shell ever produced, so a client reads on from where it
//! stopped, and learns (`truncated`) when the ring has dropped what it
//! asked for. The requests are `rpc::Request::Shell*`.

use serde::{Deserialize, Serialize};

/// Shells one guest keeps at once (exited ones count until closed).
pub const MAX_SHELLS: usize = 16;
/// Output kept per shell: the last this many bytes.
pub const RING_BYTES: usize = 1 << 20;
/// Largest input one write takes.
pub const MAX_INPUT_BYTES: usize = 64 << 10;
/// Largest read; the default is [`DEFAULT_READ_BYTES`].
pub const MAX_READ_BYTES: u64 = 1 << 20;
pub const DEFAULT_READ_BYTES: u64 = 64 << 10;
/// Longest quiet period a read may wait for.
pub const MAX_IDLE_MS: u64 = 10_000;
/// A read that waits for quiet returns after this long at the latest,
/// so output that never stops cannot hold it.
pub const WAIT_CAP_MS: u64 = 10_000;
/// Terminal size bounds (columns and rows each) and defaults.
pub const MAX_SIZE: u16 = 1000;
pub const DEFAULT_COLS: u16 = 120;
pub const DEFAULT_ROWS: u16 = 30;

/// Open a shell.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OpenRequest {
    /// Chosen by the host ([`valid_id`]), so an id never names a shell
    /// of an earlier boot.
    pub id: String,
    pub cols: u16,
    pub rows: u16,
    /// Absolute, inside /workspace.
    pub cwd: String,
    /// Extra environment variables (names as [`valid_env_name`]).
    #[serde(default)]
    pub env: Vec<(String, String)>,
}

/// Read a shell's output from `cursor`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReadRequest {
    pub id: String,
    pub cursor: u64,
    pub max_bytes: u64,
    /// Wait first until the shell has been quiet this long (at most
    /// [`MAX_IDLE_MS`]; the whole wait at most [`WAIT_CAP_MS`]).
    pub wait_for_idle_ms: Option<u64>,
}

/// Signals a shell's foreground process group can be sent.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum Signal {
    Hup,
    Int,
    Term,
    Kill,
}

impl Signal {
    pub const NAMES: &'static str = "HUP, INT, TERM or KILL";

    pub fn name(self) -> &'static str {
        match self {
            Signal::Hup => "HUP",
            Signal::Int => "INT",
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
        }
    }
}

impl std::str::FromStr for Signal {
    type Err = String;

    /// `INT`, `int`, `SIGINT` and `sigint` all name SIGINT.
    fn from_str(s: &str) -> Result<Self, String> {
        let upper = s.to_ascii_uppercase();
        match upper.strip_prefix("SIG").unwrap_or(&upper) {
            "HUP" => Ok(Signal::Hup),
            "INT" => Ok(Signal::Int),
            "TERM" => Ok(Signal::Term),
            "KILL" => Ok(Signal::Kill),
            _ => Err(format!("signal {s:?} must be {}", Self::NAMES)),
        }
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Running,
    /// The shell process ended (its output stays readable until close).
    Exited,
}

/// A shell as the agent reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Info {
    pub id: String,
    pub state: State,
    /// The shell process (the session leader).
    pub pid: u32,
    pub cwd: String,
    pub cols: u16,
    pub rows: u16,
    /// Seconds since the epoch, by the guest's clock.
    pub started_at: u64,
    pub exit_code: Option<i32>,
    /// The signal that ended it, if one did.
    pub exit_signal: Option<i32>,
    /// Bytes produced so far: the cursor a read of everything ends at.
    pub output_bytes: u64,
}

/// What a read returns; the output itself travels in data frames.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReadResult {
    pub shell: Info,
    /// Where the returned output starts: the cursor asked for, or the
    /// oldest byte kept if that fell off the ring.
    pub cursor: u64,
    /// Where the next read should start.
    pub next_cursor: u64,
    /// Output between the cursor asked for and `cursor` was dropped.
    pub truncated: bool,
    /// More output is ready after `next_cursor` (`max_bytes` cut it).
    pub more: bool,
    /// The wait ended because the shell was quiet for the time asked
    /// (false: no wait asked, or it ended at the cap, at `max_bytes`,
    /// or because the terminal closed).
    pub idle: bool,
    pub waited_ms: u64,
}

/// A shell id: 1-32 of `[a-z0-9-]`.
pub fn valid_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]{0,63}`.
pub fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && name.len() <= 64
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Why a read's `max_bytes` or `wait_for_idle_ms` is refused, if it is.
pub fn check_read(max_bytes: u64, wait_for_idle_ms: Option<u64>) -> Result<(), String> {
    if !(1..=MAX_READ_BYTES).contains(&max_bytes) {
        return Err(format!(
            "max_bytes must be 1-{MAX_READ_BYTES} (got {max_bytes})"
        ));
    }
    match wait_for_idle_ms {
        Some(ms) if !(1..=MAX_IDLE_MS).contains(&ms) => Err(format!(
            "wait_for_idle_ms must be 1-{MAX_IDLE_MS} (got {ms})"
        )),
        _ => Ok(()),
    }
}

/// Why a shell's extra environment is refused, if it is.
pub fn check_env(env: &[(String, String)]) -> Result<(), String> {
    match env.iter().find(|(n, _)| !valid_env_name(n)) {
        Some((name, _)) => Err(format!(
            "env: {name:?} is not a variable name ([A-Za-z_][A-Za-z0-9_]{{0,63}})"
        )),
        None => Ok(()),
    }
}

/// Why a write of `len` bytes is refused, if it is.
pub fn check_input(len: usize) -> Result<(), String> {
    if len > MAX_INPUT_BYTES {
        Err(format!(
            "input: {len} bytes, at most {MAX_INPUT_BYTES} per write"
        ))
    } else {
        Ok(())
    }
}

/// Why a terminal size is refused, if it is.
pub fn check_size(cols: u16, rows: u16) -> Result<(), String> {
    if (1..=MAX_SIZE).contains(&cols) && (1..=MAX_SIZE).contains(&rows) {
        Ok(())
    } else {
        Err(format!(
            "cols and rows must each be 1-{MAX_SIZE} (got {cols}x{rows})"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_in_any_case_with_or_without_sig() {
        for (s, want) in [
            ("INT", Signal::Int),
            ("sigint", Signal::Int),
            ("SIGHUP", Signal::Hup),
            ("term", Signal::Term),
            ("Kill", Signal::Kill),
        ] {
            assert_eq!(s.parse::<Signal>(), Ok(want), "{s}");
        }
        let err = "STOP".parse::<Signal>().unwrap_err();
        assert!(err.contains("HUP, INT, TERM or KILL"), "{err}");
        assert_eq!(
            serde_json::to_string(&Signal::Term).unwrap(),
            "\"TERM\"".to_string()
        );
    }

    #[test]
    fn ids_env_names_and_sizes_are_checked() {
        assert!(valid_id("a1b2-c3"));
        assert!(!valid_id(""));
        assert!(!valid_id("../x"));
        assert!(!valid_id(&"a".repeat(33)));
        assert!(valid_env_name("_X1"));
        assert!(!valid_env_name("1X"));
        assert!(!valid_env_name("A=B"));
        assert!(check_size(120, 30).is_ok());
        assert!(check_size(0, 30).is_err());
        assert!(check_size(120, 1001).is_err());
        assert!(check_read(1, Some(MAX_IDLE_MS)).is_ok());
        assert!(check_read(0, None).unwrap_err().contains("max_bytes"));
        assert!(check_read(1, Some(0))
            .unwrap_err()
            .contains("wait_for_idle_ms"));
        assert!(check_env(&[("A=B".into(), String::new())]).is_err());
        assert!(check_input(MAX_INPUT_BYTES).is_ok() && check_input(MAX_INPUT_BYTES + 1).is_err());
    }
}
