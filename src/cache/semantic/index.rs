//! Each tenant's semantic index in shared data: records of (context key,
//! quantised vector, exact cache key, expiry), searched for the most
//! similar vector in the same context. A hit names an exact cache key; the
//! answer itself stays in the exact store ([`super::super::store`]), which
//! checks the key again, so the index holds no answer text.
//!
//! Keys. A tenant's records live in [`SHARDS`] records of its own, under
//! keys that name the tenant, and a search reads only the searching
//! tenant's keys; a record's exact key also contains its tenant, so even a
//! misplaced record could not answer another tenant. The embedding model is
//! in the key as a short hash, so a configuration that changes the model
//! starts an empty index instead of comparing two models' vectors:
//!
//! ```text
//! signalbox/v1/semantic/<model hash>/<shard>/t:<tenant>   a SemanticShard
//! signalbox/v1/semantic/<model hash>/<shard>/-            requests without a tenant
//! ```
//!
//! Bounds. A tenant holds at most `max_entries` records, `max_entries /
//! SHARDS` (rounded up) per shard, placed by their exact key; a shard drops
//! its expired records and then its oldest to make room. One lookup reads
//! the tenant's shards and computes one integer dot product per record in
//! the same context: at most `max_entries` (≤ 4096, config-bounded) ×
//! [`MAX_DIMENSIONS`] (4096) multiply-adds, about 1.5 million at the
//! default 1000 records of a 1536-dimension model. One shard record is at
//! most `max_entries / SHARDS` × (dimensions + 44) bytes (about 200 KiB at
//! the defaults with 1536 dimensions), rewritten whole by every add.
//!
//! Races: an add is a compare-and-swap update of one shard, retried
//! ([`state::update`]); two adds of one shard never lose each other. A
//! search reads without locking and may miss a record added meanwhile (a
//! miss, never a wrong answer).

use sha2::{Digest, Sha256};

use super::context::ContextKey;
use super::vector::{Quantised, MAX_DIMENSIONS};
use crate::cache::key::CacheKey;
use crate::config::STATE_PREFIX;
use crate::state::codec::{Reader, Writer};
use crate::state::{self, Record, Store, StoreError};

/// Records per tenant are spread over this many shards, so concurrent adds
/// rarely contend and one add rewrites an eighth of the tenant's vectors.
pub const SHARDS: u32 = 8;

/// Where one embedding model's index lives and how much each shard holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemanticLayout {
    /// `signalbox/v1/semantic/<model hash>/`.
    prefix: String,
    per_shard: usize,
}

impl SemanticLayout {
    /// `model`: what identifies the embedding model (its provider and
    /// upstream id); `max_entries`: records per tenant.
    pub fn new(model: &str, max_entries: usize) -> SemanticLayout {
        let digest = Sha256::digest(model.as_bytes());
        let hash: String = digest[..4].iter().map(|byte| format!("{byte:02x}")).collect();
        SemanticLayout {
            prefix: format!("{STATE_PREFIX}semantic/{hash}/"),
            per_shard: max_entries.div_ceil(SHARDS as usize).max(1),
        }
    }

    pub fn per_shard(&self) -> usize {
        self.per_shard
    }

    /// The shared-data key of `tenant`'s `shard`.
    pub fn shard_key(&self, tenant: Option<&str>, shard: u32) -> String {
        match tenant {
            Some(tenant) => format!("{}{shard}/t:{tenant}", self.prefix),
            None => format!("{}{shard}/-", self.prefix),
        }
    }

    fn shard_of(key: &CacheKey) -> u32 {
        (key.halves().0 % u64::from(SHARDS)) as u32
    }
}

/// One cached answer's place in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemanticRecord {
    pub context: ContextKey,
    /// The exact entry that answers.
    pub key: CacheKey,
    pub expires_ms: u64,
    pub vector: Quantised,
}

/// One shard of one tenant's index, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SemanticShard {
    pub records: Vec<SemanticRecord>,
}

