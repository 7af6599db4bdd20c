//! `diff`: the live /workspace against the create-time baseline.
//!
//! The baseline is `baseline.tar`, packed on the host from the seed at
//! create time, so it never needs the guest. The live side ([`Live`])
//! comes from the frozen disk image on the host (`host_read.rs`), or
//! from the agent: one recursive listing first, then one pass over the tar and the
//! content (of both sides) of only those files whose size, mode or mtime
//! differ from the baseline (git's stat check;
//! contents are then compared byte for byte, so a touched but unchanged
//! file is not reported). Directories are not entries, as in git.
//!
//! Contents are compared only up to [`DIFF_CONTENT_BYTES`] a file (both
//! sides are held in host memory, and the live side comes from an
//! untrusted guest): a bigger file whose metadata changed is reported
//! modified, without a patch.

use super::host_read::ServedBy;
use super::image_reader::ImageReader;
use crate::guest::GuestClient;
use crate::Error;
use pyro_patch::unified_diff;
use pyro_proto::rpc::{workspace_relative, ArtifactType, FileInfo};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

/// The largest file whose contents diff compares and patches.
pub const DIFF_CONTENT_BYTES: u64 = 8 << 20;

#[derive(Debug, Clone, Default, Serialize)]
pub struct DiffSummary {
    pub total: u64,
    pub added: u64,
    pub modified: u64,
    pub deleted: u64,
    pub type_changed: u64,
    /// Entries with a text patch.
    pub text_patched: u64,
    /// Entries listed without one (binary files, symlinks).
    pub non_text: u64,
}

