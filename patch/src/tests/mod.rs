//! The patch tests, one file per subject, and what they share: an
//! in-memory tree, a sample `git diff`, and deterministic generated edits.

mod apply;
mod diff;
#[cfg(unix)]
mod git;
mod parse;

use std::collections::BTreeMap;

use crate::*;

/// A tree of files in memory, the way the guest agent would present one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MemTree(pub(crate) BTreeMap<String, FileState>);

impl MemTree {
    pub(crate) fn of(files: &[(&str, &str)]) -> Self {
        let mut t = MemTree::default();
        for (path, text) in files {
            t.put(path, text.as_bytes(), 0o644);
        }
        t
    }

    pub(crate) fn put(&mut self, path: &str, bytes: &[u8], mode: u32) {
        self.0.insert(
            path.to_owned(),
            FileState {
                bytes: bytes.to_vec(),
                mode,
            },
        );
    }

    pub(crate) fn text(&self, path: &str) -> Option<String> {
        self.0
            .get(path)
            .map(|f| String::from_utf8(f.bytes.clone()).unwrap())
    }

    /// Performs `changes` the way the caller of `apply` would.
    pub(crate) fn perform(&mut self, changes: Vec<Change>) {
        for c in changes {
            match c {
                Change::Delete { path } => assert!(self.0.remove(&path).is_some(), "{path}"),
                Change::Write { path, bytes, mode } => self.put(&path, &bytes, mode),
            }
        }
    }

    /// Parses and applies `patch`, then performs the changes.
    pub(crate) fn patch(&mut self, patch: &str) -> Result<(), PatchError> {
        let changes = apply(&parse(patch)?, self)?;
        self.perform(changes);
        Ok(())
    }
}

impl PatchSource for MemTree {
    fn read(&self, path: &str) -> Option<FileState> {
        self.0.get(path).cloned()
    }
}

/// `line 1\n` through `line n\n`.
pub(crate) fn numbered(n: usize) -> String {
    (1..=n).map(|i| format!("line {i}\n")).collect()
}

/// A `git diff` with one section of every kind.
pub(crate) const GIT_DIFF: &str = "\
diff --git a/src/main.rs b/src/main.rs
index 83db48f..bf269f4 100644
--- a/src/main.rs
+++ b/src/main.rs
@@ -1,3 +1,3 @@ fn main() {
 fn main() {
-    println!(\"hi\");
+    println!(\"hello\");
 }
diff --git a/new.txt b/new.txt
new file mode 100755
index 0000000..e69de29
--- /dev/null
+++ b/new.txt
@@ -0,0 +1,2 @@
+one
+two
diff --git a/gone.txt b/gone.txt
deleted file mode 100644
index 8baef1b..0000000
--- a/gone.txt
+++ /dev/null
@@ -1 +0,0 @@
-bye
diff --git a/old name.txt b/new name.txt
similarity index 100%
rename from old name.txt
rename to new name.txt
diff --git a/run.sh b/run.sh
old mode 100644
new mode 100755
diff --git a/empty b/empty
new file mode 100644
index 0000000..e69de29
";

/// xorshift64: deterministic noise without a dependency.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Files of lines from a small vocabulary (so lines repeat and diffs
/// have to choose), and an edit of one: deletions, insertions,
/// replacements, and sometimes a final newline added or dropped.
pub(crate) fn random_pair(rng: &mut Rng) -> (Vec<u8>, Vec<u8>) {
    const WORDS: &[&str] = &[
        "",
        "a",
        "b",
        "fn x() {",
        "}",
        " indented",
        "-x",
        "+y",
        "\\z",
    ];
    let word = |rng: &mut Rng| WORDS[rng.below(WORDS.len() as u64) as usize].to_owned();
    let n = rng.below(40) as usize;
    let old: Vec<String> = (0..n).map(|_| word(rng)).collect();
    let mut new = Vec::new();
    for line in &old {
        match rng.below(10) {
            0 => {}
            1 => new.push(word(rng)),
            2 => {
                new.push(line.clone());
                new.push(word(rng));
            }
            _ => new.push(line.clone()),
        }
    }
    let join = |lines: &[String], rng: &mut Rng| {
        let mut s = lines.join("\n");
        if !lines.is_empty() && rng.below(4) != 0 {
            s.push('\n');
        }
        s.into_bytes()
    };
    (join(&old, rng), join(&new, rng))
}
