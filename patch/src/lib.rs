//! `pyro-patch`: unified-diff patches: parse them, apply them, and
//! generate them.
//!
//! This is the format behind `pyro workspace patch apply` and
//! `pyro workspace diff`. It is pure logic shared by host and guest: no
//! filesystem, no OS calls. The caller reads files through [`PatchSource`],
//! validates paths ([`Patch::paths`]) and performs the [`Change`]s.
//!
//! [`parse`] returns paths as written, minus one leading component in git
//! sections (`a/`, `b/`) or when both sides of a plain diff carry `a/` and
//! `b/`. Checking them (`..`, absolute paths) is the caller's job, over
//! [`Patch::paths`].
//!
//! Rules [`apply`] keeps, so an agent can trust what it gets:
//!
//! - **All or nothing.** The whole result is computed in memory first; if
//!   any hunk of any file fails, the answer is an error and no changes.
//! - **Exact context.** Context and removed lines must match byte for byte,
//!   line endings included. There is no fuzz.
//! - **Offsets are allowed.** A hunk whose lines moved (the file grew or
//!   shrank above it) is searched for outward from its stated line, shifted
//!   by the offset the previous hunk applied at, like `patch` and
//!   `git apply`. Hunks apply in order and never overlap. As in
//!   `git apply`, a hunk that starts at line 1 must match at the start of
//!   the file and one with no trailing context must match at its end, so an
//!   edit at the end of a file cannot slide into the middle. A hunk with
//!   no context at all (`diff -U0`) has nothing to search with and applies
//!   exactly at its stated line, plus the previous hunk's offset.
//! - **Sections apply in order** to an in-memory view of the tree: a later
//!   section sees what an earlier one did, and one that contradicts it (say
//!   it modifies a file an earlier section deleted) is an error.
//! - **Bytes, not text.** Files are bytes split on `\n`; only the patch
//!   itself is UTF-8. A line without a final `\n` is the last line of its
//!   file and is marked `\ No newline at end of file`.
//! - **Modes** are permission bits (`st_mode & 0o7777`). Patches carry git's
//!   `100644`/`100755`; symlinks, submodules and binary patches are refused
//!   with [`PatchError::Unsupported`] / [`PatchError::Binary`].
//!
//! [`unified_diff`] writes git-style sections that both `git apply` and
//! [`apply`] accept.

#![forbid(unsafe_code)]

mod apply;
mod diff;
mod parse;

pub use apply::apply;
pub use diff::{unified_diff, FileDiff};
pub use parse::parse;

use std::fmt;

/// A parsed patch: one section per file, in patch order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    pub files: Vec<FilePatch>,
}

impl Patch {
    /// Every path the patch reads or writes, old and new side, in patch
    /// order. A path may repeat if several sections touch it.
    pub fn paths(&self) -> impl Iterator<Item = &str> + '_ {
        self.files.iter().flat_map(|f| {
            let new = f
                .new_path
                .as_deref()
                .filter(|n| f.old_path.as_deref() != Some(*n));
            f.old_path.as_deref().into_iter().chain(new)
        })
    }
}

/// The changes to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePatch {
    /// Path before the change (one leading `a/` component stripped);
    /// `None` when the file is added (`/dev/null`).
    pub old_path: Option<String>,
    /// Path after the change; `None` when the file is deleted.
    pub new_path: Option<String>,
    /// Git mode before (`0o100644`), from `old mode` / `deleted file mode`.
    pub old_mode: Option<u32>,
    /// Git mode after, from `new mode` / `new file mode`.
    pub new_mode: Option<u32>,
    /// Git `rename from/to`: the old path goes away.
    pub rename: bool,
    /// Git `copy from/to`: the old path stays.
    pub copy: bool,
    /// `Binary files ... differ` or `GIT binary patch`: cannot be applied.
    pub binary: bool,
    pub hunks: Vec<Hunk>,
    /// Line of the patch where this section starts (1-based), for messages.
    pub line: usize,
}

impl FilePatch {
    /// The name to show for this section in messages.
    pub fn path(&self) -> &str {
        self.new_path
            .as_deref()
            .or(self.old_path.as_deref())
            .unwrap_or_default()
    }
}

