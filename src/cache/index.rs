//! The index of one cache shard: which of its slots hold an entry, how many
//! bytes each takes and when it expires, oldest first. The shard's byte
//! budget is kept here, and only here: it is the source of truth for what
//! the shard holds, updated with compare-and-swap after an entry is written.

use super::entry::STALE_GRACE_MS;
use crate::state::codec::{Reader, Writer};
use crate::state::Record;

/// One slot's entry, as the index accounts for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotRecord {
    pub slot: u16,
    /// Encoded size of the entry.
    pub bytes: u32,
    pub expires_ms: u64,
}

impl SlotRecord {
    /// Past this even a stale read misses, so the bytes can go.
    pub fn is_dead(&self, now_ms: u64) -> bool {
        self.expires_ms.saturating_add(STALE_GRACE_MS) <= now_ms
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardIndex {
    /// Oldest first; at most one per slot.
    pub records: Vec<SlotRecord>,
}

impl ShardIndex {
    pub fn total_bytes(&self) -> u64 {
        self.records.iter().map(|record| u64::from(record.bytes)).sum()
    }

    pub fn holds(&self, slot: u16) -> bool {
        self.records.iter().any(|record| record.slot == slot)
    }

    /// Accounts for `record`, newest: whatever its slot held before is
    /// replaced (not evicted: the new entry is already there), dead records
    /// are dropped, and the oldest are evicted until the shard is within
    /// `budget`. Returns the records whose entries should be blanked.
    pub fn admit(&mut self, record: SlotRecord, budget: u64, now_ms: u64) -> Vec<SlotRecord> {
        self.records.retain(|held| held.slot != record.slot);
        let mut gone = self.drop_dead(now_ms);
        self.records.push(record);
        let mut total = self.total_bytes();
        let mut evicted = 0;
        // The newest record alone always fits (the caller checks), so the
        // loop stops before reaching it.
        while total > budget && evicted + 1 < self.records.len() {
            total -= u64::from(self.records[evicted].bytes);
            evicted += 1;
        }
        gone.extend(self.records.drain(..evicted));
        gone
    }

    /// Forgets the records that are dead at `now_ms` and returns them.
    pub fn drop_dead(&mut self, now_ms: u64) -> Vec<SlotRecord> {
        let (dead, live): (Vec<SlotRecord>, Vec<SlotRecord>) =
            self.records.iter().partition(|record| record.is_dead(now_ms));
        self.records = live;
        dead
    }
}

const VERSION: u8 = 1;

impl Record for ShardIndex {
    fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::with_version(VERSION);
        // A shard has at most u16::MAX slots, so the count fits.
        writer.u16(u16::try_from(self.records.len()).unwrap_or(u16::MAX));
        for record in self.records.iter().take(usize::from(u16::MAX)) {
            writer.u16(record.slot).u32(record.bytes).u64(record.expires_ms);
        }
        writer.finish()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut reader = Reader::with_version(bytes, VERSION)?;
        let count = reader.u16()?;
        let mut records = Vec::with_capacity(usize::from(count).min(bytes.len() / 14));
        for _ in 0..count {
            records.push(SlotRecord {
                slot: reader.u16()?,
                bytes: reader.u32()?,
                expires_ms: reader.u64()?,
            });
        }
        reader.is_done().then_some(ShardIndex { records })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(slot: u16, bytes: u32, expires_ms: u64) -> SlotRecord {
        SlotRecord {
            slot,
            bytes,
            expires_ms,
        }
    }

    fn slots(records: &[SlotRecord]) -> Vec<u16> {
        records.iter().map(|record| record.slot).collect()
    }

    #[test]
    fn the_oldest_go_first_until_the_shard_is_within_budget() {
        let mut index = ShardIndex::default();
        for slot in 0..4 {
            assert!(index.admit(record(slot, 100, 10_000), 400, 0).is_empty());
        }
        let gone = index.admit(record(9, 250, 10_000), 400, 0);
        assert_eq!(slots(&gone), vec![0, 1, 2]);
        assert_eq!(slots(&index.records), vec![3, 9]);
        assert_eq!(index.total_bytes(), 350);
    }

    #[test]
    fn a_slot_written_again_is_replaced_not_evicted_and_becomes_newest() {
        let mut index = ShardIndex::default();
        index.admit(record(1, 100, 10_000), 1_000, 0);
        index.admit(record(2, 100, 10_000), 1_000, 0);
        let gone = index.admit(record(1, 300, 20_000), 1_000, 0);
        assert!(gone.is_empty());
        assert_eq!(index.records, vec![record(2, 100, 10_000), record(1, 300, 20_000)]);
    }

    #[test]
    fn dead_records_go_whatever_the_budget() {
        let mut index = ShardIndex::default();
        index.admit(record(1, 100, 1_000), 1_000, 0);
        index.admit(record(2, 100, 900_000), 1_000, 0);
        let now = 1_000 + STALE_GRACE_MS;
        assert_eq!(slots(&index.admit(record(3, 100, 900_000), 1_000, now)), vec![1]);
        assert_eq!(slots(&index.records), vec![2, 3]);
        let mut stale = ShardIndex::default();
        stale.admit(record(1, 100, 1_000), 1_000, 0);
        assert!(stale.drop_dead(1_000).is_empty(), "stale is not dead yet");
    }

    #[test]
    fn the_record_round_trips_and_rejects_garbage() {
        let mut index = ShardIndex::default();
        index.admit(record(3, 70_000, u64::MAX), u64::MAX, 0);
        index.admit(record(1023, 1, 5), u64::MAX, 0);
        assert_eq!(ShardIndex::decode(&index.encode()), Some(index.clone()));
        let bytes = index.encode();
        assert_eq!(ShardIndex::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(ShardIndex::decode(b""), None);
        assert_eq!(
            ShardIndex::decode(&[VERSION, 0xff, 0xff]),
            None,
            "a count with no records"
        );
    }
}
