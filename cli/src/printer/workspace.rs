//! How the results of `pyro workspace <verb>` read: one [`Render`] per
//! result the SDK returns (a workspace, the list, the command history, an
//! exec record, file listings and reads, patches, diffs, exports,
//! checkpoints, resets). The summary tag is `[workspace-<verb>]`.

use super::network::{self, write_network};
use super::Render;
use pyro_workspace::{
    Checkpoint, CommandRecord, CommandStatus, Deleted, DiffResult, DiskExport, Export, FileList,
    FileRead, FileWrite, Forked, PatchApply, RefusalRecord, Reset, SyncPush, Workspace,
};
use std::io::{self, Write};

/// A workspace after `verb` (create, update, status, stop, start): its
/// one-line form, or only its id (`create --id-only`), with its network
/// lines when asked (`status`, and an `update` of the network).
pub struct Shown<'a> {
    pub verb: &'static str,
    pub workspace: &'a Workspace,
    pub id_only: bool,
    pub network: bool,
}

impl Shown<'_> {
    pub fn new<'a>(verb: &'static str, workspace: &'a Workspace) -> Shown<'a> {
        Shown {
            verb,
            workspace,
            id_only: false,
            network: false,
        }
    }
}

impl Render for Shown<'_> {
    type Json = Workspace;
    fn json(&self) -> &Workspace {
        self.workspace
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.id_only {
            return writeln!(out, "{}", self.workspace.record.workspace_id);
        }
        writeln!(out, "{}", line(self.workspace))?;
        if self.network {
            write_network(self.workspace, out)?;
        }
        Ok(())
    }
    fn summary(&self) -> Option<String> {
        let (w, verb) = (self.workspace, self.verb);
        let r = &w.record;
        let start = match (verb, &r.last_start, r.last_start_ms) {
            ("create" | "start", Some(kind), Some(ms)) => {
                format!(" start={kind} start_ms={ms}")
            }
            _ => String::new(),
        };
        Some(format!(
            "[workspace-{verb}] workspace_id={} state={} environment={} commands={}{start}",
            r.workspace_id, w.state, r.environment, r.command_count
        ))
    }
    fn notes(&self) -> Vec<String> {
        let verb = self.verb;
        let warnings = &self.workspace.warnings;
        warnings
            .iter()
            .map(|w| format!("[workspace-{verb}] warning: {w}"))
            .collect()
    }
}

/// A workspace on one line: id, state, name, environment, activity,
/// labels, secrets' names and, if it stopped by itself, why.
fn line(w: &Workspace) -> String {
    let r = &w.record;
    let labels: Vec<String> = r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let secrets: Vec<&str> = r.secrets.iter().map(|s| s.name.as_str()).collect();
    let state = match w.suspended_by {
        Some(by) => format!("{} ({by})", w.state),
        None => w.state.to_string(),
    };
    format!(
        "{}  [{}]  {}  {}  last_activity={}{}{}{}",
        r.workspace_id,
        state,
        r.name.as_deref().unwrap_or("-"),
        r.environment,
        r.last_activity_at,
        if labels.is_empty() {
            String::new()
        } else {
            format!("  {}", labels.join(","))
        },
        if secrets.is_empty() {
            String::new()
        } else {
            format!("  secrets={}", secrets.join(","))
        },
        w.last_error
            .as_deref()
            .map_or(String::new(), |e| format!("  ({e})")),
    )
}

/// `workspace list`.
impl Render for Vec<Workspace> {
    type Json = [Workspace];
    fn json(&self) -> &[Workspace] {
        self
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        for w in self {
            writeln!(out, "{}", line(w))?;
        }
        Ok(())
    }
    fn summary(&self) -> Option<String> {
        Some(format!("[workspace-list] count={}", self.len()))
    }
}

/// `workspace fork`: the children, one line each (or only their ids).
pub struct ForkShown<'a> {
    pub forked: &'a Forked,
    pub id_only: bool,
}

impl Render for ForkShown<'_> {
    type Json = Forked;
    fn json(&self) -> &Forked {
        self.forked
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        for child in &self.forked.children {
            match self.id_only {
                true => writeln!(out, "{}", child.record.workspace_id)?,
                false => writeln!(out, "{}", line(child))?,
            }
        }
        Ok(())
    }
    fn summary(&self) -> Option<String> {
        let f = self.forked;
        let paused = f
            .source_paused_ms
            .map_or(String::new(), |ms| format!(" source_paused_ms={ms:.0}"));
        Some(format!(
            "[workspace-fork] source_id={} source_state={} children={} duration_ms={}{paused}",
            f.source_id,
            f.source_state,
            f.children.len(),
            f.duration_ms
        ))
    }
}

impl Render for Deleted {
    type Json = Deleted;
    fn json(&self) -> &Deleted {
        self
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "Deleted workspace {}", self.workspace_id)
    }
    fn summary(&self) -> Option<String> {
        Some(format!(
            "[workspace-delete] workspace_id={} deleted=true",
            self.workspace_id
        ))
    }
}

