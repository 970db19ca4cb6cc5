//! Settlements waiting to reach the fleet ledger, as plain data: what each
//! one charges, how long it is worth retrying, and the bounded queue that
//! holds them in a VM until the root context sends them.
//!
//! Three kinds, one script (settle.lua):
//! - a **settlement** replaces a reservation the ledger made by what the
//!   request used; after the reservation's TTL the ledger has charged it in
//!   full, so retrying past it is pointless;
//! - a **release** is for a request that was never served (refused 503 when
//!   the admission's answer was lost, or the client left while it was
//!   awaited): zero actual amounts, so it only gives back the reservation
//!   the admission may have made; if that admission has not run yet, the
//!   tombstone it leaves makes the late admission a no-op;
//! - a **charge** is for a request served on the local fallback while the
//!   ledger could not answer: there is no reservation, so the ledger adds
//!   the usage without one (settling the reservation instead if a late
//!   admission made one). Nothing expires it at the store, so it is kept
//!   until the ledger has it, up to [`CHARGE_KEEP_MS`].

use crate::config::governance::Governance;
use crate::config::Config;
use crate::govern::keys::TenantId;
use crate::govern::ledger::Consumption;
use crate::govern::quota::Amounts;
use crate::providers::TokenUsage;

use super::request::{Charge, Invocation, LedgerEntry, ScriptCall, SettleCall, StoreRequest};
use super::scripts::ScriptNames;

/// How long a charge of spend served on the local fallback is retried
/// while the ledger is away (the queue's bound applies too).
pub const CHARGE_KEEP_MS: u64 = 24 * 60 * 60 * 1000;

/// Settlements one VM keeps queued at most; past it one is dropped (a
/// release first) and counted.
pub const OUTBOX_LIMIT: usize = 4096;

/// What a queued settlement does at the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleKind {
    /// A request the ledger admitted: actual usage replaces the estimate.
    Settle,
    /// A request never served: zero amounts, only the reservation goes.
    Release,
    /// A request served on the local fallback: charged without a reservation.
    Charge,
}

impl SettleKind {
    /// What the request used, as the settle script charges it: a served
    /// request counts one request and its tokens and cost; a release nothing.
    pub fn actual(self, config: &Config, consumption: &Consumption) -> Amounts {
        if self == SettleKind::Release {
            return Amounts::default();
        }
        let usage = consumption.usage().unwrap_or_default();
        Amounts {
            requests: 1,
            tokens: usage.prompt_total().saturating_add(usage.output),
            cost_micros: consumption.cost_micros(config),
        }
    }

    /// Until when a job queued at `now_ms` is worth retrying: a settlement
    /// or release until its reservation expires (after that the ledger has
    /// charged it in full, or a late admission's reservation has expired),
    /// a charge for as long as the ledger may come back.
    pub fn give_up_ms(self, now_ms: u64, reservation_ttl_ms: u64) -> u64 {
        match self {
            SettleKind::Settle | SettleKind::Release => now_ms.saturating_add(reservation_ttl_ms),
            SettleKind::Charge => now_ms.saturating_add(CHARGE_KEEP_MS),
        }
    }
}

/// One settlement waiting to reach the store.
#[derive(Debug, Clone)]
pub struct SettleJob {
    pub kind: SettleKind,
    pub tenant: TenantId,
    pub user: Option<String>,
    /// The reservation's id; for a charge, the id its unanswered admission
    /// used (so a retried charge, or that admission arriving late, is not
    /// counted twice).
    pub reservation_id: String,
    pub test_clock_ms: Option<u64>,
    pub actual: Amounts,
    /// (ledger line, usage, cost, estimated) per attempt that consumed; the
    /// line is the model's name (or a shadow line, `crate::shadow`).
    pub ledger: Vec<(String, TokenUsage, u64, bool)>,
    /// Redis lost its scripts: send the text (EVAL), not the name.
    pub with_text: bool,
    pub retries: u32,
    /// When the request ended (this VM's clock).
    pub ended_ms: u64,
    /// Not before this time (a retry's back-off).
    pub due_ms: u64,
    /// After this, retrying is pointless (see [`SettleKind::give_up_ms`]).
    pub give_up_ms: u64,
}

