//! Shell tools (workspace-full): `shell_open`, `_read`, `_write`,
//! `_signal`, `_close` (the SPEC's five), and `_resize` and `_list`, as
//! the CLI and SDK have them: persistent interactive shells on a
//! pseudo-terminal in a running workspace (docs/shells.md).

use crate::server::PyroServer;
use pyro_workspace::shell_limits::{
    DEFAULT_COLS, DEFAULT_READ_BYTES, DEFAULT_ROWS, MAX_IDLE_MS, MAX_INPUT_BYTES, MAX_READ_BYTES,
    MAX_SIZE,
};
use pyro_workspace::{Error, ShellOptions, ShellReadOptions, ShellSignal};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;

fn default_cols() -> u16 {
    DEFAULT_COLS
}
fn default_rows() -> u16 {
    DEFAULT_ROWS
}
fn default_max_chars() -> u64 {
    DEFAULT_READ_BYTES
}
fn default_true() -> bool {
    true
}
fn default_signal() -> String {
    "INT".into()
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellOpenParams {
    /// The workspace: its id or unique name. It must be running.
    pub workspace_id: String,
    /// Directory the shell starts in, inside /workspace (relative paths
    /// resolve under it). Default "/workspace".
    #[serde(default)]
    pub cwd: Option<String>,
    /// Terminal width in columns, 1 to 1000 (default 120).
    #[serde(default = "default_cols")]
    #[schemars(range(min = 1, max = 1000))]
    pub cols: u16,
    /// Terminal height in rows, 1 to 1000 (default 30).
    #[serde(default = "default_rows")]
    #[schemars(range(min = 1, max = 1000))]
    pub rows: u16,
    /// Secrets for its environment: {"SECRET_NAME": "VAR"} ("" for the
    /// secret's own name; see workspace_secret_set). Their values are
    /// replaced by [REDACTED] in its output.
    #[serde(default)]
    pub secret_env: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellRef {
    /// The workspace: its id or unique name.
    pub workspace_id: String,
    /// The shell's id, as shell_open returned it.
    pub shell_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellResizeParams {
    /// The workspace: its id or unique name.
    pub workspace_id: String,
    /// The shell's id, as shell_open returned it.
    pub shell_id: String,
    /// New terminal width in columns, 1 to 1000.
    #[schemars(range(min = 1, max = 1000))]
    pub cols: u16,
    /// New terminal height in rows, 1 to 1000.
    #[schemars(range(min = 1, max = 1000))]
    pub rows: u16,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellReadParams {
    /// The workspace: its id or unique name.
    pub workspace_id: String,
    /// The shell's id, as shell_open returned it.
    pub shell_id: String,
    /// Where to read from: 0 for everything kept, or the next_cursor of
    /// the previous read to get only what is new (default 0).
    #[serde(default)]
    pub cursor: u64,
    /// At most this many bytes of raw terminal output, 1 to 1048576
    /// (default 65536); `more` says when output was left for the next
    /// read.
    #[serde(default = "default_max_chars")]
    #[schemars(range(min = 1, max = 1048576))]
    pub max_chars: u64,
    /// Render the output through a terminal emulator and return the text
    /// as a terminal would show it (no escape codes; progress lines
    /// redrawn with \r show their last state). Recommended (default
    /// false: the raw bytes).
    #[serde(default)]
    pub plain: bool,
    /// Wait until the shell has printed nothing for this many
    /// milliseconds before reading, 1 to 10000 (while a command typed
    /// has not brought the prompt back: at least 2000, and not while it
    /// is still computing; at most 10 s of waiting in all). Use about
    /// 300-1000 after shell_write to get a command's output in one call;
    /// null reads at once.
    #[serde(default)]
    #[schemars(range(min = 1, max = 10000))]
    pub wait_for_idle_ms: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellWriteParams {
    /// The workspace: its id or unique name.
    pub workspace_id: String,
    /// The shell's id, as shell_open returned it.
    pub shell_id: String,
    /// What to type, e.g. a command line ("\u0003" is Ctrl-C, "\u0004"
    /// Ctrl-D). At most 65536 bytes.
    pub input: String,
    /// Press Enter after the input (default true).
    #[serde(default = "default_true")]
    pub append_newline: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellSignalParams {
    /// The workspace: its id or unique name.
    pub workspace_id: String,
    /// The shell's id, as shell_open returned it.
    pub shell_id: String,
    /// The signal for the program running in the shell's foreground
    /// (the shell itself if none): "INT" (like Ctrl-C, the default),
    /// "TERM", "HUP" or "KILL".
    #[serde(default = "default_signal")]
    #[schemars(schema_with = "signal_schema")]
    pub signal: String,
}

fn signal_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "enum": ["INT", "TERM", "HUP", "KILL"],
        "default": "INT"
    })
}

#[tool_router(router = shell_tools, vis = "pub(crate)")]
impl PyroServer {
    /// Open an interactive shell (bash, else sh) on a pseudo-terminal in
    /// a running workspace, for work that needs state between commands
    /// or a terminal: interactive programs, REPLs, long jobs to watch.
    /// The shell lives in the workspace until shell_close, stop, reset or
    /// delete, whatever happens to this session; up to 16 per workspace.
    /// Then shell_write a command and shell_read its output. For one-off
    /// commands workspace_exec is simpler. Result: {workspace_id,
    /// shell_id, state, pid, cwd, cols, rows, started_at, exit_code,
    /// output_bytes}.
    #[tool(annotations(destructive_hint = false, open_world_hint = false))]
    async fn shell_open(
        &self,
        Parameters(p): Parameters<ShellOpenParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("shell_open", ctx, move |job| {
            size(p.cols, p.rows)?;
            let opts = ShellOptions {
                cols: p.cols,
                rows: p.rows,
                cwd: p.cwd,
                env: Vec::new(),
                secret_env: super::secrets::secret_env(&p.secret_env)?,
            };
            job.pyro.workspace_shell_open(&p.workspace_id, &opts)
        })
        .await
    }

    /// Read a shell's output. Pass the previous read's next_cursor as
    /// cursor to get only new output; plain=true gives the text as the
    /// terminal shows it; wait_for_idle_ms waits for the command to go
    /// quiet first. Result: the shell, plus {cursor, next_cursor,
    /// output, truncated (output before cursor was dropped: each shell
    /// keeps its last 1 MiB), more (more output is ready), idle, plain}.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn shell_read(
        &self,
        Parameters(p): Parameters<ShellReadParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("shell_read", ctx, move |job| {
            super::check_range("max_chars", p.max_chars, 1, MAX_READ_BYTES)?;
            if let Some(ms) = p.wait_for_idle_ms {
                super::check_range("wait_for_idle_ms", ms, 1, MAX_IDLE_MS)?;
            }
            let opts = ShellReadOptions {
                cursor: p.cursor,
                max_bytes: p.max_chars,
                plain: p.plain,
                wait_for_idle_ms: p.wait_for_idle_ms,
            };
            job.pyro
                .workspace_shell_read(&p.workspace_id, &p.shell_id, &opts)
        })
        .await
    }

    /// Type into a shell, as at its keyboard (append_newline presses
    /// Enter). It returns at once; read the output with shell_read
    /// (wait_for_idle_ms). Result: the shell, plus {input_bytes,
    /// append_newline}.
    #[tool(annotations(destructive_hint = true, open_world_hint = false))]
    async fn shell_write(
        &self,
        Parameters(p): Parameters<ShellWriteParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("shell_write", ctx, move |job| {
            let bytes = p.input.len() + usize::from(p.append_newline);
            super::check_range("input", bytes, 0, MAX_INPUT_BYTES)?;
            job.pyro
                .workspace_shell_write(&p.workspace_id, &p.shell_id, &p.input, p.append_newline)
        })
        .await
    }

    /// Send a signal to the program running in a shell's foreground,
    /// e.g. "INT" to interrupt a command that runs too long (the shell
    /// stays open). Result: the shell, plus {signal}.
    #[tool(annotations(destructive_hint = true, open_world_hint = false))]
    async fn shell_signal(
        &self,
        Parameters(p): Parameters<ShellSignalParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("shell_signal", ctx, move |job| {
            let signal: ShellSignal = p
                .signal
                .parse()
                .map_err(|e| Error::InvalidArgument(format!("signal: {e}")))?;
            job.pyro
                .workspace_shell_signal(&p.workspace_id, &p.shell_id, signal)
        })
        .await
    }

    /// Change a shell's terminal size (its programs get SIGWINCH and
    /// redraw; plain reads render at the new width). Result: the shell.
    #[tool(annotations(
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn shell_resize(
        &self,
        Parameters(p): Parameters<ShellResizeParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("shell_resize", ctx, move |job| {
            size(p.cols, p.rows)?;
            job.pyro
                .workspace_shell_resize(&p.workspace_id, &p.shell_id, p.cols, p.rows)
        })
        .await
    }

    /// The shells of a workspace, oldest first, for a session that lost
    /// track of the ids it opened (shells outlive MCP sessions). A
    /// stopped workspace has none. Result: {workspace_id, shells: [the
    /// shell as shell_open returns it]}.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn shell_list(
        &self,
        Parameters(p): Parameters<super::WorkspaceRef>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("shell_list", ctx, move |job| {
            job.pyro.workspace_shell_list(&p.workspace_id)
        })
        .await
    }

    /// Close a shell: its programs get SIGHUP (SIGKILL after 2 s) and
    /// its output is gone. Result: the shell as it ended, plus {closed:
    /// true}.
    #[tool(annotations(destructive_hint = true, open_world_hint = false))]
    async fn shell_close(
        &self,
        Parameters(p): Parameters<ShellRef>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.call("shell_close", ctx, move |job| {
            job.pyro.workspace_shell_close(&p.workspace_id, &p.shell_id)
        })
        .await
    }
}

fn size(cols: u16, rows: u16) -> Result<(), Error> {
    super::check_range("cols", cols, 1, MAX_SIZE)?;
    super::check_range("rows", rows, 1, MAX_SIZE)
}
