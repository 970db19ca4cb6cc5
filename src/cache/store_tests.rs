//! The bounded store against an in-memory shared data that can fail, count
//! keys, and run another worker's insert between an insert's two writes.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;

use super::entry::{Entry, STALE_GRACE_MS};
use super::key::CacheKey;
use super::store::*;
use crate::providers::TokenUsage;
use crate::state::{MemoryStore, Store, StoreError};

/// 1 MiB with 64 KiB entries: 4 shards of 256 KiB and 128 slots.
fn small_layout() -> Layout {
    Layout::new(1 << 20, 64 << 10)
}

const TTL_MS: u64 = 300_000;

#[derive(Default)]
struct TestStore {
    inner: MemoryStore,
    written: RefCell<BTreeSet<String>>,
    /// What every index write fails with, if anything.
    index_failure: Cell<Option<StoreError>>,
    /// Another worker's insert, run just before the next index write.
    racing: RefCell<Option<(Layout, Entry)>>,
}

impl Store for TestStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.inner.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        if key.ends_with("/index") {
            if let Some(error) = self.index_failure.get() {
                return Err(error);
            }
            let racing = self.racing.borrow_mut().take();
            if let Some((layout, entry)) = racing {
                insert(self, &layout, &entry, entry.stored_ms).expect("the racing insert");
            }
        }
        self.written.borrow_mut().insert(key.to_string());
        self.inner.set(key, value, cas)
    }
}

impl TestStore {
    fn new(layout: &Layout) -> TestStore {
        let store = TestStore::default();
        ensure(&store, layout);
        store
    }

    /// Bytes actually held in slots, whatever the indexes say.
    fn slot_bytes(&self, layout: &Layout) -> u64 {
        let mut total = 0;
        for shard in 0..layout.shards() {
            for slot in 0..layout.slots_per_shard() {
                total += self
                    .get(&layout.slot_key(shard, slot))
                    .map_or(0, |(bytes, _)| bytes.len() as u64);
            }
        }
        total
    }
}

/// Well-spread keys (SplitMix64), as SHA-256 makes them.
fn key(n: u64) -> CacheKey {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let seed = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    CacheKey::from_halves(mix(seed), mix(seed ^ 0x5555_5555_5555_5555))
}

fn entry(key: CacheKey, body_bytes: usize, now_ms: u64) -> Entry {
    let usage = TokenUsage {
        input: 10,
        output: 3,
        ..TokenUsage::default()
    };
    Entry::new(key, "small", usage, vec![b'x'; body_bytes], now_ms, TTL_MS)
}

fn hit(store: &dyn Store, layout: &Layout, key: &CacheKey, now_ms: u64) -> bool {
    matches!(lookup(store, layout, key, now_ms), Lookup::Hit(_))
}

#[test]
fn a_stored_entry_is_a_hit_and_another_key_a_miss() {
    let layout = small_layout();
    let store = TestStore::new(&layout);
    assert_eq!(lookup(&store, &layout, &key(1), 0), Lookup::Miss);
    let stored = entry(key(1), 500, 0);
    insert(&store, &layout, &stored, 0).unwrap();
    assert_eq!(lookup(&store, &layout, &key(1), 10), Lookup::Hit(stored));
    assert_eq!(lookup(&store, &layout, &key(2), 10), Lookup::Miss);
    let occupancy = occupancy(&store, &layout);
    assert_eq!(occupancy.entries, 1);
    assert_eq!(occupancy.bytes, store.slot_bytes(&layout));
}

#[test]
fn an_expired_entry_is_stale_for_the_grace_period_then_a_miss() {
    let layout = small_layout();
    let store = TestStore::new(&layout);
    insert(&store, &layout, &entry(key(1), 100, 0), 0).unwrap();
    assert!(hit(&store, &layout, &key(1), TTL_MS - 1));
    assert!(matches!(lookup(&store, &layout, &key(1), TTL_MS), Lookup::Stale(_)));
    assert_eq!(lookup(&store, &layout, &key(1), TTL_MS + STALE_GRACE_MS), Lookup::Miss);
}

#[test]
fn the_total_stays_under_max_bytes_by_evicting_the_oldest() {
    let layout = small_layout();
    let store = TestStore::new(&layout);
    let max_bytes = layout.shard_budget() * u64::from(layout.shards());
    let mut evicted = 0;
    for n in 0..400 {
        let inserted = insert(&store, &layout, &entry(key(n), 10_000, n), n).unwrap();
        evicted += inserted.evicted;
        assert!(inserted.shard_bytes <= layout.shard_budget());
        let occupancy = occupancy(&store, &layout);
        assert!(occupancy.bytes <= max_bytes, "after {n}: {occupancy:?}");
        assert_eq!(
            store.slot_bytes(&layout),
            occupancy.bytes,
            "every held byte is accounted for"
        );
    }
    assert!(
        evicted > 100,
        "{evicted} evicted; the rest were replaced in their slots"
    );
    assert!(hit(&store, &layout, &key(399), 400), "the newest stays");
    assert!(!hit(&store, &layout, &key(0), 400), "the oldest went");
}

