//! Labelled prompts from production outcomes: the gateway's `shadow` and
//! `feedback` log lines (one JSON object after the word), joined by request
//! id with the access log's audited prompts (tenants with `audit_content`).
//! Each becomes a line `apgr` and `train` read:
//!
//! - a shadow comparison: `weak` is how far the cheaper answer agreed with
//!   the reference model's, `strong` is 1 (the reference is the yardstick);
//! - a rating of an answer from a tier below the strongest: `weak` is the
//!   rating, `strong` is 1 (what a stronger model is assumed to earn).
//!
//! Prompts the access log did not audit cannot be labelled and are counted
//! as skipped.

use std::collections::HashMap;

use serde_json::{json, Value};

/// What the outcomes yielded: labelled lines, and how many were skipped.
#[derive(Debug, Default, PartialEq)]
pub struct Outcomes {
    pub lines: Vec<Value>,
    pub skipped: usize,
}

/// The JSON object a gateway log line carries after `marker` (`shadow `,
/// `feedback `), if any.
fn event(line: &str, marker: &str) -> Option<Value> {
    let start = line.find(marker)? + marker.len();
    serde_json::from_str(line.get(start..)?.trim()).ok()
}

/// Joins `events` (the Envoy log) with the prompts of `access_log` lines.
/// `strongest_tier` names the tier whose answers are the yardstick: ratings
/// of its answers label nothing.
pub fn label(access_log: &str, events: &str, strongest_tier: Option<&str>) -> Outcomes {
    let prompts: HashMap<String, String> = access_log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|fields| {
            let id = fields.get("request_id")?.as_str()?.to_string();
            let prompt = fields.get("prompt")?.as_str()?.to_string();
            Some((id, prompt))
        })
        .collect();
    let mut outcomes = Outcomes::default();
    for line in events.lines() {
        let (fields, weak, source) = if let Some(fields) = event(line, "shadow ") {
            let Some(agreement) = fields.get("agreement").and_then(Value::as_f64) else {
                continue;
            };
            (fields, agreement, "shadow")
        } else if let Some(fields) = event(line, "feedback ") {
            let tier = fields.get("tier").and_then(Value::as_str);
            let Some(rating) = fields.get("rating").and_then(Value::as_f64) else {
                continue;
            };
            if tier.is_none() || tier == strongest_tier {
                continue;
            }
            (fields, rating, "feedback")
        } else {
            continue;
        };
        let prompt = fields
            .get("request_id")
            .and_then(Value::as_str)
            .and_then(|id| prompts.get(id));
        let Some(prompt) = prompt else {
            outcomes.skipped += 1;
            continue;
        };
        let kind = fields.get("kind").and_then(Value::as_str).unwrap_or("all");
        outcomes.lines.push(json!({
            "prompt": prompt,
            "weak": weak,
            "strong": 1.0,
            "type": kind,
            "source": source,
        }));
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCESS: &str = r#"{"request_id":"a1","prompt":"What is 12 times 7?","score":"0.41"}
{"request_id":"a2","prompt":"Name the capital of France.","score":"0.02"}
{"request_id":"a3","score":"0.10"}
not json
"#;

    const EVENTS: &str = r#"[2026-12-04 16:23:36.170][7214][info][wasm] wasm log signalbox signalbox: shadow {"request_id":"a1","tier":"simple","kind":"math","agreement":0.0,"result":"disagree"}
[2026-12-04 16:23:37.001][7214][info][wasm] wasm log signalbox signalbox: feedback {"request_id":"a2","tier":"simple","kind":"chat","rating":1.0}
[2026-12-04 16:23:37.002][7214][info][wasm] wasm log signalbox signalbox: feedback {"request_id":"a2","tier":"complex","kind":"chat","rating":0.0}
[2026-12-04 16:23:37.003][7214][info][wasm] wasm log signalbox signalbox: shadow {"request_id":"a3","tier":"simple","agreement":1.0}
[2026-12-04 16:23:37.004][7214][info][wasm] wasm log signalbox signalbox: shadow {"request_id":"a1","result":"failed","agreement":null}
[2026-12-04 16:23:37.005][7214][info][main] all clusters initialized
"#;

    #[test]
    fn shadow_comparisons_and_ratings_become_labelled_prompts() {
        let outcomes = label(ACCESS, EVENTS, Some("complex"));
        assert_eq!(
            outcomes.lines,
            vec![
                json!({"prompt": "What is 12 times 7?", "weak": 0.0, "strong": 1.0, "type": "math", "source": "shadow"}),
                json!({"prompt": "Name the capital of France.", "weak": 1.0, "strong": 1.0, "type": "chat", "source": "feedback"}),
            ]
        );
        // a3's prompt was not audited; the failed comparison and the rating
        // of the strongest tier's answer label nothing.
        assert_eq!(outcomes.skipped, 1);
    }
}
