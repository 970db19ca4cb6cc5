//! Feedback across the fleet (`fleet/feedback.lua`): every answer that may
//! be rated is also remembered in Redis, so a rating posted to any replica
//! finds it and counts once, and a restart forgets nothing.
//!
//! Remembering is batched per tenant by the root ([`RememberCall`]); a
//! rating asks Redis first ([`RateCall`]), passing the replica's own record
//! of the answer when it has one: that covers an answer whose remember call
//! is still queued. The rules for a rating (tenant, id, once) are
//! `crate::feedback`'s.
//!
//! A rate call whose answer is lost (Redis slower than the timeout) may
//! still run and count the rating in Redis, where only the call that
//! counted it knows it did. So every rate call carries an id ([`call_id`]),
//! Redis records which call counted, and the Envoy keeps such a call as an
//! [`UnsettledRating`] (a bounded queue per VM, [`UnsettledRatings`]) until a
//! settle call gets an answer: "yours" (count it now, once) or "fenced"
//! (it counted nothing, and never will: Redis fences the call off).

use std::collections::VecDeque;

use crate::feedback::{Rating, Served};
use crate::state::Record;

use super::keys::answer_key;
use super::reply::{reply_array, Items, StoreFailure};
use super::request::ScriptCall;
use super::scripts::{hex, unhex, Script};

/// Answers one remember call carries at most.
pub const MAX_BATCH: usize = 32;
/// Bytes of keys and records one remember call carries at most, counted as
/// sent (every byte may be percent-encoded, 3 bytes on the wire): with the
/// script's text it stays well under webdis's 64 KiB request limit.
const MAX_BATCH_BYTES: usize = 48 * 1024;

/// Splits one tenant's answers into the index ranges of remember calls:
/// at most [`MAX_BATCH`] answers and [`MAX_BATCH_BYTES`] each.
pub fn batches(tenant: &str, answers: &[Served]) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (index, served) in answers.iter().enumerate() {
        // Key, record as hex (twice its bytes), separators; all possibly encoded.
        let size = 3 * (answer_key(tenant, &served.request_id).len() + 2 * served.encode().len() + 16);
        if index > start && (index - start >= MAX_BATCH || bytes + size > MAX_BATCH_BYTES) {
            ranges.push(start..index);
            start = index;
            bytes = 0;
        }
        bytes += size;
    }
    if start < answers.len() {
        ranges.push(start..answers.len());
    }
    ranges
}

/// Remembers answers of one tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct RememberCall {
    pub tenant: String,
    pub answers: Vec<Served>,
    pub keep_ms: u64,
}

impl ScriptCall for RememberCall {
    const SCRIPT: Script = Script::Feedback;

    fn keys(&self) -> Vec<String> {
        self.answers
            .iter()
            .map(|served| answer_key(&self.tenant, &served.request_id))
            .collect()
    }

    fn arguments(&self) -> Vec<String> {
        let records = self.answers.iter().map(|served| {
            // The rating is the hash's own field: the record goes unrated.
            let record = hex(&Served {
                rated: false,
                ..served.clone()
            }
            .encode());
            if served.rated {
                format!("rated:{record}")
            } else {
                record
            }
        });
        ["remember".to_string(), self.keep_ms.to_string()]
            .into_iter()
            .chain(records)
            .collect()
    }
}

/// Rates one answer of a tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct RateCall {
    pub tenant: String,
    pub request_id: String,
    /// This replica's unrated record of the answer, if it has one.
    pub local: Option<Served>,
    pub keep_ms: u64,
    /// [`call_id`]: Redis notes it on the answer when this call counts.
    pub call_id: String,
}

/// The id of a rate call: the VM's random id (the caller id its rollout
/// calls carry) and a number that grows with each call the VM makes.
pub fn call_id(caller: u64, number: u64) -> String {
    format!("{caller:x}-{number}")
}

impl ScriptCall for RateCall {
    const SCRIPT: Script = Script::Feedback;

    fn keys(&self) -> Vec<String> {
        vec![answer_key(&self.tenant, &self.request_id)]
    }

