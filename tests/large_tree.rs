//! A tree of 100,000 files works (the data-path issue's target), on one
//! real workspace: a recursive `file list` gives every entry, `diff`
//! sees a change among them, `export` copies the tree out byte for
//! byte, and a checkpoint/reset round trip brings back the tree. All of
//! it is served from the disk image on the host; through the agent, a
//! listing of this tree takes over an hour on a PVM host.
//!
//! Before: listings stopped at 100,000 entries (`truncated`), and a
//! diff of a larger tree was refused only after the agent had spent
//! that hour listing it.

mod common;

use pyro::workspace::{ArtifactType, NoProgress, ServedBy};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const DIRS: usize = 1_000;
const FILES: usize = 100;

/// Every regular file below `dir`, by relative path, with its content.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn a_tree_of_100000_files_lists_diffs_exports_and_resets() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let scratch = common::scratch();
    let pyro = common::pyro_with_own_data(&scratch.path().join("data"));
    let seed = scratch.path().join("seed");
    pyro::workspace::testing::small_files_seed(&seed, DIRS, FILES);
    let id = common::seeded_workspace(&pyro, &seed);
    let _guard = common::delete_on_drop(&pyro, &id);

    let list = pyro.workspace_file_list(&id, "/workspace", true).unwrap();
    assert_eq!(list.served_by, ServedBy::HostImage);
    assert!(!list.truncated, "a listing of 101,000 entries is whole");
    let count = |kind| {
        list.entries
            .iter()
            .filter(|e| e.artifact_type == kind)
            .count()
    };
    assert_eq!(count(ArtifactType::File), DIRS * FILES);
    // The seed's directories, and mkfs's lost+found.
    assert_eq!(count(ArtifactType::Directory), DIRS + 1);

    // One process: each spawn costs ~0.6 s in a guest whose kernel is
    // emulated.
    let script = "cd /workspace && rm -rf d7 && echo changed > d8/f3.txt && echo new > added.txt";
    let argv = ["sh".to_string(), "-c".into(), script.into()];
    let record = pyro
        .workspace_exec(&id, &argv, Duration::from_secs(300), |_, _| {})
        .unwrap();
    assert_eq!(record.exit_code, Some(0), "{record:?}");
    let diff = pyro.workspace_diff(&id).expect("diff of 100,000 files");
    assert_eq!(diff.served_by, ServedBy::HostImage);
    let s = &diff.summary;
    assert_eq!(
        (s.modified, s.deleted, s.added),
        (1, FILES as u64, 1),
        "{s:?}"
    );

    // Export: byte for byte what the guest has (the seed, changed as
    // above).
    let mut want = files(&seed);
    want.retain(|path, _| !path.starts_with("d7/"));
    want.insert("d8/f3.txt".into(), b"changed\n".to_vec());
    want.insert("added.txt".into(), b"new\n".to_vec());
    let out = scratch.path().join("export");
    let export = pyro.workspace_export(&id, "/workspace", &out).unwrap();
    assert_eq!(export.served_by, ServedBy::HostImage);
    let got = files(&out);
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the export differs from the guest's tree");

    // A checkpoint, back to the baseline (nothing differs), and back to
    // the checkpoint (the same changes again).
    pyro.checkpoint_create(&id, "changed").unwrap();
    pyro.workspace_reset(&id, "baseline", &NoProgress).unwrap();
    let diff = pyro.workspace_diff(&id).unwrap();
    assert_eq!(diff.summary.total, 0, "{:?}", diff.summary);
    pyro.workspace_reset(&id, "changed", &NoProgress).unwrap();
    let diff = pyro.workspace_diff(&id).unwrap();
    let s = &diff.summary;
    assert_eq!(
        (s.modified, s.deleted, s.added),
        (1, FILES as u64, 1),
        "{s:?}"
    );
}
