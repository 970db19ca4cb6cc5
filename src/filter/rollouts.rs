//! Canary rollouts from the filter's side. An attempt of a rollout's tier is
//! counted where the rollout's state lives: without a fleet store, straight
//! into the record in shared data, which judges on the spot; with one, into
//! this Envoy's tally, which the router's root adds to the fleet's record
//! about once a second (`crate::fleet::rollout` says how), from one VM per
//! Envoy (a lease).

use std::collections::HashMap;

use super::fleet;
use super::host::HostStore;
use super::root::Loaded;
use crate::canary::{self, CanaryRecord, Move, Observation, Tally};
use crate::config::canary::Rollout;
use crate::config::{Config, ModelId, TierId};
use crate::fleet::keys::rollout_key;
use crate::fleet::rollout::{landed, propose, turn_outcome, RolloutCall, RolloutReply, TurnOutcome};
use crate::fleet::{invocation, ScriptCall};
use crate::state::{self, Record};
use crate::telemetry::report::CanaryMoveReport;

/// How often an Envoy takes its turn at the fleet's records.
pub const TURN_MS: u64 = 1_000;
pub const LEASE_KEY: &str = "signalbox/v1/lease/rollouts";
/// Proposals per turn: one lost race is followed at once by a proposal from
/// the record that won (a round trip is far shorter than a turn's period).
const MAX_PROPOSALS: u32 = 3;

/// Every rollout of the config: tier, canary model, settings.
pub fn rollouts(config: &Config) -> impl Iterator<Item = (TierId, ModelId, &Rollout)> {
    config.tiers.iter().enumerate().filter_map(|(tier, settings)| {
        let canary = settings.canary.as_ref()?;
        Some((tier, canary.model, canary.rollout.as_ref()?))
    })
}

/// Whether the root must take turns at the fleet's records.
pub fn shared_by_fleet(config: &Config) -> bool {
    config.fleet_store().is_some() && rollouts(config).next().is_some()
}

/// Creates the shared-data records of every rollout before traffic.
pub fn ensure_records(config: &Config) {
    for (tier, model, _) in rollouts(config) {
        state::ensure::<CanaryRecord>(&HostStore, &canary::record_key(config, tier, model));
        state::ensure::<Tally>(&HostStore, &canary::tally_key(config, tier, model));
    }
}

/// Counts what `model` did for a request `tier` routed, in that tier's
/// rollout (if it has one and `model` is on it).
pub fn observe(state: &Loaded, tier: Option<TierId>, model: ModelId, now: u64, observation: Observation) {
    let config = &state.config;
    let Some((tier, (rollout, canary, side))) =
        tier.and_then(|tier| Some((tier, canary::rollout_of(config, tier, model)?)))
    else {
        return;
    };
    if config.fleet_store().is_some() {
        let key = canary::tally_key(config, tier, canary);
        if let Err(err) = state::update::<Tally, _>(&HostStore, &key, |tally| tally.count(now, side, observation)) {
            log::warn!("cannot count a canary observation in {key}: {err:?}");
        }
        return;
    }
    let key = canary::record_key(config, tier, canary);
    match state::update::<CanaryRecord, _>(&HostStore, &key, |record| {
        record.observe(now, rollout, side, observation)
    }) {
        Ok((record, Some(made))) => report_move(state, tier, canary, rollout, &record, made),
        Ok((_, None)) => {}
        Err(err) => log::warn!("cannot observe canary {key}: {err:?}"),
    }
}

fn report_move(state: &Loaded, tier: TierId, model: ModelId, rollout: &Rollout, record: &CanaryRecord, made: Move) {
    let config = &state.config;
    let share = record.share(rollout);
    log::warn!(
        "canary {} of tier {}: {} to {:.0}% ({:?})",
        config.models[model].name,
        config.tiers[tier].name,
        made.name(),
        share * 100.0,
        made
    );
    let report = CanaryMoveReport {
        tier,
        model,
        made,
        share,
    };
    state.metrics.emit(config, &report.samples());
}

