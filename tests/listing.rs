//! Listings larger than one frame header: `file list --recursive` and
//! `diff` of a tree whose entries take more than the 1 MiB a reply
//! header may hold. Before listings streamed, both failed with "frame
//! header of N bytes exceeds 1048576".

mod common;

use pyro::workspace::CreateOptions;
use pyro::workspace::{NoProgress, Pyro};
use std::time::Duration;

/// Files in the seed, each under a path of about 800 bytes: together
/// about 1.4 MiB of listed entries. Few files, long names: the guest
/// lists them in seconds even where its kernel is emulated.
const FILES: usize = 1_500;

/// Deletes the workspace when the test ends, passed or failed.
struct Deleting<'a>(&'a Pyro, String);

impl Drop for Deleting<'_> {
    fn drop(&mut self) {
        let _ = self.0.workspace_delete(&self.1);
    }
}

#[test]
fn a_listing_larger_than_one_header_streams_and_diff_sees_deletes() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let data = common::scratch();
    let pyro = common::pyro_with_own_data(data.path());
    let seed = common::scratch();
    let deep_rel = format!(
        "{}/{}/{}",
        "a".repeat(200),
        "b".repeat(200),
        "c".repeat(200)
    );
    let deep = seed.path().join(&deep_rel);
    std::fs::create_dir_all(&deep).unwrap();
    for i in 0..FILES {
        std::fs::write(deep.join(format!("{i:0>200}")), format!("{i}\n")).unwrap();
    }
    let ws = pyro
        .workspace_create(
            &CreateOptions {
                seed_path: Some(seed.path().to_path_buf()),
                // A failed assertion must not leave the VM running.
                ttl_seconds: Some(1800),
                ..Default::default()
            },
            &NoProgress,
        )
        .expect("create");
    let id = ws.record.workspace_id.clone();
    let _cleanup = Deleting(&pyro, id.clone());

    let list = pyro
        .workspace_file_list(&id, "", true)
        .expect("a recursive listing larger than one header");
    let json = serde_json::to_vec(&list.entries).unwrap();
    assert!(json.len() > 1 << 20, "only {} bytes listed", json.len());
    assert!(!list.truncated);
    // Every file (beside the three directories and mkfs's lost+found),
    // sorted by path.
    let under = format!("/workspace/{deep_rel}/");
    let files = list.entries.iter().filter(|e| e.path.starts_with(&under));
    assert_eq!(files.count(), FILES);
    assert!(list.entries.windows(2).all(|w| w[0].path < w[1].path));
    let last = format!("/workspace/{deep_rel}/{:0>200}", FILES - 1);
    assert!(list.entries.iter().any(|e| e.path == last), "no {last}");

    // One process: each spawn costs ~0.6 s in a guest whose kernel is
    // emulated.
    let mut rm = vec!["rm".to_string(), "--".to_string()];
    rm.extend((0..100).map(|i| format!("{deep_rel}/{i:0>200}")));
    let record = pyro
        .workspace_exec(&id, &rm, Duration::from_secs(300), |_, _| {})
        .expect("exec");
    assert_eq!(record.exit_code, Some(0), "{record:?}");
    let diff = pyro.workspace_diff(&id).expect("diff of a large tree");
    assert_eq!(diff.summary.deleted, 100, "{:?}", diff.summary);
    assert_eq!(diff.summary.total, 100, "{:?}", diff.summary);
    pyro.workspace_delete(&id).expect("delete");
}
