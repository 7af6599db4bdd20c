//! Runs `pyro workspace <verb>`: persistent VMs an agent works in over
//! many steps. Each verb turns its arguments (`crate::args::workspace`)
//! into one SDK call and hands the result to the [`Printer`]
//! (`crate::printer::workspace` says how it reads).

use crate::args::secret::{CreateSecretArgs, SecretCommand};
use crate::args::workspace::{
    DiskCommand, FileCommand, PatchCommand, PortCommand, SnapshotCommand, SyncCommand,
    WorkspaceCommand,
};
use crate::printer::network::PortChanged;
use crate::printer::workspace::{
    CheckpointCreated, CheckpointDeleted, Checkpoints, DiskList, ForkShown, Logs, Read, Shown,
};
use crate::printer::Printer;
use pyro_workspace::secrets::Secret;
use pyro_workspace::{
    secret_from_file, Cancel, CreateOptions, Error, ExecOptions, ForkOptions, NetConfig, Pyro,
    SecretSource, StderrProgress, UpdateOptions,
};
use std::path::Path;

/// Runs a workspace verb; returns the exit code (the command's own for
/// `exec`).
pub fn run(pyro: &Pyro, out: Printer, cmd: WorkspaceCommand) -> Result<i32, Error> {
    use WorkspaceCommand as W;
    let progress = StderrProgress::new();
    match cmd {
        W::Create(a) => {
            let opts = CreateOptions {
                environment: a.env,
                name: a.name,
                labels: a.labels.into_iter().collect(),
                seed_path: a.seed_path,
                vcpus: a.shape.vcpus,
                mem_mib: a.shape.mem_mib,
                ttl_seconds: a.ttl_seconds,
                disk_mib: a.disk_mib,
                system_disk_mib: a.system_disk_mib,
                cold: a.cold,
                network: NetConfig {
                    rules: a.network.rules_publishing(!a.publish.is_empty()),
                    publish: a.publish,
                },
                secrets: create_secrets(&a.secrets)?,
                idle_suspend_seconds: a.idle_suspend_seconds,
                idle_suspend_services: a.idle_suspend_services,
            };
            let w = pyro.workspace_create(&opts, &progress)?;
            out.print(&Shown {
                id_only: a.id_only,
                ..Shown::new("create", &w)
            });
        }
        W::List => out.print(&pyro.workspace_list()),
        W::Update(a) => {
            let opts = UpdateOptions {
                name: a.name,
                clear_name: a.clear_name,
                set_labels: a.labels.into_iter().collect(),
                clear_labels: a.clear_labels,
                network_policy: a.network.network_policy,
                allow_hosts: a.network.allow_hosts(),
                add_hosts: a.network.add_hosts(),
                idle_suspend_seconds: a.idle_suspend_seconds,
                idle_suspend_services: a.idle_suspend_services,
            };
            let w = pyro.workspace_update(&a.id, &opts)?;
            out.print(&Shown {
                network: opts.changes_network(),
                ..Shown::new("update", &w)
            });
        }
        W::Status(a) => out.print(&Shown {
            network: true,
            ..Shown::new("status", &pyro.workspace_status(&a.id)?)
        }),
        W::Stop(a) => {
            let w = if a.keep_memory {
                pyro.workspace_suspend(&a.id)?
            } else {
                pyro.workspace_stop(&a.id)?
            };
            out.print(&Shown::new("stop", &w));
        }
        W::Start(a) => {
            let w = pyro.workspace_start(&a.id, &progress)?;
            out.print(&Shown::new("start", &w));
        }
        W::Delete(a) => out.print(&pyro.workspace_delete(&a.id)?),
        W::Fork(a) => {
            let opts = ForkOptions {
                count: a.count,
                name: a.name,
                labels: a.labels.into_iter().collect(),
            };
            out.print(&ForkShown {
                forked: &pyro.workspace_fork(&a.id, &opts, &progress)?,
                id_only: a.id_only,
            });
        }
        W::Logs(a) => out.print(&Logs {
            workspace: &a.id,
            records: &pyro.workspace_logs(&a.id)?,
            network_refusals: &pyro.workspace_network_refusals(&a.id)?,
        }),
        W::Exec(a) => {
            let sink = out.guest_output();
            let opts = ExecOptions {
                secret_env: a.secret_env.secret_env,
                ..ExecOptions::new(&a.cmd.command, a.cmd.timeout())
            };
            let r = pyro.workspace_exec_with(&a.id, &opts, &Cancel::never(), sink)?;
            out.print(&r);
            return Ok(r.shell_exit_code());
        }
        W::Sync(SyncCommand::Push(a)) => {
            out.print(&pyro.workspace_sync_push(&a.id, &a.source, &a.dest)?);
        }
        W::File(FileCommand::List(a)) => {
            out.print(&pyro.workspace_file_list(&a.id, &a.path, a.recursive)?);
        }
        W::File(FileCommand::Read(a)) => out.print(&Read {
            read: &pyro.workspace_file_read(&a.id, &a.path, a.max_bytes)?,
            content_only: a.content_only,
        }),
        W::Disk(DiskCommand::List(a)) => out.print(&DiskList(&pyro.workspace_disk_list(
            &a.id,
            &a.path,
            a.recursive,
        )?)),
        W::Disk(DiskCommand::Read(a)) => out.print(&Read {
            read: &pyro.workspace_disk_read(&a.id, &a.path, a.max_bytes)?,
            content_only: a.content_only,
        }),
        W::Disk(DiskCommand::Export(a)) => {
            out.print(&pyro.workspace_disk_export(&a.id, &a.output)?);
        }
        W::File(FileCommand::Write(a)) => {
            let content = match (a.text, &a.text_file) {
                (Some(t), _) => t.into_bytes(),
                (None, Some(f)) => read_input(f)?,
                (None, None) => unreachable!("clap requires one"),
            };
            out.print(&pyro.workspace_file_write(&a.id, &a.path, &content)?);
        }
        W::Patch(PatchCommand::Apply(a)) => {
            let text = match (a.patch, &a.patch_file) {
                (Some(t), _) => t,
                (None, Some(f)) => String::from_utf8(read_input(f)?)
                    .map_err(|_| Error::InvalidArgument("the patch is not UTF-8 text".into()))?,
                (None, None) => unreachable!("clap requires one"),
            };
            out.print(&pyro.workspace_patch_apply(&a.id, &text)?);
        }
        W::Diff(a) => out.print(&pyro.workspace_diff(&a.id)?),
        W::Export(a) => out.print(&pyro.workspace_export(&a.id, &a.path, &a.output)?),
        // The SDK's checkpoint calls, in one place.
        W::Snapshot(SnapshotCommand::Create(a)) => {
            out.print(&CheckpointCreated(&pyro.checkpoint_create(&a.id, &a.name)?));
        }
        W::Snapshot(SnapshotCommand::List(a)) => out.print(&Checkpoints {
            workspace: &a.id,
            list: &pyro.checkpoint_list(&a.id)?,
        }),
        W::Snapshot(SnapshotCommand::Delete(a)) => {
            out.print(&CheckpointDeleted(&pyro.checkpoint_delete(&a.id, &a.name)?));
        }
        W::Reset(a) => out.print(&pyro.workspace_reset(&a.id, &a.snapshot, &progress)?),
        W::Port(PortCommand::Publish(a)) => out.print(&PortChanged {
            verb: "publish",
            workspace: &a.id,
            port: &pyro.workspace_port_publish(&a.id, a.port)?,
        }),
        W::Port(PortCommand::List(a)) => out.print(&pyro.workspace_port_list(&a.id)?),
        W::Port(PortCommand::Unpublish(a)) => out.print(&PortChanged {
            verb: "unpublish",
            workspace: &a.id,
            port: &pyro.workspace_port_unpublish(&a.id, a.guest_port)?,
        }),
        W::Shell(cmd) => crate::shell::run(pyro, out, cmd)?,
        W::Service(cmd) => return crate::service::run(pyro, out, cmd),
        W::Secret(SecretCommand::Set(a)) => {
            let secret = match (&a.value, &a.value_file) {
                (Some(v), _) => {
                    Secret::new(&a.name, v.as_bytes()).map_err(Error::InvalidArgument)?
                }
                (None, Some(path)) => secret_from_file(&a.name, path)?,
                (None, None) => secret_from_stdin(&a.name)?,
            };
            let source = if a.value_file.is_some() {
                SecretSource::File
            } else {
                SecretSource::Literal
            };
            let w = pyro.workspace_secret_set(&a.id, &secret, source)?;
            out.print(&Shown::new("secret-set", &w));
        }
        W::Secret(SecretCommand::Unset(a)) => {
            let w = pyro.workspace_secret_unset(&a.id, &a.name)?;
            out.print(&Shown::new("secret-unset", &w));
        }
    }
    Ok(0)
}

/// `--secret NAME=VALUE` and `--secret-file NAME=PATH`, in that order.
fn create_secrets(a: &CreateSecretArgs) -> Result<Vec<(Secret, SecretSource)>, Error> {
    let literal = a.secrets.iter().map(|(name, value)| {
        Secret::new(name, value.as_bytes())
            .map(|s| (s, SecretSource::Literal))
            .map_err(|e| Error::InvalidArgument(format!("--secret: {e}")))
    });
    let files = a.secret_files.iter().map(|(name, path)| {
        secret_from_file(name, Path::new(path)).map(|s| (s, SecretSource::File))
    });
    literal.chain(files).collect()
}

/// A secret's value from stdin (`secret set` without --value): what a
/// pipe gives, or a line typed at a terminal.
fn secret_from_stdin(name: &str) -> Result<Secret, Error> {
    secret_from_file(name, Path::new("/dev/stdin"))
}

/// A host file's bytes, or stdin's for `-`.
fn read_input(path: &Path) -> Result<Vec<u8>, Error> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(|e| Error::Io(format!("stdin: {e}")))?;
        return Ok(buf);
    }
    std::fs::read(path).map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))
}
