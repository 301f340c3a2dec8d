//! API keys. The tenants file holds only their SHA-256 digests
//! (`sha256:<64 hex digits>`, e.g. from `printf %s "$KEY" | sha256sum`), so
//! the file leaks no usable key. A presented key is hashed and looked up by
//! its digest.
//!
//! Why this is constant-time where it matters: the lookup is a hash-map probe
//! keyed by the *digest* of the caller's guess (SipHash under a per-process
//! random key), so its timing depends on that digest, which the caller can
//! compute anyway, and says nothing about any stored key without a SHA-256
//! preimage. The final comparison of the found digest with the presented
//! one is done with `subtle`'s constant-time equality all the same.

use std::collections::HashMap;
use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How a digest is written in the tenants file.
pub const DIGEST_PREFIX: &str = "sha256:";

/// The SHA-256 digest of an API key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// The digest of a key as a client presents it.
    pub fn of_key(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// `sha256:` and 64 hex digits (either case).
    pub fn parse(text: &str) -> Result<Self, String> {
        let hex_digits = text.strip_prefix(DIGEST_PREFIX).ok_or_else(|| {
            format!("an API key is stored as its digest, '{DIGEST_PREFIX}<64 hex digits>' (printf %s \"$KEY\" | sha256sum), never in clear")
        })?;
        let mut digest = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut digest).map_err(|_| {
            format!(
                "'{DIGEST_PREFIX}' must be followed by exactly 64 hex digits (got {} characters)",
                hex_digits.chars().count()
            )
        })?;
        Ok(Self(digest))
    }
}

/// Shows the first 8 hex digits only: enough to tell keys apart in a log.
impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{DIGEST_PREFIX}{}…", hex::encode(&self.0[..4]))
    }
}

/// Every key digest of the file and the tenant (by index) it belongs to.
#[derive(Default)]
pub(crate) struct KeyIndex(HashMap<KeyDigest, usize>);

impl KeyIndex {
    /// Adds a digest; the tenant that already has it if it is taken.
    pub(crate) fn insert(&mut self, digest: KeyDigest, tenant: usize) -> Result<(), usize> {
        match self.0.entry(digest) {
            std::collections::hash_map::Entry::Occupied(e) => Err(*e.get()),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(tenant);
                Ok(())
            }
        }
    }

    /// The tenant whose key `presented` is.
    pub(crate) fn find(&self, presented: &str) -> Option<usize> {
        let digest = KeyDigest::of_key(presented);
        let (stored, &tenant) = self.0.get_key_value(&digest)?;
        bool::from(stored.0.ct_eq(&digest.0)).then_some(tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // printf %s 'alpha' | sha256sum
    const ALPHA: &str = "sha256:8ed3f6ad685b959ead7022518e1af76cd816f8e8ec7ccdda1ed4018e8f2223f8";

    #[test]
    fn a_key_is_found_by_its_digest_only() {
        let mut index = KeyIndex::default();
        index.insert(KeyDigest::parse(ALPHA).unwrap(), 3).unwrap();
        assert_eq!(index.find("alpha"), Some(3));
        assert_eq!(index.find("alpha "), None);
        assert_eq!(index.find(&ALPHA[7..]), None, "the digest is not the key");
        assert_eq!(index.insert(KeyDigest::of_key("alpha"), 5), Err(3));
    }

    #[test]
    fn digests_must_be_sha256_hex() {
        assert!(KeyDigest::parse(&ALPHA.to_uppercase().replace("SHA256", "sha256")).is_ok());
        assert!(KeyDigest::parse("alpha")
            .unwrap_err()
            .contains("never in clear"));
        assert!(KeyDigest::parse("sha256:abc")
            .unwrap_err()
            .contains("got 3 characters"));
        let shown = format!("{:?}", KeyDigest::parse(ALPHA).unwrap());
        assert_eq!(shown, "sha256:8ed3f6ad…");
    }
}
