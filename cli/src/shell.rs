//! Runs `pyro workspace shell <verb>`: each verb one SDK call, its
//! result handed to the [`Printer`] (`crate::printer::shell`).

use crate::args::shell::ShellCommand;
use crate::printer::shell::{Opened, Resized};
use crate::printer::Printer;
use pyro_workspace::{Error, Pyro, ShellOptions, ShellReadOptions};

pub fn run(pyro: &Pyro, out: Printer, cmd: ShellCommand) -> Result<(), Error> {
    use ShellCommand as S;
    match cmd {
        S::Open(a) => {
            let opts = ShellOptions {
                cols: a.cols,
                rows: a.rows,
                cwd: Some(a.cwd),
                env: Vec::new(),
                secret_env: a.secret_env.secret_env,
            };
            out.print(&Opened {
                shell: &pyro.workspace_shell_open(&a.id, &opts)?,
                id_only: a.id_only,
            });
        }
        S::Read(a) => {
            let opts = ShellReadOptions {
                cursor: a.cursor,
                max_bytes: a.max_chars,
                plain: a.plain,
                wait_for_idle_ms: a.wait_for_idle_ms,
            };
            out.print(&pyro.workspace_shell_read(&a.id, &a.shell_id, &opts)?);
        }
        S::Write(a) => {
            out.print(&pyro.workspace_shell_write(&a.id, &a.shell_id, &a.input, !a.no_newline)?)
        }
        S::Resize(a) => out.print(&Resized(&pyro.workspace_shell_resize(
            &a.id,
            &a.shell_id,
            a.cols,
            a.rows,
        )?)),
        S::Signal(a) => out.print(&pyro.workspace_shell_signal(&a.id, &a.shell_id, a.signal)?),
        S::Close(a) => out.print(&pyro.workspace_shell_close(&a.id, &a.shell_id)?),
        S::List(a) => out.print(&pyro.workspace_shell_list(&a.id)?),
    }
    Ok(())
}
