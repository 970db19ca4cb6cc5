//! Canary rollouts that move by themselves. A tier's canary with `steps`
//! takes the first step's share of the tier's traffic; every attempt of the
//! canary, and of the tier's other models (the baseline), is observed in one
//! [`CanaryRecord`] in shared data. When an observation window ends with
//! enough canary attempts and no limit breached, the share moves up a step
//! (after the last, the rollout is promoted and stays there); as soon as the
//! canary has enough attempts to judge and breaches a limit — error rate,
//! p95 latency, cascade rate, each relative to the baseline — the share
//! drops to zero and stays there (rolled back). A config with other rollout
//! settings starts over (the record carries their fingerprint).

use crate::config::canary::Rollout;
use crate::config::{Config, ModelId, TierId, STATE_PREFIX};
use crate::state::codec::{Reader, Writer};
use crate::state::Record;

/// Latency buckets: the first ends at 10 ms, each next one 25% later (the
/// last, past ~6 minutes, takes the rest): fine enough to compare p95s
/// against a ratio like 1.5.
const LATENCY_BUCKETS: usize = 48;
const FIRST_BOUND_MS: f64 = 10.0;
const GROWTH: f64 = 1.25;

/// A slower canary breaches only when its p95 is also this much above the
/// baseline's: between attempts of a few milliseconds a ratio is noise.
const MIN_LATENCY_EXCESS_MS: u64 = 50;

fn bucket_of(latency_ms: u64) -> usize {
    if (latency_ms as f64) <= FIRST_BOUND_MS {
        return 0;
    }
    let steps = ((latency_ms as f64 / FIRST_BOUND_MS).ln() / GROWTH.ln()).ceil();
    (steps as usize).min(LATENCY_BUCKETS - 1)
}

fn bound_of(bucket: usize) -> u64 {
    (FIRST_BOUND_MS * GROWTH.powi(bucket as i32)).round() as u64
}

/// What one side (canary or baseline) did in the current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Side {
    pub attempts: u32,
    pub failures: u32,
    /// Whole answers a cascade assessed, and how many it escalated.
    pub assessed: u32,
    pub escalated: u32,
    latency: [u32; LATENCY_BUCKETS],
}

impl Default for Side {
    fn default() -> Side {
        Side {
            attempts: 0,
            failures: 0,
            assessed: 0,
            escalated: 0,
            latency: [0; LATENCY_BUCKETS],
        }
    }
}

fn ratio(part: u32, whole: u32) -> f64 {
    if whole == 0 {
        0.0
    } else {
        f64::from(part) / f64::from(whole)
    }
}

impl Side {
    pub fn error_rate(&self) -> f64 {
        ratio(self.failures, self.attempts)
    }

    pub fn cascade_rate(&self) -> f64 {
        ratio(self.escalated, self.assessed)
    }

    /// The 95th percentile of successful attempts' latency (bucket bound).
    pub fn p95_ms(&self) -> Option<u64> {
        let total: u64 = self.latency.iter().map(|count| u64::from(*count)).sum();
        if total == 0 {
            return None;
        }
        let target = (total * 95).div_ceil(100);
        let mut seen = 0;
        for (bucket, count) in self.latency.iter().enumerate() {
            seen += u64::from(*count);
            if seen >= target {
                return Some(bound_of(bucket));
            }
        }
        None
    }

    /// Adds what `other` counted (another Envoy's, or one observation).
    fn add(&mut self, other: &Side) {
        self.attempts = self.attempts.saturating_add(other.attempts);
        self.failures = self.failures.saturating_add(other.failures);
        self.assessed = self.assessed.saturating_add(other.assessed);
        self.escalated = self.escalated.saturating_add(other.escalated);
        for (count, more) in self.latency.iter_mut().zip(other.latency) {
            *count = count.saturating_add(more);
        }
    }

    fn count(&mut self, observation: Observation) {
        match observation {
            Observation::Attempt { failed, latency_ms } => {
                self.attempts = self.attempts.saturating_add(1);
                if failed {
                    self.failures = self.failures.saturating_add(1);
                } else {
                    let bucket = &mut self.latency[bucket_of(latency_ms)];
                    *bucket = bucket.saturating_add(1);
                }
            }
            Observation::Assessed { escalated } => {
                self.assessed = self.assessed.saturating_add(1);
                self.escalated = self.escalated.saturating_add(u32::from(escalated));
            }
        }
    }

