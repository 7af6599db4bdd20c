//! Generating diffs, and round trips through our own diff and apply.

use super::{numbered, random_pair, MemTree, Rng};
use crate::*;

#[test]
fn diff_sections_look_like_git() {
    let d = unified_diff("f", "f", Some(b"a\nb\nc\n"), Some(b"a\nB\nc"), 0o644, 0o644);
    assert!(!d.binary);
    assert_eq!(
        d.text,
        "diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n a\n-b\n-c\n+B\n+c\n\\ No newline at end of file\n"
    );

    let d = unified_diff("n", "n", None, Some(b"x\n"), 0, 0o755);
    assert_eq!(
        d.text,
        "diff --git a/n b/n\nnew file mode 100755\n--- /dev/null\n+++ b/n\n@@ -0,0 +1 @@\n+x\n"
    );

    let d = unified_diff("n", "n", Some(b"x\ny\n"), None, 0o600, 0);
    assert_eq!(d.text, "diff --git a/n b/n\ndeleted file mode 100644\n--- a/n\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-x\n-y\n");

    let d = unified_diff("s", "s", Some(b"x\n"), Some(b"x\n"), 0o644, 0o700);
    assert_eq!(
        d.text,
        "diff --git a/s b/s\nold mode 100644\nnew mode 100755\n"
    );

    let d = unified_diff("old", "new dir/f", Some(b"x\n"), Some(b"x\n"), 0o644, 0o644);
    assert_eq!(
        d.text,
        "diff --git a/old b/new dir/f\nrename from old\nrename to new dir/f\n"
    );

    let d = unified_diff("e", "e", None, Some(b""), 0, 0o644);
    assert_eq!(d.text, "diff --git a/e b/e\nnew file mode 100644\n");

    assert!(unified_diff("f", "f", Some(b"x"), Some(b"x"), 0o644, 0o664).is_empty());

    let d = unified_diff("t\"q", "t\"q", Some(b"1\n"), Some(b"2\n"), 0o644, 0o644);
    assert!(
        d.text
            .starts_with("diff --git \"a/t\\\"q\" \"b/t\\\"q\"\n--- \"a/t\\\"q\"\n"),
        "{}",
        d.text
    );
    assert_eq!(
        parse(&d.text).unwrap().files[0].old_path.as_deref(),
        Some("t\"q")
    );

    let d = unified_diff("sp ace", "sp ace", Some(b"1\n"), Some(b"2\n"), 0o644, 0o644);
    assert!(
        d.text.contains("--- a/sp ace\t\n+++ b/sp ace\t\n"),
        "{}",
        d.text
    );
}

#[test]
fn binary_content_is_flagged_not_diffed() {
    let d = unified_diff(
        "img",
        "img",
        Some(b"\x89PNG\0\x01"),
        Some(b"\x89PNG\0\x02"),
        0o644,
        0o644,
    );
    assert!(d.binary);
    assert_eq!(
        d.text,
        "diff --git a/img b/img\nBinary files a/img and b/img differ\n"
    );

    let d = unified_diff("img", "img", None, Some(b"\0"), 0, 0o644);
    assert_eq!(
        d.text,
        "diff --git a/img b/img\nnew file mode 100644\nBinary files /dev/null and b/img differ\n"
    );
    assert!(d.binary);
    assert!(parse(&d.text).unwrap().files[0].binary);

    // Latin-1 in a changed line cannot travel in a text patch...
    let d = unified_diff("l", "l", Some(b"caf\xe9\n"), Some(b"cafe\n"), 0o644, 0o644);
    assert!(d.binary);
    // ...but far from the change it does not matter.
    let old = [&b"caf\xe9\n"[..], numbered(10).as_bytes()].concat();
    let new = [
        &b"caf\xe9\n"[..],
        numbered(10).replace("line 10", "line X").as_bytes(),
    ]
    .concat();
    let d = unified_diff("l", "l", Some(&old), Some(&new), 0o644, 0o644);
    assert!(!d.binary, "{}", d.text);
    round_trip(Some(&old), Some(&new));
}

