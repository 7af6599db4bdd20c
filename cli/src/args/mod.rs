//! The command tree: everything `pyro` accepts, parsed by clap, and
//! nothing else. `--json` is one global flag (before or after the
//! subcommand); the groups several commands share are in [`shape`], the
//! workspace verbs in [`workspace`], the MCP ones in `crate::mcp`.

pub mod network;
pub mod secret;
pub mod service;
pub mod shape;
pub mod shell;
pub mod workspace;

use clap::{Args, Parser, Subcommand};
use pyro_workspace::Error;
use std::ffi::OsString;
use std::path::PathBuf;

pub use network::NetworkArgs;
pub use shape::{CommandArgs, VmShape};

#[derive(Parser)]
#[command(
    name = "pyro",
    version,
    about = "Disposable Linux microVMs for coding agents and developers"
)]
pub struct Cli {
    /// Print one JSON document: the result, or {"ok":false,"error":{..}}
    /// (before or after the subcommand).
    #[arg(long, global = true, display_order = 900)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Check that this host can run pyro VMs (KVM, host kind, cache); --boot
    /// also builds the default environment if needed and boots it.
    Doctor(DoctorArgs),
    /// Build and inspect environments (root filesystems + guest kernel).
    #[command(subcommand)]
    Env(EnvCommand),
    /// Persistent workspaces: create, exec, files, patch, diff, snapshots.
    #[command(subcommand)]
    Workspace(workspace::WorkspaceCommand),
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
pub struct RunArgs {
    /// Environment to boot (see `pyro env list`).
    #[arg(default_value = pyro_workspace::DEFAULT_ENV)]
    pub env: String,
    #[command(flatten)]
    pub shape: VmShape,
    /// Boot the kernel instead of restoring the environment's warm
    /// snapshot (made on first use; slower, but nothing is reused).
    #[arg(long)]
    pub cold: bool,
    #[arg(
        long,
        default_value_t = pyro_vmm::limits::OUTPUT_BYTES.default,
        value_parser = shape::limited(pyro_vmm::limits::OUTPUT_BYTES),
        help = shape::help(
            "What --json keeps of each output stream, in bytes (the terminal gets it all)",
            pyro_vmm::limits::OUTPUT_BYTES
        )
    )]
    pub max_output_bytes: u64,
    #[command(flatten)]
    pub network: NetworkArgs,
    #[command(flatten)]
    pub cmd: CommandArgs,
}

#[derive(Args)]
pub struct DoctorArgs {
    /// Boot an environment end to end and report the boot time.
    #[arg(long)]
    pub boot: bool,
    /// Environment to boot with --boot.
    #[arg(long, default_value = pyro_workspace::DEFAULT_ENV)]
    pub env: String,
    #[command(flatten)]
    pub shape: VmShape,
    /// Copy the guest console to stderr during the boot.
    #[arg(long)]
    pub console: bool,
}

#[derive(Subcommand)]
pub enum EnvCommand {
    /// List the catalog and what is built.
    List,
    /// Build an environment and the guest kernel (minutes the first time).
    Pull(EnvName),
    /// Show an environment's packages, image and kernel.
    Inspect(EnvName),
    /// Remove unfinished builds, artifacts no longer used, and warm-start
    /// snapshots this pyro cannot restore.
    Prune,
    /// Build a custom environment: a catalog environment plus Debian
    /// packages and an optional setup script, built on this host with
    /// mmdebstrap (minutes; as root). Then use NAME wherever an
    /// environment is accepted (`run NAME`, `workspace create NAME`, MCP).
    Build(EnvBuildArgs),
    /// Delete a custom environment (refused while a workspace uses it).
    Delete(EnvName),
}

#[derive(Args)]
pub struct EnvBuildArgs {
    /// Name of the new environment: a-z, 0-9, `.`, `:`, `-`, not a catalog
    /// name (e.g. myproject:1).
    pub name: String,
    /// The catalog environment to build on.
    #[arg(long, default_value = pyro_workspace::DEFAULT_ENV)]
    pub from: String,
    /// Debian packages to add, comma-separated (and/or repeated).
    #[arg(long, value_delimiter = ',')]
    pub packages: Vec<String>,
    /// A script run once as root in a chroot of the new tree, on this
    /// host, after the packages are installed (its `#!` interpreter, else
    /// /bin/sh). It has the host's network. Only run scripts you trust.
    #[arg(long, value_name = "FILE")]
    pub setup_script: Option<PathBuf>,
    /// One line shown by `env list` (default: what it adds to --from).
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Args)]
pub struct EnvName {
    /// Environment name, e.g. debian:12 (see `pyro env list`).
    pub env: String,
}

impl Cli {
    /// Parses a command line (`argv[0]` first).
    pub fn parse_from_args<I, T>(argv: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let mut cmd = negative_numbers_are_values(Cli::command());
        let cli = Cli::from_arg_matches(&cmd.try_get_matches_from_mut(argv)?)
            .map_err(|e| e.format(&mut cmd))?;
        // clap checks a conflict with a global flag only where the flag
        // is given, so `pyro --json workspace create --id-only` is
        // refused here.
        use workspace::{FileCommand, WorkspaceCommand as W};
        let only = match &cli.command {
            Command::Workspace(W::Create(a)) if a.id_only => Some("--id-only"),
            Command::Workspace(W::File(FileCommand::Read(a))) if a.content_only => {
                Some("--content-only")
            }
            _ => None,
        };
        match only {
            Some(flag) if cli.json => Err(clap::Error::raw(
                clap::error::ErrorKind::ArgumentConflict,
                format!("the argument '{flag}' cannot be used with '--json'\n"),
            )
            .with_cmd(&cmd)),
            _ => Ok(cli),
        }
    }
}

