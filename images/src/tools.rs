//! Checks for the host tools each build needs, before starting it, so that
//! one error names every Debian package to install; as root on a Debian
//! host, installs them instead ([`ensure`]), so that a fresh machine needs
//! nothing but pyro.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, MissingTool, Result};
use crate::progress::Progress;
use crate::run::{self, Job, Line};

/// `0` stops pyro from installing missing host tools itself: it names
/// them instead.
pub const INSTALL_TOOLS_ENV: &str = "PYRO_INSTALL_TOOLS";

/// The progress step of an install.
const STEP: &str = "host-tools";

/// Something a build step needs from the host.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Need {
    /// A command on `PATH` (or in /usr/sbin, /sbin), and its package.
    Command(&'static str, &'static str),
    /// A file, and its package.
    File(&'static str, &'static str),
}

/// What building the kernel needs (the source tarball is checked separately).
pub(crate) const KERNEL: &[Need] = &[
    Need::Command("make", "make"),
    Need::Command("gcc", "gcc"),
    Need::Command("flex", "flex"),
    Need::Command("bison", "bison"),
    Need::Command("bc", "bc"),
    Need::Command("patch", "patch"),
    Need::Command("tar", "tar"),
    Need::Command("xz", "xz-utils"),
    Need::Command("perl", "perl"),
    Need::Command("dpkg-query", "dpkg"),
    // The kernel's host programs (scripts/) include the C library's
    // headers; gcc only recommends libc6-dev.
    Need::File("/usr/include/stdio.h", "libc6-dev"),
    Need::File("/usr/include/libelf.h", "libelf-dev"),
    Need::File("/usr/include/gelf.h", "libelf-dev"),
];

/// What building an environment image needs.
pub(crate) const ROOTFS: &[Need] = &[
    Need::Command("mmdebstrap", "mmdebstrap"),
    Need::Command("mkfs.ext4", "e2fsprogs"),
];

/// Finds a command on `PATH`, then in the sbin directories that a non-root
/// `PATH` often lacks (mkfs.ext4 lives in /usr/sbin).
pub(crate) fn find_command(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The needs that are not met.
pub(crate) fn missing(needs: &[Need]) -> Vec<MissingTool> {
    needs
        .iter()
        .filter_map(|n| match *n {
            Need::Command(c, pkg) if find_command(c).is_none() => Some(MissingTool::new(c, pkg)),
            Need::File(f, pkg) if !Path::new(f).exists() => Some(MissingTool::new(f, pkg)),
            _ => None,
        })
        .collect()
}

/// Fails with one [`Error::MissingTools`] listing every unmet need.
pub(crate) fn check(needs: &[Need]) -> Result<()> {
    let all = missing(needs);
    if all.is_empty() {
        Ok(())
    } else {
        Err(Error::MissingTools { missing: all })
    }
}

/// Meets `needs`, and provides the `extra` packages (a source package
/// the caller found missing). What is missing is installed with
/// `apt-get` when this process is root on a host that has it and
/// [`INSTALL_TOOLS_ENV`] is not `0`, with progress, its output in `log`;
/// otherwise the error names every package to install. The caller checks
/// its `extra` again afterwards.
pub(crate) fn ensure(
    needs: &[Need],
    extra: &[MissingTool],
    log: &Path,
    p: &dyn Progress,
) -> Result<()> {
    let mut all = missing(needs);
    all.extend(extra.iter().cloned());
    if all.is_empty() {
        return Ok(());
    }
    let allowed = std::env::var(INSTALL_TOOLS_ENV).map_or(true, |v| v != "0");
    match find_command("apt-get") {
        Some(apt) if allowed && is_root() => install(&apt, &all, log, p)?,
        _ => return Err(Error::MissingTools { missing: all }),
    }
    check(needs)
}

/// `apt-get install` of the packages `missing` names; once more after an
/// `apt-get update` if that fails (a fresh container has no package
/// lists, an old host stale ones).
fn install(apt: &Path, missing: &[MissingTool], log: &Path, p: &dyn Progress) -> Result<()> {
    let mut packages: Vec<&str> = missing.iter().map(|m| m.package.as_str()).collect();
    packages.sort_unstable();
    packages.dedup();
    let tools: Vec<&str> = missing.iter().map(|m| m.tool.as_str()).collect();
    if let Some(dir) = log.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    p.phase(
        STEP,
        &format!(
            "install: {} missing; installing {} with apt-get (root on Debian; {INSTALL_TOOLS_ENV}=0 \
             to be told instead); log {}",
            tools.join(", "),
            packages.join(" "),
            log.display()
        ),
    );
    let apt_get = |args: &[&str]| {
        let mut cmd = Command::new(apt);
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    let job = |phase| Job {
        step: STEP,
        phase,
        progress: p,
        log,
        unit: "",
        classify: classify_apt,
    };
    // Another install (a second pyro, the system's own) holds dpkg's
    // lock for a while: wait for it rather than fail.
    let mut args = vec![
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "-o",
        "DPkg::Lock::Timeout=600",
    ];
    args.extend(&packages);
    if run::run(apt_get(&args), &job("install")).is_err() {
        run::run(apt_get(&["update", "-q"]), &job("update"))?;
        run::run(apt_get(&args), &job("install"))?;
    }
    p.done(STEP, &format!("install: {} installed", packages.join(" ")));
    Ok(())
}

/// apt-get's lines worth showing: each package as it is unpacked and set
/// up.
fn classify_apt(line: &str) -> Line {
    if line.starts_with("Unpacking ") || line.starts_with("Setting up ") || line.starts_with("Get:")
    {
        Line::Status(line.trim().to_string())
    } else {
        Line::Other
    }
}

/// Whether this process runs with effective uid 0 (read from
/// /proc/self/status, which avoids an FFI call).
pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| effective_uid(&s))
        == Some(0)
}

fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_uid_is_the_second_number() {
        let s = "Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t1\t1\t1\t1\n";
        assert_eq!(effective_uid(s), Some(0));
        assert_eq!(effective_uid("Name:\tx\n"), None);
    }

    /// Progress phases and ticks, as seen.
    #[derive(Default)]
    struct Seen(std::sync::Mutex<Vec<String>>);

    impl Progress for Seen {
        fn phase(&self, step: &str, detail: &str) {
            self.0.lock().unwrap().push(format!("[{step}] {detail}"));
        }
        fn tick(&self, step: &str, detail: &str) {
            self.0.lock().unwrap().push(format!("[{step}] {detail}"));
        }
        fn done(&self, step: &str, detail: &str) {
            self.0.lock().unwrap().push(format!("[{step}] {detail}"));
        }
    }

    /// An apt-get that records its arguments, fails `install` until an
    /// `update` ran (a host without package lists), then succeeds. Tests
    /// never reach a real package mirror.
    fn fake_apt(dir: &Path) -> (PathBuf, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let calls = dir.join("calls");
        let updated = dir.join("updated");
        let script = format!(
            "#!/bin/sh\necho \"$*\" >> {calls}\ncase \"$1\" in\n\
             update) echo 'Get:1 http://deb.example.test bookworm InRelease'; touch {updated} ;;\n\
             install) [ -e {updated} ] || {{ echo 'E: Unable to locate package mmdebstrap'; exit 100; }}\n\
             echo 'Setting up mmdebstrap (1.3.5-7) ...' ;;\nesac\n",
            calls = calls.display(),
            updated = updated.display()
        );
        let apt = dir.join("apt-get");
        std::fs::write(&apt, script).unwrap();
        std::fs::set_permissions(&apt, std::fs::Permissions::from_mode(0o755)).unwrap();
        (apt, calls)
    }

    #[test]
    fn install_updates_the_package_lists_when_a_first_try_fails() {
        let dir = tempfile::tempdir().unwrap();
        let (apt, calls) = fake_apt(dir.path());
        let missing = [
            MissingTool::new("mmdebstrap", "mmdebstrap"),
            MissingTool::new("mkfs.ext4", "e2fsprogs"),
            MissingTool::new("/usr/include/gelf.h", "e2fsprogs"),
        ];
        let seen = Seen::default();
        let log = dir.path().join("logs/host-tools.log");
        install(&apt, &missing, &log, &seen).unwrap();
        let calls = std::fs::read_to_string(calls).unwrap();
        let install = "install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 \
                       e2fsprogs mmdebstrap";
        assert_eq!(
            calls.lines().collect::<Vec<_>>(),
            [install, "update -q", install],
            "each package once, sorted; an update, then once more"
        );
        let seen = seen.0.lock().unwrap().join("\n");
        assert!(seen.contains("mmdebstrap, mkfs.ext4"), "{seen}");
        assert!(
            seen.contains("installing e2fsprogs mmdebstrap with apt-get"),
            "{seen}"
        );
        assert!(seen.contains("installed"), "{seen}");
        // apt-get's own output is in the log, for when it fails.
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(logged.contains("Unable to locate package"), "{logged}");
        assert!(logged.contains("Setting up mmdebstrap"), "{logged}");
    }

    #[test]
    fn an_install_that_keeps_failing_says_so_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let apt = dir.path().join("apt-get");
        std::fs::write(&apt, "#!/bin/sh\necho 'E: no network'; exit 100\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&apt, std::fs::Permissions::from_mode(0o755)).unwrap();
        let missing = [MissingTool::new("bc", "bc")];
        let log = dir.path().join("host-tools.log");
        let e = install(&apt, &missing, &log, &crate::NoProgress).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("E: no network"), "{text}");
        assert!(text.contains("host-tools.log"), "{text}");
    }

    #[test]
    fn nothing_missing_installs_nothing() {
        let log = Path::new("/nonexistent/host-tools.log");
        ensure(&[Need::Command("sh", "dash")], &[], log, &crate::NoProgress).unwrap();
    }

    #[test]
    fn missing_names_the_package() {
        let m = missing(&[
            Need::Command("pyro-no-such-command", "pyro-pkg"),
            Need::File("/pyro/no/such/file.h", "pyro-dev"),
            Need::Command("sh", "dash"),
        ]);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].package, "pyro-pkg");
        assert_eq!(m[1].package, "pyro-dev");
    }
}
