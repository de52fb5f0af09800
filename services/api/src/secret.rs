//! Secrets the api hands out once and keeps only a hash of: invite links'
//! tokens and connect tickets. Each is 32 random bytes in base64url (43
//! characters); what is stored is its SHA-256 in hex, so a copy of the
//! database or of Redis lets nobody use one.

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// A new secret: 32 bytes from two v4 UUIDs (244 random bits), base64url.
pub(crate) fn new_token() -> String {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored form of a secret: its SHA-256, hex.
pub(crate) fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `token` has the shape of a secret [`new_token`] makes (43
/// base64url characters): anything else is refused before any lookup.
pub(crate) fn has_shape(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_new_each_time_well_formed_and_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(has_shape(&a) && has_shape(&b));
        assert_eq!(hash(&a).len(), 64);
        assert_ne!(hash(&a), hash(&b));
        for bad in ["", "short", &format!("{a}x"), &a.replace(&a[..1], "+")] {
            assert!(!has_shape(bad), "{bad}");
        }
    }
}
