//! Real builds (minutes, needs root, network and the Debian tools), so
//! ignored by default:
//!
//! ```text
//! cargo test -p pyro-images --test build -- --ignored --nocapture
//! ```
//!
//! Builds the kernel and `debian:12-base` into a temporary PYRO_HOME with a
//! tiny static placeholder guest-init (or `$PYRO_GUEST_INIT`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use pyro_images::{Images, NoProgress, Paths, StderrProgress, GUEST_INIT_ENV};

fn placeholder_init(dir: &Path, message: &str) -> PathBuf {
    let src = dir.join(format!("{message}.c"));
    let bin = dir.join(message);
    std::fs::write(
        &src,
        format!("#include <stdio.h>\nint main(void) {{ puts(\"{message}\"); return 0; }}\n"),
    )
    .unwrap();
    let st = Command::new("gcc")
        .args(["-static", "-Os", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success(), "gcc -static failed (is libc6-dev installed?)");
    bin
}

fn debugfs(image: &Path, request: &str) -> String {
    let out = Command::new("debugfs")
        .args(["-R", request])
        .arg(image)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "builds a kernel and a root filesystem: minutes, root, network"]
fn builds_kernel_and_base_environment() {
    let home = std::env::temp_dir().join(format!("pyro-images-build-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let images = Images::new(Paths::with_home(&home));
    let progress = StderrProgress::new();

    let t = Instant::now();
    let kernel = images.kernel(&progress).unwrap();
    eprintln!(
        "kernel: {:.0}s {}",
        t.elapsed().as_secs_f64(),
        kernel.path.display()
    );
    kernel.verify().unwrap();
    assert!(
        kernel.manifest.config_mismatches.is_empty(),
        "{:?}",
        kernel.manifest.config_mismatches
    );
    let config = std::fs::read_to_string(kernel.config_path()).unwrap();
    for want in ["CONFIG_DEVMEM=y", "CONFIG_LOCALVERSION=\"-pyro\""] {
        assert!(config.lines().any(|l| l == want), "{want}");
    }
    assert!(config.contains("# CONFIG_SMP is not set"));
    assert!(!config.lines().any(|l| l == "CONFIG_PVH=y"));
    // Cached: a second call does not rebuild.
    let t = Instant::now();
    assert_eq!(images.kernel(&NoProgress).unwrap(), kernel);
    assert!(t.elapsed().as_secs() < 5);
    assert_eq!(images.installed_kernel(), Some(kernel.clone()));

    let init = match std::env::var_os(GUEST_INIT_ENV) {
        Some(p) => PathBuf::from(p),
        None => placeholder_init(&home, "pyro-test-init-1"),
    };
    let t = Instant::now();
    let env = images
        .environment_with_guest_init("debian:12-base", &init, &progress)
        .unwrap();
    eprintln!(
        "debian:12-base: {:.0}s {}",
        t.elapsed().as_secs_f64(),
        env.rootfs.display()
    );
    env.verify().unwrap();
    assert_eq!(
        env.manifest.package_versions.len(),
        2,
        "{:?}",
        env.manifest.package_versions
    );
    let listing = debugfs(&env.rootfs, "ls -l /opt/pyro/bin");
    assert!(
        listing.contains("pyro-init") && listing.contains("100755"),
        "{listing}"
    );
    for dir in ["/workspace", "/run", "/tmp", "/proc", "/sys", "/dev"] {
        assert!(
            debugfs(&env.rootfs, &format!("stat {dir}")).contains("Type: directory"),
            "{dir}"
        );
    }
    assert_eq!(debugfs(&env.rootfs, "cat /etc/hostname"), "pyro\n");
    assert_eq!(
        images.installed_environment("debian:12-base"),
        Some(env.clone())
    );

    // Another guest-init: a new image from the cached tree, in seconds.
    let init2 = placeholder_init(&home, "pyro-test-init-2");
    std::thread::sleep(std::time::Duration::from_secs(1)); // distinct built_at
    let t = Instant::now();
    let env2 = images
        .environment_with_guest_init("debian:12-base", &init2, &NoProgress)
        .unwrap();
    assert!(t.elapsed().as_secs() < 60, "tree was not reused");
    assert_eq!(env2.manifest.tree_key, env.manifest.tree_key);
    assert_ne!(env2.manifest.image_key, env.manifest.image_key);
    assert_eq!(
        images.installed_environment("debian:12-base"),
        Some(env2.clone())
    );

    // Prune keeps the kernel and one image: the one with the current
    // guest-init if known ($PYRO_GUEST_INIT), else the newest.
    let (kept, dropped) = match std::env::var_os(GUEST_INIT_ENV) {
        Some(_) => (&env, &env2),
        None => (&env2, &env),
    };
    let removed = images.prune().unwrap();
    assert!(
        removed
            .iter()
            .any(|p| p.ends_with(&dropped.manifest.image_key)),
        "{removed:?}"
    );
    assert!(kept.rootfs.exists() && kernel.path.exists());

    std::fs::remove_dir_all(&home).unwrap();
}
