//! A guest that misbehaves costs only itself: a guest printing to its
//! console without end cannot grow the host's log past its cap.

mod common;

use common::{delete_on_drop, pyro_with_own_data};
use pyro::workspace::{CreateOptions, NoProgress};
use std::time::Duration;

#[test]
fn a_guest_flooding_its_console_cannot_grow_the_host_log_past_its_cap() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    const CAP: u64 = 4 << 10;
    // Read where this process makes its VMs' configs.
    std::env::set_var(pyro::workspace::CONSOLE_LOG_MAX_ENV, CAP.to_string());
    let data = common::scratch();
    let pyro = pyro_with_own_data(data.path());
    let opts = CreateOptions {
        ttl_seconds: Some(1800),
        ..CreateOptions::default()
    };
    let id = pyro
        .workspace_create(&opts, &NoProgress)
        .unwrap()
        .record
        .workspace_id;
    let _cleanup = delete_on_drop(&pyro, &id);
    let vm_dir = data.path().join("workspaces").join(&id).join("vm");

    // Three caps' worth (the console takes 1-3 kB/s on a busy PVM host).
    let flood = format!("head -c {} /dev/zero | tr '\\0' x > /dev/console", 3 * CAP);
    let argv = ["sh".to_string(), "-c".into(), flood];
    let started = std::time::Instant::now();
    let r = pyro
        .workspace_exec(&id, &argv, Duration::from_secs(300), |_, _| {})
        .unwrap();
    assert_eq!(r.exit_code, Some(0), "{r:?}");
    eprintln!(
        "{} KiB to the console in {:?}",
        (3 * CAP) >> 10,
        started.elapsed()
    );

    let log = vm_dir.join("console.log");
    let old = vm_dir.join("console.log.1");
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    assert!(size(&log) <= CAP, "console.log: {} bytes", size(&log));
    assert_eq!(size(&old), CAP, "console.log.1 is full when it rotated");
    let rotated = std::fs::read(&old).unwrap();
    let xs = rotated.iter().filter(|&&b| b == b'x').count();
    assert!(
        xs as u64 > CAP / 2,
        "{xs} of the flood's bytes in console.log.1"
    );
    // Nothing else grew next to them.
    let names: Vec<String> = std::fs::read_dir(&vm_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("console"))
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    // The guest is fine.
    let r = pyro
        .workspace_exec(
            &id,
            &["echo".into(), "ok".into()],
            Duration::from_secs(60),
            |_, _| {},
        )
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "ok\n");
}
