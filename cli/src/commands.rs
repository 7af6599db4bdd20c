//! The command tree and what each command prints.

use crate::output;
use clap::{Args, Parser, Subcommand};
use pyro_workspace::{
    BootOptions, DoctorReport, EnvDetail, Error, Pyro, RunOptions, StderrProgress, Stream,
};
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "pyro",
    version,
    about = "Disposable Linux microVMs for coding agents and developers"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check that this host can run pyro VMs (KVM, host kind, cache); --boot
    /// also builds the default environment if needed and boots it.
    Doctor(DoctorArgs),
    /// Build and inspect environments (root filesystems + guest kernel).
    #[command(subcommand)]
    Env(EnvCommand),
    /// Persistent workspaces: create, exec, files, patch, diff, snapshots.
    #[command(subcommand)]
    Workspace(crate::workspace::WorkspaceCommand),
    /// The MCP server for agents and chat hosts (`serve`, over stdio) and
    /// the config that makes a host start it (`config`).
    #[command(subcommand)]
    Mcp(crate::mcp::McpCommand),
    /// Run one command in a fresh VM: `pyro run [ENV] -- CMD ARGS...`.
    /// The command runs directly (no shell; use `sh -c '...'` for one);
    /// its output streams to ours and its exit code becomes ours.
    Run(RunArgs),
}

#[derive(Args)]
struct RunArgs {
    /// Environment to boot (see `pyro env list`).
    #[arg(default_value = pyro_workspace::DEFAULT_ENV)]
    env: String,
    /// vCPUs for the VM.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=32))]
    vcpus: u8,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(64..=65536))]
    mem_mib: u32,
    /// Boot the kernel instead of restoring the environment's warm
    /// snapshot (made on first use; slower, but nothing is reused).
    #[arg(long)]
    cold: bool,
    #[command(flatten)]
    cmd: CommandArgs,
}

