//! SHA-256 of files and the cache keys derived from build inputs.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

use crate::error::{IoContext, Result};

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a byte string, in hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// SHA-256 of a file's contents, in hex, streamed.
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).ctx(|| format!("open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .ctx(|| format!("read {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// A cache key: the first 16 hex digits of SHA-256 over the inputs, each
/// length-prefixed so that no two different input lists collide by
/// concatenation (`["ab", "c"]` vs `["a", "bc"]`).
pub(crate) fn derive_key(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    h.update((parts.len() as u64).to_le_bytes());
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex(&h.finalize())[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_stable_and_framed() {
        let k = derive_key(&[b"ab", b"c"]);
        assert_eq!(k.len(), 16);
        assert_eq!(k, derive_key(&[b"ab", b"c"]));
        assert_ne!(k, derive_key(&[b"a", b"bc"]));
        assert_ne!(k, derive_key(&[b"ab", b"c", b""]));
    }

    #[test]
    fn sha256_of_empty() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
