//! Applying a [`Patch`] to an in-memory view of the caller's tree.

use std::collections::HashMap;

use super::{
    split_lines, Change, FilePatch, FileState, Hunk, Line, Patch, PatchError, PatchSource,
};

/// Mode of a file the patch creates without saying (plain `diff -u`).
const DEFAULT_MODE: u32 = 0o644;

/// Applies `patch` to the files `source` reads and returns what to do to
/// get there; on any error, nothing is to be done. See the module docs
/// for the rules.
pub fn apply(patch: &Patch, source: &dyn PatchSource) -> Result<Vec<Change>, PatchError> {
    let mut tree = Tree {
        source,
        entries: Vec::new(),
        index: HashMap::new(),
    };
    for file in &patch.files {
        apply_file(file, &mut tree)?;
    }
    Ok(tree.changes())
}

/// The files the patch has touched so far: as read, and as they are now.
struct Tree<'a> {
    source: &'a dyn PatchSource,
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
}

struct Entry {
    path: String,
    original: Option<FileState>,
    current: Option<FileState>,
    /// Patch line of the last section that wrote or removed this path.
    by: Option<usize>,
}

impl Tree<'_> {
    fn entry(&mut self, path: &str) -> &mut Entry {
        let i = match self.index.get(path) {
            Some(&i) => i,
            None => {
                let original = self.source.read(path);
                let current = original.clone();
                self.entries.push(Entry {
                    path: path.to_owned(),
                    original,
                    current,
                    by: None,
                });
                self.index.insert(path.to_owned(), self.entries.len() - 1);
                self.entries.len() - 1
            }
        };
        &mut self.entries[i]
    }

    /// The file at `path` now, or why it is missing.
    fn existing(&mut self, path: &str) -> Result<FileState, PatchError> {
        let e = self.entry(path);
        e.current.clone().ok_or_else(|| PatchError::NotFound {
            path: path.to_owned(),
            by: e.by,
        })
    }

    /// Fails if something is at `path` now.
    fn vacant(&mut self, path: &str) -> Result<(), PatchError> {
        let e = self.entry(path);
        match e.current {
            Some(_) => Err(PatchError::AlreadyExists {
                path: path.to_owned(),
                by: e.by,
            }),
            None => Ok(()),
        }
    }

    fn set(&mut self, path: &str, state: Option<FileState>, by: usize) {
        let e = self.entry(path);
        e.current = state;
        e.by = Some(by);
    }

    /// Deletes first, then writes, each in the order the patch touched them.
    fn changes(self) -> Vec<Change> {
        let mut deletes = Vec::new();
        let mut writes = Vec::new();
        for e in self.entries {
            match e.current {
                None if e.original.is_some() => deletes.push(Change::Delete { path: e.path }),
                Some(now) if Some(&now) != e.original.as_ref() => writes.push(Change::Write {
                    path: e.path,
                    bytes: now.bytes,
                    mode: now.mode,
                }),
                _ => {}
            }
        }
        deletes.extend(writes);
        deletes
    }
}

fn apply_file(f: &FilePatch, tree: &mut Tree) -> Result<(), PatchError> {
    if f.binary {
        return Err(PatchError::Binary {
            path: f.path().to_owned(),
        });
    }
    for mode in [f.old_mode, f.new_mode].into_iter().flatten() {
        // Regular files only; a bare permission mode (no type bits) is fine.
        let kind = mode & 0o170000;
        if kind != 0o100000 && kind != 0 {
            let what = match kind {
                0o120000 => "a symbolic link".to_owned(),
                0o160000 => "a submodule".to_owned(),
                _ => format!("file mode {mode:o}"),
            };
            return Err(PatchError::Unsupported {
                path: f.path().to_owned(),
                what,
            });
        }
    }
    let new_mode = f.new_mode.map(|m| m & 0o7777);
    match (f.old_path.as_deref(), f.new_path.as_deref()) {
        (None, None) => {
            return Err(PatchError::Parse {
                line: f.line,
                message: "a section that neither reads nor writes a file".into(),
            })
        }
        (None, Some(path)) => {
            tree.vacant(path)?;
            let bytes = patch_bytes(f, path, b"")?;
            let mode = new_mode.unwrap_or(DEFAULT_MODE);
            tree.set(path, Some(FileState { bytes, mode }), f.line);
        }
        (Some(path), None) => {
            let now = tree.existing(path)?;
            let rest = patch_bytes(f, path, &now.bytes)?;
            if !rest.is_empty() {
                let extra_lines = split_lines(&rest).len();
                return Err(PatchError::DeleteMismatch {
                    path: path.to_owned(),
                    extra_lines,
                });
            }
            tree.set(path, None, f.line);
        }
        (Some(old), Some(new)) => {
            let (from, to) = if f.rename || f.copy {
                (old, new)
            } else if old == new {
                (old, old)
            } else {
                // Plain `diff -u x.orig x`: patch one file in place, the
                // new name if it exists, like `patch` does.
                let target = if tree.existing(new).is_ok() { new } else { old };
                (target, target)
            };
            let now = tree.existing(from)?;
            if from != to {
                tree.vacant(to)?;
            }
            let bytes = patch_bytes(f, from, &now.bytes)?;
            if f.rename {
                tree.set(from, None, f.line);
            }
            tree.set(
                to,
                Some(FileState {
                    bytes,
                    mode: new_mode.unwrap_or(now.mode),
                }),
                f.line,
            );
        }
    }
    Ok(())
}