    fn arguments(&self) -> Vec<String> {
        let local = self
            .local
            .as_ref()
            .map_or_else(String::new, |served| hex(&served.encode()));
        vec![
            "rate".to_string(),
            self.keep_ms.to_string(),
            local,
            self.call_id.clone(),
        ]
    }
}

/// How many of a remember call's answers were new to Redis.
pub fn parse_remembered(status: u32, body: &[u8]) -> Result<u64, StoreFailure> {
    let mut items = Items::new(reply_array(status, body)?);
    match items.string()?.as_str() {
        "remembered" => {
            let new = items.count()?;
            items.finish(new)
        }
        other => Err(StoreFailure::Unavailable {
            reason: format!("a remember call answered {other}"),
        }),
    }
}

/// What Redis said of a rating.
#[derive(Debug, Clone, PartialEq)]
pub enum FleetRated {
    /// Counted now; the answer as it was remembered.
    Counted(Served),
    Again,
    Unknown,
}

pub fn parse_rated(status: u32, body: &[u8]) -> Result<FleetRated, StoreFailure> {
    let mut items = Items::new(reply_array(status, body)?);
    let tag = items.string()?;
    let record = items.string()?;
    let rated = match tag.as_str() {
        "counted" => FleetRated::Counted(answer_record(&record)?),
        "again" => FleetRated::Again,
        "unknown" => FleetRated::Unknown,
        other => {
            return Err(StoreFailure::Unavailable {
                reason: format!("a rating answered {other}"),
            })
        }
    };
    items.finish(rated)
}

/// An answer's record as a reply carries it (hex).
fn answer_record(hexed: &str) -> Result<Served, StoreFailure> {
    unhex(hexed)
        .and_then(|bytes| Served::decode(&bytes))
        .ok_or_else(|| StoreFailure::Unavailable {
            reason: "an answer's record in a reply does not read".into(),
        })
}

/// Unsettled ratings one VM keeps at most; past it the oldest is dropped
/// (and counted): if its call counted the rating, no replica counts it.
pub const MAX_UNSETTLED: usize = 256;

/// A rating whose rate call got no answer (a timeout, or none that reads)
/// after it was sent, and that this Envoy's slots could not decide: the
/// call may have counted it in Redis. A settle call asks which.
#[derive(Debug, Clone, PartialEq)]
pub struct UnsettledRating {
    pub tenant: String,
    pub call_id: String,
    pub rating: Rating,
    pub keep_ms: u64,
    /// Redis lost its scripts: send the text (EVAL), not the name.
    pub with_text: bool,
    pub retries: u32,
    /// Not before this time (a retry's back-off).
    pub due_ms: u64,
}

impl UnsettledRating {
    /// The rate call `call` of `rating`, unanswered at `now_ms`.
    pub fn new(call: &RateCall, rating: Rating, now_ms: u64) -> UnsettledRating {
        UnsettledRating {
            tenant: call.tenant.clone(),
            call_id: call.call_id.clone(),
            rating,
            keep_ms: call.keep_ms,
            with_text: false,
            retries: 0,
            due_ms: now_ms,
        }
    }

    /// Schedules the next settle call after one failed at `now_ms`, with a
    /// doubling back-off (up to 5 s). There is no give-up time: once Redis
    /// answers, the entry settles one way or the other.
    pub fn retry(&mut self, now_ms: u64) {
        self.retries = self.retries.saturating_add(1);
        self.due_ms = now_ms.saturating_add(super::decide::retry_delay_ms(self.retries));
    }
}

/// The settle call asks Redis about the rate call `call_id`.
impl ScriptCall for UnsettledRating {
    const SCRIPT: Script = Script::Feedback;

    fn keys(&self) -> Vec<String> {
        vec![answer_key(&self.tenant, &self.rating.request_id)]
    }

    fn arguments(&self) -> Vec<String> {
        vec!["settle".to_string(), self.keep_ms.to_string(), self.call_id.clone()]
    }
}

/// The unsettled ratings of one VM: bounded, oldest dropped first.
#[derive(Debug, Default)]
pub struct UnsettledRatings {
    entries: VecDeque<UnsettledRating>,
    /// Entries dropped because the queue was full, not yet reported.
    dropped: u64,
}

