//! The patch parser and applier (`pyro-patch`, run by the guest agent on
//! a user's or a model's patch text): any text parses or is refused, and
//! a parsed patch applies to a small tree or is refused, never a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pyro_patch::{FileState, PatchSource};

/// Every path exists, holding a few lines that patches may touch.
struct Tree;

impl PatchSource for Tree {
    fn read(&self, path: &str) -> Option<FileState> {
        (!path.contains("new")).then(|| FileState {
            bytes: b"one\ntwo\nthree\nfour\nfive\n".to_vec(),
            mode: 0o644,
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(patch) = pyro_patch::parse(text) {
        let _ = pyro_patch::apply(&patch, &Tree);
    }
});
