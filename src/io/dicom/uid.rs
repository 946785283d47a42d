//! Deterministic DICOM UIDs: the same inputs give the same UID.
//!
//! A UID is `2.25.<n>` (ISO/IEC 9834-8, UUID-derived form) where `n` is the first 122 bits of
//! SHA-256 over a namespace string and the given parts, so it is unique with overwhelming
//! probability and never longer than 64 characters.

use sha2::{Digest, Sha256};

/// UID derived from `namespace` (e.g. `"rtplan"`) and the content `parts`.
pub fn derive_uid(namespace: &str, parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    h.update(b"rtopt-uid-v1\0");
    h.update(namespace.as_bytes());
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let d = h.finalize();
    let mut v = u128::from_be_bytes(d[..16].try_into().unwrap_or([0u8; 16]));
    v >>= 6; // 122 bits, like a random UUID
    format!("2.25.{v}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_valid_and_distinct() {
        let a = derive_uid("rtplan", &[b"x", b"y"]);
        assert_eq!(a, derive_uid("rtplan", &[b"x", b"y"]));
        assert_ne!(a, derive_uid("rtplan", &[b"xy"]));
        assert_ne!(a, derive_uid("rtdose", &[b"x", b"y"]));
        assert!(a.len() <= 64 && a.starts_with("2.25."));
        assert!(a[5..].chars().all(|c| c.is_ascii_digit()) && !a[5..].starts_with('0'));
    }
}
