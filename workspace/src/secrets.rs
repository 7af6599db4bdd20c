//! Secrets and their redaction (docs/secrets.md).
//!
//! A [`Secret`] holds a value that must never leave pyro: its `Debug`
//! and `Serialize` say `[REDACTED]`, so a record, a log line or an MCP
//! result that contains one by mistake shows no value. Storing a secret
//! (0600, never in workspace.json) is explicit code, not serde.
//!
//! A [`Redactor`] replaces every secret value in a byte stream with
//! [`REDACTED`], as the stream arrives in pieces: a value split across
//! two pieces (exec output comes in chunks) is still found, because the
//! end of a piece that may begin a value is held back until the next
//! piece (or [`Redactor::finish`]) decides it.

use serde::{Serialize, Serializer};
use std::fmt;

/// What a secret value becomes in everything pyro returns or stores.
pub const REDACTED: &str = "[REDACTED]";

pub use pyro_proto::secrets::{check_name, MAX_NAME, MAX_SECRETS, MAX_VALUE};

/// A named secret value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    name: String,
    value: Vec<u8>,
}

impl Secret {
    /// A secret, if `name` is a secret name and `value` is 1 to
    /// [`MAX_VALUE`] bytes of text ([`pyro_proto::secrets::check_value`]).
    pub fn new(name: &str, value: impl Into<Vec<u8>>) -> Result<Secret, String> {
        check_name(name)?;
        let value = value.into();
        pyro_proto::secrets::check_value(name, &value)?;
        Ok(Secret {
            name: name.to_string(),
            value,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value itself: for the guest's secret file and nowhere else.
    pub fn expose(&self) -> &[u8] {
        &self.value
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({}, {REDACTED})", self.name)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

/// Replaces secret values in a stream that arrives in pieces.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so of two values starting at one place the longer
    /// one is replaced whole.
    values: Vec<Vec<u8>>,
    /// The end of the input so far that may begin a value.
    held: Vec<u8>,
}

impl Redactor {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Redactor {
        let mut values: Vec<Vec<u8>> = secrets.into_iter().map(|s| s.value.clone()).collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        values.dedup();
        Redactor {
            values,
            held: Vec::new(),
        }
    }

    /// The output for `piece`: what came before it and in it, values
    /// replaced, except an end that may begin a value (held back).
    pub fn push(&mut self, piece: &[u8]) -> Vec<u8> {
        let mut data = std::mem::take(&mut self.held);
        data.extend_from_slice(piece);
        self.run(&data, false)
    }

    /// Bytes held back at the end of the input so far (they may begin
    /// a value).
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The rest: what was held back, with any value in it replaced.
    pub fn finish(&mut self) -> Vec<u8> {
        let data = std::mem::take(&mut self.held);
        self.run(&data, true)
    }

    /// `bytes` with every value replaced, whole (not a stream).
    pub fn redact_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        let mut one = Redactor {
            values: self.values.clone(),
            held: Vec::new(),
        };
        let mut out = one.push(bytes);
        out.extend(one.finish());
        out
    }

    /// `text` with every value replaced, whole (not a stream).
    pub fn redact(&self, text: &str) -> String {
        // Values replaced whole never split a UTF-8 character of `text`
        // unless a value itself does; lossy keeps the result valid.
        String::from_utf8_lossy(&self.redact_bytes(text.as_bytes())).into_owned()
    }

    fn run(&mut self, data: &[u8], last: bool) -> Vec<u8> {
        // Every exec's output passes here: a workspace without secrets
        // pays one copy, not a scan.
        let Some(longest) = self.values.first().map(Vec::len) else {
            return data.to_vec();
        };
        let mut out = Vec::with_capacity(data.len());
        let mut i = 0;
        while i < data.len() {
            let rest = &data[i..];
            // A longer value this may still become: decide with more input
            // (only near the end, where a value no longer fits).
            if !last
                && rest.len() < longest
                && self
                    .values
                    .iter()
                    .any(|v| v.len() > rest.len() && v.starts_with(rest))
            {
                self.held = rest.to_vec();
                return out;
            }
            match self.values.iter().find(|v| rest.starts_with(v)) {
                Some(v) => {
                    out.extend_from_slice(REDACTED.as_bytes());
                    i += v.len();
                }
                None => {
                    out.push(data[i]);
                    i += 1;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(values: &[&str]) -> Vec<Secret> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Secret::new(&format!("S{i}"), *v).unwrap())
            .collect()
    }

    /// Feeds `input` in pieces cut at `cuts`.
    fn stream(r: &mut Redactor, input: &str, cuts: &[usize]) -> String {
        let mut out = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain([input.len()].iter()) {
            out.extend(r.push(&input.as_bytes()[from..cut]));
            from = cut;
        }
        out.extend(r.finish());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_value_is_replaced_wherever_the_stream_is_cut() {
        let all = secrets(&["hunter2", "s3cr3t-token"]);
        let input = "pw=hunter2 token=s3cr3t-token end hunter";
        let want = "pw=[REDACTED] token=[REDACTED] end hunter";
        for a in 0..=input.len() {
            for b in a..=input.len() {
                let mut r = Redactor::new(&all);
                assert_eq!(stream(&mut r, input, &[a, b]), want, "cut at {a}, {b}");
            }
        }
        // One byte at a time.
        let mut r = Redactor::new(&all);
        let cuts: Vec<usize> = (1..input.len()).collect();
        assert_eq!(stream(&mut r, input, &cuts), want);
    }

    #[test]
    fn the_longer_of_two_values_at_one_place_wins_and_matches_do_not_overlap() {
        let all = secrets(&["abc", "abcdef", "cde"]);
        let r = Redactor::new(&all);
        // The longer of two values at one place wins.
        assert_eq!(r.redact("xabcdefx"), "x[REDACTED]x");
        assert_eq!(r.redact("xabcdex"), "x[REDACTED]dex");
        assert_eq!(r.redact("xxcdexx"), "xx[REDACTED]xx");
        // A held prefix that never completes comes out at the end.
        let mut s = Redactor::new(&all);
        let mut out = s.push(b"tail abcd");
        assert_eq!(out, b"tail ");
        out.extend(s.finish());
        assert_eq!(out, b"tail [REDACTED]d");
    }

    #[test]
    fn no_secrets_change_nothing_and_hold_nothing() {
        let mut r = Redactor::new(&[]);
        assert_eq!(r.push(b"plain"), b"plain");
        assert!(r.finish().is_empty());
    }

    #[test]
    fn a_secret_never_shows_its_value_in_debug_or_json() {
        let s = Secret::new("API_KEY", "v4lue").unwrap();
        assert_eq!(format!("{s:?}"), "Secret(API_KEY, [REDACTED])");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"[REDACTED]\"");
        assert_eq!(s.expose(), b"v4lue");
    }

    #[test]
    fn values_are_checked() {
        assert!(Secret::new("1A", "x").is_err());
        assert!(Secret::new("A", "").is_err());
        assert!(Secret::new("A", "a\0b").is_err());
        assert!(Secret::new("A", vec![b'x'; MAX_VALUE + 1]).is_err());
    }
}
