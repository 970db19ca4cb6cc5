//! A lease in shared data, for work that must happen once per Envoy process
//! (active probes, alerts) although every worker VM runs the same ticks.
//! The holder renews it on each tick; if the holder stops (its VM is gone),
//! the lease expires and another VM takes over.

use super::codec::{Reader, Writer};
use super::{read, update, Record, Store};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Random id of the holding VM (0: nobody).
    pub owner: u64,
    pub expires_ms: u64,
}

const VERSION: u8 = 1;

impl Record for Lease {
    fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::with_version(VERSION);
        writer.u64(self.owner).u64(self.expires_ms);
        writer.finish()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut reader = Reader::with_version(bytes, VERSION)?;
        let lease = Lease {
            owner: reader.u64()?,
            expires_ms: reader.u64()?,
        };
        reader.is_done().then_some(lease)
    }
}

impl Lease {
    fn available_to(&self, owner: u64, now_ms: u64) -> bool {
        self.owner == owner || self.owner == 0 || self.expires_ms <= now_ms
    }
}

/// Takes or renews the lease at `key` for `ttl_ms`; true when `owner` holds it.
/// A lease held by someone else is only read, never written, so the holder's
/// renewals do not race with every other worker's ticks.
pub fn try_acquire(store: &dyn Store, key: &str, owner: u64, now_ms: u64, ttl_ms: u64) -> bool {
    if !read::<Lease>(store, key)
        .unwrap_or_default()
        .available_to(owner, now_ms)
    {
        return false;
    }
    update::<Lease, bool>(store, key, |lease| {
        if lease.available_to(owner, now_ms) {
            *lease = Lease {
                owner,
                expires_ms: now_ms.saturating_add(ttl_ms),
            };
            true
        } else {
            false
        }
    })
    .is_ok_and(|(_, acquired)| acquired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;

    #[test]
    fn one_owner_holds_the_lease_until_it_expires() {
        let store = MemoryStore::default();
        assert!(try_acquire(&store, "lease", 1, 1_000, 5_000));
        assert!(!try_acquire(&store, "lease", 2, 2_000, 5_000), "held by 1");
        assert!(try_acquire(&store, "lease", 1, 3_000, 5_000), "the holder renews");
        assert!(!try_acquire(&store, "lease", 2, 7_999, 5_000), "renewed until 8000");
        assert!(try_acquire(&store, "lease", 2, 8_000, 5_000), "expired: taken over");
    }

    #[test]
    fn the_encoding_round_trips_and_rejects_other_versions() {
        let lease = Lease {
            owner: 42,
            expires_ms: 7,
        };
        assert_eq!(Lease::decode(&lease.encode()), Some(lease));
        let mut bytes = lease.encode();
        bytes[0] = 9;
        assert_eq!(Lease::decode(&bytes), None);
        assert_eq!(Lease::decode(b""), None);
    }
}
