//! Applying patches to an in-memory tree: offsets, anchors, exact
//! context, all or nothing, and sections that must agree.

use super::{numbered, MemTree, GIT_DIFF};
use crate::*;

#[test]
fn modifies_adds_deletes_in_one_patch() {
    let mut t = MemTree::of(&[
        ("src/main.rs", "fn main() {\n    println!(\"hi\");\n}\n"),
        ("gone.txt", "bye\n"),
        ("old name.txt", "x\n"),
        ("run.sh", "echo\n"),
    ]);
    t.put("empty", b"", 0o644);
    let err = t.clone().patch(GIT_DIFF).unwrap_err();
    assert_eq!(
        err,
        PatchError::AlreadyExists {
            path: "empty".into(),
            by: None
        }
    );

    t.0.remove("empty");
    let changes = apply(&parse(GIT_DIFF).unwrap(), &t).unwrap();
    // Deletes come first.
    assert_eq!(
        changes[0],
        Change::Delete {
            path: "gone.txt".into()
        }
    );
    assert_eq!(
        changes[1],
        Change::Delete {
            path: "old name.txt".into()
        }
    );
    t.perform(changes);
    assert_eq!(
        t.text("src/main.rs").unwrap(),
        "fn main() {\n    println!(\"hello\");\n}\n"
    );
    assert_eq!(
        t.0["new.txt"],
        FileState {
            bytes: b"one\ntwo\n".to_vec(),
            mode: 0o755
        }
    );
    assert_eq!(t.0["new name.txt"].bytes, b"x\n");
    assert_eq!(
        t.0["run.sh"],
        FileState {
            bytes: b"echo\n".to_vec(),
            mode: 0o755
        }
    );
    assert_eq!(
        t.0["empty"],
        FileState {
            bytes: vec![],
            mode: 0o644
        }
    );
    assert!(!t.0.contains_key("gone.txt") && !t.0.contains_key("old name.txt"));
}

#[test]
fn hunks_are_found_at_an_offset() {
    let old = numbered(30);
    let patch = "--- a/f\n+++ b/f\n\
                 @@ -4,3 +4,3 @@\n line 4\n-line 5\n+FIVE\n line 6\n\
                 @@ -20,3 +20,4 @@\n line 20\n line 21\n+NEW\n line 22\n";
    // The file grew by two lines at the top since the diff was made.
    let mut t = MemTree::of(&[("f", &format!("x\ny\n{old}"))]);
    t.patch(patch).unwrap();
    let want = format!(
        "x\ny\n{}",
        old.replace("line 5\n", "FIVE\n")
            .replace("line 21\n", "line 21\nNEW\n")
    );
    assert_eq!(t.text("f").unwrap(), want);

    // And shrank above the second hunk.
    let mut t = MemTree::of(&[("f", &old.replace("line 10\nline 11\n", ""))]);
    t.patch(patch).unwrap();
    assert!(t.text("f").unwrap().contains("line 21\nNEW\nline 22\n"));
}

#[test]
fn failing_hunk_names_file_hunk_and_first_mismatched_line() {
    let mut t = MemTree::of(&[("f", &numbered(30).replace("line 21", "line twenty-one"))]);
    let patch = "--- a/f\n+++ b/f\n\
                 @@ -4,3 +4,3 @@\n line 4\n-line 5\n+FIVE\n line 6\n\
                 @@ -20,3 +20,4 @@ fn twenty\n line 20\n line 21\n+NEW\n line 22\n";
    let err = t.patch(patch).unwrap_err();
    assert_eq!(
        err,
        PatchError::HunkFailed {
            path: "f".into(),
            hunk: 2,
            header: "@@ -20,3 +20,4 @@ fn twenty".into(),
            line: 21,
            expected: "\"line 21\"".into(),
            found: "\"line twenty-one\"".into(),
        }
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with("f: hunk #2 (@@ -20,3 +20,4 @@ fn twenty) does not apply: at line 21"),
        "{msg}"
    );
    assert_eq!(
        t,
        MemTree::of(&[("f", &numbered(30).replace("line 21", "line twenty-one"))])
    );
}

#[test]
fn one_failing_file_means_no_changes_at_all() {
    let t = MemTree::of(&[("a", "1\n"), ("b", "2\n")]);
    let patch =
        "--- a/a\n+++ b/a\n@@ -1 +1 @@\n-1\n+one\n--- a/b\n+++ b/b\n@@ -1 +1 @@\n-3\n+three\n";
    let err = apply(&parse(patch).unwrap(), &t).unwrap_err();
    assert!(
        matches!(err, PatchError::HunkFailed { ref path, hunk: 1, .. } if path == "b"),
        "{err:?}"
    );
}

