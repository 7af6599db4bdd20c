//! Reading `git diff` and `diff -u` text into a [`Patch`].
//!
//! Text between sections (commit messages, `diff -ruN` command lines,
//! `Only in ...`) is skipped, as `patch` does. Inside a hunk the header's
//! line counts rule: a hunk that is shorter or longer than its header says
//! is an error, never a guess.

use super::{FilePatch, Hunk, Line, Patch, PatchError};

/// Parses a unified diff (`git diff`, `diff -u`, `diff -ruN`).
pub fn parse(text: &str) -> Result<Patch, PatchError> {
    let lines = text
        .split_inclusive('\n')
        .map(|l| l.strip_suffix('\n').unwrap_or(l))
        .collect();
    let mut p = Parser { lines, pos: 0 };
    let mut files = Vec::new();
    while let Some(line) = p.peek() {
        if let Some(names) = line.strip_prefix("diff --git ") {
            files.push(p.git_section(names)?);
        } else if line.starts_with("--- ") {
            files.push(p.plain_section()?);
        } else if line.starts_with("@@ ") {
            return Err(p.error("hunk header before any file header (`--- `/`+++ ` lines)"));
        } else {
            p.pos += 1;
        }
    }
    if files.is_empty() {
        return Err(PatchError::Parse {
            line: p.lines.len().max(1),
            message: "no file sections found: expected `diff --git` or `--- `/`+++ ` lines".into(),
        });
    }
    Ok(Patch { files })
}

