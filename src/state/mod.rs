//! State shared by every worker thread, kept in Envoy shared data.
//!
//! Shared data is one process-wide map per `vm_id`: `get` returns the value
//! and a compare-and-swap token, `set` with a stale token fails. [`Store`]
//! wraps exactly that, so the core can be tested against [`MemoryStore`]
//! (which can inject CAS conflicts) and run against the host unchanged.
//! [`update`] is the read-modify-write loop every writer uses.
//!
//! A key that does not exist yet is written whatever token is passed, so two
//! workers creating the same record at once can lose one write. Records are
//! therefore created when the configuration loads ([`ensure`]), before traffic,
//! and losing an increment in that window is the documented worst case.

pub mod codec;
pub mod lease;

use std::cell::RefCell;
use std::collections::HashMap;

/// Versioned binary encoding of a record kept in shared data.
pub trait Record: Sized + Default {
    fn encode(&self) -> Vec<u8>;
    /// `None` for bytes of another version or shape (treated as absent).
    fn decode(bytes: &[u8]) -> Option<Self>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// Someone else wrote the key since it was read.
    CasMismatch,
    /// The host refused the operation.
    Failed,
}

/// Envoy shared data, or a stand-in for tests.
pub trait Store {
    /// The value and its CAS token; `None` when the key does not exist.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Writes `value` if `cas` still matches (`None`: unconditionally).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

/// How many times a read-modify-write is retried under contention before
/// giving up. Conflicts need another worker to write the same key between
/// our read and write, so a handful of tries is plenty.
pub const MAX_CAS_TRIES: usize = 16;

/// Reads the record at `key` (default when absent), lets `change` modify it,
/// and writes it back with compare-and-swap, retrying on conflicts. Returns
/// the record as written and `change`'s result.
pub fn update<T: Record, R>(
    store: &dyn Store,
    key: &str,
    mut change: impl FnMut(&mut T) -> R,
) -> Result<(T, R), StoreError> {
    for _ in 0..MAX_CAS_TRIES {
        let (mut record, cas) = match store.get(key) {
            Some((bytes, cas)) => (T::decode(&bytes).unwrap_or_default(), Some(cas)),
            None => (T::default(), None),
        };
        let result = change(&mut record);
        match store.set(key, &record.encode(), cas) {
            Ok(()) => return Ok((record, result)),
            Err(StoreError::CasMismatch) => continue,
            Err(other) => return Err(other),
        }
    }
    Err(StoreError::CasMismatch)
}

/// Reads the record at `key`, if present and decodable.
pub fn read<T: Record>(store: &dyn Store, key: &str) -> Option<T> {
    store.get(key).and_then(|(bytes, _)| T::decode(&bytes))
}

/// Creates `key` with a default record if it does not exist yet.
pub fn ensure<T: Record>(store: &dyn Store, key: &str) {
    if store.get(key).is_none() {
        let _ = store.set(key, &T::default().encode(), None);
    }
}

/// An in-process [`Store`] with Envoy's semantics, for tests. It can be told
/// to fail the next CAS writes, as a racing worker would make them fail.
#[derive(Default)]
pub struct MemoryStore {
    entries: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    conflicts_to_inject: RefCell<usize>,
}

impl MemoryStore {
    pub fn inject_conflicts(&self, count: usize) {
        *self.conflicts_to_inject.borrow_mut() = count;
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.entries.borrow().get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        let mut entries = self.entries.borrow_mut();
        let current = entries.get(key).map(|(_, cas)| *cas);
        if let (Some(expected), Some(current)) = (cas, current) {
            let mut conflicts = self.conflicts_to_inject.borrow_mut();
            if *conflicts > 0 {
                *conflicts -= 1;
                return Err(StoreError::CasMismatch);
            }
            if expected != current {
                return Err(StoreError::CasMismatch);
            }
        }
        let next = current.unwrap_or(0).wrapping_add(1).max(1);
        entries.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, Debug, PartialEq)]
    struct Counter(u64);

    impl Record for Counter {
        fn encode(&self) -> Vec<u8> {
            self.0.to_le_bytes().to_vec()
        }
        fn decode(bytes: &[u8]) -> Option<Self> {
            Some(Counter(u64::from_le_bytes(bytes.try_into().ok()?)))
        }
    }

    #[test]
    fn an_update_creates_a_missing_record_from_its_default() {
        let store = MemoryStore::default();
        let (record, _) = update::<Counter, _>(&store, "k", |c| c.0 += 1).unwrap();
        assert_eq!(record, Counter(1));
        assert_eq!(read::<Counter>(&store, "k"), Some(Counter(1)));
    }

    #[test]
    fn a_conflicting_write_is_retried_on_fresh_data() {
        let store = MemoryStore::default();
        ensure::<Counter>(&store, "k");
        store.inject_conflicts(3);
        let mut calls = 0;
        let (record, _) = update::<Counter, _>(&store, "k", |c| {
            calls += 1;
            c.0 += 1
        })
        .unwrap();
        assert_eq!(record, Counter(1));
        assert_eq!(calls, 4, "three conflicts, then success");
    }

    #[test]
    fn endless_contention_gives_up_instead_of_spinning() {
        let store = MemoryStore::default();
        ensure::<Counter>(&store, "k");
        store.inject_conflicts(usize::MAX);
        assert_eq!(
            update::<Counter, _>(&store, "k", |c| c.0 += 1).unwrap_err(),
            StoreError::CasMismatch
        );
    }

    #[test]
    fn a_stale_token_is_refused() {
        let store = MemoryStore::default();
        ensure::<Counter>(&store, "k");
        let (_, stale) = store.get("k").unwrap();
        store.set("k", &Counter(5).encode(), Some(stale)).unwrap();
        assert_eq!(
            store.set("k", &Counter(6).encode(), Some(stale)),
            Err(StoreError::CasMismatch)
        );
    }

    #[test]
    fn undecodable_bytes_read_as_a_fresh_record() {
        let store = MemoryStore::default();
        store.set("k", b"garbage", None).unwrap();
        assert_eq!(read::<Counter>(&store, "k"), None);
        let (record, _) = update::<Counter, _>(&store, "k", |c| c.0 += 1).unwrap();
        assert_eq!(record, Counter(1));
    }

    #[test]
    fn ensure_leaves_an_existing_record_alone() {
        let store = MemoryStore::default();
        update::<Counter, _>(&store, "k", |c| c.0 = 7).unwrap();
        ensure::<Counter>(&store, "k");
        assert_eq!(read::<Counter>(&store, "k"), Some(Counter(7)));
    }
}