/// `workspace logs`: the history of the workspace the user named, then
/// what its running VM's network policy refused lately (human output
/// only: `--json` keeps the bare list of commands, and `status --json`
/// has the refusals in `network_status.recent_refusals`).
pub struct Logs<'a> {
    pub workspace: &'a str,
    pub records: &'a [CommandRecord],
    pub network_refusals: &'a [RefusalRecord],
}

impl Render for Logs<'_> {
    type Json = [CommandRecord];
    fn json(&self) -> &[CommandRecord] {
        self.records
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        for r in self.records {
            let how = match r.status {
                CommandStatus::Finished => format!(
                    "exit={}{}",
                    r.shell_exit_code(),
                    if r.cancelled { " cancelled" } else { "" }
                ),
                other => other.to_string(),
            };
            writeln!(
                out,
                "#{} {} {how} duration_ms={} $ {}",
                r.sequence,
                r.started_at,
                r.duration_ms,
                r.command.join(" ")
            )?;
            write!(out, "{}", String::from_utf8_lossy(&r.stdout))?;
            write!(out, "{}", String::from_utf8_lossy(&r.stderr))?;
        }
        for r in self.network_refusals {
            writeln!(
                out,
                "network refused: {} {}",
                network::source(r.source),
                network::refusal(r)
            )?;
        }
        Ok(())
    }
    fn summary(&self) -> Option<String> {
        Some(format!(
            "[workspace-logs] workspace_id={} count={} network_refusals={}",
            self.workspace,
            self.records.len(),
            self.network_refusals.len()
        ))
    }
}

/// `workspace exec`: the output streamed while it ran.
impl Render for CommandRecord {
    type Json = CommandRecord;
    fn json(&self) -> &CommandRecord {
        self
    }
    fn human(&self, _: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }
    fn summary(&self) -> Option<String> {
        Some(format!(
            "[workspace-exec] workspace_id={} sequence={} exit_code={} timed_out={} duration_ms={}{}",
            self.workspace_id,
            self.sequence,
            self.shell_exit_code(),
            self.timed_out,
            self.duration_ms,
            self.resumed_ms
                .map_or(String::new(), |ms| format!(" resumed_ms={ms}")),
        ))
    }
}

impl Render for SyncPush {
    type Json = SyncPush;
    fn json(&self) -> &SyncPush {
        self
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "Pushed {} to {}",
            self.source.display(),
            self.upload.dest
        )
    }
    fn summary(&self) -> Option<String> {
        let u = &self.upload;
        Some(format!(
            "[workspace-sync-push] workspace_id={} dest={} entry_count={} bytes_written={}",
            self.workspace_id, u.dest, u.entry_count, u.bytes_written
        ))
    }
}

impl Render for FileList {
    type Json = FileList;
    fn json(&self) -> &FileList {
        self
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        write_listing(self, "Workspace path", out)
    }
    fn summary(&self) -> Option<String> {
        Some(listing_summary(self, "file-list"))
    }
}

/// `disk list`: a listing of a stopped workspace's disk.
pub struct DiskList<'a>(pub &'a FileList);

impl Render for DiskList<'_> {
    type Json = FileList;
    fn json(&self) -> &FileList {
        self.0
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        write_listing(self.0, "Workspace disk path", out)
    }
    fn summary(&self) -> Option<String> {
        Some(listing_summary(self.0, "disk-list"))
    }
}

/// A header naming the path, then one line per entry.
fn write_listing(list: &FileList, header: &str, out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "{header}: {} (recursive={})",
        list.path,
        if list.recursive { "yes" } else { "no" }
    )?;
    for e in &list.entries {
        let kind = format!("{:?}", e.artifact_type).to_lowercase();
        let link = e
            .link_target
            .as_deref()
            .map_or(String::new(), |t| format!(" -> {t}"));
        writeln!(out, "{} [{kind}] size={}{link}", e.path, e.size_bytes)?;
    }
    Ok(())
}

fn listing_summary(list: &FileList, verb: &str) -> String {
    format!(
        "[workspace-{verb}] workspace_id={} path={} count={} truncated={}",
        list.workspace_id,
        list.path,
        list.entries.len(),
        list.truncated
    )
}

/// `disk export`.
impl Render for DiskExport {
    type Json = DiskExport;
    fn json(&self) -> &DiskExport {
        self
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "Exported the /workspace disk of {} to {}",
            self.workspace_id,
            self.output_path.display()
        )
    }
    fn summary(&self) -> Option<String> {
        Some(format!(
            "[workspace-disk-export] workspace_id={} output_path={} disk_format={} bytes_written={}",
            self.workspace_id,
            self.output_path.display(),
            self.disk_format,
            self.bytes_written
        ))
    }
}

/// `workspace file read`: the content, ended by a newline for a human
/// (`--content-only`: byte for byte, and no summary).
pub struct Read<'a> {
    pub read: &'a FileRead,
    pub content_only: bool,
}