impl UnsettledRatings {
    pub const fn new() -> UnsettledRatings {
        UnsettledRatings {
            entries: VecDeque::new(),
            dropped: 0,
        }
    }

    pub fn push(&mut self, entry: UnsettledRating) {
        if self.entries.len() >= MAX_UNSETTLED {
            self.entries.pop_front();
            self.dropped = self.dropped.saturating_add(1);
        }
        self.entries.push_back(entry);
    }

    /// The entries due at `now_ms`, taken off the queue.
    pub fn take_due(&mut self, now_ms: u64) -> Vec<UnsettledRating> {
        let (due, waiting): (Vec<_>, Vec<_>) = self.entries.drain(..).partition(|entry| entry.due_ms <= now_ms);
        self.entries = waiting.into();
        due
    }

    /// How many were dropped since the last call.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What a settle call's answer means for its entry.
#[derive(Debug, Clone, PartialEq)]
pub enum SettleStep {
    /// The rate call counted the rating in Redis: count it here, once
    /// (metrics and log line), and forget the entry.
    Count { served: Served, rating: Rating },
    /// The rate call counted nothing and never will: forget the entry.
    Fenced,
    /// Redis does not know the script: send the entry again now with EVAL.
    Resend(UnsettledRating),
    /// No answer that reads: ask again after a back-off.
    Retry { entry: UnsettledRating, reason: String },
}

impl SettleStep {
    /// The `result` of `signalbox_store_calls_total{op="rate_settle"}`.
    pub fn result(&self) -> &'static str {
        match self {
            SettleStep::Count { .. } => "yours",
            SettleStep::Fenced => "fenced",
            SettleStep::Resend(_) => "noscript",
            SettleStep::Retry { .. } => "unavailable",
        }
    }
}

/// Decides what the answer (`status`, `body`) to `entry`'s settle call,
/// at `now_ms`, means.
pub fn settle_step(mut entry: UnsettledRating, status: u32, body: &[u8], now_ms: u64) -> SettleStep {
    let failure = match parse_settled(status, body) {
        Ok(Some(served)) => {
            return SettleStep::Count {
                served,
                rating: entry.rating,
            }
        }
        Ok(None) => return SettleStep::Fenced,
        Err(StoreFailure::NoScript) if !entry.with_text => {
            entry.with_text = true;
            entry.due_ms = now_ms;
            return SettleStep::Resend(entry);
        }
        Err(StoreFailure::NoScript) => "no script even after EVAL".to_string(),
        Err(StoreFailure::Unavailable { reason }) => reason,
    };
    entry.retry(now_ms);
    SettleStep::Retry { entry, reason: failure }
}

