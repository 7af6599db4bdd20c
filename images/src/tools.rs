//! Checks for the host tools each build needs, before starting it, so that
//! one error names every Debian package to install.

use std::path::{Path, PathBuf};

use crate::error::{Error, MissingTool, Result};

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
            Need::Command(c, pkg) if find_command(c).is_none() => Some(MissingTool {
                tool: c.to_string(),
                package: pkg.to_string(),
            }),
            Need::File(f, pkg) if !Path::new(f).exists() => Some(MissingTool {
                tool: f.to_string(),
                package: pkg.to_string(),
            }),
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
