//! `pyro workspace ...`: persistent VMs an agent works in over many steps.
//! Each verb calls one SDK method and prints its result: human text on
//! stdout and a `[workspace-<verb>] key=value` line on stderr, or one JSON
//! document with `--json`.

use crate::output;
use clap::{Args, Subcommand};
use pyro_workspace::{
    CreateOptions, Error, Pyro, StderrProgress, UpdateOptions, Workspace, DEFAULT_DISK_MIB,
    DEFAULT_FILE_READ_BYTES,
};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Subcommand)]
pub enum WorkspaceCommand {
    /// Create a workspace (a VM with a persistent /workspace) and start it.
    Create(CreateArgs),
    /// List workspaces, newest activity first.
    List(Json),
    /// Change a workspace's name or labels.
    Update(UpdateArgs),
    /// Show one workspace.
    Status(IdArgs),
    /// Show the commands run in a workspace, with their output.
    Logs(IdArgs),
    /// Stop the VM; /workspace stays on its disk.
    Stop(StopArgs),
    /// Boot a stopped workspace again (or resume a suspended one).
    Start(IdArgs),
    /// Stop and remove a workspace and everything in it.
    Delete(IdArgs),
    /// Run a command in /workspace: `pyro workspace exec ID -- CMD ARGS...`.
    Exec(ExecArgs),
    /// Copy host files into the workspace.
    #[command(subcommand)]
    Sync(SyncCommand),
    /// List, read and write files in /workspace.
    #[command(subcommand)]
    File(FileCommand),
    /// Apply a unified diff (as `git diff` prints it) to /workspace.
    #[command(subcommand)]
    Patch(PatchCommand),
    /// Show what changed in /workspace since create: a summary and a
    /// patch `git apply` accepts.
    Diff(IdArgs),
    /// Copy a file or directory out of /workspace to the host.
    Export(ExportArgs),
    /// Checkpoints of /workspace.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Restore /workspace exactly to a snapshot (default: baseline).
    Reset(ResetArgs),
}