/// A settle call's reply: the answer's record when the call counted it
/// ("yours"), `None` when it is fenced off.
fn parse_settled(status: u32, body: &[u8]) -> Result<Option<Served>, StoreFailure> {
    let mut items = Items::new(reply_array(status, body)?);
    let tag = items.string()?;
    let record = items.string()?;
    let settled = match tag.as_str() {
        "yours" => Some(answer_record(&record)?),
        "fenced" => None,
        other => {
            return Err(StoreFailure::Unavailable {
                reason: format!("a settle call answered {other}"),
            })
        }
    };
    items.finish(settled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::PromptKind;
    use crate::fleet::{Invocation, ScriptNames};

    fn served(id: &str) -> Served {
        Served {
            request_id: id.into(),
            tenant: "acme".into(),
            model: "small".into(),
            tier: Some("simple".into()),
            kind: Some(PromptKind::Code),
            score_milli: Some(300),
            at_ms: 5,
            rated: false,
            in_fleet: false,
        }
    }

    fn reply(items: &str) -> Vec<u8> {
        format!(r#"{{"EVALSHA":{items}}}"#).into_bytes()
    }

    #[test]
    fn a_remember_call_names_one_key_per_answer_and_marks_those_rated_already() {
        let call = RememberCall {
            tenant: "acme".into(),
            answers: vec![
                served("a"),
                Served {
                    rated: true,
                    ..served("b")
                },
            ],
            keep_ms: 60_000,
        };
        assert_eq!(call.keys(), vec!["sb:{acme}:fb:a", "sb:{acme}:fb:b"]);
        let arguments = call.arguments();
        assert_eq!(arguments[..2], ["remember", "60000"]);
        assert_eq!(arguments[2], hex(&served("a").encode()));
        assert_eq!(arguments[3], format!("rated:{}", hex(&served("b").encode())));
        assert_eq!(parse_remembered(200, &reply(r#"["remembered",2]"#)), Ok(2));
        assert!(parse_remembered(200, &reply(r#"["counted",2]"#)).is_err());
    }

    #[test]
    fn a_rating_reads_counted_again_or_unknown_and_nothing_else() {
        let call = rate_call("a");
        assert_eq!(call.arguments(), vec!["rate", "1000", "", "2a-7"]);
        let with_local = RateCall {
            local: Some(served("a")),
            ..call
        };
        assert_eq!(with_local.arguments()[2], hex(&served("a").encode()));

        let counted = reply(&format!(r#"["counted","{}"]"#, hex(&served("a").encode())));
        assert_eq!(parse_rated(200, &counted), Ok(FleetRated::Counted(served("a"))));
        assert_eq!(parse_rated(200, &reply(r#"["again",""]"#)), Ok(FleetRated::Again));
        assert_eq!(parse_rated(200, &reply(r#"["unknown",""]"#)), Ok(FleetRated::Unknown));
        for bad in [
            reply(r#"["counted","zz"]"#),
            reply(r#"["counted",""]"#),
            reply(r#"["maybe",""]"#),
            reply(r#"["again"]"#),
            reply(r#"["again","",1]"#),
            reply(r#"[false,"ERR unknown mode"]"#),
        ] {
            assert!(parse_rated(200, &bad).is_err(), "{}", String::from_utf8_lossy(&bad));
        }
        assert_eq!(
            parse_rated(200, &reply(r#"[false,"NOSCRIPT No matching script"]"#)),
            Err(StoreFailure::NoScript)
        );
        assert!(parse_rated(503, &reply(r#"["again",""]"#)).is_err());
    }

    fn rate_call(id: &str) -> RateCall {
        RateCall {
            tenant: "acme".into(),
            request_id: id.into(),
            local: None,
            keep_ms: 1_000,
            call_id: call_id(42, 7),
        }
    }

    fn rating(id: &str) -> Rating {
        Rating {
            request_id: id.into(),
            rating: 1.0,
            success: Some(true),
        }
    }

    #[test]
    fn a_settle_call_asks_about_one_rate_call_by_its_id_on_the_answers_key() {
        assert_ne!(call_id(42, 7), call_id(42, 8));
        assert_ne!(call_id(42, 7), call_id(43, 7));
        let entry = UnsettledRating::new(&rate_call("a"), rating("a"), 500);
        assert_eq!((entry.due_ms, entry.retries, entry.with_text), (500, 0, false));
        assert_eq!(entry.keys(), vec!["sb:{acme}:fb:a"]);
        assert_eq!(entry.arguments(), vec!["settle", "1000", "2a-7"]);
    }

    #[test]
    fn yours_counts_the_rating_with_the_record_and_fenced_forgets_it() {
        let entry = UnsettledRating::new(&rate_call("a"), rating("a"), 0);
        let yours = reply(&format!(r#"["yours","{}"]"#, hex(&served("a").encode())));
        let step = settle_step(entry.clone(), 200, &yours, 10);
        assert_eq!(step.result(), "yours");
        assert_eq!(
            step,
            SettleStep::Count {
                served: served("a"),
                rating: rating("a")
            }
        );
        let step = settle_step(entry, 200, &reply(r#"["fenced",""]"#), 10);
        assert_eq!((step.result(), step), ("fenced", SettleStep::Fenced));
    }

    #[test]
    fn a_settle_without_a_documented_answer_is_asked_again_later_and_noscript_at_once() {
        let entry = UnsettledRating::new(&rate_call("a"), rating("a"), 0);
        let noscript = reply(r#"[false,"NOSCRIPT No matching script"]"#);
        let SettleStep::Resend(resent) = settle_step(entry.clone(), 200, &noscript, 10) else {
            panic!("NOSCRIPT resends")
        };
        assert_eq!((resent.with_text, resent.due_ms), (true, 10));
        assert!(matches!(
            settle_step(resent, 200, &noscript, 10),
            SettleStep::Retry { .. }
        ));
        for (status, body) in [
            (504, b"upstream request timeout".to_vec()),
            (503, reply(r#"["fenced",""]"#)),
            (200, reply(r#"["yours","zz"]"#)),
            (200, reply(r#"["yours",""]"#)),
            (200, reply(r#"["counted",""]"#)),
            (200, reply(r#"["fenced"]"#)),
            (200, reply(r#"["fenced","",1]"#)),
        ] {
            let step = settle_step(entry.clone(), status, &body, 1_000);
            let SettleStep::Retry { entry: again, .. } = &step else {
                panic!("{status} {}: {step:?}", String::from_utf8_lossy(&body))
            };
            assert_eq!(step.result(), "unavailable");
            assert_eq!((again.retries, again.due_ms), (1, 1_100));
        }
        let mut backing_off = entry;
        for _ in 0..20 {
            backing_off.retry(0);
        }
        assert_eq!(backing_off.due_ms, 5_000, "the back-off is capped");
    }

    #[test]
    fn the_queue_keeps_the_newest_entries_counts_those_dropped_and_hands_out_the_due() {
        let mut queue = UnsettledRatings::new();
        for index in 0..MAX_UNSETTLED + 2 {
            let id = index.to_string();
            queue.push(UnsettledRating::new(&rate_call(&id), rating(&id), index as u64));
        }
        assert_eq!(
            (queue.len(), queue.take_dropped(), queue.take_dropped()),
            (MAX_UNSETTLED, 2, 0)
        );
        let due = queue.take_due(10);
        let ids: Vec<&str> = due.iter().map(|entry| entry.rating.request_id.as_str()).collect();
        assert_eq!(
            ids,
            ["2", "3", "4", "5", "6", "7", "8", "9", "10"],
            "the two oldest went"
        );
        assert_eq!(queue.len(), MAX_UNSETTLED - 9);
        assert_eq!(queue.take_due(u64::MAX).len(), MAX_UNSETTLED - 9);
        assert!(queue.is_empty());
    }

    /// webdis's `http_max_request_size` in fleet/webdis.json.
    const WEBDIS_MAX_REQUEST: usize = 65_536;

    #[test]
    fn remember_calls_fit_webdis_even_with_the_longest_names_and_ids() {
        // Valid config names (128 visible ASCII) and a client's x-request-id
        // of 128 bytes: `%`, `{`, `}` and `:` grow 3x in keys, then 3x again
        // on the wire.
        let name = "%".repeat(128);
        let answer = |index: usize| Served {
            request_id: format!("{index:03}{}", "%".repeat(125)),
            tenant: name.clone(),
            model: name.clone(),
            tier: Some(name.clone()),
            kind: None,
            score_milli: Some(500),
            at_ms: 1_767_225_600_000,
            rated: index.is_multiple_of(2),
            in_fleet: false,
        };
        let answers: Vec<Served> = (0..100).map(answer).collect();
        let ranges = batches(&name, &answers);
        assert_eq!(ranges.first().map(|range| range.start), Some(0));
        assert_eq!(ranges.last().map(|range| range.end), Some(100));
        assert!(ranges.windows(2).all(|pair| pair[0].end == pair[1].start));
        for range in ranges {
            assert!(range.len() <= MAX_BATCH);
            let call = RememberCall {
                tenant: name.clone(),
                answers: answers[range].to_vec(),
                keep_ms: 86_400_000,
            };
            for invocation in [Invocation::BySha, Invocation::WithText] {
                let request = call.request(&ScriptNames::compute(), invocation, "webdis");
                assert!(
                    request.body.len() <= WEBDIS_MAX_REQUEST,
                    "{invocation:?}: {} bytes",
                    request.body.len()
                );
            }
        }
        // Ordinary answers go 32 to a call.
        let small: Vec<Served> = (0..40).map(|index| served(&index.to_string())).collect();
        assert_eq!(batches("acme", &small), vec![0..32, 32..40]);
    }
}