impl SettleJob {
    /// A job of `kind` for `consumption` (a release ignores it), queued at `now_ms`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kind: SettleKind,
        config: &Config,
        tenant: TenantId,
        user: Option<String>,
        reservation_id: String,
        consumption: &Consumption,
        now_ms: u64,
        reservation_ttl_ms: u64,
    ) -> SettleJob {
        let ledger = match kind {
            SettleKind::Release => Vec::new(),
            SettleKind::Settle | SettleKind::Charge => consumption
                .0
                .iter()
                .map(|consumed| {
                    (
                        config.models[consumed.model].name.clone(),
                        consumed.usage,
                        consumed.cost_micros(config),
                        consumed.estimated,
                    )
                })
                .collect(),
        };
        SettleJob {
            kind,
            tenant,
            user,
            reservation_id,
            test_clock_ms: None,
            actual: kind.actual(config, consumption),
            ledger,
            with_text: false,
            retries: 0,
            ended_ms: now_ms,
            due_ms: now_ms,
            give_up_ms: kind.give_up_ms(now_ms, reservation_ttl_ms),
        }
    }

    /// A charge of one call on a ledger line alone (a shadow call): no
    /// request, token or cost counted against the tenant's quotas and
    /// windows, as the local ledger does it.
    pub fn ledger_line(
        tenant: TenantId,
        reservation_id: String,
        line: String,
        usage: TokenUsage,
        cost_micros: u64,
        now_ms: u64,
    ) -> SettleJob {
        SettleJob {
            kind: SettleKind::Charge,
            tenant,
            user: None,
            reservation_id,
            test_clock_ms: None,
            actual: Amounts::default(),
            ledger: vec![(line, usage, cost_micros, false)],
            with_text: false,
            retries: 0,
            ended_ms: now_ms,
            due_ms: now_ms,
            give_up_ms: SettleKind::Charge.give_up_ms(now_ms, 0),
        }
    }

    /// Schedules the next try after a failed one at `now_ms`, with a
    /// doubling back-off; `false`: past its give-up time, drop it.
    pub fn retry(&mut self, now_ms: u64) -> bool {
        self.retries = self.retries.saturating_add(1);
        self.due_ms = now_ms.saturating_add(super::decide::retry_delay_ms(self.retries));
        self.due_ms < self.give_up_ms
    }

    /// The HTTP request of this settlement, sent at `now_ms`.
    pub fn request(&self, governance: &Governance, names: &ScriptNames, now_ms: u64) -> Option<StoreRequest> {
        let store = governance.store.as_ref()?;
        let tenant = governance.tenants.get(self.tenant)?;
        let ledger: Vec<LedgerEntry<'_>> = self
            .ledger
            .iter()
            .map(|(line, usage, cost_micros, estimated)| LedgerEntry {
                model: line,
                usage: *usage,
                cost_micros: *cost_micros,
                estimated: *estimated,
            })
            .collect();
        let charge = match self.kind {
            SettleKind::Settle | SettleKind::Release => Charge::Reserved,
            SettleKind::Charge => Charge::Unreserved {
                ended_ms_ago: now_ms.saturating_sub(self.ended_ms),
            },
        };
        let call = SettleCall {
            tenant,
            user: self.user.as_deref(),
            reservation_id: &self.reservation_id,
            test_clock_ms: self.test_clock_ms,
            actual: self.actual,
            ledger: &ledger,
            charge,
        };
        Some(call.request(names, invocation(self.with_text), &store.authority))
    }
}

pub fn invocation(with_text: bool) -> Invocation {
    if with_text {
        Invocation::WithText
    } else {
        Invocation::BySha
    }
}

/// The queue of one VM: bounded, releases dropped first when full.
#[derive(Debug, Default)]
pub struct Outbox {
    jobs: Vec<SettleJob>,
    /// Jobs dropped because the queue was full, not yet reported.
    dropped: u64,
}

impl Outbox {
    pub const fn new() -> Outbox {
        Outbox {
            jobs: Vec::new(),
            dropped: 0,
        }
    }

    /// Queues `job`. At the bound one job is dropped and counted: a queued
    /// release if there is one and `job` is not a release (a release most
    /// often finds nothing to give back; the others carry spend), else `job`.
    pub fn push(&mut self, job: SettleJob) {
        if self.jobs.len() >= OUTBOX_LIMIT {
            self.dropped = self.dropped.saturating_add(1);
            let release = self.jobs.iter().position(|queued| queued.kind == SettleKind::Release);
            match release {
                Some(index) if job.kind != SettleKind::Release => {
                    self.jobs.swap_remove(index);
                }
                _ => return,
            }
        }
        self.jobs.push(job);
    }

    /// The jobs due at `now_ms`, taken off the queue.
    pub fn take_due(&mut self, now_ms: u64) -> Vec<SettleJob> {
        let (due, waiting): (Vec<SettleJob>, Vec<SettleJob>) =
            self.jobs.drain(..).partition(|job| job.due_ms <= now_ms);
        self.jobs = waiting;
        due
    }

    /// How many jobs were dropped since the last call.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::governance::StoreSettings;
    use crate::govern::ledger::Consumed;

    const TTL: u64 = 360_000;

    fn config() -> Config {
        let mut config = crate::testing::governed_config();
        if let Some(governance) = config.governance.as_mut() {
            governance.store = Some(StoreSettings {
                cluster: "ledger".into(),
                authority: "webdis".into(),
                timeout_ms: 100,
                replicas: 2,
                reservation_ttl_ms: TTL,
            });
        }
        config
    }

    fn served(config: &Config) -> Consumption {
        Consumption(vec![Consumed {
            model: config.models.iter().position(|model| model.name == "small").unwrap(),
            usage: TokenUsage {
                input: 1_000,
                cached_input: 0,
                cache_write: 0,
                output: 500,
            },
            estimated: false,
        }])
    }