struct Parser<'a> {
    lines: Vec<&'a str>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a str> {
        self.lines.get(self.pos).copied()
    }

    /// 1-based number of the current line.
    fn line_no(&self) -> usize {
        self.pos + 1
    }

    fn error(&self, message: impl Into<String>) -> PatchError {
        PatchError::Parse {
            line: self.line_no(),
            message: message.into(),
        }
    }

    /// `diff --git a/x b/y`, extended headers, then `---`/`+++` and hunks
    /// (absent for renames, mode changes, empty and binary files).
    fn git_section(&mut self, names: &str) -> Result<FilePatch, PatchError> {
        let (a, b) = git_names(names)
            .ok_or_else(|| self.error("cannot read the two paths of `diff --git`"))?;
        let mut f = FilePatch {
            old_path: Some(strip_component(&a).to_owned()),
            new_path: Some(strip_component(&b).to_owned()),
            old_mode: None,
            new_mode: None,
            rename: false,
            copy: false,
            binary: false,
            hunks: Vec::new(),
            line: self.line_no(),
        };
        let (mut created, mut deleted) = (false, false);
        self.pos += 1;
        while let Some(line) = self.peek() {
            if let Some(m) = line.strip_prefix("old mode ") {
                f.old_mode = Some(self.mode(m)?);
            } else if let Some(m) = line.strip_prefix("new mode ") {
                f.new_mode = Some(self.mode(m)?);
            } else if let Some(m) = line.strip_prefix("deleted file mode ") {
                f.old_mode = Some(self.mode(m)?);
                deleted = true;
                if created {
                    return Err(self.error("a file both created and deleted"));
                }
            } else if let Some(m) = line.strip_prefix("new file mode ") {
                f.new_mode = Some(self.mode(m)?);
                created = true;
                if deleted {
                    return Err(self.error("a file both created and deleted"));
                }
            } else if let Some(p) = line.strip_prefix("rename from ") {
                f.old_path = Some(self.name(p)?);
                f.rename = true;
            } else if let Some(p) = line.strip_prefix("rename to ") {
                f.new_path = Some(self.name(p)?);
                f.rename = true;
            } else if let Some(p) = line.strip_prefix("copy from ") {
                f.old_path = Some(self.name(p)?);
                f.copy = true;
            } else if let Some(p) = line.strip_prefix("copy to ") {
                f.new_path = Some(self.name(p)?);
                f.copy = true;
            } else if line.starts_with("Binary files ") || line == "GIT binary patch" {
                // The binary payload that may follow is skipped as text
                // between sections.
                f.binary = true;
            } else if !["index ", "similarity index ", "dissimilarity index "]
                .iter()
                .any(|h| line.starts_with(h))
            {
                break;
            }
            self.pos += 1;
        }
        if created {
            f.old_path = None;
        }
        if deleted {
            f.new_path = None;
        }
        if self.peek().is_some_and(|l| l.starts_with("--- ")) {
            let (old, new) = self.file_header(true)?;
            // `rename from/to` and `--- `/`+++ ` agree in git output; the
            // latter also carry `/dev/null`.
            f.old_path = old.map(|(p, _)| p);
            f.new_path = new.map(|(p, _)| p);
            f.hunks = self.hunks()?;
        }
        if f.copy && f.rename {
            return Err(PatchError::Parse {
                line: f.line,
                message: "both a rename and a copy".into(),
            });
        }
        f.rename =
            !f.copy && f.old_path.is_some() && f.new_path.is_some() && f.old_path != f.new_path;
        Ok(f)
    }

    /// A section of plain `diff -u` output: `--- `, `+++ `, hunks.
    fn plain_section(&mut self) -> Result<FilePatch, PatchError> {
        let line = self.line_no();
        let (mut old, mut new) = self.file_header(false)?;
        let hunks = self.hunks()?;
        // `diff -N` writes an absent side as an empty file dated at the
        // epoch; `patch` reads that as add/delete, and so do we.
        let epoch = |ts: &str| ts.starts_with("1970-01-01 ") || ts.starts_with("1969-12-31 ");
        if old.as_ref().is_some_and(|(_, ts)| epoch(ts)) && hunks.iter().all(|h| h.old_len == 0) {
            old = None;
        } else if new.as_ref().is_some_and(|(_, ts)| epoch(ts))
            && hunks.iter().all(|h| h.new_len == 0)
        {
            new = None;
        }
        Ok(FilePatch {
            old_path: old.map(|(p, _)| p),
            new_path: new.map(|(p, _)| p),
            old_mode: None,
            new_mode: None,
            rename: false,
            copy: false,
            binary: false,
            hunks,
            line,
        })
    }

    /// The `--- ` and `+++ ` lines: each side's path (`None` for
    /// `/dev/null`) and whatever followed it after a tab (a timestamp).
    /// Git sections always carry `a/`/`b/` (or other) prefixes; plain ones
    /// lose them only when both sides have them.
    #[allow(clippy::type_complexity)]
    fn file_header(
        &mut self,
        git: bool,
    ) -> Result<(Option<(String, String)>, Option<(String, String)>), PatchError> {
        let old = self.header_name("--- ")?;
        self.pos += 1;
        if !self.peek().is_some_and(|l| l.starts_with("+++ ")) {
            return Err(self.error("expected a `+++ ` line after the `--- ` line"));
        }
        let new = self.header_name("+++ ")?;
        self.pos += 1;
        if old.is_none() && new.is_none() {
            return Err(PatchError::Parse {
                line: self.pos - 1,
                message: "both sides are /dev/null".into(),
            });
        }
        let prefixed = |side: &Option<(String, String)>, prefix: &str| {
            side.as_ref().is_none_or(|(p, _)| p.starts_with(prefix))
        };
        let strip = git || (prefixed(&old, "a/") && prefixed(&new, "b/"));
        let fix = |side: Option<(String, String)>| {
            side.map(|(p, ts)| {
                if strip {
                    (strip_component(&p).to_owned(), ts)
                } else {
                    (p, ts)
                }
            })
        };
        Ok((fix(old), fix(new)))
    }

    fn header_name(&self, prefix: &str) -> Result<Option<(String, String)>, PatchError> {
        let raw = &self.peek().unwrap_or_default()[prefix.len()..];
        let (name, rest) = if raw.starts_with('"') {
            unquote(raw).ok_or_else(|| self.error("bad quoted path"))?
        } else {
            // `diff -u` puts a tab and a timestamp after the name; git a
            // lone tab when the name has spaces.
            let (name, rest) = raw.split_once('\t').unwrap_or((raw, ""));
            (name.to_owned(), rest)
        };
        if name.is_empty() {
            return Err(self.error(format!("expected a path after `{}`", prefix.trim_end())));
        }
        let ts = rest.trim_start_matches('\t').to_owned();
        Ok((name != "/dev/null").then_some((name, ts)))
    }

    /// A path in `rename from`/`copy to` lines (no prefix to strip).
    fn name(&self, raw: &str) -> Result<String, PatchError> {
        if raw.starts_with('"') {
            unquote(raw)
                .map(|(n, _)| n)
                .ok_or_else(|| self.error("bad quoted path"))
        } else {
            Ok(raw.to_owned())
        }
    }

    fn mode(&self, raw: &str) -> Result<u32, PatchError> {
        u32::from_str_radix(raw.trim(), 8)
            .map_err(|_| self.error(format!("expected an octal file mode, found `{raw}`")))
    }

    /// The hunks of one file, then a check that nothing hunk-like follows:
    /// a `+`/`-`/` ` line right after a complete hunk means the header
    /// counted too few lines.
    fn hunks(&mut self) -> Result<Vec<Hunk>, PatchError> {
        let mut hunks = Vec::new();
        while let Some(line) = self.peek() {
            if line.starts_with("@@ ") {
                hunks.push(self.hunk()?);
            } else if line.starts_with("--- ") || line == "-- " {
                // The next file, or `git format-patch`'s signature.
                break;
            } else if line.starts_with(['+', '-', ' ']) {
                return Err(self.error(match hunks.last() {
                    Some(h) => format!(
                        "hunk `{}` has more lines than its header counts; expected `@@` or \
                         the next file",
                        h.header
                    ),
                    None => format!("expected a `@@` hunk header, found `{line}`"),
                }));
            } else {
                break;
            }
        }
        Ok(hunks)
    }

    fn hunk(&mut self) -> Result<Hunk, PatchError> {
        let header = self.peek().unwrap_or_default();
        let (old_start, old_len, new_start, new_len) = hunk_ranges(header)
            .ok_or_else(|| self.error(format!("expected `@@ -a,b +c,d @@`, found `{header}`")))?;
        let line = self.line_no();
        self.pos += 1;
        let mut lines: Vec<Line> = Vec::new();
        let (mut old_left, mut new_left) = (old_len, new_len);
        let left = |o: usize, n: usize| format!("{o} old and {n} new line(s) still expected");
        loop {
            let Some(text) = self.peek() else {
                if old_left == 0 && new_left == 0 {
                    break;
                }
                return Err(self.error(format!(
                    "patch ends inside hunk `{header}`: {}",
                    left(old_left, new_left)
                )));
            };
            let (old_n, new_n) = match text.as_bytes().first() {
                // A marker belongs to the line before it; only the last
                // line of a side can lack its newline.
                Some(b'\\') => {
                    let ok = match lines.last_mut() {
                        Some(Line::Context(t)) if old_left == 0 && new_left == 0 => strip_nl(t),
                        Some(Line::Remove(t)) if old_left == 0 => strip_nl(t),
                        Some(Line::Add(t)) if new_left == 0 => strip_nl(t),
                        _ => false,
                    };
                    if !ok {
                        return Err(self.error(
                            "`\\ No newline at end of file` that does not follow the last \
                             line of a side",
                        ));
                    }
                    self.pos += 1;
                    continue;
                }
                _ if old_left == 0 && new_left == 0 => break,
                // An empty line is an empty context line whose space some
                // tools (and editors) drop; git and GNU patch accept it.
                None | Some(b' ') => (1, 1),
                Some(b'-') => (1, 0),
                Some(b'+') => (0, 1),
                _ => {
                    return Err(self.error(format!(
                        "expected a hunk line starting with ` `, `-`, `+` or `\\` ({}), \
                         found `{text}`",
                        left(old_left, new_left)
                    )))
                }
            };
            if old_n > old_left || new_n > new_left {
                return Err(self.error(format!(
                    "hunk `{header}` has more {} lines than its header counts",
                    if old_n > old_left { "old" } else { "new" }
                )));
            }
            old_left -= old_n;
            new_left -= new_n;
            let body = format!("{}\n", text.get(1..).unwrap_or_default());
            lines.push(match (old_n, new_n) {
                (1, 1) => Line::Context(body),
                (1, 0) => Line::Remove(body),
                _ => Line::Add(body),
            });
            self.pos += 1;
        }
        Ok(Hunk {
            old_start,
            old_len,
            new_start,
            new_len,
            header: header.to_owned(),
            lines,
            line,
        })
    }
}

