//! Canary rollouts across the fleet: every replica's observations end up in
//! one record in Redis (`fleet/rollout.lua`), so a rollout moves once for
//! the fleet and every replica routes by the same share.
//!
//! Each Envoy keeps a [`Tally`] of what it saw and a copy (the mirror) of
//! the fleet's record as of the version it last read. About once a second
//! one VM per Envoy takes the tally, adds it to the mirror and judges
//! ([`propose`]: the same judgement as without a fleet), and asks the
//! script to store the proposal if the fleet's record is still at the
//! mirror's version. Stored: the proposal is the new mirror, and a move it
//! made is this replica's to log. Another version: that record becomes the
//! mirror and the tally is put back for the next turn ([`TurnOutcome`]).
//! A proposal whose answer was lost is settled by the caller's next call:
//! the script numbers each caller's calls, so the answer to a later one
//! says for good whether the lost one was stored ([`landed`]).

use crate::canary::{CanaryRecord, Move, Tally};
use crate::config::canary::Rollout;
use crate::state::Record;

use super::reply::{reply_array, Items, StoreFailure};
use super::request::ScriptCall;
use super::scripts::{hex, unhex, Script};

/// A fleet record untouched this long is forgotten (a finished rollout's).
pub const IDLE_MS: u64 = 30 * 24 * 60 * 60 * 1000;

/// The mirror with `tally` added and judged, and the move that made.
pub fn propose(mirror: &CanaryRecord, rollout: &Rollout, tally: &Tally) -> (CanaryRecord, Option<Move>) {
    let mut proposal = mirror.clone();
    let made = proposal.absorb(rollout, tally);
    (proposal, made)
}

/// One compare-and-set of a rollout's fleet record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutCall {
    /// `keys::rollout_key`.
    pub key: String,
    /// The fleet version the proposal was made from; `None` only reads.
    pub from_version: Option<u64>,
    pub proposal: Vec<u8>,
    /// Who calls (the VM's random id) and this call's number (grows).
    pub caller: u64,
    pub number: u64,
}

impl ScriptCall for RolloutCall {
    const SCRIPT: Script = Script::Rollout;

    fn keys(&self) -> Vec<String> {
        vec![self.key.clone()]
    }

    fn arguments(&self) -> Vec<String> {
        let from_version = self
            .from_version
            .map_or_else(|| "-1".to_string(), |version| version.to_string());
        vec![
            from_version,
            hex(&self.proposal),
            IDLE_MS.to_string(),
            self.caller.to_string(),
            self.number.to_string(),
        ]
    }
}

/// What the script did with a call.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutReply {
    pub stored: bool,
    pub version: u64,
    /// When not stored: the fleet's record (`None` when Redis has none, or
    /// one this module cannot read).
    pub record: Option<Box<CanaryRecord>>,
    /// The number of the caller's last stored proposal (0: none).
    pub landed: u64,
}

pub fn parse_rollout(status: u32, body: &[u8]) -> Result<RolloutReply, StoreFailure> {
    let mut items = Items::new(reply_array(status, body)?);
    let stored = items.count()? == 1;
    let version = items.count()?;
    let record = items.string()?;
    let landed = items.count()?;
    items.finish(RolloutReply {
        stored,
        version,
        record: (!stored)
            .then(|| unhex(&record).and_then(|bytes| CanaryRecord::decode(&bytes)))
            .flatten()
            .map(Box::new),
        landed,
    })
}

/// Whether a proposal numbered `number`, whose answer was lost, was stored,
/// given the answer to a later call of the same caller: a proposal that had
/// not been stored by then never will be.
pub fn landed(number: u64, reply: &RolloutReply) -> bool {
    reply.landed == number
}

/// What a replica does after its turn.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnOutcome {
    /// The proposal is the fleet's record: keep it as the mirror; log and
    /// meter the move, if it made one.
    Stored {
        mirror: CanaryRecord,
        made: Option<Move>,
        reply: RolloutReply,
    },
    /// Someone else's record is newer (or this was only a read): mirror it;
    /// a proposal's tally is proposed again or put back.
    Behind { mirror: CanaryRecord, reply: RolloutReply },
    /// Redis does not know the script: send the same call with EVAL.
    Resend,
    /// No answer: whether a proposal was stored is unknown until the next
    /// call's answer says; the mirror (and so the share) stays as it was.
    Unknown { reason: String },
}