/// Diffs `old` into `new`, parses and applies the diff to `old`, and
/// checks the result is `new`.
fn round_trip(old: Option<&[u8]>, new: Option<&[u8]>) {
    let d = unified_diff("f", "f", old, new, 0o644, 0o644);
    let mut t = MemTree::default();
    if let Some(old) = old {
        t.put("f", old, 0o644);
    }
    if d.is_empty() {
        assert_eq!(old, new);
        return;
    }
    t.patch(&d.text)
        .unwrap_or_else(|e| panic!("{e}\n--- diff:\n{}", d.text));
    assert_eq!(
        t.0.get("f").map(|f| f.bytes.as_slice()),
        new,
        "diff:\n{}",
        d.text
    );
}

#[test]
fn round_trips_hand_picked_pairs() {
    let cases: &[(&str, &str)] = &[
        ("", "a\n"),
        ("a\n", ""),
        ("a", "a\n"),
        ("a\n", "a"),
        ("a", "b"),
        ("\n", ""),
        ("\n\n\n", "\n"),
        ("a\nb\nc\n", "a\nc\n"),
        ("a\nb\nc", "x\na\nb\nc"),
        ("same\n", "same\n"),
        ("a\r\nb\r\n", "a\nb\n"),
        (" lead\n-dash\n+plus\n\\back\n", "-dash\n \n+plus\n\\back"),
        ("--- a/x\n+++ b/x\n@@ -1 +1 @@\n", "@@ -1 +1 @@\n--- a/x\n"),
    ];
    for (old, new) in cases {
        round_trip(Some(old.as_bytes()), Some(new.as_bytes()));
        round_trip(None, Some(new.as_bytes()));
        round_trip(Some(old.as_bytes()), None);
    }
    let long = numbered(200);
    let edited = long
        .replace("line 3\n", "")
        .replace("line 100\n", "CHANGED\n")
        .replace("line 199\n", "line 199\nextra\n");
    round_trip(Some(long.as_bytes()), Some(edited.as_bytes()));
}

#[test]
fn round_trips_generated_pairs() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..500 {
        let (old, new) = random_pair(&mut rng);
        round_trip(Some(&old), Some(&new));
    }
}

#[test]
fn generated_diffs_apply_after_unrelated_lines_moved_them() {
    let mut rng = Rng(42);
    let mut checked = 0;
    for _ in 0..400 {
        let (old, new) = random_pair(&mut rng);
        let d = unified_diff("f", "f", Some(&old), Some(&new), 0o644, 0o644);
        if d.is_empty() {
            continue;
        }
        // Lines nobody's context mentions, prepended: every hunk not
        // anchored at line 1 must still be found by offset. (Skip diffs
        // whose hunks would also match elsewhere: there the nearest match
        // wins, by design, and may not be the original spot.)
        let patch = parse(&d.text).unwrap();
        let hunks = &patch.files[0].hunks;
        if hunks[0].old_start <= 1 || !hunks.iter().all(|h| matches_once(&old, h)) {
            continue;
        }
        let prefix = b"unrelated 1\nunrelated 2\n";
        let mut t = MemTree::default();
        t.put("f", &[&prefix[..], &old].concat(), 0o644);
        t.patch(&d.text)
            .unwrap_or_else(|e| panic!("{e}\n{}", d.text));
        assert_eq!(t.0["f"].bytes, [&prefix[..], &new].concat());
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} generated diffs were usable");
}

/// Whether the old side of `hunk` occurs exactly once in `content`.
fn matches_once(content: &[u8], hunk: &Hunk) -> bool {
    let lines = split_lines(content);
    let old = hunk.old_lines();
    !old.is_empty()
        && lines
            .windows(old.len())
            .filter(|w| *w == old.as_slice())
            .count()
            == 1
}