/// `cmd` and its subcommands with negative numbers taken as values: `-5`
/// reaches its argument's parser, which refuses it by name and rule
/// (`shape::number`), instead of being taken for an unknown flag.
fn negative_numbers_are_values(cmd: clap::Command) -> clap::Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    names
        .iter()
        .fold(cmd.allow_negative_numbers(true), |cmd, name| {
            cmd.mut_subcommand(name, negative_numbers_are_values)
        })
}

/// Whether the command line asks for JSON: `--json` anywhere before a
/// `--` (after it, it belongs to the guest command). Used when clap
/// refuses the line, so the usage error can be the JSON error too.
pub fn wants_json(args: &[OsString]) -> bool {
    args.iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--json")
}

/// A usage error clap reported, as the SDK's `invalid_argument` (exit
/// 2): clap's first paragraph, on one line, without its `error:`.
pub fn usage_error(err: &clap::Error) -> Error {
    let text = err.render().to_string();
    // `pyro workspace` alone: clap's text is the help, whose usage line
    // is what says it.
    if err.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let usage = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Usage: "))
            .unwrap_or("pyro <COMMAND>");
        return Error::InvalidArgument(format!(
            "a subcommand is required: {usage} (see --help for the list)"
        ));
    }
    let first = text.split("\n\n").next().unwrap_or_default();
    let message = first
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Error::InvalidArgument(message.trim_start_matches("error: ").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use workspace::WorkspaceCommand;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::parse_from_args(std::iter::once("pyro").chain(args.iter().copied()))
    }

    #[test]
    fn json_is_global_before_or_after_the_subcommand() {
        for args in [
            &["--json", "workspace", "list"][..],
            &["workspace", "--json", "list"],
            &["workspace", "list", "--json"],
            &["env", "list", "--json"],
            &["--json", "doctor"],
            &["run", "--json", "--", "true"],
        ] {
            let cli = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert!(cli.json, "{args:?}");
        }
        assert!(!parse(&["workspace", "list"]).unwrap().json);
        // After `--` it is the guest command's.
        let cli = parse(&["run", "--", "echo", "--json"]).unwrap();
        assert!(!cli.json);
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.cmd.command, ["echo", "--json"]);
    }

    #[test]
    fn id_only_and_content_only_still_conflict_with_json() {
        for args in [
            &["workspace", "create", "--id-only", "--json"][..],
            &["--json", "workspace", "create", "--id-only"],
            &[
                "workspace",
                "file",
                "read",
                "w",
                "p",
                "--content-only",
                "--json",
            ],
            &[
                "--json",
                "workspace",
                "file",
                "read",
                "w",
                "p",
                "--content-only",
            ],
        ] {
            let err = parse(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} parsed"));
            assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        }
    }

    #[test]
    fn the_vm_shape_is_one_group_everywhere() {
        let cli = parse(&["workspace", "create", "--vcpus", "2", "--mem-mib", "256"]).unwrap();
        let Command::Workspace(WorkspaceCommand::Create(create)) = cli.command else {
            panic!("not create")
        };
        let want = VmShape {
            vcpus: 2,
            mem_mib: 256,
        };
        assert_eq!(create.shape, want);
        let Command::Doctor(d) = parse(&["doctor", "--vcpus", "2", "--mem-mib", "256"])
            .unwrap()
            .command
        else {
            panic!("not doctor")
        };
        assert_eq!(d.shape, want);
        let Command::Run(r) = parse(&["run", "--vcpus", "2", "--mem-mib", "256", "--", "true"])
            .unwrap()
            .command
        else {
            panic!("not run")
        };
        assert_eq!(r.shape, want);
    }

    #[test]
    fn usage_errors_become_invalid_argument_in_json_mode() {
        let os = |args: &[&str]| args.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(wants_json(&os(&["pyro", "--json", "run", "--", "x"])));
        assert!(wants_json(&os(&["pyro", "workspace", "list", "--json"])));
        assert!(!wants_json(&os(&["pyro", "run", "--", "echo", "--json"])));

        let err = parse(&["--json", "workspace", "create", "--vcpus", "99"])
            .err()
            .unwrap();
        let e = usage_error(&err);
        assert_eq!(e.kind(), "invalid_argument");
        assert_eq!(
            e.to_string(),
            "invalid value '99' for '--vcpus <VCPUS>': 99 is out of range; it must be 1 to 32"
        );
        let e = usage_error(&parse(&["--json", "workspace"]).err().unwrap());
        assert_eq!(
            e.to_string(),
            "a subcommand is required: pyro workspace [OPTIONS] <COMMAND> (see --help for the list)"
        );
        let e = usage_error(&parse(&["--json", "run"]).err().unwrap());
        assert!(
            e.to_string()
                .starts_with("the following required arguments were not provided: <CMD>"),
            "{e}"
        );
    }
}
