//! Runs a parsed command: `run`, `doctor` and `env` here, the workspace
//! verbs in `crate::workspace`, `mcp` in `crate::mcp`. Each handler
//! turns arguments into an SDK call and hands the result to the
//! [`Printer`]; it formats nothing itself.

use crate::args::{Cli, Command, DoctorArgs, EnvCommand, RunArgs};
use crate::printer::{host::Pulled, Printer};
use pyro_workspace::{BootOptions, Error, Pyro, RunOptions, StderrProgress};
use std::time::Duration;

/// Runs a command; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32, Error> {
    let pyro = Pyro::from_env();
    let out = Printer::new(cli.json);
    match cli.command {
        Command::Doctor(args) => Ok(doctor(&pyro, out, &args)),
        Command::Run(args) => run_command(&pyro, out, &args),
        Command::Workspace(cmd) => crate::workspace::run(&pyro, out, cmd),
        Command::Mcp(_) if cli.json => Err(Error::InvalidArgument(
            "--json does not apply to `pyro mcp`".into(),
        )),
        Command::Mcp(cmd) => crate::mcp::run(pyro, cmd),
        Command::Env(EnvCommand::List) => {
            out.print(&pyro.env_list());
            Ok(0)
        }
        Command::Env(EnvCommand::Pull(a)) => {
            eprintln!("[pull] environment={} phase=build", a.env);
            let detail = pyro.env_pull(&a.env, &StderrProgress::new())?;
            out.print(&Pulled {
                env: &a.env,
                detail: &detail,
            });
            Ok(0)
        }
        Command::Env(EnvCommand::Inspect(a)) => {
            out.print(&pyro.env_inspect(&a.env)?);
            Ok(0)
        }
        Command::Env(EnvCommand::Prune) => {
            out.print(&pyro.env_prune()?);
            Ok(0)
        }
    }
}

fn run_command(pyro: &Pyro, out: Printer, args: &RunArgs) -> Result<i32, Error> {
    let opts = RunOptions {
        environment: args.env.clone(),
        vcpus: args.shape.vcpus,
        mem_mib: args.shape.mem_mib,
        timeout: args.cmd.timeout(),
        cold: args.cold,
        network: pyro_vmm::NetConfig {
            rules: args.network.rules(),
            publish: Vec::new(),
        },
        ..RunOptions::default()
    };
    let result = pyro.run(
        &opts,
        &args.cmd.command,
        &StderrProgress::new(),
        out.guest_output(),
    )?;
    out.print(&result);
    Ok(result.shell_exit_code())
}

/// Exit code 1 when a check fails.
fn doctor(pyro: &Pyro, out: Printer, args: &DoctorArgs) -> i32 {
    let opts = BootOptions {
        environment: args.env.clone(),
        mem_mib: args.shape.mem_mib,
        vcpus: args.shape.vcpus,
        init_timeout: Duration::from_secs(120),
        echo_console: args.console,
        ..BootOptions::default()
    };
    let report = pyro.doctor(args.boot.then_some(&opts), &StderrProgress::new());
    out.print(&report);
    if report.ok {
        0
    } else {
        1
    }
}