super::records::words! {
    /// How an entry differs from the baseline.
    pub enum DiffStatus {
        Added = "added",
        Modified = "modified",
        Deleted = "deleted",
        /// A file became a symlink, or the other way round.
        TypeChanged = "type_changed",
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DiffEntry {
    /// Relative to /workspace.
    pub path: String,
    pub status: DiffStatus,
    /// What it is now (what it was, for a deleted entry).
    pub artifact_type: ArtifactType,
    pub text_patch: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiffResult {
    pub workspace_id: String,
    pub changed: bool,
    pub summary: DiffSummary,
    pub entries: Vec<DiffEntry>,
    /// Every text patch, concatenated: `git apply` takes it on a copy of
    /// the baseline.
    pub patch: String,
    /// Where the live side was read.
    pub served_by: ServedBy,
}

/// The live /workspace a diff reads.
pub(super) trait Live {
    fn served_by(&self) -> ServedBy;
    /// Every entry below /workspace, and whether there were more than
    /// a listing holds.
    fn list_all(&mut self) -> Result<(Vec<FileInfo>, bool), Error>;
    /// At most `max` bytes of file `rel`, and whether it holds more.
    fn read_at_most(&mut self, rel: &str, max: u64) -> Result<(Vec<u8>, bool), Error>;
}

impl Live for GuestClient {
    fn served_by(&self) -> ServedBy {
        ServedBy::GuestAgent
    }

    fn list_all(&mut self) -> Result<(Vec<FileInfo>, bool), Error> {
        let listing = self.list("", true)?;
        Ok((listing.entries, listing.truncated))
    }

    fn read_at_most(&mut self, rel: &str, max: u64) -> Result<(Vec<u8>, bool), Error> {
        let (bytes, read) = self.read_to_vec(rel, max)?;
        Ok((bytes, read.truncated))
    }
}

/// A frozen workspace's disk image, read on the host.
impl Live for ImageReader {
    fn served_by(&self) -> ServedBy {
        ServedBy::HostImage
    }

    fn list_all(&mut self) -> Result<(Vec<FileInfo>, bool), Error> {
        self.list("", true)
    }

    fn read_at_most(&mut self, rel: &str, max: u64) -> Result<(Vec<u8>, bool), Error> {
        let (bytes, size) = self.read(rel, max)?;
        let more = size > bytes.len() as u64;
        Ok((bytes, more))
    }
}

/// One entry of the baseline.
struct Base {
    kind: ArtifactType,
    size: u64,
    mode: u32,
    mtime: i64,
    link: Option<String>,
    /// The content, kept only for a file the live tree lacks or whose
    /// metadata differs: the only ones a patch can need.
    content: Option<Vec<u8>>,
}

impl Base {
    /// Whether the live entry `l` may differ from this one: another type,
    /// or a file whose size, mode or mtime changed (git's stat check).
    fn differs(&self, l: &FileInfo) -> bool {
        self.kind != l.artifact_type
            || (self.kind == ArtifactType::File
                && (self.size != l.size_bytes || self.mode != l.mode || self.mtime != l.mtime))
    }
}

fn tar_error(e: std::io::Error) -> Error {
    Error::Io(format!("baseline archive: {e}"))
}

/// The baseline's entries, in one pass over its tar, with the contents of
/// the files `live` suggests changed.
fn load_baseline(
    tar: &Path,
    live: &BTreeMap<String, FileInfo>,
) -> Result<BTreeMap<String, Base>, Error> {
    let file =
        std::fs::File::open(tar).map_err(|e| Error::Io(format!("{}: {e}", tar.display())))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut out = BTreeMap::new();
    for entry in archive.entries().map_err(tar_error)? {
        let mut entry = entry.map_err(tar_error)?;
        let name = String::from_utf8_lossy(&entry.path_bytes())
            .trim_end_matches('/')
            .to_string();
        let h = entry.header();
        let kind = match h.entry_type() {
            tar::EntryType::Directory => ArtifactType::Directory,
            tar::EntryType::Symlink => ArtifactType::Symlink,
            tar::EntryType::Regular | tar::EntryType::Continuous => ArtifactType::File,
            _ => ArtifactType::Other,
        };
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned());
        let mut base = Base {
            kind,
            size: h.size().unwrap_or(0),
            mode: h.mode().unwrap_or(0) & 0o7777,
            mtime: h.mtime().unwrap_or(0) as i64,
            link,
            content: None,
        };
        if kind == ArtifactType::File
            && base.size <= DIFF_CONTENT_BYTES
            && live.get(&name).is_none_or(|l| base.differs(l))
        {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(tar_error)?;
            base.content = Some(bytes);
        }
        out.insert(name, base);
    }
    Ok(out)
}

pub(super) fn diff(
    workspace_id: &str,
    baseline: &Path,
    live_tree: &mut dyn Live,
) -> Result<DiffResult, Error> {
    let (entries, truncated) = live_tree.list_all()?;
    if truncated {
        return Err(Error::Conflict(format!(
            "/workspace has more than {} entries; too many to diff",
            pyro_proto::rpc::MAX_LIST_ENTRIES
        )));
    }
    let live: BTreeMap<String, FileInfo> = entries
        .into_iter()
        // Skips the staging directory of a write running now.
        .filter_map(|e| Some((workspace_relative(&e.path).ok()?, e)))
        .collect();
    let base = load_baseline(baseline, &live)?;

    // Which paths changed, by metadata first.
    let mut candidates = Vec::new();
    for path in base.keys().chain(live.keys()).collect::<BTreeSet<_>>() {
        let (b, l) = (base.get(path), live.get(path));
        let is_dir = |t: ArtifactType| t == ArtifactType::Directory;
        match (b, l) {
            (Some(b), None) if !is_dir(b.kind) => {
                candidates.push((path.clone(), DiffStatus::Deleted))
            }
            (None, Some(l)) if !is_dir(l.artifact_type) => {
                candidates.push((path.clone(), DiffStatus::Added))
            }
            (Some(b), Some(l)) if b.kind != l.artifact_type => {
                candidates.push((path.clone(), DiffStatus::TypeChanged))
            }
            (Some(b), Some(l)) if b.kind == ArtifactType::File && b.differs(l) => {
                candidates.push((path.clone(), DiffStatus::Modified))
            }
            (Some(b), Some(l)) if b.kind == ArtifactType::Symlink && b.link != l.link_target => {
                candidates.push((path.clone(), DiffStatus::Modified))
            }
            _ => {}
        }
    }
    let mut result = DiffResult {
        workspace_id: workspace_id.into(),
        changed: false,
        summary: DiffSummary::default(),
        entries: Vec::new(),
        patch: String::new(),
        served_by: live_tree.served_by(),
    };
    for (path, status) in candidates {
        let b = base.get(&path);
        let l = live.get(&path);
        let file = |t: Option<ArtifactType>| t == Some(ArtifactType::File);
        let old = b.and_then(|b| b.content.clone());
        // Too big on either side to hold: reported without comparing.
        let mut too_big = b.is_some_and(|b| file(Some(b.kind)) && b.size > DIFF_CONTENT_BYTES)
            || l.is_some_and(|l| file(Some(l.artifact_type)) && l.size_bytes > DIFF_CONTENT_BYTES);
        let new = if file(l.map(|l| l.artifact_type)) && !too_big {
            let (bytes, more) = live_tree.read_at_most(&path, DIFF_CONTENT_BYTES)?;
            too_big |= more; // it grew since the listing
            Some(bytes)
        } else {
            None
        };
        let old_mode = b.map_or(0o644, |b| b.mode);
        let new_mode = l.map_or(0o644, |l| l.mode);
        if status == DiffStatus::Modified
            && !too_big
            && old == new
            && old_mode == new_mode
            && b.map(|b| &b.link) == l.map(|l| &l.link_target)
        {
            continue; // touched, not changed
        }
        let artifact_type = l
            .map(|l| l.artifact_type)
            .or(b.map(|b| b.kind))
            .unwrap_or(ArtifactType::Other);
        let text_patch = match (
            file(b.map(|b| b.kind)) || b.is_none(),
            file(l.map(|l| l.artifact_type)) || l.is_none(),
        ) {
            (true, true) if status != DiffStatus::TypeChanged && !too_big => {
                let d = unified_diff(
                    &path,
                    &path,
                    old.as_deref(),
                    new.as_deref(),
                    old_mode,
                    new_mode,
                );
                (!d.binary && !d.is_empty()).then_some(d.text)
            }
            _ => None,
        };
        match status {
            DiffStatus::Added => result.summary.added += 1,
            DiffStatus::Deleted => result.summary.deleted += 1,
            DiffStatus::TypeChanged => result.summary.type_changed += 1,
            DiffStatus::Modified => result.summary.modified += 1,
        }
        if let Some(p) = &text_patch {
            result.summary.text_patched += 1;
            result.patch.push_str(p);
        } else {
            result.summary.non_text += 1;
        }
        result.entries.push(DiffEntry {
            path,
            status,
            artifact_type,
            text_patch,
        });
    }
    result.summary.total = result.entries.len() as u64;
    result.changed = !result.entries.is_empty();
    Ok(result)
}
