//! Red-team reproduction (native): a quota record is created lazily by its
//! first `state::update`, and a write to a missing shared-data key carries no
//! CAS (HostStore::get maps "missing" to None; Envoy's set with cas 0 is
//! unconditional). Two workers admitting the first requests of a tenant after
//! Envoy starts (every deploy) can both read "missing", both reserve, and the
//! second write silently replaces the first: a 1-request quota admits 2.
//! Only deployment health records are `state::ensure`d at configure
//! (root.rs); quota, window and ledger records are not.
//!
//! MemoryStore mirrors Envoy's semantics (a write with cas None is unconditional).
//! Run: cargo test --test redteam_lost_booking

use signalbox::govern::quota::{Amounts, Caps, Period, QuotaRecord};
use signalbox::state::{read, update, MemoryStore};

#[test]
fn two_first_reservations_on_a_missing_quota_record_both_pass_a_cap_of_one() {
    let store = MemoryStore::default();
    let key = "signalbox/v1/quota/tiny/0";
    let caps = Caps { requests: Some(1), ..Caps::default() };
    let one = Amounts { requests: 1, tokens: 10, cost_micros: 10 };
    let now = 1_800_000_000_000;
    let mut worker_b = None;
    // Worker A reads "missing" and reserves; before its write lands, worker B
    // (another thread, same shared data) runs its whole admission.
    let (_, worker_a) = update::<QuotaRecord, _>(&store, key, |record| {
        if worker_b.is_none() {
            worker_b = Some(update::<QuotaRecord, _>(&store, key, |record| {
                record.try_reserve(Period::Day, now, one, &caps)
            }));
        }
        record.try_reserve(Period::Day, now, one, &caps)
    })
    .unwrap();
    let (_, worker_b) = worker_b.unwrap().unwrap();
    let record: QuotaRecord = read(&store, key).unwrap();
    assert!(
        !(worker_a.is_ok() && worker_b.is_ok()),
        "both admitted under a 1-request cap; the record shows reserved.requests = {}",
        record.reserved.requests
    );
}