/// Applies the hunks of `f` to `base`.
fn patch_bytes(f: &FilePatch, path: &str, base: &[u8]) -> Result<Vec<u8>, PatchError> {
    let lines = split_lines(base);
    let mut out = Vec::with_capacity(base.len());
    // Lines of `base` already copied or replaced: the next hunk starts here.
    let mut done = 0;
    // How far from its stated line the previous hunk applied; the next
    // one most likely moved by as much.
    let mut offset = 0isize;
    for (i, hunk) in f.hunks.iter().enumerate() {
        let old = hunk.old_lines();
        let rule = Placement::of(hunk);
        // 0-based index of the first old line; a hunk that removes nothing
        // names the line it inserts after.
        let stated = if hunk.old_len == 0 {
            hunk.old_start
        } else {
            hunk.old_start.saturating_sub(1)
        };
        let wanted = stated.saturating_add_signed(offset);
        let pos = find(&lines, &old, wanted, done, rule)
            .ok_or_else(|| hunk_failed(path, i + 1, hunk, &lines, &old, wanted, done, rule))?;
        offset = (pos as isize).saturating_sub(stated as isize);
        out.extend(lines[done..pos].concat());
        for line in &hunk.lines {
            if let Line::Context(t) | Line::Add(t) = line {
                out.extend_from_slice(t.as_bytes());
            }
        }
        done = pos + old.len();
    }
    out.extend(lines[done..].concat());
    Ok(out)
}

/// Where a hunk may land, git's rules: one starting at line 1 (or 0) is
/// anchored to the start of the file; one with no trailing context to its
/// end. A hunk with no context at all (`diff -U0`, whole-file add or
/// delete) has nothing to search with and applies exactly where it says.
#[derive(Clone, Copy)]
struct Placement {
    start: bool,
    end: bool,
    exact: bool,
}

impl Placement {
    fn of(hunk: &Hunk) -> Self {
        let is_context = |l: &&Line| matches!(l, Line::Context(_));
        if !hunk.lines.iter().any(|l| is_context(&l)) {
            return Placement {
                start: false,
                end: false,
                exact: true,
            };
        }
        let trailing = hunk.lines.iter().rev().take_while(is_context).count();
        Placement {
            start: hunk.old_start <= 1,
            end: trailing == 0,
            exact: false,
        }
    }

    /// The one position the rule allows, if it allows only one.
    fn fixed(self, n: usize, k: usize, wanted: usize) -> Option<usize> {
        if self.start {
            Some(0)
        } else if self.end {
            Some(n.saturating_sub(k))
        } else if self.exact {
            Some(wanted)
        } else {
            None
        }
    }
}

/// The position nearest `wanted`, not before `min`, where `old` matches.
fn find(
    lines: &[&[u8]],
    old: &[&[u8]],
    wanted: usize,
    min: usize,
    rule: Placement,
) -> Option<usize> {
    let (n, k) = (lines.len(), old.len());
    let fits = |p: usize| {
        let end = p.saturating_add(k);
        p >= min
            && end <= n
            && lines[p..end] == *old
            && (!rule.end || end == n)
            && (!rule.start || p == 0)
    };
    if let Some(p) = rule.fixed(n, k, wanted) {
        return fits(p).then_some(p);
    }
    let max = n.checked_sub(k)?;
    if min > max {
        return None;
    }
    let wanted = wanted.clamp(min, max);
    (0..=max - min).find_map(|d| {
        let before = wanted.checked_sub(d).filter(|&p| p >= min && fits(p));
        before.or_else(|| Some(wanted + d).filter(|&p| p <= max && fits(p)))
    })
}

/// Says where the hunk stopped matching at the position it should have
/// been at: the first expected line that differs, or the end-of-file
/// anchor it missed.
#[allow(clippy::too_many_arguments)]
fn hunk_failed(
    path: &str,
    number: usize,
    hunk: &Hunk,
    lines: &[&[u8]],
    old: &[&[u8]],
    wanted: usize,
    done: usize,
    rule: Placement,
) -> PatchError {
    let (n, k) = (lines.len(), old.len());
    let at = if rule.start { 0 } else { wanted }.clamp(done, n);
    let mismatch = old
        .iter()
        .enumerate()
        .find(|&(i, want)| lines.get(at + i) != Some(want));
    let (line, expected, found) = match mismatch {
        Some((i, want)) => (
            at + i,
            show(want),
            lines.get(at + i).map_or("end of file".into(), |l| show(l)),
        ),
        None if at + k < n => (at + k, "end of file".to_owned(), show(lines[at + k])),
        None if wanted > n => (n, format!("at least {wanted} lines"), format!("{n}")),
        // Everything matches but would overlap the previous hunk.
        None => (
            at,
            format!("a match after line {done} (hunks apply in order)"),
            "an overlap".into(),
        ),
    };
    PatchError::HunkFailed {
        path: path.to_owned(),
        hunk: number,
        header: hunk.header.clone(),
        line: line + 1,
        expected,
        found,
    }
}

/// A file line for messages: quoted, with a missing newline called out.
fn show(line: &[u8]) -> String {
    match line.strip_suffix(b"\n") {
        Some(l) => format!("{:?}", String::from_utf8_lossy(l)),
        None => format!(
            "{:?} (no newline at end of file)",
            String::from_utf8_lossy(line)
        ),
    }
}
