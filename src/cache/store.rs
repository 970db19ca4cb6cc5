//! The cache in shared data, bounded in bytes and in keys. The clock is a
//! parameter everywhere (`now_ms`); nothing here reads it.
//!
//! Shared data cannot delete a key, only blank its value, so naming keys
//! after cache keys would leave one key behind per distinct request, for
//! ever. Entries live instead in a fixed set of slots: the store is split in
//! shards of a fixed number of slots, and a cache key picks its shard and its
//! slot (direct-mapped: a key placed in a taken slot replaces what was
//! there). An entry carries its cache key, so a lookup is one read of one
//! slot and never touches an index. Keys, with the layout in them so that a
//! configuration that changes it starts an empty cache instead of misreading
//! the old one (whose memory is only freed when Envoy restarts):
//!
//! ```text
//! signalbox/v1/cache/<shards>x<slots>/<shard>/index   the shard's ShardIndex
//! signalbox/v1/cache/<shards>x<slots>/<shard>/<slot>  an Entry, or empty
//! ```
//!
//! Each shard's index lists its entries oldest first with their sizes, and
//! keeps the shard under its budget (`max_bytes / shards`) by evicting the
//! oldest and dropping dead ones; it is the source of truth for the bytes.
//!
//! Races. An insert writes its entry first (readers may hit it at once),
//! then updates the index by compare-and-swap (retried on conflict), then
//! blanks the slots the index let go. A slot is blanked only if it still
//! holds the entry that was let go (read, compared by expiry, written back
//! with the slot's CAS token), so an entry another worker just put there
//! stays. What can still drift, and how it comes back:
//! - two workers writing one slot at once: the slot keeps one entry and the
//!   index the other's record. The index is off by one entry for that slot;
//!   when the record is evicted the slot is left alone (its expiry differs)
//!   and the entry becomes an orphan, below.
//! - the index update fails (contention past the retries, or the host): the
//!   insert blanks its own entry, so no bytes are left unaccounted.
//! - an orphan (an entry no index record accounts for, e.g. when a blank
//!   failed): still served until it expires, and freed by [`sweep`], which
//!   the glue runs on a tick, one shard at a time.
//! - a record whose slot was blanked by someone: bytes counted that do not
//!   exist (the safe direction), until the record is evicted in turn.

use super::entry::{peek_times, Entry, Freshness};
use super::index::{ShardIndex, SlotRecord};
use super::key::CacheKey;
use crate::config::cache::Cache;
use crate::config::STATE_PREFIX;
use crate::state::{self, Record, Store, StoreError};

/// More shards spread CAS contention (an insert locks one shard's index);
/// each shard must still hold several of the largest entries.
const MAX_SHARDS: u64 = 64;
const LARGEST_ENTRIES_PER_SHARD: u64 = 4;
/// The entry size slots are provisioned for: chat answers are mostly a few
/// KiB, so a shard of `budget / 2 KiB` slots fills its budget before its
/// slots. The bounds keep an index small (at most 14 KiB) and rewritten
/// cheaply on every insert.
const NOMINAL_ENTRY_BYTES: u64 = 2048;
const SLOTS_PER_SHARD: (u64, u64) = (16, 1024);
/// An entry in no index this long after it was written lost its index
/// update (an insert takes microseconds between the two writes).
pub const ORPHAN_AGE_MS: u64 = 60_000;

/// How the cache is laid out in shared data (derived from the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    shards: u32,
    slots: u16,
    shard_budget: u64,
}

impl Layout {
    pub fn new(max_bytes: u64, max_entry_bytes: u64) -> Layout {
        let largest = max_entry_bytes.max(1);
        let shards = (max_bytes / largest.saturating_mul(LARGEST_ENTRIES_PER_SHARD)).clamp(1, MAX_SHARDS);
        let shard_budget = max_bytes / shards;
        let slots = (shard_budget / NOMINAL_ENTRY_BYTES).clamp(SLOTS_PER_SHARD.0, SLOTS_PER_SHARD.1);
        Layout {
            shards: u32::try_from(shards).unwrap_or(1),
            slots: u16::try_from(slots).unwrap_or(u16::MAX),
            shard_budget,
        }
    }

    pub fn of(cache: &Cache) -> Layout {
        Layout::new(cache.max_bytes, cache.max_entry_bytes as u64)
    }

    pub fn shards(&self) -> u32 {
        self.shards
    }

    pub fn slots_per_shard(&self) -> u16 {
        self.slots
    }

    /// The bytes one shard may hold.
    pub fn shard_budget(&self) -> u64 {
        self.shard_budget
    }

    pub(crate) fn place(&self, key: &CacheKey) -> (u32, u16) {
        let (high, low) = key.halves();
        let shard = high % u64::from(self.shards);
        let slot = low % u64::from(self.slots);
        (shard as u32, slot as u16)
    }

    fn shard_prefix(&self, shard: u32) -> String {
        format!("{STATE_PREFIX}cache/{}x{}/{shard}/", self.shards, self.slots)
    }

    pub(crate) fn index_key(&self, shard: u32) -> String {
        format!("{}index", self.shard_prefix(shard))
    }