#[test]
fn files_must_exist_or_not_as_the_patch_says() {
    let add = "--- /dev/null\n+++ b/n\n@@ -0,0 +1 @@\n+x\n";
    let err = MemTree::of(&[("n", "")]).patch(add).unwrap_err();
    assert_eq!(
        err.to_string(),
        "n: the patch creates it, but it already exists"
    );

    let del = "--- a/n\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n";
    assert_eq!(
        MemTree::default().patch(del),
        Err(PatchError::NotFound {
            path: "n".into(),
            by: None
        })
    );

    let modify = "--- a/n\n+++ b/n\n@@ -1 +1 @@\n-x\n+y\n";
    assert_eq!(
        MemTree::default().patch(modify),
        Err(PatchError::NotFound {
            path: "n".into(),
            by: None
        })
    );

    let rename_onto = "diff --git a/x b/y\nsimilarity index 100%\nrename from x\nrename to y\n";
    let err = MemTree::of(&[("x", "1\n"), ("y", "2\n")])
        .patch(rename_onto)
        .unwrap_err();
    assert_eq!(
        err,
        PatchError::AlreadyExists {
            path: "y".into(),
            by: None
        }
    );
}

#[test]
fn delete_needs_the_exact_content() {
    let del = "--- a/n\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-x\n-y\n";
    let err = MemTree::of(&[("n", "x\ny\nz\n")]).patch(del).unwrap_err();
    assert_eq!(
        err,
        PatchError::DeleteMismatch {
            path: "n".into(),
            extra_lines: 1
        }
    );
    let err = MemTree::of(&[("n", "x\ny")]).patch(del).unwrap_err();
    assert!(
        matches!(err, PatchError::HunkFailed { line: 2, .. }),
        "{err:?}"
    );
    let err = MemTree::of(&[("n", "w\ny\n")]).patch(del).unwrap_err();
    assert!(
        matches!(err, PatchError::HunkFailed { line: 1, .. }),
        "{err:?}"
    );

    let mut t = MemTree::of(&[("n", "x\ny\n")]);
    t.patch(del).unwrap();
    assert_eq!(t, MemTree::default());
}

#[test]
fn renames_copies_and_mode_changes() {
    let rename = "diff --git a/x b/d/y\nsimilarity index 80%\nrename from x\nrename to d/y\n\
                  --- a/x\n+++ b/d/y\n@@ -1,2 +1,2 @@\n keep\n-old\n+new\n";
    let mut t = MemTree::of(&[("x", "keep\nold\n")]);
    t.0.get_mut("x").unwrap().mode = 0o755;
    let changes = apply(&parse(rename).unwrap(), &t).unwrap();
    assert_eq!(
        changes,
        [
            Change::Delete { path: "x".into() },
            Change::Write {
                path: "d/y".into(),
                bytes: b"keep\nnew\n".to_vec(),
                mode: 0o755
            },
        ]
    );

    let copy = "diff --git a/x b/z\nsimilarity index 100%\ncopy from x\ncopy to z\n";
    let mut t = MemTree::of(&[("x", "1\n")]);
    t.patch(copy).unwrap();
    assert_eq!(t, MemTree::of(&[("x", "1\n"), ("z", "1\n")]));

    let chmod = "diff --git a/x b/x\nold mode 100755\nnew mode 100644\n";
    let mut t = MemTree::default();
    t.put("x", b"1\n", 0o755);
    let changes = apply(&parse(chmod).unwrap(), &t).unwrap();
    assert_eq!(
        changes,
        [Change::Write {
            path: "x".into(),
            bytes: b"1\n".to_vec(),
            mode: 0o644
        }]
    );

    let link = "diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+target\n\\ No newline at end of file\n";
    let err = MemTree::default().patch(link).unwrap_err();
    assert_eq!(err.to_string(), "l: a symbolic link is not supported");
}

#[test]
fn final_newline_can_be_added_and_removed() {
    let add_nl = "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n";
    let mut t = MemTree::of(&[("f", "a\nb")]);
    t.patch(add_nl).unwrap();
    assert_eq!(t.text("f").unwrap(), "a\nb\n");
    // The patch knows the old file had no newline; this one has.
    assert!(matches!(
        t.patch(add_nl),
        Err(PatchError::HunkFailed { line: 2, .. })
    ));

    let drop_nl = "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n+b\n\\ No newline at end of file\n";
    t.patch(drop_nl).unwrap();
    assert_eq!(t.text("f").unwrap(), "a\nb");

    let context_without_nl =
        "--- a/f\n+++ b/f\n@@ -1,2 +1,3 @@\n+top\n a\n b\n\\ No newline at end of file\n";
    t.patch(context_without_nl).unwrap();
    assert_eq!(t.text("f").unwrap(), "top\na\nb");
}