    fn summary(&self) -> Summary {
        Summary {
            error_rate: self.error_rate(),
            p95_ms: self.p95_ms(),
            cascade_rate: (self.assessed > 0).then(|| self.cascade_rate()),
        }
    }
}

/// What a baseline window showed, kept for judging later windows in which
/// the baseline has too little traffic of its own (the canary took most).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub error_rate: f64,
    pub p95_ms: Option<u64>,
    pub cascade_rate: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Observing step `n` (0-based) of the rollout.
    Observing(u8),
    /// A breach sent the share to zero.
    RolledBack(Breach),
    /// Every step was clean: the last step's share stays.
    Promoted,
}

/// The limit a canary broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breach {
    ErrorRate,
    Latency,
    CascadeRate,
}

impl Breach {
    pub fn name(self) -> &'static str {
        match self {
            Breach::ErrorRate => "error_rate",
            Breach::Latency => "latency",
            Breach::CascadeRate => "cascade_rate",
        }
    }
}

/// A change of share, made by the observation that ended a window or breached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// To step `n` (0-based).
    Advanced(u8),
    Promoted,
    RolledBack(Breach),
}

impl Move {
    /// The metric's `result`.
    pub fn name(self) -> &'static str {
        match self {
            Move::Advanced(_) => "advanced",
            Move::Promoted => "promoted",
            Move::RolledBack(_) => "rolled_back",
        }
    }
}

/// Which side an observed attempt was on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SideOf {
    Canary,
    Baseline,
}

/// One thing seen about a model of the tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// An attempt ended: failed by its provider, or succeeded in `latency_ms`.
    Attempt { failed: bool, latency_ms: u64 },
    /// A cascade assessed one of its whole answers.
    Assessed { escalated: bool },
}

#[derive(Debug, Clone, PartialEq)]
pub struct CanaryRecord {
    /// Fingerprint of the rollout settings this record follows.
    pub fingerprint: u32,
    pub phase: Phase,
    /// When the current window began (0: not yet).
    pub window_started_ms: u64,
    pub canary: Side,
    pub baseline: Side,
    /// The last baseline window with enough attempts.
    pub reference: Option<Summary>,
    /// Moves so far, and the time of the last.
    pub moves: u32,
    pub last_move_ms: u64,
    /// In fleet mode, the version of the fleet's record this copy is (0:
    /// never synced, or no fleet).
    pub fleet_version: u64,
}

impl Default for CanaryRecord {
    fn default() -> CanaryRecord {
        CanaryRecord {
            fingerprint: 0,
            phase: Phase::Observing(0),
            window_started_ms: 0,
            canary: Side::default(),
            baseline: Side::default(),
            reference: None,
            moves: 0,
            last_move_ms: 0,
            fleet_version: 0,
        }
    }
}

/// What one Envoy observed of a rollout since it last took its turn at the
/// fleet's record (fleet mode only): added there, then judged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub canary: Side,
    pub baseline: Side,
    /// The oldest observation's time: a window with none yet starts then.
    pub first_seen_ms: u64,
    /// The newest observation's time: the fleet's record is judged at it.
    pub last_seen_ms: u64,
}

impl Tally {
    pub fn count(&mut self, now: u64, side: SideOf, observation: Observation) {
        match side {
            SideOf::Canary => self.canary.count(observation),
            SideOf::Baseline => self.baseline.count(observation),
        }
        self.seen(now, now);
    }

    fn seen(&mut self, first_ms: u64, last_ms: u64) {
        if self.first_seen_ms == 0 || first_ms < self.first_seen_ms {
            self.first_seen_ms = first_ms;
        }
        self.last_seen_ms = self.last_seen_ms.max(last_ms);
    }

    /// Puts back a tally whose turn at the fleet's record failed.
    pub fn add(&mut self, other: &Tally) {
        self.canary.add(&other.canary);
        self.baseline.add(&other.baseline);
        if !other.is_empty() {
            self.seen(other.first_seen_ms, other.last_seen_ms);
        }
    }

    /// Nothing counted (whatever the clock said).
    pub fn is_empty(&self) -> bool {
        let counted = |side: &Side| side.attempts == 0 && side.assessed == 0;
        counted(&self.canary) && counted(&self.baseline)
    }
}