impl Render for Read<'_> {
    type Json = FileRead;
    fn json(&self) -> &FileRead {
        self.read
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        let content = &self.read.content;
        out.write_all(content)?;
        if !self.content_only && !content.ends_with(b"\n") && !content.is_empty() {
            out.write_all(b"\n")?;
        }
        Ok(())
    }
    fn summary(&self) -> Option<String> {
        let r = self.read;
        (!self.content_only).then(|| {
            format!(
                "[workspace-file-read] workspace_id={} path={} size_bytes={} truncated={}",
                r.workspace_id, r.path, r.size_bytes, r.truncated
            )
        })
    }
}

impl Render for FileWrite {
    type Json = FileWrite;
    fn json(&self) -> &FileWrite {
        self
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "Wrote {} ({} bytes)", self.path, self.bytes_written)
    }
    fn summary(&self) -> Option<String> {
        Some(format!(
            "[workspace-file-write] workspace_id={} path={} bytes_written={}",
            self.workspace_id, self.path, self.bytes_written
        ))
    }
}

impl Render for PatchApply {
    type Json = PatchApply;
    fn json(&self) -> &PatchApply {
        self
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        for e in &self.entries {
            writeln!(out, "{} {}", e.status, e.path)?;
        }
        Ok(())
    }
    fn summary(&self) -> Option<String> {
        let s = &self.summary;
        Some(format!(
            "[workspace-patch] workspace_id={} total={} added={} modified={} deleted={}",
            self.workspace_id, s.total, s.added, s.modified, s.deleted
        ))
    }
}

impl Render for DiffResult {
    type Json = DiffResult;
    fn json(&self) -> &DiffResult {
        self
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        if !self.changed {
            return writeln!(out, "No workspace changes.");
        }
        for e in self.entries.iter().filter(|e| e.text_patch.is_none()) {
            writeln!(out, "# {} {} (no text patch)", e.status, e.path)?;
        }
        write!(out, "{}", self.patch)
    }
    fn summary(&self) -> Option<String> {
        let s = &self.summary;
        Some(format!(
            "[workspace-diff] workspace_id={} total={} added={} modified={} deleted={} type_changed={} text_patched={} non_text={}",
            self.workspace_id, s.total, s.added, s.modified, s.deleted, s.type_changed, s.text_patched, s.non_text
        ))
    }
}

impl Render for Export {
    type Json = Export;
    fn json(&self) -> &Export {
        self
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "Exported {} to {}",
            self.workspace_path,
            self.output_path.display()
        )
    }
    fn summary(&self) -> Option<String> {
        Some(format!(
            "[workspace-export] workspace_id={} workspace_path={} output_path={} artifact_type={} entry_count={} bytes_written={}",
            self.workspace_id,
            self.workspace_path,
            self.output_path.display(),
            format!("{:?}", self.artifact_type).to_lowercase(),
            self.entry_count,
            self.bytes_written
        ))
    }
}

/// `workspace snapshot create`.
pub struct CheckpointCreated<'a>(pub &'a Checkpoint);

impl Render for CheckpointCreated<'_> {
    type Json = Checkpoint;
    fn json(&self) -> &Checkpoint {
        self.0
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "Created snapshot {}", self.0.name)
    }
    fn summary(&self) -> Option<String> {
        let s = self.0;
        Some(format!(
            "[workspace-snapshot-create] workspace_id={} snapshot_name={} kind={} bytes_written={}",
            s.workspace_id, s.name, s.kind, s.bytes_written
        ))
    }
}

/// `workspace snapshot delete`.
pub struct CheckpointDeleted<'a>(pub &'a Checkpoint);

impl Render for CheckpointDeleted<'_> {
    type Json = Checkpoint;
    fn json(&self) -> &Checkpoint {
        self.0
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "Deleted workspace snapshot: {}", self.0.name)
    }
    fn summary(&self) -> Option<String> {
        Some(format!(
            "[workspace-snapshot-delete] workspace_id={} snapshot_name={}",
            self.0.workspace_id, self.0.name
        ))
    }
}

/// `workspace snapshot list` of the workspace the user named.
pub struct Checkpoints<'a> {
    pub workspace: &'a str,
    pub list: &'a [Checkpoint],
}

impl Render for Checkpoints<'_> {
    type Json = [Checkpoint];
    fn json(&self) -> &[Checkpoint] {
        self.list
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        for s in self.list {
            writeln!(
                out,
                "{} [{}] created_at={} bytes_written={} deletable={}",
                s.name,
                s.kind,
                s.created_at,
                s.bytes_written,
                if s.deletable { "yes" } else { "no" }
            )?;
        }
        Ok(())
    }
    fn summary(&self) -> Option<String> {
        Some(format!(
            "[workspace-snapshot-list] workspace_id={} count={}",
            self.workspace,
            self.list.len()
        ))
    }
}

impl Render for Reset {
    type Json = Reset;
    fn json(&self) -> &Reset {
        self
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{}", line(&self.workspace))?;
        writeln!(out, "Reset source: {}", self.snapshot)
    }
    fn summary(&self) -> Option<String> {
        Some(format!(
            "[workspace-reset] workspace_id={} snapshot={} bytes_restored={} state={}",
            self.workspace_id, self.snapshot, self.bytes_restored, self.workspace.state
        ))
    }
}
