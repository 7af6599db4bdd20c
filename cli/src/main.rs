//! `pyro`: the command-line front end. Parses, dispatches to the SDK
//! (`pyro-workspace`), prints; errors are printed once, here.

mod commands;
mod mcp;
mod output;
mod workspace;

use clap::Parser;

fn main() {
    // The hidden VMM mode: this process becomes a workspace's VM. It must
    // not take the CLI's signal handling (SIGTERM must end the VM the
    // normal way) and prints nothing to a terminal.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() == 3 && args[1] == "__vmm" {
        std::process::exit(pyro_vmm::control::serve(std::path::Path::new(&args[2])));
    }
    let cli = commands::Cli::parse();
    // `pyro mcp serve` lets the calls in flight finish on a signal (a VM
    // must not be left half made) and handles signals itself.
    let serving_mcp =
        args.get(1).is_some_and(|a| a == "mcp") && args.get(2).is_some_and(|a| a == "serve");
    if !serving_mcp {
        clean_up_on_signals();
    }
    let json = cli.json();
    let code = match commands::run(cli) {
        Ok(code) => code,
        Err(err) => output::error(json, &err),
    };
    std::process::exit(code);
}

/// On Ctrl-C, SIGTERM or SIGHUP: remove the files of runs in progress,
/// then exit 128 + signal as a shell would. The VMs run in this process
/// and stop with it.
fn clean_up_on_signals() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        return; // without the handler a signal still stops everything
    };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            pyro_workspace::abandon_runs();
            eprintln!("pyro: interrupted (signal {signal}); stopped the VM and removed its files");
            std::process::exit(128 + signal);
        }
    });
}