#[test]
fn content_is_bytes_not_text() {
    let mut t = MemTree::default();
    t.put("f", b"caf\xe9\r\nmid\r\nend\xff", 0o600);
    let patch = "--- a/f\n+++ b/f\n@@ -2 +2 @@\n-mid\r\n+MID\r\n";
    t.patch(patch).unwrap();
    assert_eq!(
        t.0["f"],
        FileState {
            bytes: b"caf\xe9\r\nMID\r\nend\xff".to_vec(),
            mode: 0o600
        }
    );
    // A CR is part of the line: LF context does not match CRLF content.
    assert!(t
        .patch("--- a/f\n+++ b/f\n@@ -2 +2 @@\n-MID\n+mid\n")
        .is_err());
}

#[test]
fn sections_apply_in_order_and_must_agree() {
    let twice = "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-1\n+2\n--- a/f\n+++ b/f\n@@ -1 +1 @@\n-2\n+3\n";
    let mut t = MemTree::of(&[("f", "1\n")]);
    t.patch(twice).unwrap();
    assert_eq!(t.text("f").unwrap(), "3\n");

    let contradicts =
        "diff --git a/f b/f\ndeleted file mode 100644\n--- a/f\n+++ /dev/null\n@@ -1 +0,0 @@\n-1\n\
                       diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -1 +1 @@\n-1\n+2\n";
    let err = MemTree::of(&[("f", "1\n")]).patch(contradicts).unwrap_err();
    assert_eq!(
        err,
        PatchError::NotFound {
            path: "f".into(),
            by: Some(1)
        }
    );
    assert!(
        err.to_string()
            .contains("section at patch line 1 already deleted"),
        "{err}"
    );

    // A path renamed away may be created again.
    let reuse = "diff --git a/f b/g\nrename from f\nrename to g\n\
                 diff --git a/f b/f\nnew file mode 100644\n--- /dev/null\n+++ b/f\n@@ -0,0 +1 @@\n+fresh\n";
    let mut t = MemTree::of(&[("f", "1\n")]);
    t.patch(reuse).unwrap();
    assert_eq!(t, MemTree::of(&[("f", "fresh\n"), ("g", "1\n")]));
}

#[test]
fn anchored_hunks_do_not_slide() {
    // No trailing context: the edit was at the end of the file.
    let at_end = "--- a/f\n+++ b/f\n@@ -2,2 +2,3 @@\n b\n c\n+d\n";
    let mut t = MemTree::of(&[("f", "a\nb\nc\nx\n")]);
    let err = t.patch(at_end).unwrap_err();
    assert_eq!(
        err.to_string().split("; ").next().unwrap(),
        "f: hunk #1 (@@ -2,2 +2,3 @@) does not apply: at line 4 expected end of file, found \"x\""
    );
    let mut t = MemTree::of(&[("f", "z\na\nb\nc\n")]);
    t.patch(at_end).unwrap();
    assert_eq!(t.text("f").unwrap(), "z\na\nb\nc\nd\n");

    // Starting at line 1: the edit was at the top.
    let at_top = "--- a/f\n+++ b/f\n@@ -1,2 +1,3 @@\n+new\n a\n b\n";
    assert!(MemTree::of(&[("f", "x\na\nb\n")]).patch(at_top).is_err());

    // Hunks apply in order without overlapping.
    let overlap =
        "--- a/f\n+++ b/f\n@@ -2,2 +2,2 @@\n b\n-c\n+C\n x\n@@ -2,2 +2,2 @@\n b\n-c\n+C\n x\n";
    assert!(parse(overlap).is_err(), "counts are checked first");
    let overlap =
        "--- a/f\n+++ b/f\n@@ -2,3 +2,3 @@\n b\n-c\n+C\n x\n@@ -2,3 +2,3 @@\n b\n-c\n+C\n x\n";
    let err = MemTree::of(&[("f", "a\nb\nc\nx\ny\n")])
        .patch(overlap)
        .unwrap_err();
    assert!(
        matches!(err, PatchError::HunkFailed { hunk: 2, .. }),
        "{err:?}"
    );
}

#[test]
fn binary_sections_are_refused_on_apply() {
    let p = parse("diff --git a/img.png b/img.png\nindex 1..2 100644\nBinary files a/img.png and b/img.png differ\n").unwrap();
    assert!(p.files[0].binary);
    let err = apply(&p, &MemTree::default()).unwrap_err();
    assert_eq!(
        err,
        PatchError::Binary {
            path: "img.png".into()
        }
    );
    assert!(err.to_string().contains("binary patches are not supported"));
}
