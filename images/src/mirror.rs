//! Which Debian mirror to build root filesystems from.

use std::path::Path;

/// Used when neither `PYRO_DEBIAN_MIRROR` nor the host's apt sources name one.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// `$PYRO_DEBIAN_MIRROR`, else the host's first Debian archive for `suite`
/// with component `main` (from /etc/apt/sources.list and
/// /etc/apt/sources.list.d/*.list, *.sources), else [`DEFAULT_MIRROR`].
pub fn debian_mirror(suite: &str) -> String {
    if let Some(m) = std::env::var("PYRO_DEBIAN_MIRROR")
        .ok()
        .filter(|m| !m.trim().is_empty())
    {
        return normalize(m.trim());
    }
    host_mirror(Path::new("/etc/apt"), suite).unwrap_or_else(|| DEFAULT_MIRROR.to_string())
}

/// Searches `apt_dir`/sources.list, then sources.list.d/ in name order.
pub(crate) fn host_mirror(apt_dir: &Path, suite: &str) -> Option<String> {
    let mut files = vec![apt_dir.join("sources.list")];
    if let Ok(rd) = std::fs::read_dir(apt_dir.join("sources.list.d")) {
        let mut more: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    files.iter().find_map(|f| {
        let text = std::fs::read_to_string(f).ok()?;
        match f.extension().and_then(|e| e.to_str()) {
            Some("sources") => from_deb822(&text, suite),
            Some("list") => from_one_line(&text, suite),
            _ => None, // e.g. *.disabled, *.save: apt ignores them too
        }
    })
}

/// One-line format: `deb [options] URI SUITE COMPONENT...`.
pub(crate) fn from_one_line(text: &str, suite: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("").trim();
        let rest = line.strip_prefix("deb ")?.trim_start();
        let rest = if rest.starts_with('[') {
            rest.split_once(']')?.1
        } else {
            rest
        };
        let mut words = rest.split_whitespace();
        let uri = words.next()?;
        let s = words.next()?;
        let components: Vec<&str> = words.collect();
        (s == suite && components.contains(&"main") && is_http(uri)).then(|| normalize(uri))
    })
}

/// deb822 format: stanzas of `Types:`, `URIs:`, `Suites:`, `Components:`.
pub(crate) fn from_deb822(text: &str, suite: &str) -> Option<String> {
    let mut stanzas: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in text.lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            stanzas.push(Vec::new());
        } else if line.starts_with([' ', '\t']) {
            // Continuation of the previous field.
            if let Some(last) = stanzas.last_mut().and_then(|s| s.last_mut()) {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            if let Some(s) = stanzas.last_mut() {
                s.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
    }
    stanzas.iter().find_map(|fields| {
        let get = |k: &str| {
            fields
                .iter()
                .find(|(fk, _)| fk == k)
                .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>())
                .unwrap_or_default()
        };
        let enabled = fields
            .iter()
            .find(|(k, _)| k == "enabled")
            .is_none_or(|(_, v)| !v.eq_ignore_ascii_case("no"));
        let ok = enabled
            && get("types").contains(&"deb")
            && get("suites").contains(&suite)
            && get("components").contains(&"main");
        if !ok {
            return None;
        }
        get("uris").into_iter().find(|u| is_http(u)).map(normalize)
    })
}

fn is_http(uri: &str) -> bool {
    uri.starts_with("http://") || uri.starts_with("https://")
}

fn normalize(uri: &str) -> String {
    uri.trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "\
Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://ftp.de.debian.org/debian/
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

    #[test]
    fn deb822_picks_the_main_archive_not_security() {
        assert_eq!(
            from_deb822(DEB822, "bookworm").as_deref(),
            Some("http://ftp.de.debian.org/debian")
        );
        assert_eq!(from_deb822(DEB822, "trixie"), None);
        let disabled = DEB822.replace("Types: deb-src deb", "Enabled: no\nTypes: deb");
        assert_eq!(from_deb822(&disabled, "bookworm"), None);
    }

    #[test]
    fn one_line_format() {
        let text = "\
# deb http://commented.example/debian bookworm main
deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main
deb-src http://src.example/debian bookworm main
deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main non-free
deb http://later.example/debian bookworm main
";
        assert_eq!(
            from_one_line(text, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(
            from_one_line("deb http://x/debian bookworm contrib\n", "bookworm"),
            None
        );
    }

    #[test]
    fn host_files_in_order_and_only_known_extensions() {
        let dir = std::env::temp_dir().join(format!("pyro-images-mirror-{}", std::process::id()));
        let d = dir.join("sources.list.d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("a.list.disabled"),
            "deb http://no/debian bookworm main\n",
        )
        .unwrap();
        std::fs::write(d.join("debian.sources"), DEB822).unwrap();
        assert_eq!(
            host_mirror(&dir, "bookworm").as_deref(),
            Some("http://ftp.de.debian.org/debian")
        );
        std::fs::write(
            dir.join("sources.list"),
            "deb http://first/debian bookworm main\n",
        )
        .unwrap();
        assert_eq!(
            host_mirror(&dir, "bookworm").as_deref(),
            Some("http://first/debian")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
