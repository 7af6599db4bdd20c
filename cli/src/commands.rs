//! Runs a parsed command: `run`, `doctor` and `env` here, the workspace
//! verbs in `crate::workspace`, `mcp` in `crate::mcp`. Each handler
//! turns arguments into an SDK call and hands the result to the
//! [`Printer`]; it formats nothing itself.

use crate::args::{Cli, Command, DoctorArgs, EnvBuildArgs, EnvCommand, RunArgs};
use crate::printer::{host::Ready, Printer};
use pyro_workspace::{BootOptions, CustomRequest, Error, Pyro, RunOptions, StderrProgress};
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
            out.print(&Ready {
                verb: "pull",
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
        Command::Env(EnvCommand::Build(a)) => {
            let req = env_build_request(&a)?;
            eprintln!(
                "[build] environment={} from={} phase=build",
                req.name, req.from
            );
            let detail = pyro.env_build(&req, &StderrProgress::new())?;
            out.print(&Ready {
                verb: "build",
                detail: &detail,
            });
            Ok(0)
        }
        Command::Env(EnvCommand::Delete(a)) => {
            out.print(&pyro.env_delete(&a.env)?);
            Ok(0)
        }
    }
}

/// The request `env build` makes; reads the setup script.
fn env_build_request(a: &EnvBuildArgs) -> Result<CustomRequest, Error> {
    let setup_script = match &a.setup_script {
        None => None,
        Some(path) => {
            let meta = std::fs::metadata(path).map_err(|e| {
                Error::InvalidArgument(format!("--setup-script {}: {e}", path.display()))
            })?;
            if meta.len() > pyro_workspace::MAX_SETUP_SCRIPT as u64 {
                return Err(Error::InvalidArgument(format!(
                    "--setup-script {}: {} bytes, at most {}",
                    path.display(),
                    meta.len(),
                    pyro_workspace::MAX_SETUP_SCRIPT
                )));
            }
            Some(std::fs::read_to_string(path).map_err(|e| {
                Error::InvalidArgument(format!("--setup-script {}: {e}", path.display()))
            })?)
        }
    };
    Ok(CustomRequest {
        name: a.name.clone(),
        from: a.from.clone(),
        packages: a.packages.clone(),
        setup_script,
        description: a.description.clone(),
    })
}

fn run_command(pyro: &Pyro, out: Printer, args: &RunArgs) -> Result<i32, Error> {
    let opts = RunOptions {
        environment: args.env.clone(),
        vcpus: args.shape.vcpus,
        mem_mib: args.shape.mem_mib,
        timeout: args.cmd.timeout(),
        cold: args.cold,
        max_output_bytes: args.max_output_bytes,
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