/// One call at a rollout's fleet record, waiting for its answer.
pub struct Turn {
    tier: TierId,
    model: ModelId,
    /// The tally taken for this call (empty for a read).
    tally: Tally,
    mirror: CanaryRecord,
    proposal: CanaryRecord,
    made: Option<Move>,
    /// Whether it proposes (else it only reads the fleet's record).
    proposes: bool,
    number: u64,
    proposals: u32,
    with_text: bool,
    sent_at: u64,
}

/// This VM's calls at the fleet's rollout records (held by the router's
/// root): those in flight, and per rollout the proposal whose answer was
/// lost, until a later call's answer says whether it was stored.
pub struct Rollouts {
    caller: u64,
    last_number: u64,
    in_flight: HashMap<u32, Turn>,
    unknown: HashMap<(TierId, ModelId), Turn>,
}

impl Rollouts {
    pub fn new(caller: u64) -> Rollouts {
        Rollouts {
            caller,
            last_number: 0,
            in_flight: HashMap::new(),
            unknown: HashMap::new(),
        }
    }

    pub fn is_waiting_for(&self, token: u32) -> bool {
        self.in_flight.contains_key(&token)
    }

    /// Takes this Envoy's turn at every rollout not already waiting for an
    /// answer. A rollout with a proposal of unknown fate only reads (the
    /// answer settles that fate); the others propose their tally, or read
    /// when it changes nothing.
    pub fn take_turns(&mut self, state: &Loaded, now: u64) {
        let config = &state.config;
        for (tier, model, rollout) in rollouts(config) {
            if self
                .in_flight
                .values()
                .any(|turn| (turn.tier, turn.model) == (tier, model))
            {
                continue;
            }
            let tally = if self.unknown.contains_key(&(tier, model)) {
                Tally::default()
            } else {
                let tally_key = canary::tally_key(config, tier, model);
                match state::update::<Tally, _>(&HostStore, &tally_key, std::mem::take) {
                    Ok((_, tally)) => tally,
                    Err(err) => {
                        log::warn!("cannot take the canary tally {tally_key}: {err:?}");
                        continue;
                    }
                }
            };
            let mirror =
                state::read::<CanaryRecord>(&HostStore, &canary::record_key(config, tier, model)).unwrap_or_default();
            let (proposal, made) = propose(&mirror, rollout, &tally);
            // Nothing counted, or a tally that changes nothing (a finished
            // rollout; it is spent): only read, for storing an unchanged
            // record would only make others' proposals lose.
            let proposes = !tally.is_empty() && proposal != mirror;
            let turn = Turn {
                tier,
                model,
                tally: if proposes { tally } else { Tally::default() },
                mirror,
                proposal,
                made,
                proposes,
                number: 0,
                proposals: 1,
                with_text: false,
                sent_at: now,
            };
            self.send(state, turn);
        }
    }

    fn send(&mut self, state: &Loaded, mut turn: Turn) {
        let config = &state.config;
        let (Some(store), Some(names)) = (config.fleet_store(), state.script_names.as_ref()) else {
            return put_back(state, &turn);
        };
        self.last_number += 1;
        turn.number = self.last_number;
        let call = RolloutCall {
            key: rollout_key(&config.tiers[turn.tier].name, &config.models[turn.model].name),
            from_version: turn.proposes.then_some(turn.mirror.fleet_version),
            proposal: turn.proposal.encode(),
            caller: self.caller,
            number: turn.number,
        };
        match fleet::send(
            store,
            &call.request(names, invocation(turn.with_text), &store.authority),
        ) {
            Some(token) => {
                self.in_flight.insert(token, turn);
            }
            // Never sent: nothing can have been stored.
            None => put_back(state, &turn),
        }
    }