#[derive(Args)]
pub struct Json {
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct IdArgs {
    /// Workspace id (or its unique name).
    id: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct StopArgs {
    /// Workspace id (or its unique name).
    id: String,
    /// Keep the VM's memory on disk (about the guest memory in use):
    /// the next `start` resumes the same machine, running processes
    /// included, instead of starting a fresh one.
    #[arg(long)]
    keep_memory: bool,
    #[arg(long)]
    json: bool,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("label {s:?} must be KEY=VALUE"))
}

#[derive(Args)]
pub struct CreateArgs {
    /// Environment (see `pyro env list`).
    #[arg(default_value = pyro_workspace::DEFAULT_ENV)]
    env: String,
    /// A name, unique among workspaces: [A-Za-z0-9][A-Za-z0-9._-]{0,63}.
    #[arg(long)]
    name: Option<String>,
    /// A label KEY=VALUE (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Initial /workspace content: a directory, .tar, .tar.gz or .tgz.
    #[arg(long)]
    seed_path: Option<PathBuf>,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=32))]
    vcpus: u8,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(64..=65536))]
    mem_mib: u32,
    /// Stop and remove the workspace this many seconds after create.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    ttl_seconds: Option<u64>,
    /// Size of the /workspace disk in MiB (sparse on the host).
    #[arg(long, default_value_t = DEFAULT_DISK_MIB)]
    disk_mib: u64,
    /// Boot the VM instead of restoring the environment's warm snapshot.
    #[arg(long)]
    cold: bool,
    /// Print only the new workspace's id.
    #[arg(long, conflicts_with = "json")]
    id_only: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct UpdateArgs {
    id: String,
    #[arg(long, conflicts_with = "clear_name")]
    name: Option<String>,
    #[arg(long)]
    clear_name: bool,
    /// Set a label KEY=VALUE (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Remove a label (repeatable).
    #[arg(long = "clear-label")]
    clear_labels: Vec<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ExecArgs {
    id: String,
    #[command(flatten)]
    cmd: crate::commands::CommandArgs,
}

#[derive(Subcommand)]
pub enum SyncCommand {
    /// Copy a host directory or tar (.tar, .tar.gz, .tgz) into /workspace,
    /// all or nothing.
    Push(SyncPushArgs),
}

#[derive(Args)]
pub struct SyncPushArgs {
    id: String,
    source: PathBuf,
    /// Where in the workspace (default /workspace).
    #[arg(long, default_value = "/workspace")]
    dest: String,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum FileCommand {
    /// List a directory (or show a file).
    List(FileListArgs),
    /// Print a file.
    Read(FileReadArgs),
    /// Write a file atomically (parents created, mode kept).
    Write(FileWriteArgs),
}

#[derive(Args)]
pub struct FileListArgs {
    id: String,
    #[arg(default_value = "/workspace")]
    path: String,
    #[arg(long)]
    recursive: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct FileReadArgs {
    id: String,
    path: String,
    /// Read at most this many bytes (1..=1048576).
    #[arg(long, default_value_t = DEFAULT_FILE_READ_BYTES)]
    max_bytes: u64,
    /// Print only the content, byte for byte.
    #[arg(long, conflicts_with = "json")]
    content_only: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct FileWriteArgs {
    id: String,
    path: String,
    /// The content (it may start with `-`).
    #[arg(
        long,
        allow_hyphen_values = true,
        conflicts_with = "text_file",
        required_unless_present = "text_file"
    )]
    text: Option<String>,
    /// Take the content from this host file.
    #[arg(long)]
    text_file: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum PatchCommand {
    /// Apply a patch, all or nothing; exact context required.
    Apply(PatchApplyArgs),
}

#[derive(Args)]
pub struct PatchApplyArgs {
    id: String,
    /// The patch text (it may start with `---`).
    #[arg(
        long,
        allow_hyphen_values = true,
        conflicts_with = "patch_file",
        required_unless_present = "patch_file"
    )]
    patch: Option<String>,
    /// Take the patch from this host file (`-` for stdin).
    #[arg(long)]
    patch_file: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ExportArgs {
    id: String,
    /// The workspace path to copy out.
    path: String,
    /// Host path to create (must not exist).
    #[arg(long)]
    output: PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum SnapshotCommand {
    /// Checkpoint /workspace as it is now.
    Create(SnapshotArgs),
    /// List snapshots (baseline first).
    List(IdArgs),
    /// Delete a named snapshot.
    Delete(SnapshotArgs),
}

#[derive(Args)]
pub struct SnapshotArgs {
    id: String,
    name: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ResetArgs {
    id: String,
    #[arg(long, default_value = "baseline")]
    snapshot: String,
    #[arg(long)]
    json: bool,
}

impl WorkspaceCommand {
    pub fn json(&self) -> bool {
        use WorkspaceCommand as W;
        match self {
            W::Create(a) => a.json,
            W::List(a) => a.json,
            W::Update(a) => a.json,
            W::Status(a) | W::Logs(a) | W::Start(a) | W::Delete(a) | W::Diff(a) => a.json,
            W::Stop(a) => a.json,
            W::Exec(a) => a.cmd.json,
            W::Sync(SyncCommand::Push(a)) => a.json,
            W::File(FileCommand::List(a)) => a.json,
            W::File(FileCommand::Read(a)) => a.json,
            W::File(FileCommand::Write(a)) => a.json,
            W::Patch(PatchCommand::Apply(a)) => a.json,
            W::Export(a) => a.json,
            W::Snapshot(SnapshotCommand::Create(a) | SnapshotCommand::Delete(a)) => a.json,
            W::Snapshot(SnapshotCommand::List(a)) => a.json,
            W::Reset(a) => a.json,
        }
    }
}

fn line(w: &Workspace) -> String {
    let r = &w.record;
    let labels: Vec<String> = r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{}  [{}]  {}  {}  last_activity={}{}{}",
        r.workspace_id,
        w.state,
        r.name.as_deref().unwrap_or("-"),
        r.environment,
        r.last_activity_at,
        if labels.is_empty() {
            String::new()
        } else {
            format!("  {}", labels.join(","))
        },
        w.last_error
            .as_deref()
            .map_or(String::new(), |e| format!("  ({e})")),
    )
}

fn summary(verb: &str, w: &Workspace) {
    let r = &w.record;
    let start = match (verb, &r.last_start, r.last_start_ms) {
        ("create" | "start", Some(kind), Some(ms)) => {
            format!(" start={kind} start_ms={ms}")
        }
        _ => String::new(),
    };
    eprintln!(
        "[workspace-{verb}] workspace_id={} state={} environment={} commands={}{start}",
        r.workspace_id, w.state, r.environment, r.command_count
    );
}

fn show(verb: &str, w: &Workspace, json: bool) {
    if json {
        output::json(w);
    } else {
        println!("{}", line(w));
    }
    summary(verb, w);
}

fn read_input(path: &PathBuf) -> Result<Vec<u8>, Error> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(|e| Error::Io(format!("stdin: {e}")))?;
        return Ok(buf);
    }
    std::fs::read(path).map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))
}

