//! Against real git: our diffs through `git apply`, and `git diff` output
//! through our parse and apply. These need `git` on the PATH and fail,
//! loudly, without it: a silent skip would hide a broken format.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use super::{random_pair, MemTree, Rng};
use crate::*;

/// A scratch git repository under the system temp dir, removed on drop.
struct Repo {
    dir: PathBuf,
}

impl Repo {
    fn new(name: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let unique = format!(
            "pyro-patch-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(unique);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let repo = Repo { dir };
        repo.git(&["init", "-q"], None);
        repo
    }

    /// Runs git in the repo, isolated from the user's configuration (a
    /// `diff.noprefix` there would change every header), and returns its
    /// stdout; panics with its stderr if it fails.
    fn git(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut child = Command::new("git")
            .args(["-c", "user.name=pyro", "-c", "user.email=pyro@example.invalid"])
            .args(["-c", "core.autocrlf=false", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(&self.dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("HOME", &self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("these tests run the real `git` binary, which could not be started ({e}); install git")
            });
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.unwrap_or_default().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "git {args:?} failed: {}\n--- stdin:\n{}",
            String::from_utf8_lossy(&out.stderr),
            stdin.unwrap_or_default()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn write(&self, path: &str, bytes: &[u8], mode: u32) {
        let p = self.dir.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, bytes).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Writes every file of `tree`.
    fn fill(&self, tree: &MemTree) {
        for (path, f) in &tree.0 {
            self.write(path, &f.bytes, f.mode);
        }
    }

    fn commit_all(&self) {
        self.git(&["add", "-A"], None);
        self.git(&["commit", "-q", "--allow-empty", "-m", "step"], None);
    }

    /// The work tree (without `.git`) as a [`MemTree`].
    fn tree(&self) -> MemTree {
        fn walk(root: &Path, dir: &Path, t: &mut MemTree) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.file_name().unwrap() == ".git" {
                    continue;
                }
                if path.is_dir() {
                    walk(root, &path, t);
                } else {
                    let rel = path
                        .strip_prefix(root)
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .to_owned();
                    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
                    t.put(&rel, &fs::read(&path).unwrap(), mode);
                }
            }
        }
        let mut t = MemTree::default();
        walk(&self.dir, &self.dir, &mut t);
        t
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// One file's before and after for a test: path, content, mode.
type Side = Option<(String, Vec<u8>, u32)>;

fn side(path: &str, bytes: &[u8], mode: u32) -> Side {
    Some((path.to_owned(), bytes.to_vec(), mode))
}

fn cases() -> Vec<(Side, Side)> {
    let long: String = (1..=60).map(|i| format!("line {i}\n")).collect();
    let long_edited = long.replace("line 4\n", "four\n").replace("line 50\n", "");
    vec![
        (
            side("modify.txt", long.as_bytes(), 0o644),
            side("modify.txt", long_edited.as_bytes(), 0o644),
        ),
        (
            None,
            side("added/new.txt", "hello\nworld\n".as_bytes(), 0o644),
        ),
        (
            None,
            side("added/run.sh", "#!/bin/sh\necho hi\n".as_bytes(), 0o755),
        ),
        (None, side("added/empty", b"", 0o644)),
        (side("deleted.txt", "bye\n".as_bytes(), 0o644), None),
        (side("deleted_empty", b"", 0o644), None),
        (
            side("nonl.txt", "a\nb".as_bytes(), 0o644),
            side("nonl.txt", "a\nb\nc".as_bytes(), 0o644),
        ),
        (
            side("addnl.txt", "a\nb".as_bytes(), 0o644),
            side("addnl.txt", "a\nb\n".as_bytes(), 0o644),
        ),
        (
            side("dropnl.txt", "a\nb\n".as_bytes(), 0o644),
            side("dropnl.txt", "a\nb".as_bytes(), 0o644),
        ),
        (
            side("chmod.sh", "echo\n".as_bytes(), 0o644),
            side("chmod.sh", "echo\n".as_bytes(), 0o755),
        ),
        (
            side("chmod_edit.sh", "echo\n".as_bytes(), 0o755),
            side("chmod_edit.sh", "echo 2\n".as_bytes(), 0o644),
        ),
        (
            side("from.txt", long.as_bytes(), 0o644),
            side("to/renamed.txt", long.as_bytes(), 0o644),
        ),
        (
            side("from2.txt", long.as_bytes(), 0o644),
            side("to/renamed2.txt", long_edited.as_bytes(), 0o644),
        ),
        (
            side("with space.txt", "x\n".as_bytes(), 0o644),
            side("with space.txt", "y\n".as_bytes(), 0o644),
        ),
        (
            side("crlf.txt", "a\r\nb\r\n".as_bytes(), 0o644),
            side("crlf.txt", "a\r\nB\r\n".as_bytes(), 0o644),
        ),
        (
            side("utf8.txt", "café\n".as_bytes(), 0o644),
            side("utf8.txt", "naïve\n".as_bytes(), 0o644),
        ),
    ]
}

#[test]
fn git_apply_accepts_our_diffs() {
    let repo = Repo::new("ours");
    let (mut before, mut after) = (MemTree::default(), MemTree::default());
    let mut patch = String::new();
    let mut add = |old: Side, new: Side| {
        if let Some((p, bytes, mode)) = &old {
            before.put(p, bytes, *mode);
        }
        if let Some((p, bytes, mode)) = &new {
            after.put(p, bytes, *mode);
        }
        let path = |s: &Side| s.as_ref().map(|(p, _, _)| p.clone());
        let bytes = |s: &Side| s.as_ref().map(|(_, b, _)| b.clone());
        let mode = |s: &Side| s.as_ref().map_or(0, |(_, _, m)| *m);
        let (old_path, new_path) = (
            path(&old).or(path(&new)).unwrap(),
            path(&new).or(path(&old)).unwrap(),
        );
        let (old_path, new_path) = (old_path.as_str(), new_path.as_str());
        let (ob, nb) = (bytes(&old), bytes(&new));
        let d = unified_diff(
            old_path,
            new_path,
            ob.as_deref(),
            nb.as_deref(),
            mode(&old),
            mode(&new),
        );
        assert!(!d.binary);
        patch.push_str(&d.text);
    };
    for (old, new) in cases() {
        add(old, new);
    }
    let mut rng = Rng(7);
    let names: Vec<String> = (0..40).map(|i| format!("gen/{i}.txt")).collect();
    for name in &names {
        let (old, new) = random_pair(&mut rng);
        add(side(name, &old, 0o644), side(name, &new, 0o644));
    }

    repo.fill(&before);
    repo.git(&["apply", "--check", "-"], Some(&patch));
    repo.git(&["apply", "-"], Some(&patch));
    assert_eq!(
        repo.tree(),
        after,
        "git apply result differs; patch:\n{patch}"
    );

    // And our own apply agrees on the same text.
    let mut ours = before.clone();
    ours.patch(&patch).unwrap();
    assert_eq!(ours, after);
}

#[test]
fn git_diff_output_parses_and_applies() {
    let repo = Repo::new("theirs");
    let long: String = (1..=60).map(|i| format!("line {i}\n")).collect();
    let before = {
        let mut t = MemTree::default();
        for (old, _) in cases() {
            if let Some((p, b, m)) = old {
                t.put(&p, &b, m);
            }
        }
        t.put(
            "renamed_same",
            long.replace("line", "row").as_bytes(),
            0o644,
        );
        t
    };
    repo.fill(&before);
    repo.commit_all();

    for (old, new) in cases() {
        if let Some((p, _, _)) = &old {
            fs::remove_file(repo.dir.join(p)).unwrap();
        }
        if let Some((p, b, m)) = new {
            repo.write(&p, &b, m);
        }
    }
    repo.git(&["mv", "renamed_same", "to/renamed_same"], None);
    repo.git(&["add", "-A"], None);
    let diff = repo.git(&["diff", "--cached", "-M", "HEAD"], None);
    let after = repo.tree();

    let patch = parse(&diff).unwrap_or_else(|e| panic!("{e}\n{diff}"));
    // Make sure git wrote the kinds of section this test is about.
    let find = |path: &str| {
        patch
            .files
            .iter()
            .find(|f| f.path() == path)
            .unwrap_or_else(|| panic!("{path} in\n{diff}"))
    };
    assert!(find("to/renamed_same").rename && find("to/renamed_same").hunks.is_empty());
    assert!(find("to/renamed.txt").rename && find("to/renamed.txt").hunks.is_empty());
    assert!(find("to/renamed2.txt").rename && !find("to/renamed2.txt").hunks.is_empty());
    assert_eq!(find("chmod.sh").new_mode, Some(0o100755));
    assert_eq!(find("modify.txt").hunks.len(), 2);
    assert_eq!(find("added/new.txt").old_path, None);
    assert_eq!(find("deleted.txt").new_path, None);

    let mut ours = before.clone();
    ours.patch(&diff).unwrap_or_else(|e| panic!("{e}\n{diff}"));
    assert_eq!(ours, after, "diff:\n{diff}");
}

#[test]
fn git_diff_applies_at_an_offset_like_git_apply() {
    let repo = Repo::new("offset");
    let base: String = (1..=80).map(|i| format!("line {i}\n")).collect();
    repo.write("f.txt", base.as_bytes(), 0o644);
    repo.commit_all();
    let edited = base
        .replace("line 30\n", "thirty\n")
        .replace("line 70\n", "line 70\nseventy and a half\n");
    repo.write("f.txt", edited.as_bytes(), 0o644);
    let diff = repo.git(&["diff"], None);
    assert_eq!(parse(&diff).unwrap().files[0].hunks.len(), 2);

    // Someone else grew the top of the file and trimmed its middle.
    let drifted = format!(
        "new 1\nnew 2\nnew 3\n{}",
        base.replace("line 50\nline 51\n", "")
    );
    repo.write("f.txt", drifted.as_bytes(), 0o644);
    repo.git(&["apply", "-"], Some(&diff));
    let by_git = repo.tree();

    let mut ours = MemTree::of(&[("f.txt", &drifted)]);
    ours.patch(&diff).unwrap();
    assert_eq!(ours, by_git);
    assert!(ours.text("f.txt").unwrap().starts_with("new 1\n"));
    assert!(ours
        .text("f.txt")
        .unwrap()
        .contains("line 29\nthirty\nline 31\n"));
}

#[test]
fn git_diff_of_generated_edits_round_trips() {
    let repo = Repo::new("generated");
    let mut rng = Rng(0xfeed);
    let pairs: Vec<_> = (0..40).map(|_| random_pair(&mut rng)).collect();
    let mut before = MemTree::default();
    for (i, (old, _)) in pairs.iter().enumerate() {
        before.put(&format!("f{i}"), old, 0o644);
    }
    repo.fill(&before);
    repo.commit_all();
    for (i, (_, new)) in pairs.iter().enumerate() {
        repo.write(&format!("f{i}"), new, 0o644);
    }
    let diff = repo.git(&["diff"], None);
    let mut ours = before;
    ours.patch(&diff).unwrap_or_else(|e| panic!("{e}\n{diff}"));
    assert_eq!(ours, repo.tree());
}
