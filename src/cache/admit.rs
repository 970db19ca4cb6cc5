//! Whether a request may be answered from the cache, and whether an answer
//! may be kept, under a tenant's [`CachePolicy`]. A request that cannot be
//! read is simply not cacheable: these checks never fail a request.

use serde_json::Value;

use super::answer::{read_answer, AnswerProblem, StoredAnswer};
use super::key::CacheRequest;
use crate::config::cache::CachePolicy;

/// Why a request or an answer stays out of the cache (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uncacheable {
    /// The request body is over the policy's `max_request_bytes`.
    RequestTooLarge,
    /// The request body is not a JSON object.
    UnreadableRequest,
    /// `temperature` above the policy's `max_temperature` (none counts as 1).
    Temperature,
    /// `n` other than 1: several answers are several samples.
    Choices,
    /// `logprobs` asked: a stream replay could not give them token by token.
    Logprobs,
    /// An answer other than a 200.
    Status,
    /// Not a whole chat completion that can be replayed both whole and as
    /// a stream (see [`read_answer`]).
    UnreplayableAnswer,
    /// The answer stopped for `length`, `content_filter` or no reason, or
    /// says nothing.
    Unfinished,
    /// The answer is over the policy's `max_entry_bytes`.
    AnswerTooLarge,
}

impl Uncacheable {
    pub fn name(self) -> &'static str {
        match self {
            Uncacheable::RequestTooLarge => "request_too_large",
            Uncacheable::UnreadableRequest => "unreadable_request",
            Uncacheable::Temperature => "temperature",
            Uncacheable::Choices => "choices",
            Uncacheable::Logprobs => "logprobs",
            Uncacheable::Status => "status",
            Uncacheable::UnreplayableAnswer => "unreplayable_answer",
            Uncacheable::Unfinished => "unfinished",
            Uncacheable::AnswerTooLarge => "answer_too_large",
        }
    }
}

/// The providers' `temperature` when a request sets none.
const DEFAULT_TEMPERATURE: f64 = 1.0;

/// Reads `body` for the cache if `policy` lets it be cached: small enough,
/// a JSON object, cold enough, one answer, no logprobs. Tools, response
/// formats and the rest are fine: they are part of the key.
pub fn admit_request(policy: &CachePolicy, body: &[u8]) -> Result<CacheRequest, Uncacheable> {
    if body.len() > policy.max_request_bytes {
        return Err(Uncacheable::RequestTooLarge);
    }
    let request = CacheRequest::parse(body).ok_or(Uncacheable::UnreadableRequest)?;
    let temperature = match request.member("temperature") {
        None => DEFAULT_TEMPERATURE,
        Some(value) => value.as_f64().ok_or(Uncacheable::Temperature)?,
    };
    if temperature > policy.max_temperature {
        return Err(Uncacheable::Temperature);
    }
    if request.member("n").is_some_and(|n| n.as_f64() != Some(1.0)) {
        return Err(Uncacheable::Choices);
    }
    if request
        .member("logprobs")
        .is_some_and(|asked| asked != &Value::Bool(false))
    {
        return Err(Uncacheable::Logprobs);
    }
    Ok(request)
}

