//! The bulk write path (`workspace/src/staging.rs`, the agent's
//! `body.rs` and `direct.rs`), on one real workspace: pushes and large
//! file writes whose bodies go through the staging disk land byte for
//! byte, into a new directory and over existing files (and a
//! megabyte file write); a push refused
//! after 50 MiB, and one whose staged bytes changed before the agent read
//! them, leave /workspace as it was; two pushes at once both land (the
//! one that finds the staging disk taken goes inline); and the staging
//! disk's file holds no data once a push has been answered.

mod common;

use pyro::workspace::{CreateOptions, NoProgress, Pyro, STAGED_BAD_SUM_ENV};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// `len` bytes in which every position has its own value (a chunk or a
/// sector out of place shows).
fn pattern(len: usize, salt: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(salt).wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// Every file below `dir` (relative path, content), sorted.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                todo.push(p);
            } else if meta.is_file() {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn export(pyro: &Pyro, id: &str, path: &str, to: &Path) -> Vec<(String, Vec<u8>)> {
    pyro.workspace_export(id, path, to).expect("export");
    files(to)
}

/// The staging disk's file holds no data blocks.
fn staging_is_empty(pyro: &Pyro, id: &str) {
    let file = pyro
        .paths()
        .data
        .join("workspaces")
        .join(id)
        .join("vm/staging.img");
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.blocks(), 0, "{} still holds data", file.display());
}

#[test]
fn pushes_and_large_writes_through_the_staging_disk() {
    let scratch = common::scratch();
    let pyro = common::pyro_with_own_data(&scratch.path().join("data"));
    let id = pyro
        .workspace_create(&CreateOptions::default(), &NoProgress)
        .expect("create")
        .record
        .workspace_id;
    let _guard = common::delete_on_drop(&pyro, &id);
    let out = |name: &str| scratch.path().join(name);

    // A tree: a file of several staged pieces and a tail, one just past
    // the direct-write threshold, a small one, a symlink, nesting.
    let src = out("src");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::write(src.join("big.bin"), pattern(3 * (1 << 20) + 77, 1)).unwrap();
    std::fs::write(src.join("a/mid.bin"), pattern(16 * 1024 + 513, 2)).unwrap();
    std::fs::write(src.join("a/b/small.txt"), b"small\n").unwrap();
    std::os::unix::fs::symlink("a/b/small.txt", src.join("link")).unwrap();
    let pushed = pyro
        .workspace_sync_push(&id, &src, "/workspace/new/dir")
        .expect("push into a new directory");
    assert_eq!(
        (pushed.upload.entry_count, pushed.upload.bytes_written),
        (6, 3 * (1 << 20) + 77 + 16 * 1024 + 513 + 6)
    );
    staging_is_empty(&pyro, &id);
    assert_eq!(export(&pyro, &id, "new/dir", &out("back1")), files(&src));
    let link = std::fs::read_link(out("back1/link")).unwrap();
    assert_eq!(link, Path::new("a/b/small.txt"));

    // Again over the same files, changed: the merge path.
    std::fs::write(src.join("big.bin"), pattern(2 * (1 << 20), 3)).unwrap();
    std::fs::write(src.join("a/extra.bin"), pattern(1 << 20, 4)).unwrap();
    pyro.workspace_sync_push(&id, &src, "/workspace/new/dir")
        .expect("push over existing files");
    assert_eq!(export(&pyro, &id, "new/dir", &out("back2")), files(&src));

    // A file write of the largest size a write takes (a megabyte): its
    // body is staged too.
    let content = pattern(1 << 20, 5);
    let w = pyro
        .workspace_file_write(&id, "written/blob", &content)
        .expect("write");
    assert_eq!(w.bytes_written, content.len() as u64);
    pyro.workspace_export(&id, "written/blob", &out("blob"))
        .unwrap();
    assert!(std::fs::read(out("blob")).unwrap() == content);
    staging_is_empty(&pyro, &id);

    let before = export(&pyro, &id, "/workspace", &out("before"));

    // 50 MiB, then an entry the agent refuses: nothing of it lands.
    let tar_path = out("refused.tar");
    {
        let mut tar = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
        for i in 0..50u32 {
            let body = pattern(1 << 20, 100 + i);
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, format!("refused/f{i:02}.bin"), &body[..])
                .unwrap();
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Fifo);
        h.set_size(0);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, "refused/fifo", &[][..]).unwrap();
        tar.finish().unwrap();
    }
    let e = pyro
        .workspace_sync_push(&id, &tar_path, "/workspace/new")
        .expect_err("an archive with a fifo");
    assert_eq!(e.kind(), "invalid_archive", "{e}");
    assert!(export(&pyro, &id, "/workspace", &out("after1")) == before);
    staging_is_empty(&pyro, &id);

    // Staged bytes that changed before the agent read them: refused, and
    // nothing changes.
    std::env::set_var(STAGED_BAD_SUM_ENV, "1");
    let e = pyro
        .workspace_sync_push(&id, &src, "/workspace/stale")
        .expect_err("wrong sums");
    std::env::remove_var(STAGED_BAD_SUM_ENV);
    assert_eq!(e.kind(), "staged_data", "{e}");
    assert!(
        e.to_string().contains("changed before they were read"),
        "{e}"
    );
    assert!(export(&pyro, &id, "/workspace", &out("after2")) == before);

    // Two at once (whichever finds the staging disk taken goes inline).
    let (one, two) = (out("one"), out("two"));
    for (dir, salt) in [(&one, 7), (&two, 8)] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("f.bin"), pattern(3 << 20, salt)).unwrap();
    }
    std::thread::scope(|s| {
        let a = s.spawn(|| pyro.workspace_sync_push(&id, &one, "/workspace/one"));
        let b = s.spawn(|| pyro.workspace_sync_push(&id, &two, "/workspace/two"));
        a.join().unwrap().expect("first of two");
        b.join().unwrap().expect("second of two");
    });
    assert_eq!(export(&pyro, &id, "one", &out("back-one")), files(&one));
    assert_eq!(export(&pyro, &id, "two", &out("back-two")), files(&two));
    staging_is_empty(&pyro, &id);
}
