//! `pyro`: the command-line front end. Parses, dispatches to the SDK
//! (`pyro-workspace`), prints; errors are printed once, here.

mod commands;
mod output;

use clap::Parser;

fn main() {
    let cli = commands::Cli::parse();
    let json = cli.json();
    let code = match commands::run(cli) {
        Ok(code) => code,
        Err(err) => output::error(json, &err),
    };
    std::process::exit(code);
}