#[test]
fn the_store_uses_a_bounded_set_of_keys_however_many_requests_it_sees() {
    let layout = small_layout();
    let store = TestStore::new(&layout);
    for n in 0..5_000 {
        insert(&store, &layout, &entry(key(n), 200, n), n).unwrap();
    }
    let bound = (layout.shards() * (u32::from(layout.slots_per_shard()) + 1)) as usize;
    assert!(store.written.borrow().len() <= bound);
}

/// Two keys that land in the same slot of shard 0.
fn colliding_keys(layout: &Layout) -> (CacheKey, CacheKey) {
    let first = CacheKey::from_halves(0, 0);
    let second = CacheKey::from_halves(u64::from(layout.shards()), u64::from(layout.slots_per_shard()));
    assert_eq!(layout.place(&first), layout.place(&second));
    (first, second)
}

#[test]
fn a_key_placed_in_a_taken_slot_replaces_the_entry_there() {
    let layout = small_layout();
    let store = TestStore::new(&layout);
    let (first, second) = colliding_keys(&layout);
    insert(&store, &layout, &entry(first, 5_000, 0), 0).unwrap();
    let inserted = insert(&store, &layout, &entry(second, 300, 1), 1).unwrap();
    assert_eq!(inserted.evicted, 0, "replaced, not evicted");
    assert!(!hit(&store, &layout, &first, 2));
    assert!(hit(&store, &layout, &second, 2));
    assert_eq!(occupancy(&store, &layout).bytes, store.slot_bytes(&layout));
}

#[test]
fn index_conflicts_are_retried() {
    let layout = small_layout();
    let store = TestStore::new(&layout);
    store.inner.inject_conflicts(5);
    insert(&store, &layout, &entry(key(1), 100, 0), 0).unwrap();
    assert!(hit(&store, &layout, &key(1), 1));
    assert_eq!(occupancy(&store, &layout).entries, 1);
}

#[test]
fn an_insert_whose_index_update_fails_leaves_no_bytes_behind() {
    let layout = small_layout();
    let store = TestStore::new(&layout);
    insert(&store, &layout, &entry(key(1), 100, 0), 0).unwrap();
    for (n, failure) in [(2, StoreError::CasMismatch), (3, StoreError::Failed)] {
        store.index_failure.set(Some(failure));
        let error = insert(&store, &layout, &entry(key(n), 100, 0), 0).unwrap_err();
        assert_eq!(error, InsertError::Store(failure));
    }
    store.index_failure.set(None);
    assert!(!hit(&store, &layout, &key(2), 1) && !hit(&store, &layout, &key(3), 1));
    assert!(hit(&store, &layout, &key(1), 1));
    assert_eq!(store.slot_bytes(&layout), occupancy(&store, &layout).bytes);
}

#[test]
fn an_entry_larger_than_a_shard_is_refused_without_a_write() {
    let layout = small_layout();
    let store = TestStore::new(&layout);
    let written = store.written.borrow().len();
    let too_big = entry(key(1), layout.shard_budget() as usize, 0);
    assert_eq!(insert(&store, &layout, &too_big, 0), Err(InsertError::TooLarge));
    assert_eq!(store.written.borrow().len(), written);
}

#[test]
fn a_racing_insert_into_another_slot_is_accounted_for_too() {
    let layout = small_layout();
    let store = TestStore::new(&layout);
    *store.racing.borrow_mut() = Some((layout, entry(key(2), 700, 0)));
    insert(&store, &layout, &entry(key(1), 500, 0), 0).unwrap();
    assert!(hit(&store, &layout, &key(1), 1) && hit(&store, &layout, &key(2), 1));
    assert_eq!(store.slot_bytes(&layout), occupancy(&store, &layout).bytes);
}

