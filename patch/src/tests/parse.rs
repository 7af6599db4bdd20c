//! Reading `git diff` and `diff -u` text, and rejecting malformed text
//! with the line and what was expected.

use super::{MemTree, Rng, GIT_DIFF};
use crate::*;

fn parse_err(patch: &str) -> (usize, String) {
    match parse(patch) {
        Err(PatchError::Parse { line, message }) => (line, message),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn parses_every_kind_of_git_section() {
    let p = parse(GIT_DIFF).unwrap();
    let f = &p.files;
    assert_eq!(f.len(), 6);

    assert_eq!(
        (f[0].old_path.as_deref(), f[0].new_path.as_deref()),
        (Some("src/main.rs"), Some("src/main.rs"))
    );
    let h = &f[0].hunks[0];
    assert_eq!(
        (h.old_start, h.old_len, h.new_start, h.new_len),
        (1, 3, 1, 3)
    );
    assert_eq!(h.header, "@@ -1,3 +1,3 @@ fn main() {");
    assert_eq!(h.line, 5);
    assert_eq!(h.lines[1], Line::Remove("    println!(\"hi\");\n".into()));
    assert!(!f[0].rename);

    assert_eq!(
        (f[1].old_path.as_deref(), f[1].new_path.as_deref()),
        (None, Some("new.txt"))
    );
    assert_eq!(f[1].new_mode, Some(0o100755));
    assert_eq!(f[2].new_path, None);
    assert_eq!(f[2].old_mode, Some(0o100644));
    assert_eq!(f[2].hunks[0].old_len, 1, "a count left out is 1");

    assert!(f[3].rename && f[3].hunks.is_empty());
    assert_eq!(f[3].old_path.as_deref(), Some("old name.txt"));
    assert_eq!(f[3].new_path.as_deref(), Some("new name.txt"));

    assert_eq!(
        (f[4].old_mode, f[4].new_mode),
        (Some(0o100644), Some(0o100755))
    );
    assert_eq!(
        f[4].old_path.as_deref(),
        Some("run.sh"),
        "the same name twice splits in the middle"
    );

    assert_eq!(
        (f[5].old_path.as_deref(), f[5].new_path.as_deref()),
        (None, Some("empty"))
    );
    assert_eq!(f[5].line, 32);
}

#[test]
fn plain_diff_strips_a_b_only_when_both_sides_have_them() {
    let dash_rn = "diff -ruN a/x.txt b/x.txt\n\
               --- a/x.txt\t2024-05-01 10:00:00.000000000 +0200\n\
               +++ b/x.txt\t2024-05-01 10:01:00.000000000 +0200\n\
               @@ -1 +1 @@\n-old\n+new\n";
    let p = parse(dash_rn).unwrap();
    assert_eq!(p.files[0].old_path.as_deref(), Some("x.txt"));
    assert_eq!(p.files[0].new_path.as_deref(), Some("x.txt"));

    let u = "--- x.txt.orig\t2024-05-01\n+++ x.txt\t2024-05-01\n@@ -1 +1 @@\n-old\n+new\n";
    let p = parse(u).unwrap();
    assert_eq!(p.paths().collect::<Vec<_>>(), ["x.txt.orig", "x.txt"]);
    // `patch` semantics: the existing new name is patched in place.
    let mut t = MemTree::of(&[("x.txt", "old\n")]);
    t.patch(u).unwrap();
    assert_eq!(t, MemTree::of(&[("x.txt", "new\n")]));

    let half = "--- a/x\n+++ x\n@@ -1 +1 @@\n-old\n+new\n";
    assert_eq!(
        parse(half).unwrap().files[0].old_path.as_deref(),
        Some("a/x")
    );
}

#[test]
fn diff_n_epoch_side_means_added_or_deleted() {
    let added = "--- a/n.txt\t1970-01-01 00:00:00.000000000 +0000\n\
                 +++ b/n.txt\t2024-05-01 10:00:00.000000000 +0000\n\
                 @@ -0,0 +1 @@\n+hello\n";
    let f = &parse(added).unwrap().files[0];
    assert_eq!(
        (f.old_path.as_deref(), f.new_path.as_deref()),
        (None, Some("n.txt"))
    );

    let deleted = "--- a/n.txt\t2024-05-01 10:00:00.000000000 +0000\n\
                   +++ b/n.txt\t1970-01-01 01:00:00.000000000 +0100\n\
                   @@ -1 +0,0 @@\n-hello\n";
    let mut t = MemTree::of(&[("n.txt", "hello\n")]);
    t.patch(deleted).unwrap();
    assert_eq!(t, MemTree::default());
}

#[test]
fn no_newline_marker_drops_the_newline_of_its_line() {
    let p = parse("--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n")
        .unwrap();
    let lines = &p.files[0].hunks[0].lines;
    assert_eq!(lines[1], Line::Remove("b".into()));
    assert_eq!(lines[2], Line::Add("b\n".into()));
}

#[test]
fn quoted_paths_are_unquoted() {
    let p = parse(
        "diff --git \"a/tab\\there\" \"b/caf\\303\\251\"\n\
         --- \"a/tab\\there\"\n+++ \"b/caf\\303\\251\"\n@@ -1 +1 @@\n-x\n+y\n",
    )
    .unwrap();
    assert_eq!(p.files[0].old_path.as_deref(), Some("tab\there"));
    assert_eq!(p.files[0].new_path.as_deref(), Some("café"));
}

#[test]
fn text_around_sections_is_skipped() {
    let mail = format!(
        "From 1234 Mon Sep 17 00:00:00 2001\nSubject: [PATCH] fix\n\n  indented body\n---\n \
         src/main.rs | 2 +-\n\n{}-- \n2.47.3\n\n",
        GIT_DIFF.split("diff --git a/new.txt").next().unwrap()
    );
    assert_eq!(parse(&mail).unwrap().files.len(), 1);
}

#[test]
fn paths_lists_every_path_touched() {
    let p = parse(GIT_DIFF).unwrap();
    let paths: Vec<_> = p.paths().collect();
    assert_eq!(
        paths,
        [
            "src/main.rs",
            "new.txt",
            "gone.txt",
            "old name.txt",
            "new name.txt",
            "run.sh",
            "empty"
        ]
    );
}

#[test]
fn malformed_patches_name_the_line_and_what_was_expected() {
    let (line, msg) = parse_err("");
    assert_eq!(line, 1);
    assert!(msg.contains("no file sections"), "{msg}");
    assert!(parse_err("just some words\n")
        .1
        .contains("no file sections"));

    let (line, msg) = parse_err("hello\n@@ -1 +1 @@\n-a\n+b\n");
    assert_eq!(line, 2);
    assert!(msg.contains("before any file header"), "{msg}");

    let (line, msg) = parse_err("--- a/x\n+++ b/x\n+oops\n");
    assert_eq!(line, 3);
    assert!(msg.contains("expected a `@@` hunk header"), "{msg}");

    let (line, msg) = parse_err("--- a/x\n@@ -1 +1 @@\n");
    assert_eq!(line, 2);
    assert!(msg.contains("`+++ `"), "{msg}");

    // Short hunk: the next header comes too early.
    let (line, msg) =
        parse_err("--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n@@ -9 +9 @@\n-x\n+y\n");
    assert_eq!(line, 7);
    assert!(
        msg.contains("1 old and 1 new line(s) still expected"),
        "{msg}"
    );

    // Short hunk: the patch ends.
    let (line, msg) = parse_err("--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n");
    assert_eq!(line, 5);
    assert!(msg.contains("patch ends inside hunk"), "{msg}");

    // Long hunk: more lines than counted.
    let (line, msg) = parse_err("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n+c\n");
    assert_eq!(line, 6);
    assert!(msg.contains("more lines than its header counts"), "{msg}");
    let (line, msg) = parse_err("--- a/x\n+++ b/x\n@@ -1,2 +1 @@\n-a\n+b\n+c\n");
    assert_eq!(line, 6);
    assert!(msg.contains("more new lines"), "{msg}");

    let (line, msg) = parse_err("--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n*b\n");
    assert_eq!(line, 5);
    assert!(msg.contains("found `*b`"), "{msg}");

    let (line, msg) = parse_err("--- a/x\n+++ b/x\n@@ -1,2 @@\n a\n");
    assert_eq!(line, 3);
    assert!(msg.contains("expected `@@ -a,b +c,d @@`"), "{msg}");

    let (line, msg) = parse_err(
        "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-a\n\\ No newline at end of file\n-b\n+a\n+b\n",
    );
    assert_eq!(line, 5);
    assert!(msg.contains("No newline"), "{msg}");

    let (_, msg) = parse_err("--- /dev/null\n+++ /dev/null\n");
    assert!(msg.contains("both sides"), "{msg}");

    let err = parse("x\n@@ -1 +1 @@\n").unwrap_err().to_string();
    assert!(err.starts_with("malformed patch at line 2:"), "{err}");
}

#[test]
fn mangled_patches_fail_cleanly() {
    // guest-init must never panic on input an agent sends.
    let tree = MemTree::of(&[
        ("src/main.rs", "fn main() {\n    println!(\"hi\");\n}\n"),
        ("gone.txt", "bye\n"),
        ("run.sh", "echo\n"),
    ]);
    let mut rng = Rng(1);
    for _ in 0..3000 {
        let mut lines: Vec<String> = GIT_DIFF.split('\n').map(str::to_owned).collect();
        for _ in 0..=rng.below(3) {
            let i = rng.below(lines.len() as u64) as usize;
            match rng.below(5) {
                0 => drop(lines.remove(i)),
                1 => lines.insert(i, lines[i].clone()),
                2 => lines[i].insert(0, ['+', '-', ' ', '\\', '@'][rng.below(5) as usize]),
                3 => lines[i] = lines[i].replace('1', "4294967295"),
                _ => {
                    let keep = rng.below(lines[i].len() as u64 + 1) as usize;
                    lines[i].truncate(keep);
                }
            }
        }
        if let Ok(patch) = parse(&lines.join("\n")) {
            let _ = apply(&patch, &tree);
        }
    }
    let both = "diff --git a/x b/x\nnew file mode 100644\ndeleted file mode 100644\n";
    assert_eq!(
        parse_err(both),
        (3, "a file both created and deleted".into())
    );
}