/// Drops the `\n` a hunk line was given; false if it had none (a second
/// marker).
fn strip_nl(text: &mut String) -> bool {
    text.pop().is_some_and(|c| c == '\n')
}

/// `@@ -a[,b] +c[,d] @@[ section]`; an omitted count is 1.
fn hunk_ranges(header: &str) -> Option<(usize, usize, usize, usize)> {
    let rest = header.strip_prefix("@@ -")?;
    let (old, rest) = rest.split_once(" +")?;
    let (new, _section) = rest.split_once(" @@")?;
    // Counts fit in u32: no real file has more lines, and the offset
    // arithmetic in `apply` stays far from overflow.
    let num = |s: &str| s.parse::<u32>().ok().map(|n| n as usize);
    let range = |r: &str| -> Option<(usize, usize)> {
        let (start, len) = match r.split_once(',') {
            Some((s, l)) => (num(s)?, num(l)?),
            None => (num(r)?, 1),
        };
        // Line 0 only exists as "before the first line", for empty ranges.
        (start > 0 || len == 0).then_some((start, len))
    };
    let (old_start, old_len) = range(old)?;
    let (new_start, new_len) = range(new)?;
    Some((old_start, old_len, new_start, new_len))
}

/// Drops the first path component (`a/`, `b/`, or any other prefix).
fn strip_component(path: &str) -> &str {
    path.split_once('/').map_or(path, |(_, rest)| rest)
}