impl SemanticShard {
    /// Adds `record` as the newest (replacing one with the same key),
    /// drops the expired, then the oldest beyond `capacity`. Returns how
    /// many records went.
    fn admit(&mut self, record: SemanticRecord, capacity: usize, now_ms: u64) -> usize {
        let before = self.records.len();
        self.records
            .retain(|held| held.key != record.key && held.expires_ms > now_ms);
        let replaced = before - self.records.len();
        self.records.push(record);
        let excess = self.records.len().saturating_sub(capacity.max(1));
        self.records.drain(..excess);
        replaced + excess
    }
}

const VERSION: u8 = 1;

impl Record for SemanticShard {
    fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::with_version(VERSION);
        let count = self.records.len().min(usize::from(u16::MAX));
        writer.u16(count as u16);
        for record in &self.records[..count] {
            let (context_high, context_low) = record.context.halves();
            let (key_high, key_low) = record.key.halves();
            writer
                .u64(context_high)
                .u64(context_low)
                .u64(key_high)
                .u64(key_low)
                .u64(record.expires_ms)
                .bytes(&record.vector.to_bytes());
        }
        writer.finish()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut reader = Reader::with_version(bytes, VERSION)?;
        let count = reader.u16()?;
        // 45 bytes is the smallest record: no allocation beyond the input.
        let mut records = Vec::with_capacity(usize::from(count).min(bytes.len() / 45));
        for _ in 0..count {
            let context = ContextKey::from_halves(reader.u64()?, reader.u64()?);
            let key = CacheKey::from_halves(reader.u64()?, reader.u64()?);
            let expires_ms = reader.u64()?;
            let vector = reader.bytes()?;
            if vector.len() > MAX_DIMENSIONS {
                return None;
            }
            records.push(SemanticRecord {
                context,
                key,
                expires_ms,
                vector: Quantised::from_bytes(vector)?,
            });
        }
        reader.is_done().then_some(SemanticShard { records })
    }
}

/// The most similar live record of `tenant` in `context` whose similarity
/// to `vector` is at least `threshold`: its exact key and the similarity.
pub fn search(
    store: &dyn Store,
    layout: &SemanticLayout,
    tenant: Option<&str>,
    context: &ContextKey,
    vector: &Quantised,
    threshold: f32,
    now_ms: u64,
) -> Option<(CacheKey, f32)> {
    let mut best: Option<(CacheKey, f32)> = None;
    for shard in 0..SHARDS {
        let Some(records) = state::read::<SemanticShard>(store, &layout.shard_key(tenant, shard)) else {
            continue;
        };
        for record in records.records.iter().take(layout.per_shard) {
            if record.context != *context || record.expires_ms <= now_ms {
                continue;
            }
            let Some(similarity) = record.vector.cosine(vector) else {
                continue;
            };
            if similarity >= threshold && best.is_none_or(|(_, held)| similarity > held) {
                best = Some((record.key, similarity));
            }
        }
    }
    best
}

/// Remembers that `key`'s entry (kept in the exact store, expiring at
/// `expires_ms`) answers `vector` in `context`. Returns how many records
/// went to make room (expired, replaced or oldest).
#[allow(clippy::too_many_arguments)]
pub fn add(
    store: &dyn Store,
    layout: &SemanticLayout,
    tenant: Option<&str>,
    context: ContextKey,
    vector: Quantised,
    key: CacheKey,
    expires_ms: u64,
    now_ms: u64,
) -> Result<usize, StoreError> {
    let record = SemanticRecord {
        context,
        key,
        expires_ms,
        vector,
    };
    let shard_key = layout.shard_key(tenant, SemanticLayout::shard_of(&key));
    state::update::<SemanticShard, _>(store, &shard_key, |shard| {
        shard.admit(record.clone(), layout.per_shard, now_ms)
    })
    .map(|(_, gone)| gone)
}

/// Creates `tenant`'s shards, at configure time (see [`state::ensure`]).
pub fn ensure(store: &dyn Store, layout: &SemanticLayout, tenant: Option<&str>) {
    for shard in 0..SHARDS {
        state::ensure::<SemanticShard>(store, &layout.shard_key(tenant, shard));
    }
}