    /// The fleet answered call `token` (`status`, `body`).
    pub fn answered(&mut self, state: &Loaded, token: u32, status: u32, body: &[u8], now: u64) {
        let Some(mut turn) = self.in_flight.remove(&token) else {
            return;
        };
        let config = &state.config;
        let Some((_, _, rollout)) =
            rollouts(config).find(|(tier, model, _)| (*tier, *model) == (turn.tier, turn.model))
        else {
            return put_back(state, &turn);
        };
        let outcome = turn_outcome(
            status,
            body,
            &turn.mirror,
            turn.proposal.clone(),
            turn.made,
            turn.with_text,
        );
        let result = match &outcome {
            TurnOutcome::Stored { .. } => "stored",
            TurnOutcome::Behind { .. } => "behind",
            TurnOutcome::Resend => "noscript",
            TurnOutcome::Unknown { .. } => "unavailable",
        };
        super::http::count_store_call(state, "rollout", result, now.saturating_sub(turn.sent_at));
        if let TurnOutcome::Stored { reply, .. } | TurnOutcome::Behind { reply, .. } = &outcome {
            self.settle_unknown(state, rollout, (turn.tier, turn.model), reply);
        }
        match outcome {
            TurnOutcome::Stored { mirror, made, .. } => {
                write_mirror(state, &turn, &mirror, rollout);
                if let Some(made) = made {
                    report_move(state, turn.tier, turn.model, rollout, &mirror, made);
                }
            }
            TurnOutcome::Behind { mirror, .. } => {
                write_mirror(state, &turn, &mirror, rollout);
                if turn.proposes && turn.proposals < MAX_PROPOSALS {
                    let (proposal, made) = propose(&mirror, rollout, &turn.tally);
                    let proposes = !turn.tally.is_empty() && proposal != mirror;
                    turn = Turn {
                        mirror,
                        proposal,
                        made,
                        proposes,
                        proposals: turn.proposals + 1,
                        sent_at: now,
                        ..turn
                    };
                    return self.send(state, turn);
                }
                put_back(state, &turn);
            }
            TurnOutcome::Resend => {
                turn.with_text = true;
                turn.sent_at = now;
                self.send(state, turn);
            }
            TurnOutcome::Unknown { reason } => {
                log::debug!("canary turn unanswered: {reason}");
                if turn.proposes {
                    // Stored or not? The next answer says; till then its
                    // tally is neither counted again nor lost.
                    self.unknown.insert((turn.tier, turn.model), turn);
                }
            }
        }
    }

    /// Settles the fate of the rollout's proposal whose answer was lost,
    /// from the answer to a later call: stored (its move, if any, is this
    /// replica's to log) or never to be (its tally goes back).
    fn settle_unknown(&mut self, state: &Loaded, rollout: &Rollout, id: (TierId, ModelId), reply: &RolloutReply) {
        let Some(lost) = self.unknown.remove(&id) else { return };
        if landed(lost.number, reply) {
            if let Some(made) = lost.made {
                report_move(state, lost.tier, lost.model, rollout, &lost.proposal, made);
            }
        } else {
            put_back(state, &lost);
        }
    }
}

/// Keeps the fleet's record as this Envoy's copy (the share routing reads);
/// a share another replica changed is set on this one's gauge too.
fn write_mirror(state: &Loaded, turn: &Turn, mirror: &CanaryRecord, rollout: &Rollout) {
    let config = &state.config;
    let key = canary::record_key(config, turn.tier, turn.model);
    let before = turn.mirror.share(rollout);
    if let Err(err) = state::update::<CanaryRecord, _>(&HostStore, &key, |record| *record = mirror.clone()) {
        log::warn!("cannot keep the fleet's canary record in {key}: {err:?}");
        return;
    }
    let share = mirror.share(rollout);
    if share != before {
        state
            .metrics
            .emit(config, &[CanaryMoveReport::share_sample(turn.tier, turn.model, share)]);
    }
}

/// Returns a call's tally to this Envoy's, for the next turn.
fn put_back(state: &Loaded, turn: &Turn) {
    if turn.tally.is_empty() {
        return;
    }
    let key = canary::tally_key(&state.config, turn.tier, turn.model);
    if let Err(err) = state::update::<Tally, _>(&HostStore, &key, |tally| tally.add(&turn.tally)) {
        log::warn!("cannot put back the canary tally {key}: {err:?}");
    }
}