/// A stable fingerprint of a rollout's settings (FNV-1a over their bits).
pub fn fingerprint(rollout: &Rollout) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    let mut feed = |bits: u64| {
        for byte in bits.to_le_bytes() {
            hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
        }
    };
    rollout.steps.iter().for_each(|step| feed(step.to_bits()));
    feed(rollout.window_ms);
    feed(u64::from(rollout.min_requests));
    feed(rollout.max_error_rate_increase.to_bits());
    feed(rollout.max_latency_ratio.to_bits());
    feed(rollout.max_cascade_rate_increase.map_or(u64::MAX, f64::to_bits));
    hash.max(1)
}

impl CanaryRecord {
    /// The record as `rollout` sees it: one for other settings starts over.
    fn current(&mut self, rollout: &Rollout) {
        let fingerprint = fingerprint(rollout);
        if self.fingerprint != fingerprint {
            *self = CanaryRecord {
                fingerprint,
                ..CanaryRecord::default()
            };
        }
    }

    /// The canary's share of the tier's traffic now.
    pub fn share(&self, rollout: &Rollout) -> f64 {
        if self.fingerprint != fingerprint(rollout) {
            return rollout.steps.first().copied().unwrap_or(0.0);
        }
        let last = rollout.steps.last().copied().unwrap_or(0.0);
        match self.phase {
            Phase::Observing(step) => rollout.steps.get(usize::from(step)).copied().unwrap_or(last),
            Phase::RolledBack(_) => 0.0,
            Phase::Promoted => last,
        }
    }

    /// Counts `observation` on `side` at `now`, then judges: a breach rolls
    /// back at once; a window that ended clean with enough canary attempts
    /// moves up. Returns the move made, if any.
    pub fn observe(&mut self, now: u64, rollout: &Rollout, side: SideOf, observation: Observation) -> Option<Move> {
        let mut tally = Tally::default();
        tally.count(now, side, observation);
        self.absorb(rollout, &tally)
    }

    /// Adds `tally` (one observation, or what an Envoy saw since its last
    /// turn at the fleet's record), then judges at its newest observation.
    pub fn absorb(&mut self, rollout: &Rollout, tally: &Tally) -> Option<Move> {
        self.current(rollout);
        let Phase::Observing(step) = self.phase else {
            return None;
        };
        let now = tally.last_seen_ms;
        // A first observation: the window starts with the tally's oldest.
        // A tally wholly before the window (a clock that went back, or
        // counts held back across a move): it starts over at its newest,
        // never earlier, so old counts cannot end a new window early.
        if self.window_started_ms == 0 {
            self.window_started_ms = tally.first_seen_ms;
        } else if tally.last_seen_ms < self.window_started_ms {
            self.window_started_ms = tally.last_seen_ms;
        }
        self.canary.add(&tally.canary);
        self.baseline.add(&tally.baseline);
        if self.canary.attempts < rollout.min_requests {
            return None;
        }
        let made = if let Some(breach) = self.breach(rollout) {
            self.phase = Phase::RolledBack(breach);
            Move::RolledBack(breach)
        } else if now.saturating_sub(self.window_started_ms) >= rollout.window_ms {
            let next = usize::from(step) + 1;
            if next < rollout.steps.len() {
                let next = u8::try_from(next).unwrap_or(u8::MAX);
                self.phase = Phase::Observing(next);
                Move::Advanced(next)
            } else {
                self.phase = Phase::Promoted;
                Move::Promoted
            }
        } else {
            return None;
        };
        if self.baseline.attempts >= rollout.min_requests {
            self.reference = Some(self.baseline.summary());
        }
        self.canary = Side::default();
        self.baseline = Side::default();
        self.window_started_ms = now;
        self.moves = self.moves.saturating_add(1);
        self.last_move_ms = now;
        Some(made)
    }

    /// What the canary is compared with: this window's baseline when it has
    /// enough attempts, else the last one that had.
    pub fn baseline_summary(&self, rollout: &Rollout) -> Option<Summary> {
        if self.baseline.attempts >= rollout.min_requests {
            Some(self.baseline.summary())
        } else {
            self.reference
        }
    }

