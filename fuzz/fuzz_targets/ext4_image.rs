//! The ext4 reader of workspace disks (`disk list|read|export`, host
//! reads of running workspaces) on an image a root guest may have
//! written anything to: it lists, reads and packs everything or answers
//! an error. A reader panic is caught and becomes that error in the
//! product, so it is an answer here too; a crash, a hang (`-timeout`) or
//! unbounded memory (`-rss_limit_mb`) is what this looks for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::Once;

static QUIET: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    // libfuzzer-sys aborts on any panic, caught or not; the product
    // catches the reader's (disk_tools::guarded), so only an uncaught
    // one, which libfuzzer-sys still turns into an abort, is a finding.
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let _ = pyro_workspace::testing::read_untrusted_image(data.to_vec());
});
