//! Gating end-to-end tests on what they need: a usable `/dev/kvm`, and
//! the guest kernel and the default environment built or buildable.
//!
//! A test that boots guests starts with
//! `if !pyro_workspace::testing::guests_available() { return; }`. Where
//! the host cannot boot guests, the test says why on stderr and passes
//! without running, so `cargo test` of the pure logic runs anywhere.
//! Under CI (`CI` set to anything but `false`/`0`) a missing prerequisite
//! is a failure instead, never a skip: CI must run everything.

use crate::DEFAULT_ENV;
use pyro_images::{Images, Paths};

/// Why guests cannot boot on this host, or `None` when they can.
pub fn why_no_guests() -> Option<String> {
    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm");
    if let Err(e) = kvm {
        return Some(format!("/dev/kvm cannot be opened read-write ({e})"));
    }
    let missing = Images::new(Paths::from_env()).missing_to_build(DEFAULT_ENV);
    if missing.is_empty() {
        return None;
    }
    let packages: Vec<_> = missing.iter().map(|m| m.package.as_str()).collect();
    Some(format!(
        "the guest kernel or {DEFAULT_ENV} is not built and cannot be: install {}",
        packages.join(" ")
    ))
}

/// Whether the calling test should go on: `true` where guests can boot;
/// `false` (after saying why) where they cannot. Panics instead of
/// skipping under CI.
#[track_caller]
pub fn guests_available() -> bool {
    let Some(why) = why_no_guests() else {
        return true;
    };
    let at = std::panic::Location::caller();
    if in_ci() {
        panic!("{at}: this test needs guests and CI must run it: {why}");
    }
    eprintln!("SKIPPED {at}: needs guests: {why}");
    false
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A seed of many small files for tests and benches of big trees:
/// `dirs` directories `d0..` of `files` files `f0.txt..` each, holding
/// `file D F\n`.
pub fn small_files_seed(dir: &std::path::Path, dirs: usize, files: usize) {
    for d in 0..dirs {
        let sub = dir.join(format!("d{d}"));
        std::fs::create_dir_all(&sub).expect("seed directory");
        for f in 0..files {
            std::fs::write(sub.join(format!("f{f}.txt")), format!("file {d} {f}\n"))
                .expect("seed file");
        }
    }
}

/// For fuzzing (`fuzz/`): reads all of an untrusted ext4 image held in
/// memory with the disk tools' reader, as `disk list|read|export` and
/// host reads of workspaces do; the entries listed, or the error a user
/// would see.
pub fn read_untrusted_image(image: Vec<u8>) -> Result<usize, crate::Error> {
    crate::workspaces::read_untrusted_image(image)
}