    fn breach(&self, rollout: &Rollout) -> Option<Breach> {
        let baseline = self.baseline_summary(rollout);
        // Without a baseline yet, the canary is held to an error rate of
        // at most the allowed increase over none.
        let baseline_errors = baseline.map_or(0.0, |baseline| baseline.error_rate);
        if self.canary.error_rate() > baseline_errors + rollout.max_error_rate_increase {
            return Some(Breach::ErrorRate);
        }
        if let (Some(canary), Some(baseline)) = (self.canary.p95_ms(), baseline.and_then(|b| b.p95_ms)) {
            let allowed = (baseline as f64 * rollout.max_latency_ratio).max((baseline + MIN_LATENCY_EXCESS_MS) as f64);
            if canary as f64 > allowed {
                return Some(Breach::Latency);
            }
        }
        if let Some(allowed) = rollout.max_cascade_rate_increase {
            if self.canary.assessed >= rollout.min_requests {
                let baseline_rate = baseline.and_then(|baseline| baseline.cascade_rate).unwrap_or(0.0);
                if self.canary.cascade_rate() > baseline_rate + allowed {
                    return Some(Breach::CascadeRate);
                }
            }
        }
        None
    }
}

/// Shared-data key of a tier's canary record.
pub fn record_key(config: &Config, tier: TierId, model: ModelId) -> String {
    format!(
        "{STATE_PREFIX}canary/{}/{}",
        config.tiers[tier].name, config.models[model].name
    )
}

/// Shared-data key of what this Envoy observed of a rollout since its last
/// turn at the fleet's record (fleet mode).
pub fn tally_key(config: &Config, tier: TierId, model: ModelId) -> String {
    format!("{}/tally", record_key(config, tier, model))
}

/// The rollout of `tier`, when an attempt of one of its requests ran on
/// `model`: its settings, its canary and the side `model` is on. Attempts
/// of requests another tier (or a client's named model) routed never
/// count: a client cannot push a rollout by naming the canary.
pub fn rollout_of(config: &Config, tier: TierId, model: ModelId) -> Option<(&Rollout, ModelId, SideOf)> {
    let routed_by = config.tiers.get(tier)?;
    let canary = routed_by.canary.as_ref()?;
    let rollout = canary.rollout.as_ref()?;
    let side = if canary.model == model {
        SideOf::Canary
    } else if routed_by.models.contains(&model) {
        SideOf::Baseline
    } else {
        return None;
    };
    Some((rollout, canary.model, side))
}

const VERSION: u8 = 1;

fn write_side(writer: &mut Writer, side: &Side) {
    writer
        .u32(side.attempts)
        .u32(side.failures)
        .u32(side.assessed)
        .u32(side.escalated);
    for count in side.latency {
        writer.u32(count);
    }
}

fn read_side(reader: &mut Reader<'_>) -> Option<Side> {
    let mut side = Side {
        attempts: reader.u32()?,
        failures: reader.u32()?,
        assessed: reader.u32()?,
        escalated: reader.u32()?,
        ..Side::default()
    };
    for count in &mut side.latency {
        *count = reader.u32()?;
    }
    Some(side)
}

impl Record for CanaryRecord {
    fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::with_version(VERSION);
        let (phase, detail) = match self.phase {
            Phase::Observing(step) => (0, step),
            Phase::RolledBack(breach) => (1, breach as u8),
            Phase::Promoted => (2, 0),
        };
        writer
            .u32(self.fingerprint)
            .u8(phase)
            .u8(detail)
            .u64(self.window_started_ms)
            .u32(self.moves)
            .u64(self.last_move_ms);
        write_side(&mut writer, &self.canary);
        write_side(&mut writer, &self.baseline);
        match self.reference {
            None => {
                writer.u8(0);
            }
            Some(reference) => {
                writer
                    .u8(1)
                    .u64(reference.error_rate.to_bits())
                    .u64(reference.p95_ms.unwrap_or(u64::MAX))
                    .u64(reference.cascade_rate.unwrap_or(-1.0).to_bits());
            }
        }
        writer.u64(self.fleet_version);
        writer.finish()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut reader = Reader::with_version(bytes, VERSION)?;
        let fingerprint = reader.u32()?;
        let phase = match (reader.u8()?, reader.u8()?) {
            (0, step) => Phase::Observing(step),
            (1, 0) => Phase::RolledBack(Breach::ErrorRate),
            (1, 1) => Phase::RolledBack(Breach::Latency),
            (1, 2) => Phase::RolledBack(Breach::CascadeRate),
            (2, _) => Phase::Promoted,
            _ => return None,
        };
        let window_started_ms = reader.u64()?;
        let moves = reader.u32()?;
        let last_move_ms = reader.u64()?;
        let canary = read_side(&mut reader)?;
        let baseline = read_side(&mut reader)?;
        let reference = match reader.u8()? {
            0 => None,
            _ => {
                let rate = |bits: u64| Some(f64::from_bits(bits)).filter(|rate| rate.is_finite());
                let error_rate = rate(reader.u64()?)?;
                let p95_ms = Some(reader.u64()?).filter(|p95| *p95 != u64::MAX);
                let cascade_rate = rate(reader.u64()?).filter(|rate| *rate >= 0.0);
                Some(Summary {
                    error_rate,
                    p95_ms,
                    cascade_rate,
                })
            }
        };
        // Records written before fleet mode end here.
        let fleet_version = if reader.is_done() { 0 } else { reader.u64()? };
        reader.is_done().then_some(CanaryRecord {
            fingerprint,
            phase,
            window_started_ms,
            canary,
            baseline,
            reference,
            moves,
            last_move_ms,
            fleet_version,
        })
    }
}

