//! Reading a tree's `/var/lib/dpkg/status` for the versions of what is
//! installed.

use std::collections::BTreeMap;

/// Package name to version, for every package in state "installed".
pub(crate) fn installed_versions(status: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for stanza in status.split("\n\n") {
        let mut name = None;
        let mut version = None;
        let mut installed = false;
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("Package:") {
                name = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Version:") {
                version = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Status:") {
                installed = v.split_whitespace().last() == Some("installed");
            }
        }
        if let (Some(n), Some(v), true) = (name, version, installed) {
            out.insert(n.to_string(), v.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_installed_packages() {
        let status = "\
Package: git
Status: install ok installed
Priority: optional
Version: 1:2.39.5-0+deb12u2
Description: fast, scalable
 distributed revision control system

Package: gone
Status: deinstall ok config-files
Version: 1.0

Package: bash
Essential: yes
Status: install ok installed
Version: 5.2.15-2+b8
";
        let v = installed_versions(status);
        assert_eq!(v.len(), 2);
        assert_eq!(v["git"], "1:2.39.5-0+deb12u2");
        assert_eq!(v["bash"], "5.2.15-2+b8");
    }
}
