//! How shell results read: `shell read` prints the output itself on
//! stdout (byte for byte as decoded, or the rendered screen text with
//! `--plain`), every verb a `[workspace-shell-<verb>]` line on stderr
//! with the cursors a script needs for the next read.

use super::Render;
use pyro_workspace::{Shell, ShellClosed, ShellList, ShellRead, ShellSignalSent, ShellWrite};
use std::io::{self, Write};

/// `shell open`'s result; `--id-only` prints the id alone.
pub struct Opened<'a> {
    pub shell: &'a Shell,
    pub id_only: bool,
}

/// `shell resize`'s result.
pub struct Resized<'a>(pub &'a Shell);

fn line(verb: &str, s: &Shell) -> String {
    let mut line = format!(
        "[workspace-shell-{verb}] workspace_id={} shell_id={} state={} cwd={} cols={} rows={}",
        s.workspace_id,
        s.shell_id,
        state(s),
        s.cwd,
        s.cols,
        s.rows
    );
    if let Some(code) = s.exit_code {
        line.push_str(&format!(" exit_code={code}"));
    }
    if let Some(signal) = s.exit_signal {
        line.push_str(&format!(" exit_signal={signal}"));
    }
    line
}

fn state(s: &Shell) -> &'static str {
    match s.state {
        pyro_workspace::ShellState::Running => "running",
        pyro_workspace::ShellState::Exited => "exited",
    }
}

impl Render for Opened<'_> {
    type Json = Shell;
    fn json(&self) -> &Shell {
        self.shell
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{}", self.shell.shell_id)
    }
    fn summary(&self) -> Option<String> {
        (!self.id_only).then(|| line("open", self.shell))
    }
}

impl Render for ShellRead {
    type Json = ShellRead;
    fn json(&self) -> &ShellRead {
        self
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(self.output.as_bytes())
    }
    fn summary(&self) -> Option<String> {
        let wait = self
            .wait_for_idle_ms
            .map_or("none".to_string(), |ms| ms.to_string());
        Some(format!(
            "{} cursor={} next_cursor={} truncated={} more={} plain={} wait_for_idle_ms={wait} idle={}",
            line("read", &self.shell),
            self.cursor,
            self.next_cursor,
            self.truncated,
            self.more,
            self.plain,
            self.idle
        ))
    }
}

impl Render for ShellWrite {
    type Json = ShellWrite;
    fn json(&self) -> &ShellWrite {
        self
    }
    fn human(&self, _: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }
    fn summary(&self) -> Option<String> {
        Some(format!(
            "{} input_bytes={} append_newline={}",
            line("write", &self.shell),
            self.input_bytes,
            self.append_newline
        ))
    }
}

impl Render for Resized<'_> {
    type Json = Shell;
    fn json(&self) -> &Shell {
        self.0
    }
    fn human(&self, _: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }
    fn summary(&self) -> Option<String> {
        Some(line("resize", self.0))
    }
}

impl Render for ShellSignalSent {
    type Json = ShellSignalSent;
    fn json(&self) -> &ShellSignalSent {
        self
    }
    fn human(&self, _: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }
    fn summary(&self) -> Option<String> {
        Some(format!(
            "{} signal={}",
            line("signal", &self.shell),
            self.signal
        ))
    }
}

impl Render for ShellClosed {
    type Json = ShellClosed;
    fn json(&self) -> &ShellClosed {
        self
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "Closed shell {}", self.shell.shell_id)
    }
    fn summary(&self) -> Option<String> {
        Some(format!("{} closed=true", line("close", &self.shell)))
    }
}

impl Render for ShellList {
    type Json = ShellList;
    fn json(&self) -> &ShellList {
        self
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.shells.is_empty() {
            return writeln!(out, "No shells.");
        }
        for s in &self.shells {
            let exit = s
                .exit_code
                .map_or(String::new(), |c| format!(" exit_code={c}"));
            writeln!(
                out,
                "{} [{}] cwd={} size={}x{} output_bytes={}{exit}",
                s.shell_id,
                state(s),
                s.cwd,
                s.cols,
                s.rows,
                s.output_bytes
            )?;
        }
        Ok(())
    }
    fn summary(&self) -> Option<String> {
        Some(format!(
            "[workspace-shell-list] workspace_id={} count={}",
            self.workspace_id,
            self.shells.len()
        ))
    }
}