    pub(crate) fn slot_key(&self, shard: u32, slot: u16) -> String {
        format!("{}{slot}", self.shard_prefix(shard))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Hit(Entry),
    /// Expired within the grace period ([`super::entry::STALE_GRACE_MS`]).
    Stale(Entry),
    Miss,
}

/// Creates every shard's index, at configure time: an index created by two
/// workers at once could lose one's record (see [`state::ensure`]).
pub fn ensure(store: &dyn Store, layout: &Layout) {
    for shard in 0..layout.shards {
        state::ensure::<ShardIndex>(store, &layout.index_key(shard));
    }
}

/// The entry for `key`. An empty slot, an unreadable one, or one holding
/// another key is a miss.
pub fn lookup(store: &dyn Store, layout: &Layout, key: &CacheKey, now_ms: u64) -> Lookup {
    let (shard, slot) = layout.place(key);
    match state::read::<Entry>(store, &layout.slot_key(shard, slot)) {
        Some(entry) if entry.key == *key => match entry.freshness(now_ms) {
            Freshness::Fresh => Lookup::Hit(entry),
            Freshness::Stale => Lookup::Stale(entry),
            Freshness::Expired => Lookup::Miss,
        },
        _ => Lookup::Miss,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    /// Entries let go to make room (or because they were dead).
    pub evicted: usize,
    /// The shard's bytes afterwards, as its index counts them.
    pub shard_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    /// The encoded entry is larger than a shard's budget.
    TooLarge,
    Store(StoreError),
}

/// Stores `entry`, evicting the oldest entries of its shard to stay within
/// budget. On failure nothing is left unaccounted (the entry is blanked).
pub fn insert(store: &dyn Store, layout: &Layout, entry: &Entry, now_ms: u64) -> Result<Inserted, InsertError> {
    let bytes = entry.encode();
    let size = u32::try_from(bytes.len()).map_err(|_| InsertError::TooLarge)?;
    if u64::from(size) > layout.shard_budget {
        return Err(InsertError::TooLarge);
    }
    let (shard, slot) = layout.place(&entry.key);
    let slot_key = layout.slot_key(shard, slot);
    store.set(&slot_key, &bytes, None).map_err(InsertError::Store)?;
    let record = SlotRecord {
        slot,
        bytes: size,
        expires_ms: entry.expires_ms,
    };
    let updated = state::update::<ShardIndex, _>(store, &layout.index_key(shard), |index| {
        index.admit(record, layout.shard_budget, now_ms)
    });
    match updated {
        Ok((index, gone)) => {
            for record in &gone {
                blank_if_holding(store, &layout.slot_key(shard, record.slot), record);
            }
            Ok(Inserted {
                evicted: gone.len(),
                shard_bytes: index.total_bytes(),
            })
        }
        Err(error) => {
            blank_if_holding(store, &slot_key, &record);
            Err(InsertError::Store(error))
        }
    }
}

/// Blanks the slot at `key` if it still holds the entry `record` accounts
/// for, with the slot's CAS token: an entry written there since stays.
fn blank_if_holding(store: &dyn Store, key: &str, record: &SlotRecord) -> bool {
    let Some((bytes, cas)) = store.get(key) else {
        return false;
    };
    let holds = bytes.len() == record.bytes as usize
        && peek_times(&bytes).is_some_and(|(_, expires_ms)| expires_ms == record.expires_ms);
    holds && store.set(key, &[], Some(cas)).is_ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Swept {
    /// Dead entries the index let go.
    pub dead: usize,
    /// Entries no index record accounted for, blanked.
    pub orphans: usize,
}

/// Tidies one shard: lets go of dead entries (a shard without inserts would
/// otherwise keep them), and blanks orphans — entries in no index record,
/// written more than [`ORPHAN_AGE_MS`] ago, or unreadable. Reads every
/// slot the index does not account for; run it for one shard per tick.
pub fn sweep(store: &dyn Store, layout: &Layout, shard: u32, now_ms: u64) -> Swept {
    let mut swept = Swept::default();
    if shard >= layout.shards {
        return swept;
    }
    let index_key = layout.index_key(shard);
    let mut index = state::read::<ShardIndex>(store, &index_key).unwrap_or_default();
    if index.records.iter().any(|record| record.is_dead(now_ms)) {
        match state::update::<ShardIndex, _>(store, &index_key, |index| index.drop_dead(now_ms)) {
            Ok((fresh, dead)) => {
                for record in &dead {
                    blank_if_holding(store, &layout.slot_key(shard, record.slot), record);
                }
                swept.dead = dead.len();
                index = fresh;
            }
            Err(_) => return swept,
        }
    }
    for slot in (0..layout.slots).filter(|slot| !index.holds(*slot)) {
        let key = layout.slot_key(shard, slot);
        let Some((bytes, cas)) = store.get(&key) else {
            continue;
        };
        let orphaned = !bytes.is_empty()
            && peek_times(&bytes).is_none_or(|(stored_ms, _)| stored_ms.saturating_add(ORPHAN_AGE_MS) <= now_ms);
        if orphaned && store.set(&key, &[], Some(cas)).is_ok() {
            swept.orphans += 1;
        }
    }
    swept
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Occupancy {
    pub entries: usize,
    pub bytes: u64,
}

/// What the indexes account for across shards (for gauges).
pub fn occupancy(store: &dyn Store, layout: &Layout) -> Occupancy {
    (0..layout.shards)
        .filter_map(|shard| state::read::<ShardIndex>(store, &layout.index_key(shard)))
        .fold(Occupancy::default(), |total, index| Occupancy {
            entries: total.entries + index.records.len(),
            bytes: total.bytes + index.total_bytes(),
        })
}