impl Record for Tally {
    fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::with_version(VERSION);
        writer.u64(self.first_seen_ms).u64(self.last_seen_ms);
        write_side(&mut writer, &self.canary);
        write_side(&mut writer, &self.baseline);
        writer.finish()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut reader = Reader::with_version(bytes, VERSION)?;
        let tally = Tally {
            first_seen_ms: reader.u64()?,
            last_seen_ms: reader.u64()?,
            canary: read_side(&mut reader)?,
            baseline: read_side(&mut reader)?,
        };
        reader.is_done().then_some(tally)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout() -> Rollout {
        Rollout {
            steps: vec![0.05, 0.5, 1.0],
            window_ms: 60_000,
            min_requests: 10,
            max_error_rate_increase: 0.05,
            max_latency_ratio: 1.5,
            max_cascade_rate_increase: Some(0.1),
        }
    }

    fn ok(latency_ms: u64) -> Observation {
        Observation::Attempt {
            failed: false,
            latency_ms,
        }
    }

    const FAILED: Observation = Observation::Attempt {
        failed: true,
        latency_ms: 0,
    };

    /// `count` observations of each side at `now`; the moves made.
    fn feed(
        record: &mut CanaryRecord,
        now: u64,
        count: usize,
        canary: Observation,
        baseline: Observation,
    ) -> Vec<Move> {
        let rollout = rollout();
        let mut moves = Vec::new();
        for _ in 0..count {
            moves.extend(record.observe(now, &rollout, SideOf::Baseline, baseline));
            moves.extend(record.observe(now, &rollout, SideOf::Canary, canary));
        }
        moves
    }

    #[test]
    fn a_healthy_canary_climbs_every_step_after_a_clean_window_and_stays_promoted() {
        let rollout = rollout();
        let mut record = CanaryRecord::default();
        assert_eq!(record.share(&rollout), 0.05);
        let mut now = 1_000;
        // Enough attempts but the window is not over: no move.
        assert_eq!(feed(&mut record, now, 20, ok(200), ok(210)), vec![]);
        now += 60_000;
        assert_eq!(feed(&mut record, now, 1, ok(200), ok(200)), vec![Move::Advanced(1)]);
        assert_eq!(record.share(&rollout), 0.5);
        assert_eq!(feed(&mut record, now + 1, 20, ok(200), ok(200)), vec![]);
        now += 60_001;
        assert_eq!(feed(&mut record, now, 1, ok(200), ok(200)), vec![Move::Advanced(2)]);
        assert_eq!(record.share(&rollout), 1.0);
        // At 100% the baseline sees no traffic: the last reference judges.
        for _ in 0..12 {
            assert_eq!(record.observe(now + 1, &rollout, SideOf::Canary, ok(200)), None);
        }
        assert_eq!(
            record.baseline_summary(&rollout).map(|baseline| baseline.error_rate),
            Some(0.0)
        );
        assert_eq!(
            record.observe(now + 60_001, &rollout, SideOf::Canary, ok(200)),
            Some(Move::Promoted)
        );
        assert_eq!(record.share(&rollout), 1.0);
        assert_eq!(
            feed(&mut record, now + 500_000, 30, FAILED, ok(200)),
            vec![],
            "promotion is final"
        );
        assert_eq!(record.moves, 3);
    }