pub fn run(pyro: &Pyro, cmd: WorkspaceCommand) -> Result<i32, Error> {
    use WorkspaceCommand as W;
    let progress = StderrProgress::new();
    match cmd {
        W::Create(a) => {
            let opts = CreateOptions {
                environment: a.env,
                name: a.name,
                labels: a.labels.into_iter().collect::<BTreeMap<_, _>>(),
                seed_path: a.seed_path,
                vcpus: a.vcpus,
                mem_mib: a.mem_mib,
                ttl_seconds: a.ttl_seconds,
                disk_mib: a.disk_mib,
                cold: a.cold,
            };
            let w = pyro.workspace_create(&opts, &progress)?;
            if a.id_only {
                println!("{}", w.record.workspace_id);
                summary("create", &w);
            } else {
                show("create", &w, a.json);
            }
        }
        W::List(a) => {
            let all = pyro.workspace_list();
            if a.json {
                output::json(&all);
            } else {
                for w in &all {
                    println!("{}", line(w));
                }
            }
            eprintln!("[workspace-list] count={}", all.len());
        }
        W::Update(a) => {
            let opts = UpdateOptions {
                name: a.name,
                clear_name: a.clear_name,
                set_labels: a.labels.into_iter().collect(),
                clear_labels: a.clear_labels,
            };
            show("update", &pyro.workspace_update(&a.id, &opts)?, a.json);
        }
        W::Status(a) => show("status", &pyro.workspace_status(&a.id)?, a.json),
        W::Stop(a) if a.keep_memory => show("stop", &pyro.workspace_suspend(&a.id)?, a.json),
        W::Stop(a) => show("stop", &pyro.workspace_stop(&a.id)?, a.json),
        W::Start(a) => show("start", &pyro.workspace_start(&a.id, &progress)?, a.json),
        W::Delete(a) => {
            let d = pyro.workspace_delete(&a.id)?;
            if a.json {
                output::json(&d);
            } else {
                println!("Deleted workspace {}", d.workspace_id);
            }
            eprintln!(
                "[workspace-delete] workspace_id={} deleted=true",
                d.workspace_id
            );
        }
        W::Logs(a) => {
            let logs = pyro.workspace_logs(&a.id)?;
            if a.json {
                output::json(&logs);
            } else {
                for r in &logs {
                    println!(
                        "#{} {} exit={}{} duration_ms={} $ {}",
                        r.sequence,
                        r.started_at,
                        r.shell_exit_code(),
                        if r.cancelled { " cancelled" } else { "" },
                        r.duration_ms,
                        r.command.join(" ")
                    );
                    print!("{}", String::from_utf8_lossy(&r.stdout));
                    print!("{}", String::from_utf8_lossy(&r.stderr));
                }
            }
            eprintln!(
                "[workspace-logs] workspace_id={} count={}",
                a.id,
                logs.len()
            );
        }
        W::Exec(a) => {
            let r = pyro.workspace_exec(
                &a.id,
                &a.cmd.command,
                Duration::from_secs(a.cmd.timeout_seconds),
                a.cmd.sink(),
            )?;
            if a.cmd.json {
                output::json(&r);
            }
            eprintln!(
                "[workspace-exec] workspace_id={} sequence={} exit_code={} timed_out={} duration_ms={}",
                r.workspace_id,
                r.sequence,
                r.shell_exit_code(),
                r.timed_out,
                r.duration_ms
            );
            return Ok(r.shell_exit_code());
        }
        W::Sync(SyncCommand::Push(a)) => {
            let r = pyro.workspace_sync_push(&a.id, &a.source, &a.dest)?;
            if a.json {
                output::json(&r);
            } else {
                println!("Pushed {} to {}", a.source.display(), r.upload.dest);
            }
            eprintln!(
                "[workspace-sync-push] workspace_id={} dest={} entry_count={} bytes_written={}",
                r.workspace_id, r.upload.dest, r.upload.entry_count, r.upload.bytes_written
            );
        }
        W::File(FileCommand::List(a)) => {
            let r = pyro.workspace_file_list(&a.id, &a.path, a.recursive)?;
            if a.json {
                output::json(&r);
            } else {
                println!(
                    "Workspace path: {} (recursive={})",
                    r.path,
                    if a.recursive { "yes" } else { "no" }
                );
                for e in &r.entries {
                    let kind = format!("{:?}", e.artifact_type).to_lowercase();
                    let link = e
                        .link_target
                        .as_deref()
                        .map_or(String::new(), |t| format!(" -> {t}"));
                    println!("{} [{kind}] size={}{link}", e.path, e.size_bytes);
                }
            }
            eprintln!(
                "[workspace-file-list] workspace_id={} path={} count={} truncated={}",
                r.workspace_id,
                r.path,
                r.entries.len(),
                r.truncated
            );
        }
        W::File(FileCommand::Read(a)) => {
            let r = pyro.workspace_file_read(&a.id, &a.path, a.max_bytes)?;
            if a.json {
                output::json(&r);
            } else {
                let mut out = std::io::stdout();
                let _ = out.write_all(&r.content);
                if !a.content_only && !r.content.ends_with(b"\n") && !r.content.is_empty() {
                    let _ = out.write_all(b"\n");
                }
                let _ = out.flush();
            }
            if !a.content_only {
                eprintln!(
                    "[workspace-file-read] workspace_id={} path={} size_bytes={} truncated={}",
                    r.workspace_id, r.path, r.size_bytes, r.truncated
                );
            }
        }
        W::File(FileCommand::Write(a)) => {
            let content = match (&a.text, &a.text_file) {
                (Some(t), _) => t.clone().into_bytes(),
                (None, Some(f)) => read_input(f)?,
                (None, None) => unreachable!("clap requires one"),
            };
            let r = pyro.workspace_file_write(&a.id, &a.path, &content)?;
            if a.json {
                output::json(&r);
            } else {
                println!("Wrote {} ({} bytes)", r.path, r.bytes_written);
            }
            eprintln!(
                "[workspace-file-write] workspace_id={} path={} bytes_written={}",
                r.workspace_id, r.path, r.bytes_written
            );
        }
        W::Patch(PatchCommand::Apply(a)) => {
            let text = match (&a.patch, &a.patch_file) {
                (Some(t), _) => t.clone(),
                (None, Some(f)) => String::from_utf8(read_input(f)?)
                    .map_err(|_| Error::InvalidArgument("the patch is not UTF-8 text".into()))?,
                (None, None) => unreachable!("clap requires one"),
            };
            let r = pyro.workspace_patch_apply(&a.id, &text)?;
            if a.json {
                output::json(&r);
            } else {
                for e in &r.entries {
                    println!("{} {}", e.status, e.path);
                }
            }
            eprintln!(
                "[workspace-patch] workspace_id={} total={} added={} modified={} deleted={}",
                r.workspace_id,
                r.summary.total,
                r.summary.added,
                r.summary.modified,
                r.summary.deleted
            );
        }
        W::Diff(a) => {
            let r = pyro.workspace_diff(&a.id)?;
            if a.json {
                output::json(&r);
            } else if !r.changed {
                println!("No workspace changes.");
            } else {
                for e in r.entries.iter().filter(|e| e.text_patch.is_none()) {
                    println!("# {} {} (no text patch)", e.status, e.path);
                }
                print!("{}", r.patch);
            }
            let s = &r.summary;
            eprintln!(
                "[workspace-diff] workspace_id={} total={} added={} modified={} deleted={} type_changed={} text_patched={} non_text={}",
                r.workspace_id, s.total, s.added, s.modified, s.deleted, s.type_changed, s.text_patched, s.non_text
            );
        }
        W::Export(a) => {
            let r = pyro.workspace_export(&a.id, &a.path, &a.output)?;
            if a.json {
                output::json(&r);
            } else {
                println!(
                    "Exported {} to {}",
                    r.workspace_path,
                    r.output_path.display()
                );
            }
            eprintln!(
                "[workspace-export] workspace_id={} workspace_path={} output_path={} artifact_type={} entry_count={} bytes_written={}",
                r.workspace_id,
                r.workspace_path,
                r.output_path.display(),
                format!("{:?}", r.artifact_type).to_lowercase(),
                r.entry_count,
                r.bytes_written
            );
        }
        W::Snapshot(SnapshotCommand::Create(a)) => {
            let s = pyro.checkpoint_create(&a.id, &a.name)?;
            if a.json {
                output::json(&s);
            } else {
                println!("Created snapshot {}", s.name);
            }
            eprintln!(
                "[workspace-snapshot-create] workspace_id={} snapshot_name={} kind={} bytes_written={}",
                s.workspace_id, s.name, s.kind, s.bytes_written
            );
        }
        W::Snapshot(SnapshotCommand::List(a)) => {
            let all = pyro.checkpoint_list(&a.id)?;
            if a.json {
                output::json(&all);
            } else {
                for s in &all {
                    println!(
                        "{} [{}] created_at={} bytes_written={} deletable={}",
                        s.name,
                        s.kind,
                        s.created_at,
                        s.bytes_written,
                        if s.deletable { "yes" } else { "no" }
                    );
                }
            }
            eprintln!(
                "[workspace-snapshot-list] workspace_id={} count={}",
                a.id,
                all.len()
            );
        }
        W::Snapshot(SnapshotCommand::Delete(a)) => {
            let s = pyro.checkpoint_delete(&a.id, &a.name)?;
            if a.json {
                output::json(&s);
            } else {
                println!("Deleted workspace snapshot: {}", s.name);
            }
            eprintln!(
                "[workspace-snapshot-delete] workspace_id={} snapshot_name={}",
                s.workspace_id, s.name
            );
        }
        W::Reset(a) => {
            let r = pyro.workspace_reset(&a.id, &a.snapshot, &progress)?;
            if a.json {
                output::json(&r);
            } else {
                println!("{}", line(&r.workspace));
                println!("Reset source: {}", r.snapshot);
            }
            eprintln!(
                "[workspace-reset] workspace_id={} snapshot={} bytes_restored={} state={}",
                r.workspace_id, r.snapshot, r.bytes_restored, r.workspace.state
            );
        }
    }
    Ok(0)
}