/// Reads an answer with `status` for keeping, if `policy` lets it be kept:
/// a 200 whole chat completion that finished (`stop` or `tool_calls`) and
/// fits `max_entry_bytes`.
pub fn admit_answer(policy: &CachePolicy, status: u16, body: &[u8]) -> Result<StoredAnswer, Uncacheable> {
    if status != 200 {
        return Err(Uncacheable::Status);
    }
    if body.len() > policy.max_entry_bytes {
        return Err(Uncacheable::AnswerTooLarge);
    }
    read_answer(body).map_err(|problem| match problem {
        AnswerProblem::Unreplayable => Uncacheable::UnreplayableAnswer,
        AnswerProblem::Unfinished => Uncacheable::Unfinished,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const POLICY: CachePolicy = CachePolicy {
        ttl_ms: 300_000,
        max_temperature: 0.0,
        max_entry_bytes: 4096,
        max_request_bytes: 2048,
    };

    fn request(extra: Value) -> Vec<u8> {
        let mut body = json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]});
        for (name, value) in extra.as_object().unwrap() {
            body[name] = value.clone();
        }
        body.to_string().into_bytes()
    }

    fn admitted(policy: &CachePolicy, extra: Value) -> Result<(), Uncacheable> {
        admit_request(policy, &request(extra)).map(|_| ())
    }

    #[test]
    fn a_greedy_single_answer_request_is_cacheable_tools_and_all() {
        assert_eq!(admitted(&POLICY, json!({"temperature": 0})), Ok(()));
        assert_eq!(
            admitted(
                &POLICY,
                json!({"temperature": 0.0, "n": 1, "logprobs": false, "stream": true,
                       "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "auto"})
            ),
            Ok(())
        );
    }

    #[test]
    fn no_temperature_counts_as_one() {
        assert_eq!(admitted(&POLICY, json!({})), Err(Uncacheable::Temperature));
        assert_eq!(
            admitted(&POLICY, json!({"temperature": null})),
            Err(Uncacheable::Temperature)
        );
        let warm = CachePolicy {
            max_temperature: 1.0,
            ..POLICY
        };
        assert_eq!(admitted(&warm, json!({})), Ok(()));
        assert_eq!(
            admitted(&warm, json!({"temperature": 1.2})),
            Err(Uncacheable::Temperature)
        );
        assert_eq!(
            admitted(&warm, json!({"temperature": "0"})),
            Err(Uncacheable::Temperature)
        );
    }

    #[test]
    fn several_answers_logprobs_and_big_or_broken_bodies_are_not_cached() {
        assert_eq!(
            admitted(&POLICY, json!({"temperature": 0, "n": 2})),
            Err(Uncacheable::Choices)
        );
        assert_eq!(
            admitted(&POLICY, json!({"temperature": 0, "n": "1"})),
            Err(Uncacheable::Choices)
        );
        assert_eq!(
            admitted(&POLICY, json!({"temperature": 0, "logprobs": true, "top_logprobs": 2})),
            Err(Uncacheable::Logprobs)
        );
        let big = json!({"temperature": 0, "messages": [{"role": "user", "content": "x".repeat(3000)}]});
        assert_eq!(admitted(&POLICY, big), Err(Uncacheable::RequestTooLarge));
        for body in [&b"[1]"[..], b"{", b"\xff\xfe"] {
            assert_eq!(
                admit_request(&POLICY, body).map(|_| ()),
                Err(Uncacheable::UnreadableRequest)
            );
        }
    }

    fn answer(finish_reason: &str, content: &str) -> Vec<u8> {
        json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                            "finish_reason": finish_reason}]})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn only_a_finished_200_that_fits_is_kept() {
        assert!(admit_answer(&POLICY, 200, &answer("stop", "ok")).is_ok());
        assert_eq!(
            admit_answer(&POLICY, 201, &answer("stop", "ok")).err(),
            Some(Uncacheable::Status)
        );
        assert_eq!(
            admit_answer(&POLICY, 200, &answer("length", "ok")).err(),
            Some(Uncacheable::Unfinished)
        );
        assert_eq!(
            admit_answer(&POLICY, 200, &answer("stop", &"x".repeat(5000))).err(),
            Some(Uncacheable::AnswerTooLarge)
        );
        assert_eq!(
            admit_answer(&POLICY, 200, b"data: {}\n\n").err(),
            Some(Uncacheable::UnreplayableAnswer)
        );
    }

    #[test]
    fn every_reason_has_a_distinct_label() {
        let all = [
            Uncacheable::RequestTooLarge,
            Uncacheable::UnreadableRequest,
            Uncacheable::Temperature,
            Uncacheable::Choices,
            Uncacheable::Logprobs,
            Uncacheable::Status,
            Uncacheable::UnreplayableAnswer,
            Uncacheable::Unfinished,
            Uncacheable::AnswerTooLarge,
        ];
        let names: std::collections::BTreeSet<&str> = all.iter().map(|reason| reason.name()).collect();
        assert_eq!(names.len(), all.len());
    }
}