    #[test]
    fn a_window_without_enough_canary_attempts_waits_instead_of_moving() {
        let rollout = rollout();
        let mut record = CanaryRecord::default();
        assert_eq!(feed(&mut record, 1_000, 5, ok(100), ok(100)), vec![]);
        assert_eq!(feed(&mut record, 500_000, 4, ok(100), ok(100)), vec![]);
        assert_eq!(record.share(&rollout), 0.05);
        assert_eq!(feed(&mut record, 500_001, 1, ok(100), ok(100)), vec![Move::Advanced(1)]);
    }

    #[test]
    fn errors_latency_or_escalations_above_the_baseline_roll_back_at_once() {
        let rollout = rollout();
        // Errors: 7 in 10 against none.
        let mut record = CanaryRecord::default();
        let mut moves = feed(&mut record, 1_000, 3, ok(100), ok(100));
        moves.extend(feed(&mut record, 1_000, 7, FAILED, ok(100)));
        assert_eq!(moves, vec![Move::RolledBack(Breach::ErrorRate)]);
        assert_eq!(record.share(&rollout), 0.0);
        assert_eq!(
            feed(&mut record, 900_000, 50, ok(100), ok(100)),
            vec![],
            "a rollback is final"
        );
        // Latency: twice the baseline's p95.
        let mut record = CanaryRecord::default();
        assert_eq!(
            feed(&mut record, 1_000, 10, ok(400), ok(200)),
            vec![Move::RolledBack(Breach::Latency)]
        );
        // Within the ratio, or slower by a few milliseconds only: fine.
        let mut record = CanaryRecord::default();
        assert_eq!(feed(&mut record, 1_000, 10, ok(260), ok(200)), vec![]);
        let mut record = CanaryRecord::default();
        assert_eq!(feed(&mut record, 1_000, 10, ok(30), ok(5)), vec![]);
        // Escalations: every canary answer weak, no baseline one.
        let mut record = CanaryRecord::default();
        feed(&mut record, 1_000, 10, ok(100), ok(100));
        let weak = Observation::Assessed { escalated: true };
        let strong = Observation::Assessed { escalated: false };
        assert_eq!(
            feed(&mut record, 1_000, 10, weak, strong),
            vec![Move::RolledBack(Breach::CascadeRate)]
        );
    }

    #[test]
    fn the_baselines_own_errors_raise_the_bar() {
        let mut record = CanaryRecord::default();
        // Both sides fail 30%: the canary is no worse.
        let mut moves = Vec::new();
        for round in 0..10 {
            let observation = if round % 10 < 3 { FAILED } else { ok(100) };
            moves.extend(feed(&mut record, 1_000, 1, observation, observation));
        }
        assert_eq!(moves, vec![]);
    }

    #[test]
    fn a_clock_that_jumps_back_restarts_the_window_and_new_settings_start_over() {
        let rollout = rollout();
        let mut record = CanaryRecord::default();
        feed(&mut record, 100_000, 10, ok(100), ok(100));
        // Back in time: the window restarts rather than ending early.
        assert_eq!(feed(&mut record, 50_000, 1, ok(100), ok(100)), vec![]);
        assert_eq!(record.window_started_ms, 50_000);
        assert_eq!(feed(&mut record, 110_000, 1, ok(100), ok(100)), vec![Move::Advanced(1)]);
        let slower = Rollout {
            window_ms: 120_000,
            ..rollout
        };
        assert_eq!(record.share(&slower), 0.05, "other settings: the first step");
        record.observe(120_000, &slower, SideOf::Canary, ok(100));
        assert_eq!(record.phase, Phase::Observing(0));
        assert_eq!(record.canary.attempts, 1);
    }

    #[test]
    fn the_record_round_trips_and_garbage_reads_as_absent() {
        let rollout = rollout();
        let mut record = CanaryRecord::default();
        feed(&mut record, 1_000, 10, ok(100), ok(150));
        feed(&mut record, 70_000, 1, ok(100), ok(150));
        record.observe(
            70_001,
            &rollout,
            SideOf::Canary,
            Observation::Assessed { escalated: true },
        );
        assert!(record.reference.is_some());
        assert_eq!(CanaryRecord::decode(&record.encode()), Some(record.clone()));
        let rolled_back = CanaryRecord {
            phase: Phase::RolledBack(Breach::Latency),
            reference: None,
            ..record
        };
        assert_eq!(CanaryRecord::decode(&rolled_back.encode()), Some(rolled_back));
        assert_eq!(CanaryRecord::decode(b"\x01garbage"), None);
        assert_eq!(CanaryRecord::decode(&[]), None);
    }