/// One `@@ -a,b +c,d @@` hunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    /// 1-based line the hunk starts at in the old file (0 when inserting
    /// into an empty one, or, with `old_len == 0`, the line it inserts after).
    pub old_start: usize,
    pub old_len: usize,
    pub new_start: usize,
    pub new_len: usize,
    /// The `@@ ... @@ section` line as written, for messages.
    pub header: String,
    pub lines: Vec<Line>,
    /// Line of the patch holding the header (1-based).
    pub line: usize,
}

impl Hunk {
    /// The hunk's old side: its context and removed lines, in order.
    pub fn old_lines(&self) -> Vec<&[u8]> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                Line::Context(t) | Line::Remove(t) => Some(t.as_bytes()),
                Line::Add(_) => None,
            })
            .collect()
    }
}

/// A hunk line. The text ends with `\n` unless the patch marked it
/// `\ No newline at end of file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Context(String),
    Remove(String),
    Add(String),
}

/// What [`apply`] asks of the tree it patches.
pub trait PatchSource {
    /// The file at `path` (as written in the patch), or `None` if absent.
    fn read(&self, path: &str) -> Option<FileState>;
}

/// A regular file's content and permission bits (`st_mode & 0o7777`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    pub bytes: Vec<u8>,
    pub mode: u32,
}

/// One step for the caller to perform. [`apply`] lists every `Delete`
/// before any `Write`, so a file can give way to a directory of that name.
/// A rename is a `Delete` of the old path plus a `Write` of the new one; a
/// mode change is a `Write` with the same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Write {
        path: String,
        bytes: Vec<u8>,
        mode: u32,
    },
    Delete {
        path: String,
    },
}

/// Why a patch could not be parsed or applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchError {
    /// The patch text is malformed at `line` (1-based).
    Parse { line: usize, message: String },
    /// The section for `path` is a binary patch.
    Binary { path: String },
    /// The section for `path` needs something this module does not do.
    Unsupported { path: String, what: String },
    /// The patch adds `path` (or renames or copies onto it) but it exists;
    /// `by` is the patch line of the earlier section that wrote it, if any.
    AlreadyExists { path: String, by: Option<usize> },
    /// The patch reads `path` but it does not exist; `by` is the patch
    /// line of the earlier section that deleted or renamed it, if any.
    NotFound { path: String, by: Option<usize> },
    /// Hunk number `hunk` (1-based) of `path` matches nowhere. `line` is
    /// the file line where the first expected line differed from what
    /// the file holds, at the hunk's stated position.
    HunkFailed {
        path: String,
        hunk: usize,
        header: String,
        line: usize,
        expected: String,
        found: String,
    },
    /// The patch deletes `path`, but the file holds `extra_lines` lines the
    /// patch does not remove.
    DeleteMismatch { path: String, extra_lines: usize },
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Parse { line, message } => write!(f, "malformed patch at line {line}: {message}"),
            Self::Binary { path } => write!(
                f,
                "{path}: binary patches are not supported; copy the file instead"
            ),
            Self::Unsupported { path, what } => write!(f, "{path}: {what} is not supported"),
            Self::AlreadyExists { path, by: None } => {
                write!(f, "{path}: the patch creates it, but it already exists")
            }
            Self::AlreadyExists { path, by: Some(by) } => write!(
                f,
                "{path}: the patch creates it, but the section at patch line {by} already \
                 wrote it"
            ),
            Self::NotFound { path, by: None } => {
                write!(f, "{path}: the patch changes it, but it does not exist")
            }
            Self::NotFound { path, by: Some(by) } => write!(
                f,
                "{path}: the patch changes it, but the section at patch line {by} \
                 already deleted or renamed it"
            ),
            Self::HunkFailed {
                path,
                hunk,
                header,
                line,
                expected,
                found,
            } => write!(
                f,
                "{path}: hunk #{hunk} ({header}) does not apply: at line {line} expected \
                 {expected}, found {found}; the file changed since the diff was made, \
                 regenerate it against the current content"
            ),
            Self::DeleteMismatch { path, extra_lines } => write!(
                f,
                "{path}: the patch deletes it, but it has {extra_lines} line(s) the patch \
                 does not remove; the file changed since the diff was made"
            ),
        }
    }
}

impl std::error::Error for PatchError {}

/// Splits content into lines that keep their `\n`; the last may lack it.
fn split_lines(bytes: &[u8]) -> Vec<&[u8]> {
    bytes.split_inclusive(|&b| b == b'\n').collect()
}

#[cfg(test)]
mod tests;
