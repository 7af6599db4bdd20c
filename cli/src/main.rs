//! `pyro`: the command-line front end. Parses (`args`), runs the command
//! (`commands`, `workspace`, `shell`, `mcp`: SDK calls), prints its result
//! (`printer`); errors are printed once, here.

#![forbid(unsafe_code)]

mod args;
mod commands;
mod mcp;
mod printer;
mod service;
mod shell;
mod workspace;

fn main() {
    // The hidden VMM mode: this process becomes a workspace's VM. It must
    // not take the CLI's signal handling (SIGTERM must end the VM the
    // normal way) and prints nothing to a terminal.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.len() == 3 && argv[1] == "__vmm" {
        std::process::exit(pyro_vmm::control::serve(std::path::Path::new(&argv[2])));
    }
    // The confined reader of a workspace's disk image (untrusted input).
    if argv.len() == 3 && argv[1] == pyro_workspace::IMAGE_READER_MODE {
        std::process::exit(pyro_workspace::serve_image_reader(std::path::Path::new(
            &argv[2],
        )));
    }
    let cli = match args::Cli::parse_from_args(&argv) {
        Ok(cli) => cli,
        // A usage error in `--json` mode is the JSON error too (exit 2).
        Err(e) if e.use_stderr() && args::wants_json(&argv) => {
            std::process::exit(printer::error(true, &args::usage_error(&e)))
        }
        Err(e) => e.exit(),
    };
    // `pyro mcp serve` lets the calls in flight finish on a signal (a VM
    // must not be left half made) and handles signals itself.
    let serving_mcp =
        argv.get(1).is_some_and(|a| a == "mcp") && argv.get(2).is_some_and(|a| a == "serve");
    if !serving_mcp {
        clean_up_on_signals(interrupted(&cli.command));
    }
    let json = cli.json;
    let code = match commands::run(cli) {
        Ok(code) => code,
        Err(err) => printer::error(json, &err),
    };
    std::process::exit(code);
}

/// What a signal that ends `command` leaves behind, as it really is.
/// Only `run` (and `doctor --boot`) have their VM in this process; a
/// workspace's VM is a process of its own and keeps running.
fn interrupted(command: &args::Command) -> &'static str {
    use args::workspace::WorkspaceCommand as W;
    use args::Command as C;
    match command {
        C::Run(_) | C::Doctor(_) => "stopped the VM and removed its files",
        // The agent kills a command's process group when its caller
        // goes away.
        C::Workspace(W::Exec(_)) => {
            "the command was killed in the guest; the workspace keeps running"
        }
        // A workspace appears only once its create has ended; the one
        // being made is stopped and removed (`abandon_creates`).
        C::Workspace(W::Create(_)) => "the workspace being made was stopped and removed",
        C::Workspace(_) => {
            "the workspace keeps running; the call may not have finished: see `pyro workspace status`"
        }
        C::Env(_) => "an unfinished build, if any, is left for `pyro env prune`",
        // `mcp serve` handles signals itself; `mcp config` writes one file.
        C::Mcp(_) => "the MCP config may not have been written",
    }
}

/// On Ctrl-C, SIGTERM or SIGHUP: remove the files of runs in progress
/// and stop and remove a workspace being created,
/// say what the signal left (`left`), then exit 128 + signal as a shell
/// would. The VMs of runs are in this process and stop with it.
fn clean_up_on_signals(left: &'static str) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        return; // without the handler a signal still stops everything
    };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            pyro_workspace::abandon_runs();
            pyro_workspace::abandon_creates();
            eprintln!("pyro: interrupted (signal {signal}); {left}");
            std::process::exit(128 + signal);
        }
    });
}