    fn job(config: &Config, kind: SettleKind, id: &str) -> SettleJob {
        let governance = config.governance.as_ref().unwrap();
        let research = governance.tenants.iter().position(|tenant| tenant.name == "research");
        SettleJob::new(
            kind,
            config,
            research.unwrap(),
            Some("alice".into()),
            id.into(),
            &served(config),
            1_000,
            TTL,
        )
    }

    /// The settle call's arguments, decoded from the request body.
    fn arguments(config: &Config, job: &SettleJob, now_ms: u64) -> Vec<String> {
        let governance = config.governance.as_ref().unwrap();
        let request = job.request(governance, &ScriptNames::compute(), now_ms).unwrap();
        let body = String::from_utf8(request.body).unwrap();
        // EVALSHA / sha / key count / 7 keys (2 quotas) / arguments.
        body.split('/').skip(10).map(String::from).collect()
    }

    #[test]
    fn a_served_request_counts_one_request_and_what_it_used() {
        let config = config();
        let settle = job(&config, SettleKind::Settle, "r1");
        // 1,000 input tokens at $0.15/M and 500 output at $0.6/M.
        let expected = Amounts {
            requests: 1,
            tokens: 1_500,
            cost_micros: 450,
        };
        assert_eq!(settle.actual, expected);
        assert_eq!(settle.ledger.len(), 1);
        assert_eq!(job(&config, SettleKind::Charge, "r1").actual, expected);
    }

    #[test]
    fn a_release_charges_nothing_whatever_it_is_given() {
        let config = config();
        let release = job(&config, SettleKind::Release, "r1");
        assert_eq!(release.actual, Amounts::default());
        assert!(release.ledger.is_empty());
        let arguments = arguments(&config, &release, 1_000);
        // id, clock, actual ×3: all zero; then no ledger entry and a reserved settle.
        assert_eq!(&arguments[..5], ["r1", "0", "0", "0", "0"]);
        assert_eq!(&arguments[arguments.len() - 5..], ["0", "0", "0", "0", "0"]);
    }

    #[test]
    fn a_charge_from_the_local_fallback_is_unreserved_and_says_when_the_request_ended() {
        let config = config();
        let charge = job(&config, SettleKind::Charge, "r1");
        let arguments = arguments(&config, &charge, 9_000);
        // research has a tenant window and alice a user window.
        assert_eq!(&arguments[arguments.len() - 4..], ["1", "8000", "1", "1"]);
        let settle = job(&config, SettleKind::Settle, "r1");
        let arguments = self::arguments(&config, &settle, 9_000);
        assert_eq!(&arguments[arguments.len() - 4..], ["0", "0", "0", "0"]);
    }

    #[test]
    fn settlements_are_retried_until_their_reservation_expires_charges_for_a_day() {
        let config = config();
        for (kind, keep) in [
            (SettleKind::Settle, TTL),
            (SettleKind::Release, TTL),
            (SettleKind::Charge, CHARGE_KEEP_MS),
        ] {
            let mut job = job(&config, kind, "r1");
            assert_eq!(job.give_up_ms, 1_000 + keep);
            assert!(job.retry(2_000));
            assert_eq!((job.retries, job.due_ms), (1, 2_100));
            assert!(job.retry(1_000 + keep - 5_001), "{kind:?}");
            assert!(!job.retry(1_000 + keep - 100), "{kind:?}");
        }
    }

    #[test]
    fn a_full_outbox_drops_a_release_first_and_counts_every_drop() {
        let config = config();
        let mut outbox = Outbox::new();
        outbox.push(job(&config, SettleKind::Release, "release"));
        for index in 1..OUTBOX_LIMIT {
            outbox.push(job(&config, SettleKind::Charge, &format!("c{index}")));
        }
        assert_eq!((outbox.len(), outbox.take_dropped()), (OUTBOX_LIMIT, 0));
        // A charge takes the release's place.
        outbox.push(job(&config, SettleKind::Charge, "late"));
        assert_eq!((outbox.len(), outbox.take_dropped()), (OUTBOX_LIMIT, 1));
        // Then a new job is the one dropped, whatever its kind.
        outbox.push(job(&config, SettleKind::Settle, "settle"));
        outbox.push(job(&config, SettleKind::Release, "release-2"));
        assert_eq!((outbox.len(), outbox.take_dropped()), (OUTBOX_LIMIT, 2));
        assert_eq!(outbox.take_dropped(), 0, "reported once");
        let jobs = outbox.take_due(1_000);
        assert!(outbox.is_empty());
        assert!(jobs.iter().all(|job| job.kind == SettleKind::Charge));
        assert!(jobs.iter().any(|job| job.reservation_id == "late"));
    }

    #[test]
    fn only_due_jobs_leave_the_outbox() {
        let config = config();
        let mut outbox = Outbox::new();
        let mut later = job(&config, SettleKind::Charge, "later");
        assert!(later.retry(1_000));
        outbox.push(later);
        outbox.push(job(&config, SettleKind::Settle, "now"));
        let due = outbox.take_due(1_000);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].reservation_id, "now");
        assert_eq!(outbox.len(), 1);
        assert_eq!(outbox.take_due(1_100).len(), 1);
    }
}
