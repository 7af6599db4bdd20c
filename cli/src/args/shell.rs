//! The arguments of `pyro workspace shell <verb>`: persistent shells on
//! a pseudo-terminal in a running workspace (docs/shells.md).

use clap::builder::TypedValueParser;
use clap::{Args, Subcommand};
use pyro_workspace::shell_limits::{
    DEFAULT_COLS, DEFAULT_READ_BYTES, DEFAULT_ROWS, MAX_IDLE_MS, MAX_READ_BYTES, MAX_SIZE,
};
use pyro_workspace::ShellSignal;

#[derive(Subcommand)]
pub enum ShellCommand {
    /// Open a shell (bash, else sh) on a new pseudo-terminal; prints its
    /// id. It lives in the workspace until `shell close`, stop, reset or
    /// delete, whatever happens to this command.
    Open(ShellOpenArgs),
    /// Print a shell's output from a cursor (`--cursor` of the last
    /// read's next_cursor for only what is new).
    Read(ShellReadArgs),
    /// Type into a shell (Enter pressed after, unless --no-newline).
    Write(ShellWriteArgs),
    /// Change a shell's terminal size (its programs get SIGWINCH).
    Resize(ShellResizeArgs),
    /// Send a signal to the program in a shell's foreground.
    Signal(ShellSignalArgs),
    /// End a shell (SIGHUP, then SIGKILL after 2 s) and forget it.
    Close(ShellRefArgs),
    /// List a workspace's shells (none while it is stopped).
    List(super::workspace::IdArgs),
}

fn size() -> impl TypedValueParser<Value = u16> {
    super::shape::number(1, u64::from(MAX_SIZE))
}

#[derive(Args)]
pub struct ShellOpenArgs {
    /// Workspace id (or its unique name).
    pub id: String,
    /// Where the shell starts, inside /workspace (relative paths resolve
    /// under it).
    #[arg(long, default_value = "/workspace")]
    pub cwd: String,
    /// Terminal width, 1-1000.
    #[arg(long, default_value_t = DEFAULT_COLS, value_parser = size())]
    pub cols: u16,
    /// Terminal height, 1-1000.
    #[arg(long, default_value_t = DEFAULT_ROWS, value_parser = size())]
    pub rows: u16,
    #[command(flatten)]
    pub secret_env: super::secret::SecretEnvArgs,
    /// Print only the new shell's id.
    #[arg(long, conflicts_with = "json")]
    pub id_only: bool,
}

#[derive(Args)]
pub struct ShellRefArgs {
    /// Workspace id (or its unique name).
    pub id: String,
    /// The shell's id, as `shell open` printed it.
    pub shell_id: String,
}

#[derive(Args)]
pub struct ShellReadArgs {
    /// Workspace id (or its unique name).
    pub id: String,
    /// The shell's id, as `shell open` printed it.
    pub shell_id: String,
    /// Read from this byte of the shell's output (0: everything kept).
    #[arg(long, default_value_t = 0, value_parser = super::shape::number::<u64>(0, u64::MAX))]
    pub cursor: u64,
    /// At most this many bytes of raw output, 1-1048576.
    #[arg(
        long,
        default_value_t = DEFAULT_READ_BYTES,
        value_parser = super::shape::number::<u64>(1, MAX_READ_BYTES)
    )]
    pub max_chars: u64,
    /// The text as a terminal shows it (rendered by a terminal emulator),
    /// not the raw bytes with their escape codes.
    #[arg(long)]
    pub plain: bool,
    /// First wait until the shell has been quiet this long, 1-10000 ms
    /// (2 s at least, and not while it computes, while a command typed
    /// has not brought the prompt back; 10 s of waiting at most).
    #[arg(
        long,
        value_name = "MS",
        value_parser = super::shape::number::<u64>(1, MAX_IDLE_MS)
    )]
    pub wait_for_idle_ms: Option<u64>,
}

#[derive(Args)]
pub struct ShellWriteArgs {
    /// Workspace id (or its unique name).
    pub id: String,
    /// The shell's id, as `shell open` printed it.
    pub shell_id: String,
    /// What to type (it may start with `-`).
    #[arg(long, allow_hyphen_values = true)]
    pub input: String,
    /// Do not press Enter after the input.
    #[arg(long)]
    pub no_newline: bool,
}

#[derive(Args)]
pub struct ShellResizeArgs {
    /// Workspace id (or its unique name).
    pub id: String,
    /// The shell's id, as `shell open` printed it.
    pub shell_id: String,
    /// Terminal width, 1-1000.
    #[arg(long, value_parser = size())]
    pub cols: u16,
    /// Terminal height, 1-1000.
    #[arg(long, value_parser = size())]
    pub rows: u16,
}

#[derive(Args)]
pub struct ShellSignalArgs {
    /// Workspace id (or its unique name).
    pub id: String,
    /// The shell's id, as `shell open` printed it.
    pub shell_id: String,
    /// HUP, INT (like Ctrl-C), TERM or KILL (a SIG prefix and any case
    /// are fine).
    #[arg(long, default_value = "INT")]
    pub signal: ShellSignal,
}
