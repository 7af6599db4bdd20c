//! Writing git-style diff sections.

use std::time::{Duration, Instant};

use similar::algorithms::{diff_deadline, Capture, Replace};
use similar::{group_diff_ops, Algorithm, DiffTag};

use super::split_lines;

/// Lines of context around each change, as `git diff` and `diff -u`.
const CONTEXT: usize = 3;
/// Git calls content with a NUL in its first 8000 bytes binary.
const BINARY_SNIFF: usize = 8000;
/// Myers is O(size x edits); on a huge rewrite give up on a minimal diff
/// after this long and take a coarser (still correct) one.
const DIFF_DEADLINE: Duration = Duration::from_secs(1);

/// One file's diff section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDiff {
    /// The section text; empty when nothing changed.
    pub text: String,
    /// The content changed but is binary, so `text` only says `Binary
    /// files ... differ` and cannot be applied. Content that is not UTF-8
    /// where the diff would show it counts as binary too: a patch is text
    /// and could not carry it.
    pub binary: bool,
}

impl FileDiff {
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
}

/// The `git diff` section that turns `old` (at `old_path`, `None` if
/// absent) into `new` (at `new_path`). Modes are permission bits; like
/// git, only the owner-execute bit survives (`100644` or `100755`).
/// Differing paths with both sides present make a rename.
pub fn unified_diff(
    old_path: &str,
    new_path: &str,
    old: Option<&[u8]>,
    new: Option<&[u8]>,
    old_mode: u32,
    new_mode: u32,
) -> FileDiff {
    let a = if old.is_some() { old_path } else { new_path };
    let b = if new.is_some() { new_path } else { old_path };
    let (old_mode, new_mode) = (git_mode(old_mode), git_mode(new_mode));
    let same_content = old.unwrap_or_default() == new.unwrap_or_default();
    let unchanged = match (old, new) {
        (Some(_), Some(_)) => same_content && a == b && old_mode == new_mode,
        (None, None) => true,
        _ => false,
    };
    if unchanged {
        return FileDiff {
            text: String::new(),
            binary: false,
        };
    }

    let mut out = format!(
        "diff --git {} {}\n",
        quote(&format!("a/{a}")),
        quote(&format!("b/{b}"))
    );
    out.push_str(&match (old, new) {
        (None, _) => format!("new file mode {new_mode:o}\n"),
        (_, None) => format!("deleted file mode {old_mode:o}\n"),
        _ if old_mode != new_mode => format!("old mode {old_mode:o}\nnew mode {new_mode:o}\n"),
        _ => String::new(),
    });
    if a != b && old.is_some() && new.is_some() {
        out.push_str(&format!(
            "rename from {}\nrename to {}\n",
            quote(a),
            quote(b)
        ));
    }
    // Pure renames, mode changes, and empty files added or deleted carry
    // no `---`/`+++` (git writes none either).
    if same_content {
        return FileDiff {
            text: out,
            binary: false,
        };
    }

    let old_name = old.map_or("/dev/null".to_owned(), |_| format!("a/{a}"));
    let new_name = new.map_or("/dev/null".to_owned(), |_| format!("b/{b}"));
    let (old, new) = (old.unwrap_or_default(), new.unwrap_or_default());
    let hunks = if is_binary(old) || is_binary(new) {
        None
    } else {
        hunks(old, new)
    };
    let Some(hunks) = hunks else {
        let (a, b) = (quote(&old_name), quote(&new_name));
        out.push_str(&format!("Binary files {a} and {b} differ\n"));
        return FileDiff {
            text: out,
            binary: true,
        };
    };
    // Like git, a tab ends a name with spaces, so readers that stop at
    // whitespace still get it whole.
    let tab = |n: &str| if n.contains(' ') { "\t" } else { "" };
    let (a, b) = (quote(&old_name), quote(&new_name));
    out.push_str(&format!("--- {a}{}\n+++ {b}{}\n", tab(&a), tab(&b)));
    out.push_str(&hunks);
    FileDiff {
        text: out,
        binary: false,
    }
}

/// The hunks turning `old` into `new`, or `None` if a line they would show
/// is not UTF-8.
fn hunks(old: &[u8], new: &[u8]) -> Option<String> {
    let (old, new) = (split_lines(old), split_lines(new));
    // Not `similar::capture_diff_slices`: its `Compact` pass (2.7) can
    // leave an insert with a stale old index, which breaks hunk ranges.
    let mut hook = Replace::new(Capture::new());
    let deadline = Some(Instant::now() + DIFF_DEADLINE);
    let Ok(()) = diff_deadline(
        Algorithm::Myers,
        &mut hook,
        &old,
        0..old.len(),
        &new,
        0..new.len(),
        deadline,
    );
    let mut out = Vec::new();
    for group in group_diff_ops(hook.into_inner().into_ops(), CONTEXT) {
        let Some(first) = group.first() else { continue };
        let old_len = group.iter().map(|op| op.old_range().len()).sum();
        let new_len = group.iter().map(|op| op.new_range().len()).sum();
        let old_range = range(first.old_range().start, old_len);
        let new_range = range(first.new_range().start, new_len);
        out.extend(format!("@@ -{old_range} +{new_range} @@\n").into_bytes());
        for op in &group {
            let (tag, o, n) = op.as_tag_tuple();
            match tag {
                DiffTag::Equal => push_lines(&mut out, b' ', &old[o]),
                DiffTag::Delete => push_lines(&mut out, b'-', &old[o]),
                DiffTag::Insert => push_lines(&mut out, b'+', &new[n]),
                DiffTag::Replace => {
                    push_lines(&mut out, b'-', &old[o]);
                    push_lines(&mut out, b'+', &new[n]);
                }
            }
        }
    }
    String::from_utf8(out).ok()
}

fn push_lines(out: &mut Vec<u8>, prefix: u8, lines: &[&[u8]]) {
    for line in lines {
        out.push(prefix);
        out.extend_from_slice(line);
        if !line.ends_with(b"\n") {
            out.extend_from_slice(b"\n\\ No newline at end of file\n");
        }
    }
}

/// `start,len` in hunk-header form: 1-based, the count left out when it
/// is 1, and an empty range named by the line before it.
fn range(start: usize, len: usize) -> String {
    match len {
        0 => format!("{start},0"),
        1 => format!("{}", start + 1),
        n => format!("{},{n}", start + 1),
    }
}

fn is_binary(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(BINARY_SNIFF)].contains(&0)
}

fn git_mode(mode: u32) -> u32 {
    if mode & 0o100 != 0 {
        0o100755
    } else {
        0o100644
    }
}

/// Git's C-style quoting for names with quotes, backslashes or control
/// characters; other names (spaces and UTF-8 included) go as they are.
fn quote(name: &str) -> String {
    if !name
        .bytes()
        .any(|b| b < 0x20 || b == 0x7f || b == b'"' || b == b'\\')
    {
        return name.to_owned();
    }
    let mut out = String::from("\"");
    for c in name.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\{:03o}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
