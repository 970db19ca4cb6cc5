//! A count of things in progress — attempts in flight, half-open trials —
//! in which every unit is a lease: given back by its holder when it ends, or
//! expired on its own once `lease_ms` has passed if the holder never comes
//! back (a worker VM that died mid-request, a path that forgot to release).
//! A leaked unit therefore costs at most one lease period, never a restart.
//!
//! Units live in [`SLOTS`] time buckets of `lease_ms / (SLOTS - 1)` each, in a
//! ring: a unit taken in bucket `b` counts while the current bucket is within
//! `SLOTS - 1` of `b`, so it expires between `lease_ms` and `lease_ms` plus
//! one bucket after it was taken. The holder keeps the bucket number (its
//! [`LeaseToken`]) to give the unit back; a token whose bucket has expired or
//! been reused gives back nothing. A clock that jumps back hides units from
//! the "future" (they stop counting); one that jumps ahead expires them all:
//! either way the count errs low for at most one lease period.

use crate::state::codec::{Reader, Writer};

pub const SLOTS: usize = 4;

/// What a holder keeps to give its unit back: the bucket it was taken in.
pub type LeaseToken = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeasedCount {
    /// Per ring slot: the bucket it holds, and that bucket's live units.
    slots: [(u64, u16); SLOTS],
}

fn bucket_ms(lease_ms: u64) -> u64 {
    (lease_ms / (SLOTS as u64 - 1)).max(1)
}

fn bucket(now_ms: u64, lease_ms: u64) -> u64 {
    now_ms / bucket_ms(lease_ms)
}

impl LeasedCount {
    fn slot(&mut self, bucket: u64) -> &mut (u64, u16) {
        &mut self.slots[(bucket % SLOTS as u64) as usize]
    }

    /// Takes one unit; keep the token to give it back.
    pub fn take(&mut self, now_ms: u64, lease_ms: u64) -> LeaseToken {
        let current = bucket(now_ms, lease_ms);
        let slot = self.slot(current);
        if slot.0 != current {
            *slot = (current, 0);
        }
        slot.1 = slot.1.saturating_add(1);
        current
    }

    /// Gives back the unit taken with `token`, unless it already expired.
    pub fn give_back(&mut self, token: LeaseToken) {
        let slot = self.slot(token);
        if slot.0 == token {
            slot.1 = slot.1.saturating_sub(1);
        }
    }

    /// Units taken and neither given back nor expired.
    pub fn count(&self, now_ms: u64, lease_ms: u64) -> u32 {
        let current = bucket(now_ms, lease_ms);
        self.slots
            .iter()
            .filter(|(bucket, _)| *bucket <= current && current - *bucket < SLOTS as u64)
            .map(|(_, units)| u32::from(*units))
            .sum()
    }

    pub fn clear(&mut self) {
        *self = LeasedCount::default();
    }

    pub fn encode(&self, writer: &mut Writer) {
        for (bucket, units) in self.slots {
            writer.u64(bucket).u16(units);
        }
    }

    pub fn decode(reader: &mut Reader<'_>) -> Option<LeasedCount> {
        let mut count = LeasedCount::default();
        for slot in count.slots.iter_mut() {
            *slot = (reader.u64()?, reader.u16()?);
        }
        Some(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: u64 = 3_000;

    #[test]
    fn units_count_until_given_back() {
        let mut count = LeasedCount::default();
        let first = count.take(10_000, LEASE);
        let second = count.take(10_500, LEASE);
        assert_eq!(count.count(10_600, LEASE), 2);
        count.give_back(first);
        assert_eq!(count.count(10_600, LEASE), 1);
        count.give_back(second);
        assert_eq!(count.count(10_600, LEASE), 0);
    }

    #[test]
    fn a_unit_never_given_back_expires_within_a_lease_and_a_bucket() {
        let mut count = LeasedCount::default();
        count.take(10_000, LEASE);
        assert_eq!(count.count(10_000 + LEASE - 1, LEASE), 1, "still leased");
        assert_eq!(count.count(10_000 + LEASE + LEASE / 3, LEASE), 0, "expired on its own");
    }

    #[test]
    fn giving_back_an_expired_unit_leaves_newer_units_alone() {
        let mut count = LeasedCount::default();
        let stale = count.take(10_000, LEASE);
        // Much later the same ring slot holds a newer bucket.
        let later = 10_000 + 4 * LEASE;
        count.take(later, LEASE);
        count.give_back(stale);
        assert_eq!(count.count(later, LEASE), 1);
    }

    #[test]
    fn a_clock_that_jumps_back_hides_units_instead_of_wedging() {
        let mut count = LeasedCount::default();
        count.take(100_000, LEASE);
        assert_eq!(count.count(50_000, LEASE), 0);
        count.take(50_000, LEASE);
        assert_eq!(count.count(50_000, LEASE), 1);
    }

    #[test]
    fn the_count_round_trips_through_its_encoding() {
        let mut count = LeasedCount::default();
        count.take(1, LEASE);
        count.take(2_500, LEASE);
        let mut writer = Writer::with_version(1);
        count.encode(&mut writer);
        let bytes = writer.finish();
        let mut reader = Reader::with_version(&bytes, 1).unwrap();
        assert_eq!(LeasedCount::decode(&mut reader), Some(count));
        assert!(reader.is_done());
    }
}