/// The two names of `diff --git <a> <b>`. Unquoted names with spaces are
/// ambiguous; git resolves them only when both names are the same, which
/// is the only case that matters: renames and copies name their paths
/// again in later headers.
fn git_names(rest: &str) -> Option<(String, String)> {
    if rest.starts_with('"') {
        let (a, after) = unquote(rest)?;
        let b = after.strip_prefix(' ')?;
        let b = if b.starts_with('"') {
            unquote(b)?.0
        } else {
            b.to_owned()
        };
        return Some((a, b));
    }
    if let Some(i) = rest.find(" \"") {
        return Some((rest[..i].to_owned(), unquote(&rest[i + 1..])?.0));
    }
    let mid = rest.len() / 2;
    if rest.len() % 2 == 1 && rest.as_bytes()[mid] == b' ' {
        let (a, b) = (&rest[..mid], &rest[mid + 1..]);
        if strip_component(a) == strip_component(b) {
            return Some((a.to_owned(), b.to_owned()));
        }
    }
    let i = rest.find(" b/").or_else(|| rest.find(' '))?;
    Some((rest[..i].to_owned(), rest[i + 1..].to_owned()))
}

/// Reads a C-style quoted path (`"a/tab\there"`, octal `\303\251` for
/// raw bytes) from the start of `s`; returns it and what follows.
fn unquote(s: &str) -> Option<(String, &str)> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 1;
    loop {
        match *bytes.get(i)? {
            b'"' => break,
            b'\\' => {
                i += 1;
                let c = *bytes.get(i)?;
                out.push(match c {
                    b'a' => 7,
                    b'b' => 8,
                    b'f' => 12,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'v' => 11,
                    b'0'..=b'7' => {
                        let oct = s.get(i..i + 3)?;
                        i += 2;
                        u8::from_str_radix(oct, 8).ok()?
                    }
                    other => other,
                });
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some((String::from_utf8(out).ok()?, &s[i + 1..]))
}
