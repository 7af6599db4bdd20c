//! Secrets as host and guest agree on them: names, bounds, where the
//! guest keeps them, and how one request carries them all.
//!
//! The host sends the whole set in one [`crate::rpc::Request::Secrets`]:
//! its header names each secret and its length, the frame's data part
//! holds the values back to back. The guest makes `/run/pyro-secrets`
//! hold exactly that set (a tmpfs, so no disk image holds a value).

use serde::{Deserialize, Serialize};

/// Where the guest keeps them: one file per secret, 0600, in a 0700
/// directory on the /run tmpfs.
pub const DIR: &str = "/run/pyro-secrets";
/// Longest secret name (`[A-Za-z_][A-Za-z0-9_]{0,63}`).
pub const MAX_NAME: usize = 64;
/// Largest secret value: enough for keys and tokens.
pub const MAX_VALUE: usize = 32 << 10;
/// Most secrets per workspace. With [`MAX_VALUE`], a whole set fits the
/// data part of one frame ([`crate::rpc::MAX_DATA`]).
pub const MAX_SECRETS: usize = 32;

/// One secret in a [`crate::rpc::Request::Secrets`]: its value is the
/// next `len` bytes of the frame's data part.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub len: u32,
}

/// `[A-Za-z_][A-Za-z0-9_]{0,63}` (SPEC: secret names; also what a
/// shell accepts as a variable name).
pub fn check_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if first_ok && rest_ok && name.len() <= MAX_NAME {
        Ok(())
    } else {
        Err(format!(
            "secret name {name:?}: a letter or _, then up to 63 letters, digits or _"
        ))
    }
}

/// A value is 1 to [`MAX_VALUE`] bytes of UTF-8 text without NUL: it
/// must be able to become an environment variable.
pub fn check_value(name: &str, value: &[u8]) -> Result<(), String> {
    if value.is_empty() || value.len() > MAX_VALUE {
        return Err(format!(
            "secret {name}: the value must be 1 to {MAX_VALUE} bytes, not {}",
            value.len()
        ));
    }
    if std::str::from_utf8(value).is_err() || value.contains(&0) {
        return Err(format!(
            "secret {name}: the value must be UTF-8 text without NUL bytes (it becomes an \
             environment variable)"
        ));
    }
    Ok(())
}

/// The set in a request, checked: names valid and distinct, at most
/// [`MAX_SECRETS`], lengths adding up to `data`, each value valid.
pub fn split<'a>(entries: &'a [Entry], data: &'a [u8]) -> Result<Vec<(&'a str, &'a [u8])>, String> {
    if entries.len() > MAX_SECRETS {
        return Err(format!(
            "at most {MAX_SECRETS} secrets, not {}",
            entries.len()
        ));
    }
    let total: u64 = entries.iter().map(|e| u64::from(e.len)).sum();
    if total != data.len() as u64 {
        return Err(format!(
            "the secrets' lengths add up to {total} bytes, the data has {}",
            data.len()
        ));
    }
    let mut out: Vec<(&'a str, &'a [u8])> = Vec::with_capacity(entries.len());
    let mut at = 0usize;
    for e in entries {
        check_name(&e.name)?;
        let value = &data[at..at + e.len as usize];
        check_value(&e.name, value)?;
        at += e.len as usize;
        if out.iter().any(|(n, _)| *n == e.name) {
            return Err(format!("secret {} is given twice", e.name));
        }
        out.push((&e.name, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, len: u32) -> Entry {
        Entry {
            name: name.into(),
            len,
        }
    }

    #[test]
    fn a_set_splits_into_its_values_and_bad_sets_are_refused() {
        let set = [entry("A", 2), entry("B_2", 3)];
        let got = split(&set, b"xyabc").unwrap();
        assert_eq!(got, [("A", &b"xy"[..]), ("B_2", &b"abc"[..])]);
        assert!(split(&[], b"").unwrap().is_empty());
        // Lengths that do not add up, in either direction.
        assert!(split(&[entry("A", 2)], b"xyz").is_err());
        assert!(split(&[entry("A", 4)], b"xyz").is_err());
        // Twice, a bad name, an empty value, NUL, not UTF-8, too many.
        assert!(split(&[entry("A", 1), entry("A", 1)], b"xy").is_err());
        assert!(split(&[entry("1A", 1)], b"x").is_err());
        assert!(split(&[entry("A", 0)], b"").is_err());
        assert!(split(&[entry("A", 2)], b"x\0").is_err());
        assert!(split(&[entry("A", 1)], b"\xff").is_err());
        let many: Vec<Entry> = (0..=MAX_SECRETS)
            .map(|i| entry(&format!("S{i}"), 1))
            .collect();
        assert!(split(&many, &vec![b'x'; many.len()]).is_err());
        // A whole set of the largest values fits one frame's data part.
        assert!(MAX_SECRETS * MAX_VALUE <= crate::rpc::MAX_DATA as usize);
    }

    #[test]
    fn names_are_checked() {
        for good in ["A", "_x", "API_KEY_2", &"a".repeat(64)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "2A", "A-B", "A.B", "é", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