#[test]
fn two_workers_filling_one_slot_drift_at_most_until_the_sweep() {
    let layout = small_layout();
    let store = TestStore::new(&layout);
    let (first, second) = colliding_keys(&layout);
    // Worker 1 writes `first`; worker 2's whole insert of `second` runs
    // before worker 1's index update, which then records `first`.
    *store.racing.borrow_mut() = Some((layout, entry(second, 9_000, 1)));
    insert(&store, &layout, &entry(first, 100, 0), 0).unwrap();
    assert!(hit(&store, &layout, &second, 2), "the slot holds the later write");
    assert!(!hit(&store, &layout, &first, 2));
    // Fill shard 0 until the slot's record is evicted: the slot holds
    // another entry than the record, so it is left, unaccounted.
    let (shard, _) = layout.place(&first);
    let mut n = 10;
    while occupancy_of_slot_record(&store, &layout, &first) {
        assert!(n < 10_000, "the record was never evicted");
        let key = key(n);
        if layout.place(&key).0 == shard && layout.place(&key) != layout.place(&first) {
            insert(&store, &layout, &entry(key, 20_000, 3), 3).unwrap();
        }
        n += 1;
    }
    assert!(store.slot_bytes(&layout) > occupancy(&store, &layout).bytes);
    assert_eq!(sweep(&store, &layout, shard, 4).orphans, 0, "too young to be an orphan");
    let later = 1 + ORPHAN_AGE_MS;
    assert_eq!(sweep(&store, &layout, shard, later).orphans, 1);
    assert_eq!(store.slot_bytes(&layout), occupancy(&store, &layout).bytes);
}

/// Whether the index of `key`'s shard still has a record for its slot.
fn occupancy_of_slot_record(store: &TestStore, layout: &Layout, key: &CacheKey) -> bool {
    let (shard, slot) = layout.place(key);
    crate::state::read::<super::index::ShardIndex>(store, &layout.index_key(shard))
        .is_some_and(|index| index.holds(slot))
}

#[test]
fn the_sweep_lets_go_of_dead_entries_in_a_quiet_shard() {
    let layout = small_layout();
    let store = TestStore::new(&layout);
    insert(&store, &layout, &entry(key(1), 1_000, 0), 0).unwrap();
    let (shard, _) = layout.place(&key(1));
    assert_eq!(sweep(&store, &layout, shard, TTL_MS), Swept::default(), "stale is kept");
    let swept = sweep(&store, &layout, shard, TTL_MS + STALE_GRACE_MS);
    assert_eq!(swept.dead, 1);
    assert_eq!(store.slot_bytes(&layout), 0);
    assert_eq!(occupancy(&store, &layout), Occupancy::default());
    assert_eq!(
        sweep(&store, &layout, layout.shards(), 0),
        Swept::default(),
        "no such shard"
    );
}

#[test]
fn the_sweep_blanks_garbage_and_old_orphans_but_not_an_insert_in_flight() {
    let layout = small_layout();
    let store = TestStore::new(&layout);
    let in_flight = entry(key(1), 100, 1_000);
    let (shard, slot) = layout.place(&in_flight.key);
    let slot_key = layout.slot_key(shard, slot);
    store
        .set(&slot_key, &crate::state::Record::encode(&in_flight), None)
        .unwrap();
    let garbage_slot = (slot + 1) % layout.slots_per_shard();
    store
        .set(&layout.slot_key(shard, garbage_slot), b"garbage", None)
        .unwrap();
    assert_eq!(sweep(&store, &layout, shard, 1_000).orphans, 1, "only the garbage");
    assert!(hit(&store, &layout, &in_flight.key, 1_000));
    assert_eq!(sweep(&store, &layout, shard, 1_000 + ORPHAN_AGE_MS).orphans, 1);
    assert_eq!(store.slot_bytes(&layout), 0);
}

#[test]
fn a_changed_layout_reads_none_of_the_old_entries() {
    let old = small_layout();
    let new = Layout::new(2 << 20, 64 << 10);
    assert_ne!(old, new);
    let store = TestStore::new(&old);
    insert(&store, &old, &entry(key(1), 100, 0), 0).unwrap();
    assert_eq!(lookup(&store, &new, &key(1), 1), Lookup::Miss);
}

#[test]
fn layouts_keep_every_shard_able_to_hold_the_largest_entry() {
    let defaults = Layout::new(64 << 20, 256 << 10);
    assert_eq!((defaults.shards(), defaults.slots_per_shard()), (64, 512));
    assert_eq!(defaults.shard_budget(), 1 << 20);
    for (max_bytes, max_entry) in [
        (1u64 << 20, 1u64 << 20),
        (1 << 20, 1 << 10),
        (3 << 20, 1 << 20),
        (1 << 30, 16 << 20),
        (1 << 30, 1 << 10),
        ((1 << 20) + 7, 5_000),
    ] {
        let layout = Layout::new(max_bytes, max_entry);
        assert!(layout.shard_budget() >= max_entry, "{max_bytes} {max_entry}");
        assert!(layout.shard_budget() * u64::from(layout.shards()) <= max_bytes);
        assert!((1..=64).contains(&layout.shards()));
        assert!((16..=1024).contains(&layout.slots_per_shard()));
    }
}