/// Decides what a turn's answer means. `mirror` is the local copy the
/// proposal was made from; when Redis has no record at all (it was flushed
/// or lost), that copy is proposed again from version 0 rather than
/// starting the rollout over.
pub fn turn_outcome(
    status: u32,
    body: &[u8],
    mirror: &CanaryRecord,
    proposal: CanaryRecord,
    made: Option<Move>,
    sent_with_text: bool,
) -> TurnOutcome {
    match parse_rollout(status, body) {
        Ok(reply) if reply.stored => TurnOutcome::Stored {
            mirror: CanaryRecord {
                fleet_version: reply.version,
                ..proposal
            },
            made,
            reply,
        },
        Ok(mut reply) => TurnOutcome::Behind {
            mirror: CanaryRecord {
                fleet_version: reply.version,
                ..reply.record.take().map_or_else(|| mirror.clone(), |record| *record)
            },
            reply,
        },
        Err(StoreFailure::NoScript) if !sent_with_text => TurnOutcome::Resend,
        Err(StoreFailure::NoScript) => TurnOutcome::Unknown {
            reason: "no script even after EVAL".into(),
        },
        Err(StoreFailure::Unavailable { reason }) => TurnOutcome::Unknown { reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canary::{Phase, SideOf};
    use crate::fleet::{Invocation, ScriptNames};

    fn rollout() -> Rollout {
        Rollout {
            steps: vec![0.1, 1.0],
            window_ms: 60_000,
            min_requests: 2,
            max_error_rate_increase: 0.05,
            max_latency_ratio: 1.5,
            max_cascade_rate_increase: None,
        }
    }

    fn reply(items: &str) -> Vec<u8> {
        format!(r#"{{"EVALSHA":{items}}}"#).into_bytes()
    }

    fn advanced() -> (CanaryRecord, CanaryRecord, Option<Move>) {
        let mirror = CanaryRecord {
            fleet_version: 4,
            ..CanaryRecord::default()
        };
        let mut tally = Tally::default();
        for now in [1_000, 61_000] {
            tally.count(
                now,
                SideOf::Canary,
                crate::canary::Observation::Attempt {
                    failed: false,
                    latency_ms: 20,
                },
            );
        }
        let (proposal, made) = propose(&mirror, &rollout(), &tally);
        (mirror, proposal, made)
    }

    #[test]
    fn a_stored_proposal_becomes_the_mirror_at_the_new_version_with_its_move() {
        let (mirror, proposal, made) = advanced();
        assert_eq!(made, Some(Move::Advanced(1)));
        assert_eq!(mirror.share(&rollout()), 0.1, "proposing changes nothing yet");
        let outcome = turn_outcome(200, &reply(r#"[1,5,"",7]"#), &mirror, proposal.clone(), made, false);
        let TurnOutcome::Stored {
            mirror: kept,
            made,
            reply: answer,
        } = outcome
        else {
            panic!("{outcome:?}")
        };
        assert_eq!(
            (kept.fleet_version, kept.phase, made),
            (5, Phase::Observing(1), Some(Move::Advanced(1)))
        );
        assert_eq!(kept.share(&rollout()), 1.0);
        assert!(landed(7, &answer) && !landed(6, &answer));
    }

    #[test]
    fn a_lost_race_mirrors_the_winners_record_and_an_empty_store_keeps_ours() {
        let (mirror, proposal, made) = advanced();
        let winner = CanaryRecord {
            phase: Phase::Promoted,
            moves: 9,
            ..CanaryRecord::default()
        };
        let body = reply(&format!(r#"[0,6,"{}",0]"#, hex(&winner.encode())));
        let outcome = turn_outcome(200, &body, &mirror, proposal.clone(), made, false);
        let TurnOutcome::Behind {
            mirror: kept,
            reply: answer,
        } = outcome
        else {
            panic!("{outcome:?}")
        };
        assert_eq!(
            kept,
            CanaryRecord {
                fleet_version: 6,
                ..winner
            }
        );
        assert!(!landed(3, &answer), "none of this caller's proposals was stored");
        // Redis lost the record (flushed): our copy is proposed again from 0.
        let outcome = turn_outcome(200, &reply(r#"[0,0,"",0]"#), &mirror, proposal.clone(), made, false);
        assert!(
            matches!(&outcome, TurnOutcome::Behind { mirror: kept, .. } if *kept == CanaryRecord { fleet_version: 0, ..mirror.clone() }),
            "{outcome:?}"
        );
        // A record this module cannot read is treated the same way.
        let outcome = turn_outcome(200, &reply(r#"[0,3,"zz",0]"#), &mirror, proposal, made, false);
        assert!(
            matches!(outcome, TurnOutcome::Behind { mirror, .. } if mirror.fleet_version == 3 && mirror.moves == 0)
        );
    }

    #[test]
    fn anything_but_the_documented_reply_leaves_the_fate_unknown() {
        let (mirror, proposal, made) = advanced();
        let outcome = |status: u32, body: &[u8], with_text: bool| {
            turn_outcome(status, body, &mirror, proposal.clone(), made, with_text)
        };
        let noscript = reply(r#"[false,"NOSCRIPT No matching script"]"#);
        assert_eq!(outcome(200, &noscript, false), TurnOutcome::Resend);
        assert!(matches!(outcome(200, &noscript, true), TurnOutcome::Unknown { .. }));
        for (status, body) in [
            (503, reply(r#"[1,5,"",1]"#)),
            (200, reply(r#"[1,5,""]"#)),
            (200, reply(r#"[1,5,"",1,7]"#)),
            (200, reply(r#"[1,-5,"",1]"#)),
            (200, b"not json".to_vec()),
            (200, br#"{"GET":[1,5,"",1]}"#.to_vec()),
        ] {
            assert!(
                matches!(outcome(status, &body, false), TurnOutcome::Unknown { .. }),
                "{status} {}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    #[test]
    fn the_call_sends_the_version_or_only_reads_the_record_as_hex_and_who_calls() {
        let call = RolloutCall {
            key: "sb:rollout:{simple:fresh}".into(),
            from_version: Some(4),
            proposal: vec![0x01, 0xab],
            caller: 99,
            number: 12,
        };
        assert_eq!(call.arguments(), vec!["4", "01ab", &IDLE_MS.to_string(), "99", "12"]);
        let read_only = RolloutCall {
            from_version: None,
            ..call.clone()
        };
        assert_eq!(read_only.arguments()[0], "-1");
        let request = call.request(&ScriptNames::compute(), Invocation::BySha, "webdis");
        let body = String::from_utf8(request.body).unwrap();
        assert!(body.starts_with("EVALSHA/"), "{body}");
        assert!(
            body.contains("/1/sb%3Arollout%3A%7Bsimple%3Afresh%7D/4/01ab/"),
            "{body}"
        );
        assert_eq!(unhex("01ab"), Some(vec![0x01, 0xab]));
        for bad in ["", "0", "0g", "é1", "+f"] {
            assert_eq!(unhex(bad), None, "{bad}");
        }
    }
}