/// The records `tenant`'s index holds (for gauges and tests).
pub fn count(store: &dyn Store, layout: &SemanticLayout, tenant: Option<&str>) -> usize {
    (0..SHARDS)
        .filter_map(|shard| state::read::<SemanticShard>(store, &layout.shard_key(tenant, shard)))
        .map(|shard| shard.records.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;

    const CONTEXT: ContextKey = ContextKey([7; 16]);

    fn key(n: u64) -> CacheKey {
        CacheKey::from_halves(n, n.wrapping_mul(31))
    }

    /// A unit vector pointing mostly at axis `axis`, leaning toward `lean`.
    fn vector(axis: usize, lean: f32) -> Quantised {
        let mut v = vec![0.0f32; 64];
        v[axis] = 1.0;
        v[(axis + 1) % 64] = lean;
        Quantised::from_floats(&v).unwrap()
    }

    fn layout(max_entries: usize) -> SemanticLayout {
        SemanticLayout::new("openai/text-embedding-3-small", max_entries)
    }

    #[test]
    fn a_close_vector_in_the_same_context_finds_the_key() {
        let store = MemoryStore::default();
        let layout = layout(100);
        add(&store, &layout, Some("a"), CONTEXT, vector(0, 0.0), key(1), 10_000, 0).unwrap();
        add(&store, &layout, Some("a"), CONTEXT, vector(5, 0.0), key(2), 10_000, 0).unwrap();
        let (found, similarity) = search(&store, &layout, Some("a"), &CONTEXT, &vector(0, 0.2), 0.95, 1).unwrap();
        assert_eq!(found, key(1));
        assert!(similarity > 0.97 && similarity < 1.0, "{similarity}");
        assert_eq!(
            search(&store, &layout, Some("a"), &CONTEXT, &vector(0, 0.5), 0.95, 1),
            None,
            "below the threshold"
        );
    }

    #[test]
    fn the_best_match_wins() {
        let store = MemoryStore::default();
        let layout = layout(100);
        add(&store, &layout, None, CONTEXT, vector(0, 0.3), key(1), 10_000, 0).unwrap();
        add(&store, &layout, None, CONTEXT, vector(0, 0.1), key(2), 10_000, 0).unwrap();
        add(&store, &layout, None, CONTEXT, vector(0, 0.2), key(3), 10_000, 0).unwrap();
        assert_eq!(
            search(&store, &layout, None, &CONTEXT, &vector(0, 0.1), 0.9, 0)
                .unwrap()
                .0,
            key(2)
        );
    }

    #[test]
    fn never_across_tenants_nor_contexts() {
        let store = MemoryStore::default();
        let layout = layout(100);
        add(&store, &layout, Some("a"), CONTEXT, vector(0, 0.0), key(1), 10_000, 0).unwrap();
        for tenant in [Some("b"), None, Some("a "), Some("t:a")] {
            assert_eq!(
                search(&store, &layout, tenant, &CONTEXT, &vector(0, 0.0), 0.5, 0),
                None,
                "{tenant:?}"
            );
        }
        let other = ContextKey([8; 16]);
        assert_eq!(
            search(&store, &layout, Some("a"), &other, &vector(0, 0.0), 0.5, 0),
            None
        );
        assert!(layout.shard_key(Some("a"), 0).contains("/t:a"));
        assert_ne!(layout.shard_key(Some("-"), 0), layout.shard_key(None, 0));
    }

    #[test]
    fn another_embedding_model_has_its_own_index() {
        let store = MemoryStore::default();
        add(&store, &layout(100), None, CONTEXT, vector(0, 0.0), key(1), 10_000, 0).unwrap();
        let other = SemanticLayout::new("openai/text-embedding-3-large", 100);
        assert_eq!(search(&store, &other, None, &CONTEXT, &vector(0, 0.0), 0.5, 0), None);
    }

    #[test]
    fn expired_records_do_not_answer_and_are_dropped() {
        let store = MemoryStore::default();
        let layout = layout(100);
        add(&store, &layout, None, CONTEXT, vector(0, 0.0), key(1), 1_000, 0).unwrap();
        assert!(search(&store, &layout, None, &CONTEXT, &vector(0, 0.0), 0.9, 999).is_some());
        assert_eq!(
            search(&store, &layout, None, &CONTEXT, &vector(0, 0.0), 0.9, 1_000),
            None
        );
        // An add to the same shard (key 9 lands where key 1 did) drops it.
        let same_shard = (2..100)
            .map(key)
            .find(|k| SemanticLayout::shard_of(k) == SemanticLayout::shard_of(&key(1)))
            .unwrap();
        assert_eq!(
            add(&store, &layout, None, CONTEXT, vector(3, 0.0), same_shard, 9_000, 2_000),
            Ok(1)
        );
        assert_eq!(count(&store, &layout, None), 1);
    }

    #[test]
    fn a_tenant_holds_at_most_max_entries_and_the_oldest_go() {
        let store = MemoryStore::default();
        let layout = layout(16);
        assert_eq!(layout.per_shard(), 2);
        for n in 0..200 {
            add(
                &store,
                &layout,
                Some("a"),
                CONTEXT,
                vector((n % 64) as usize, 0.0),
                key(n),
                1_000_000,
                n,
            )
            .unwrap();
        }
        assert!(count(&store, &layout, Some("a")) <= 16);
        // The newest of each shard are kept.
        assert_eq!(
            search(&store, &layout, Some("a"), &CONTEXT, &vector(199 % 64, 0.0), 0.99, 300)
                .unwrap()
                .0,
            key(199)
        );
        let found = search(&store, &layout, Some("a"), &CONTEXT, &vector(0, 0.0), 0.99, 300).map(|(key, _)| key);
        assert!(found.is_some_and(|key| key != self::key(0)), "key 0 was evicted");
    }

    #[test]
    fn the_same_key_added_again_replaces_its_record() {
        let store = MemoryStore::default();
        let layout = layout(100);
        add(&store, &layout, None, CONTEXT, vector(0, 0.0), key(1), 10_000, 0).unwrap();
        assert_eq!(
            add(&store, &layout, None, CONTEXT, vector(1, 0.0), key(1), 20_000, 1),
            Ok(1)
        );
        assert_eq!(count(&store, &layout, None), 1);
        assert_eq!(search(&store, &layout, None, &CONTEXT, &vector(0, 0.0), 0.99, 2), None);
    }

    #[test]
    fn adds_survive_compare_and_swap_conflicts() {
        let store = MemoryStore::default();
        let layout = layout(100);
        ensure(&store, &layout, None);
        store.inject_conflicts(3);
        add(&store, &layout, None, CONTEXT, vector(0, 0.0), key(1), 10_000, 0).unwrap();
        assert_eq!(count(&store, &layout, None), 1);
        store.inject_conflicts(usize::MAX);
        assert_eq!(
            add(&store, &layout, None, CONTEXT, vector(1, 0.0), key(1), 10_000, 0),
            Err(StoreError::CasMismatch)
        );
    }

    #[test]
    fn the_shard_round_trips_and_rejects_garbage() {
        let mut shard = SemanticShard::default();
        shard.admit(
            SemanticRecord {
                context: CONTEXT,
                key: key(3),
                expires_ms: u64::MAX,
                vector: vector(2, -0.4),
            },
            10,
            0,
        );
        let bytes = shard.encode();
        assert_eq!(SemanticShard::decode(&bytes), Some(shard));
        assert_eq!(SemanticShard::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(SemanticShard::decode(b""), None);
        assert_eq!(SemanticShard::decode(&[VERSION, 0xff, 0xff]), None);
        let mut oversized = Writer::with_version(VERSION);
        oversized
            .u16(1)
            .u64(0)
            .u64(0)
            .u64(0)
            .u64(0)
            .u64(0)
            .bytes(&vec![1; MAX_DIMENSIONS + 1]);
        assert_eq!(SemanticShard::decode(&oversized.finish()), None);
    }
}
