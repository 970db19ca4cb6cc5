//! Shadow evaluation: how often is the cheaper tier's answer as good as a
//! reference model's? For tenants that opt in, a sampled share of whole chat
//! answers served by a tier below the reference model's is also asked of
//! the reference model, in the background once the client has its answer,
//! within a per-minute budget. A rule-based judge scores how far the two
//! answers agree; results go to metrics (by tier and prompt kind), to a log
//! line the evaluation tool can read, and the reference calls' cost to the
//! tenant's ledger under `shadow:<model>`.

use std::collections::HashSet;

use serde_json::Value;

use crate::classify::PromptKind;
use crate::config::shadow::Shadow;
use crate::config::{Config, ModelId, TierId};
use crate::keys::TenantId;
use crate::route::select;

/// An answer this long at most is kept for the comparison.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Agreement at or above this counts as `agree`.
pub const AGREEMENT: f64 = 0.5;

/// Whether a request of a shadowed tenant may be sampled: it was planned
/// on a tier below the reference model's.
pub fn eligible(config: &Config, shadow: &Shadow, tier: Option<TierId>) -> bool {
    tier.is_some_and(|tier| tier < select::rank(config, shadow.reference))
}

/// Whether a draw (uniform in [0, 1)) samples a request.
pub fn sampled(shadow: &Shadow, unit_draw: f64) -> bool {
    unit_draw < shadow.share
}

/// One sampled answer, waiting for its reference call.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowJob {
    pub tenant: TenantId,
    pub request_id: Option<String>,
    pub tier: TierId,
    pub kind: Option<PromptKind>,
    /// The model that answered the client.
    pub served: ModelId,
    pub reference: ModelId,
    /// The chat request as the providers got it (masked, translated).
    pub request: Vec<u8>,
    /// The served answer's text.
    pub answer: String,
}

/// The request the reference model gets: the one the providers got, held
/// to the same output cap (a tenant's, when the client set none), and for
/// one answer only (only the first is compared).
pub fn reference_request(request: &[u8], output_cap: Option<u64>) -> Vec<u8> {
    let capped = output_cap.and_then(|cap| crate::route::attempts::with_output_cap(request, cap));
    let request = capped.as_deref().unwrap_or(request);
    let asks_several = crate::json_edit::member_value_span(request, "n").is_some();
    asks_several
        .then(|| crate::providers::set_member(request, "n", b"1"))
        .flatten()
        .unwrap_or_else(|| request.to_vec())
}

/// The text of a whole OpenAI-format chat answer (its first choice).
pub fn answer_text(chat_answer: &[u8]) -> Option<String> {
    let answer: Value = serde_json::from_slice(chat_answer).ok()?;
    let content = answer.get("choices")?.get(0)?.get("message")?.get("content")?;
    matches!(content, Value::String(_) | Value::Array(_)).then(|| crate::assess::text_of(Some(content)))
}

/// Words too common to say two answers agree.
const STOP_WORDS: [&str; 32] = [
    "the", "a", "an", "and", "or", "of", "to", "in", "is", "are", "was", "it", "that", "this", "for", "on", "with",
    "as", "be", "by", "at", "from", "answer", "so", "which", "we", "you", "i", "its", "there", "then", "thus",
];

/// An answer's words, lowercased; the guardrails' placeholders
/// (`<EMAIL_1>`) are dropped: both answers saw them, they say nothing.
fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .filter(|word| !(word.starts_with('<') && word.contains('>')))
        .flat_map(|word| word.split(|c: char| !(c.is_alphanumeric() || c == '.' || c == ',')))
        .map(|word| word.trim_matches(['.', ',']).to_lowercase())
        .filter(|word| !word.is_empty())
        .collect()
}

/// The numbers an answer states: digits, with decimal points and
/// thousands separators.
fn numbers(words: &[String]) -> Vec<f64> {
    words
        .iter()
        .filter(|word| {
            word.bytes()
                .all(|byte| byte.is_ascii_digit() || byte == b'.' || byte == b',')
        })
        .filter_map(|word| word.replace(',', "").parse::<f64>().ok())
        .filter(|number| number.is_finite())
        .collect()
}

/// A short answer (a fact) this many words long at most.
const SHORT_ANSWER_WORDS: usize = 12;

/// How far two answers agree, in [0, 1]. Numbers decide when they are the
/// answer: for a math prompt, whether the last numbers match (a math answer
/// is right or wrong); for two short answers stating one number each,
/// whether it is the same. Otherwise it is the F1 overlap of their content
/// words.
pub fn agreement(served: &str, reference: &str, kind: Option<PromptKind>) -> f64 {
    let (served, reference) = (words(served), words(reference));
    let (ours, theirs) = (numbers(&served), numbers(&reference));
    let short_facts = served.len().max(reference.len()) <= SHORT_ANSWER_WORDS && ours.len() == 1 && theirs.len() == 1;
    if kind == Some(PromptKind::Math) || short_facts {
        if let (Some(ours), Some(theirs)) = (ours.last(), theirs.last()) {
            return if (ours - theirs).abs() <= 1e-9 * theirs.abs().max(1.0) {
                1.0
            } else {
                0.0
            };
        }
    }
    let content = |words: &[String]| -> HashSet<String> {
        words
            .iter()
            .filter(|word| !STOP_WORDS.contains(&word.as_str()))
            .cloned()
            .collect()
    };
    let (ours, theirs) = (content(&served), content(&reference));
    if ours.is_empty() || theirs.is_empty() {
        return if ours.is_empty() && theirs.is_empty() { 1.0 } else { 0.0 };
    }
    let shared = ours.intersection(&theirs).count() as f64;
    let precision = shared / ours.len() as f64;
    let recall = shared / theirs.len() as f64;
    if shared == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    }
}