    #[test]
    fn a_record_from_before_fleet_mode_reads_with_no_fleet_version() {
        let record = CanaryRecord {
            fleet_version: 7,
            ..CanaryRecord::default()
        };
        let bytes = record.encode();
        assert_eq!(CanaryRecord::decode(&bytes), Some(record.clone()));
        let legacy = &bytes[..bytes.len() - 8];
        assert_eq!(
            CanaryRecord::decode(legacy),
            Some(CanaryRecord {
                fleet_version: 0,
                ..record
            })
        );
    }

    #[test]
    fn tallies_of_several_envoys_move_the_record_as_one_envoy_seeing_everything_would() {
        let rollout = rollout();
        let (mut fleet, mut alone) = (CanaryRecord::default(), CanaryRecord::default());
        // Two replicas each see 6 of each side: neither alone has the 10 a
        // judgement needs; together they do, and the window has ended.
        let (mut first, mut second) = (Tally::default(), Tally::default());
        for index in 0..6 {
            for (tally, now) in [(&mut first, 1_000 + index), (&mut second, 61_000 + index)] {
                tally.count(now, SideOf::Canary, ok(100));
                tally.count(now, SideOf::Baseline, ok(100));
                alone.observe(now, &rollout, SideOf::Canary, ok(100));
                alone.observe(now, &rollout, SideOf::Baseline, ok(100));
            }
        }
        assert_eq!(fleet.absorb(&rollout, &first), None, "6 canary attempts are too few");
        assert_eq!(fleet.absorb(&rollout, &second), Some(Move::Advanced(1)));
        assert_eq!((fleet.phase, fleet.moves), (alone.phase, alone.moves));
        assert_eq!(fleet.share(&rollout), 0.5);

        // A tally put back after a lost turn adds up, and round-trips.
        let mut failing = Tally::default();
        for _ in 0..10 {
            failing.count(200_000, SideOf::Canary, FAILED);
        }
        let mut kept = Tally::default();
        kept.add(&failing);
        kept.add(&Tally::default());
        assert_eq!(Tally::decode(&kept.encode()), Some(kept.clone()));
        assert_eq!(fleet.absorb(&rollout, &kept), Some(Move::RolledBack(Breach::ErrorRate)));
        assert!(Tally::default().is_empty() && !kept.is_empty());
    }

    #[test]
    fn latency_buckets_are_monotonic_and_p95_reads_the_slow_tail() {
        let mut previous = 0;
        for latency in [0, 5, 10, 11, 100, 1_000, 10_000, 100_000, 10_000_000] {
            let bucket = bucket_of(latency);
            assert!(bucket >= previous);
            assert!(bound_of(bucket) >= latency.min(bound_of(LATENCY_BUCKETS - 1)));
            previous = bucket;
        }
        let mut side = Side::default();
        for index in 0..100 {
            side.latency[bucket_of(if index < 95 { 100 } else { 5_000 })] += 1;
        }
        assert!((100..=125).contains(&side.p95_ms().unwrap()));
        side.latency[bucket_of(5_000)] += 1;
        assert!(side.p95_ms().unwrap() >= 5_000);
    }

    #[test]
    fn a_tally_from_before_the_last_move_does_not_end_the_new_window() {
        let rollout = rollout();
        let mut fleet = CanaryRecord::default();
        let mut a = Tally::default();
        for now in [1_000, 61_000] {
            for _ in 0..10 {
                a.count(now, SideOf::Canary, ok(100));
                a.count(now, SideOf::Baseline, ok(100));
            }
        }
        assert_eq!(fleet.absorb(&rollout, &a), Some(Move::Advanced(1)));
        assert_eq!((fleet.window_started_ms, fleet.last_move_ms), (61_000, 61_000));

        let mut b = Tally::default();
        for now in [1_000, 30_000, 66_000] {
            for _ in 0..4 {
                b.count(now, SideOf::Canary, ok(100));
                b.count(now, SideOf::Baseline, ok(100));
            }
        }
        assert_eq!(
            fleet.absorb(&rollout, &b),
            None,
            "step 1's window started at 61 s; at 66 s it is not over"
        );
        assert_eq!(fleet.phase, Phase::Observing(1));
    }
}
