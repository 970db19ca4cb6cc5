//! Virtual keys: what clients authenticate with. The config holds only
//! SHA-256 digests; a presented key is hashed, found by the first 8 bytes of
//! its digest (which says nothing useful about the key), and the whole
//! digest is compared in constant time.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::headers::HeaderMap;

pub type TenantId = usize;

/// One configured virtual key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualKey {
    pub digest: [u8; 32],
    pub tenant: TenantId,
    /// Label for per-user limits and attribution (never the key).
    pub user: Option<String>,
    /// Name of the key for logs and headers.
    pub name: String,
    pub disabled: bool,
}

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub tenant: TenantId,
    pub user: Option<String>,
    pub key_name: String,
}

/// Why authentication failed (all are 401s; the message says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    Malformed,
    Unknown,
    Disabled,
}

#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    by_prefix: HashMap<[u8; 8], Vec<VirtualKey>>,
}

/// Hex SHA-256 of a key, as operators put it in the config
/// (`printf %s "$KEY" | sha256sum`).
pub fn digest_of(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Parses 64 hex characters.
pub fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut digest = [0u8; 32];
    for (index, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    Some(digest)
}

/// Compares without stopping at the first difference.
fn equal_in_constant_time(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |difference, (x, y)| difference | (x ^ y)) == 0
}

fn prefix(digest: &[u8; 32]) -> [u8; 8] {
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&digest[..8]);
    prefix
}

/// A key allowed to read the operator views (health, every tenant's spend).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminKey {
    pub name: String,
    pub digest: [u8; 32],
}

/// The admin key presented, if it is one (compared in constant time).
pub fn admin_named<'k>(keys: &'k [AdminKey], presented: &str) -> Option<&'k AdminKey> {
    let digest = digest_of(presented);
    keys.iter().find(|key| equal_in_constant_time(&key.digest, &digest))
}

impl KeyRing {
    pub fn new(keys: Vec<VirtualKey>) -> KeyRing {
        let mut by_prefix: HashMap<[u8; 8], Vec<VirtualKey>> = HashMap::new();
        for key in keys {
            by_prefix.entry(prefix(&key.digest)).or_default().push(key);
        }
        KeyRing { by_prefix }
    }

    /// The key a client presented: `authorization: Bearer <key>`, else `x-api-key`.
    pub fn presented(headers: &HeaderMap) -> Result<&str, AuthFailure> {
        if let Some(value) = headers.get("authorization") {
            let token = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .ok_or(AuthFailure::Malformed)?;
            return Self::well_formed(token.trim());
        }
        match headers.get("x-api-key") {
            Some(value) => Self::well_formed(value.trim()),
            None if headers.contains("authorization") || headers.contains("x-api-key") => Err(AuthFailure::Malformed),
            None => Err(AuthFailure::Missing),
        }
    }

    fn well_formed(token: &str) -> Result<&str, AuthFailure> {
        let plausible = (8..=512).contains(&token.len()) && token.bytes().all(|byte| byte.is_ascii_graphic());
        if plausible {
            Ok(token)
        } else {
            Err(AuthFailure::Malformed)
        }
    }

    /// Every configured key.
    pub fn keys(&self) -> impl Iterator<Item = &VirtualKey> {
        self.by_prefix.values().flatten()
    }

    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, AuthFailure> {
        let digest = digest_of(Self::presented(headers)?);
        let found = self
            .by_prefix
            .get(&prefix(&digest))
            .and_then(|candidates| {
                candidates
                    .iter()
                    .find(|key| equal_in_constant_time(&key.digest, &digest))
            })
            .ok_or(AuthFailure::Unknown)?;
        if found.disabled {
            return Err(AuthFailure::Disabled);
        }
        Ok(Identity {
            tenant: found.tenant,
            user: found.user.clone(),
            key_name: found.name.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::new(vec![
            VirtualKey {
                digest: digest_of("sk-team-a-alice"),
                tenant: 0,
                user: Some("alice".into()),
                name: "alice".into(),
                disabled: false,
            },
            VirtualKey {
                digest: digest_of("sk-team-b-old"),
                tenant: 1,
                user: None,
                name: "old".into(),
                disabled: true,
            },
        ])
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs.iter().copied().collect()
    }

    #[test]
    fn a_bearer_or_x_api_key_identifies_the_tenant_and_user() {
        let ring = ring();
        let by_bearer = ring
            .authenticate(&headers(&[("authorization", "Bearer sk-team-a-alice")]))
            .unwrap();
        assert_eq!(
            by_bearer,
            Identity {
                tenant: 0,
                user: Some("alice".into()),
                key_name: "alice".into()
            }
        );
        let by_header = ring
            .authenticate(&headers(&[("x-api-key", "sk-team-a-alice")]))
            .unwrap();
        assert_eq!(by_header.tenant, 0);
    }

    #[test]
    fn unknown_disabled_missing_and_malformed_keys_are_refused() {
        let ring = ring();
        assert_eq!(
            ring.authenticate(&headers(&[("authorization", "Bearer sk-nope-nope")])),
            Err(AuthFailure::Unknown)
        );
        assert_eq!(
            ring.authenticate(&headers(&[("authorization", "Bearer sk-team-b-old")])),
            Err(AuthFailure::Disabled)
        );
        assert_eq!(ring.authenticate(&headers(&[])), Err(AuthFailure::Missing));
        assert_eq!(
            ring.authenticate(&headers(&[("authorization", "Basic dXNlcg==")])),
            Err(AuthFailure::Malformed)
        );
        assert_eq!(
            ring.authenticate(&headers(&[("authorization", "Bearer x")])),
            Err(AuthFailure::Malformed)
        );
        let binary = HeaderMap::new(vec![(
            "x-api-key".into(),
            vec![0xff, 0xfe, 0x00, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46],
        )]);
        assert_eq!(ring.authenticate(&binary), Err(AuthFailure::Malformed));
    }

    #[test]
    fn digests_parse_from_hex() {
        let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        assert_eq!(parse_digest(hex), Some(digest_of("test")));
        assert_eq!(parse_digest("abc"), None);
        assert_eq!(parse_digest(&"zz".repeat(32)), None);
    }

    #[test]
    fn constant_time_comparison_still_compares() {
        assert!(equal_in_constant_time(&digest_of("a"), &digest_of("a")));
        assert!(!equal_in_constant_time(&digest_of("a"), &digest_of("b")));
    }
}