/// The metric's `result` for an agreement.
pub fn result(agreement: f64) -> &'static str {
    if agreement >= AGREEMENT {
        "agree"
    } else {
        "disagree"
    }
}

/// The shadow line for the log (one JSON object), joined by the evaluation
/// tool with the access log by request id.
pub fn log_line(config: &Config, job: &ShadowJob, agreement: Option<f64>) -> String {
    let name = |model: ModelId| config.models.get(model).map(|model| model.name.as_str());
    serde_json::json!({
        "request_id": job.request_id,
        "tenant": config.governance.as_ref().and_then(|governance| governance.tenants.get(job.tenant)).map(|tenant| tenant.name.as_str()),
        "tier": config.tiers.get(job.tier).map(|tier| tier.name.as_str()),
        "kind": job.kind.map(PromptKind::name),
        "model": name(job.served),
        "reference": name(job.reference),
        "agreement": agreement.map(|agreement| (agreement * 1000.0).round() / 1000.0),
        "result": agreement.map_or("failed", result),
    })
    .to_string()
}

/// Shared-data key of a tenant's shadow budget (a sliding minute of calls).
pub fn budget_key(tenant: &str) -> String {
    format!("{}shadow/{tenant}", crate::config::STATE_PREFIX)
}

/// The ledger's name for a reference model's shadow calls.
pub fn ledger_name(config: &Config, reference: ModelId) -> String {
    format!("shadow:{}", config.models[reference].name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sample_config;

    #[test]
    fn math_answers_agree_when_their_final_numbers_do() {
        let math = Some(PromptKind::Math);
        assert_eq!(
            agreement("12 × 7 = 84, so the total is 84.", "The result is 84", math),
            1.0
        );
        assert_eq!(agreement("The total is 1,250 apples.", "1250", math), 1.0);
        assert_eq!(agreement("It comes to 83.", "The answer is 84.", math), 0.0);
        // Words that parse as numbers but are not digits do not decide.
        let infinite = agreement("The limit is infinity.", "The limit is infinity.", math);
        assert_eq!(infinite, 1.0);
    }

    #[test]
    fn prose_agrees_by_its_content_words_not_its_numbering() {
        let same = agreement(
            "Paris is the capital of France.",
            "The capital of France is Paris, on the Seine.",
            None,
        );
        assert!(same >= AGREEMENT, "{same}");
        let different = agreement(
            "Lyon is the capital of France.",
            "Paris is the French capital city.",
            None,
        );
        assert!(different < same);
        let lists = agreement(
            "Steps: 1. Preheat oven 2. Bake bread",
            "1. Buy a car 2. Drive to Paris",
            None,
        );
        assert!(lists < AGREEMENT, "list numbers are not an answer: {lists}");
        assert_eq!(
            agreement("Spiders have 6 legs.", "A spider has 8 legs.", None),
            0.0,
            "a short fact"
        );
        assert_eq!(agreement("Spiders have 8 legs.", "A spider has 8 legs.", None), 1.0);
        let masked = agreement("Write to <EMAIL_1> today.", "Call <PHONE_1> now.", None);
        assert!(masked < AGREEMENT, "placeholders are not shared content: {masked}");
        assert_eq!(agreement("", "", None), 1.0);
        assert_eq!(agreement("Paris", "", None), 0.0);
        assert_eq!(result(0.5), "agree");
        assert_eq!(result(0.49), "disagree");
    }

    #[test]
    fn the_reference_is_asked_what_the_providers_were_asked_once() {
        let capped = reference_request(br#"{"model":"auto","messages":[],"n":3}"#, Some(50));
        let capped: Value = serde_json::from_slice(&capped).unwrap();
        assert_eq!(
            (capped["max_tokens"].as_u64(), capped["n"].as_u64()),
            (Some(50), Some(1))
        );
        let own_limit = reference_request(br#"{"messages":[],"max_tokens":20}"#, Some(50));
        assert_eq!(serde_json::from_slice::<Value>(&own_limit).unwrap()["max_tokens"], 20);
        assert_eq!(
            reference_request(b"{\"messages\":[]}", None),
            b"{\"messages\":[]}".to_vec()
        );
    }

    #[test]
    fn only_tiers_below_the_references_are_eligible_and_the_share_samples() {
        let config = sample_config();
        let large = config.model_named("large").unwrap();
        let shadow = Shadow {
            reference: large,
            share: 0.25,
            max_per_minute: 10,
            judge: None,
        };
        assert!(eligible(&config, &shadow, Some(0)));
        assert!(eligible(&config, &shadow, Some(1)));
        assert!(!eligible(&config, &shadow, Some(2)), "the reference's own tier");
        assert!(!eligible(&config, &shadow, None), "a named model");
        assert!(sampled(&shadow, 0.1));
        assert!(!sampled(&shadow, 0.25));
    }

    #[test]
    fn the_answer_text_is_read_from_a_whole_chat_answer() {
        let answer = br#"{"choices":[{"message":{"role":"assistant","content":"84"}}]}"#;
        assert_eq!(answer_text(answer), Some("84".to_string()));
        let parts = br#"{"choices":[{"message":{"content":[{"type":"text","text":"8"},{"type":"text","text":"4"}]}}]}"#;
        assert_eq!(answer_text(parts), Some("84".to_string()));
        for broken in [
            &b"{"[..],
            b"{}",
            br#"{"choices":[]}"#,
            br#"{"choices":[{"message":{"content":null}}]}"#,
        ] {
            assert_eq!(answer_text(broken), None);
        }
    }
}
