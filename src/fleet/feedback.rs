//! Feedback across the fleet (`fleet/feedback.lua`): every answer that may
//! be rated is also remembered in Redis, so a rating posted to any replica
//! finds it and counts once, and a restart forgets nothing.
//!
//! Remembering is batched per tenant by the root ([`RememberCall`]); a
//! rating asks Redis first ([`RateCall`]), passing the replica's own record
//! of the answer when it has one: that covers an answer whose remember call
//! is still queued. The rules for a rating (tenant, id, once) are
//! `crate::feedback`'s.

use crate::feedback::Served;
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
        vec!["rate".to_string(), self.keep_ms.to_string(), local]
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
        "counted" => FleetRated::Counted(unhex(&record).and_then(|bytes| Served::decode(&bytes)).ok_or_else(|| {
            StoreFailure::Unavailable {
                reason: "a counted answer's record does not read".into(),
            }
        })?),
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
        let call = RateCall {
            tenant: "acme".into(),
            request_id: "a".into(),
            local: None,
            keep_ms: 1_000,
        };
        assert_eq!(call.arguments(), vec!["rate", "1000", ""]);
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
