//! Unpacking an untrusted tar (seeds, exports read from a guest's disk):
//! any bytes unpack below the destination or are refused, never a crash;
//! and nothing lands outside the destination.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let dest = scratch.path().join("dest");
    let _ = pyro_workspace::unpack_untrusted(data, &dest);
    // Only `dest` may exist beside nothing else in the scratch directory.
    for entry in std::fs::read_dir(scratch.path()).expect("read scratch") {
        let name = entry.expect("an entry").file_name();
        assert_eq!(name, "dest", "the unpack wrote outside its destination");
    }
});