/// A guest command and how to run it (`run`, `workspace exec`).
#[derive(Args)]
pub struct CommandArgs {
    /// Kill the command (its whole process group) after this many seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub timeout_seconds: u64,
    /// Print one JSON document instead of streaming the output.
    #[arg(long)]
    pub json: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

impl CommandArgs {
    /// Where guest output goes: streamed to ours unless `--json`.
    pub fn sink(&self) -> impl FnMut(Stream, &[u8]) {
        use std::io::Write;
        let stream = !self.json;
        move |s, bytes| {
            if stream {
                let _ = match s {
                    Stream::Stdout => std::io::stdout()
                        .write_all(bytes)
                        .and_then(|_| std::io::stdout().flush()),
                    Stream::Stderr => std::io::stderr().write_all(bytes),
                };
            }
        }
    }
}

#[derive(Args)]
struct DoctorArgs {
    /// Boot an environment end to end and report the boot time.
    #[arg(long)]
    boot: bool,
    /// Environment to boot with --boot.
    #[arg(long, default_value = pyro_workspace::DEFAULT_ENV)]
    env: String,
    /// Guest memory for the boot, in MiB.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(64..=65536))]
    mem_mib: u32,
    /// vCPUs for the boot.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=32))]
    vcpus: u8,
    /// Copy the guest console to stderr during the boot.
    #[arg(long)]
    console: bool,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum EnvCommand {
    /// List the catalog and what is built.
    List(JsonFlag),
    /// Build an environment and the guest kernel (minutes the first time).
    Pull(EnvName),
    /// Show an environment's packages, image and kernel.
    Inspect(EnvName),
    /// Remove unfinished builds, artifacts no longer used, and warm-start
    /// snapshots this pyro cannot restore.
    Prune(JsonFlag),
}

#[derive(Args)]
struct JsonFlag {
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct EnvName {
    /// Environment name, e.g. debian:12 (see `pyro env list`).
    env: String,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
}

impl Cli {
    /// Whether errors should be printed as JSON.
    pub fn json(&self) -> bool {
        match &self.command {
            Command::Doctor(a) => a.json,
            Command::Env(EnvCommand::List(a) | EnvCommand::Prune(a)) => a.json,
            Command::Env(EnvCommand::Pull(a) | EnvCommand::Inspect(a)) => a.json,
            Command::Run(a) => a.cmd.json,
            Command::Workspace(w) => w.json(),
            Command::Mcp(_) => false,
        }
    }
}

/// Runs a command; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32, Error> {
    let pyro = Pyro::from_env();
    match cli.command {
        Command::Doctor(args) => Ok(doctor(&pyro, &args)),
        Command::Run(args) => run_command(&pyro, &args),
        Command::Workspace(cmd) => crate::workspace::run(&pyro, cmd),
        Command::Mcp(cmd) => crate::mcp::run(pyro, cmd),
        Command::Env(EnvCommand::List(a)) => {
            let list = pyro.env_list();
            if a.json {
                output::json(&list);
            } else {
                for e in &list {
                    let state = if e.installed {
                        "installed"
                    } else {
                        "not installed"
                    };
                    println!("{:<16} [{state}] {}", e.name, e.description);
                }
            }
            Ok(0)
        }
        Command::Env(EnvCommand::Pull(a)) => {
            eprintln!("[pull] environment={} phase=build", a.env);
            let detail = pyro.env_pull(&a.env, &StderrProgress::new())?;
            eprintln!("[pull] environment={} phase=ready", a.env);
            print_detail(&detail, a.json);
            Ok(0)
        }
        Command::Env(EnvCommand::Inspect(a)) => {
            print_detail(&pyro.env_inspect(&a.env)?, a.json);
            Ok(0)
        }
        Command::Env(EnvCommand::Prune(a)) => {
            let report = pyro.env_prune()?;
            if a.json {
                output::json(&report);
            } else {
                let noun = if report.count == 1 {
                    "entry"
                } else {
                    "entries"
                };
                println!("Deleted {} cached {noun}.", report.count);
                for p in &report.deleted {
                    println!("- {}", output::path(p));
                }
            }
            Ok(0)
        }
    }
}

fn run_command(pyro: &Pyro, args: &RunArgs) -> Result<i32, Error> {
    let opts = RunOptions {
        environment: args.env.clone(),
        vcpus: args.vcpus,
        mem_mib: args.mem_mib,
        timeout: Duration::from_secs(args.cmd.timeout_seconds),
        cold: args.cold,
        ..RunOptions::default()
    };
    let result = pyro.run(
        &opts,
        &args.cmd.command,
        &StderrProgress::new(),
        args.cmd.sink(),
    )?;
    if args.cmd.json {
        output::json(&result);
    }
    let t = &result.timings;
    let how = match (result.timed_out, result.exit_code, result.signal) {
        (true, _, _) => "timed_out=true".to_string(),
        (_, Some(code), _) => format!("exit_code={code}"),
        (_, None, Some(sig)) => format!("signal={sig}"),
        _ => "exit_code=unknown".to_string(),
    };
    eprintln!(
        "[run] environment={} {how} start={} duration_ms={} boot_ms={} agent_ms={} total_ms={}",
        result.environment,
        if t.warm { "warm" } else { "cold" },
        result.duration_ms,
        t.boot_ms,
        t.agent_ms,
        t.total_ms
    );
    Ok(result.shell_exit_code())
}

fn doctor(pyro: &Pyro, args: &DoctorArgs) -> i32 {
    let opts = BootOptions {
        environment: args.env.clone(),
        mem_mib: args.mem_mib,
        vcpus: args.vcpus,
        init_timeout: Duration::from_secs(120),
        echo_console: args.console,
        ..BootOptions::default()
    };
    let report = pyro.doctor(args.boot.then_some(&opts), &StderrProgress::new());
    if args.json {
        output::json(&report);
    } else {
        print_doctor(&report);
    }
    let boot = report.boot.as_ref().map_or(String::new(), |b| {
        format!(" to_init_ms={:.0}", b.to_init_ms)
    });
    eprintln!(
        "[doctor] ok={} host={}{boot}",
        report.ok,
        report.host.as_str()
    );
    if report.ok {
        0
    } else {
        1
    }
}

fn print_doctor(r: &DoctorReport) {
    println!("Platform:      {}", r.platform);
    let kvm = match r.kvm.api_version {
        Some(v) => format!("{} usable (API {v})", r.kvm.path),
        None if r.kvm.exists => format!("{} present but not usable", r.kvm.path),
        None => format!("{} missing", r.kvm.path),
    };
    println!("KVM:           {kvm}");
    println!("Host:          {} ({})", r.host.as_str(), r.host_note);
    println!("Cache:         {}", output::path(&r.cache_dir));
    println!("Data:          {}", output::path(&r.data_dir));
    match (&r.kernel.path, &r.kernel.source_version) {
        (Some(p), Some(v)) => println!(
            "Kernel:        built from linux-source-6.1 {v}: {}",
            output::path(p)
        ),
        _ => {
            println!("Kernel:        not built (`pyro env pull` or `pyro doctor --boot` builds it)")
        }
    }
    for (i, e) in r.environments.iter().enumerate() {
        let label = if i == 0 { "Environments:" } else { "" };
        let state = if e.installed {
            "installed"
        } else {
            "not installed"
        };
        println!("{label:<14} {} [{state}]", e.name);
    }
    if let Some(b) = &r.boot {
        println!(
            "Boot:          {} reached init in {:.0} ms (guest clock {:.0} ms), {} MiB, {} vCPU; exit {:?}; total {:.0} ms",
            b.environment, b.to_init_ms, b.guest_init_ms, b.mem_mib, b.vcpus, b.exit, b.total_ms
        );
        println!("Console log:   {}", output::path(&b.console_log));
    }
    println!("Result:        {}", if r.ok { "PASS" } else { "FAIL" });
    for issue in &r.issues {
        println!("  - {issue}");
    }
}

fn print_detail(d: &EnvDetail, json: bool) {
    if json {
        return output::json(d);
    }
    println!("Name:          {}", d.name);
    println!("Description:   {}", d.description);
    println!("Packages:      {}", d.packages.join(", "));
    println!("Installed:     {}", if d.installed { "yes" } else { "no" });
    if let Some(p) = &d.rootfs {
        println!("Root image:    {}", output::path(p));
    }
    if let Some(m) = &d.manifest {
        println!(
            "Suite:         {} ({} packages in all) from {}",
            m.suite, m.installed_packages, m.mirror
        );
        println!(
            "Image size:    {:.1} MiB, built {}",
            m.size as f64 / 1048576.0,
            m.built_at
        );
        for (pkg, ver) in &m.package_versions {
            println!("  {pkg} {ver}");
        }
    }
    if let (Some(p), Some(m)) = (&d.kernel, &d.kernel_manifest) {
        println!(
            "Kernel:        {} {} ({})",
            m.source_package,
            m.source_version,
            output::path(p)
        );
    }
}
