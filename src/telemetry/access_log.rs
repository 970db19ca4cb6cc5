//! The audit trail of one request, as filter-state values Envoy's access
//! log reads with `%FILTER_STATE(wasm.signalbox.<field>:PLAIN)%` (see
//! [`FIELDS`]). The router writes what the routing decision knows
//! ([`request_fields`]) once the request is routed, so tracing's custom
//! tags (evaluated when the span ends, before `on_log`) can read them too,
//! and the rest ([`result_fields`]) when the request ends (`on_log`, which
//! runs before the connection manager's access logs). Only fields with a
//! value are written; the log shows the others as null.
//!
//! Prompts and answers appear only for tenants with `audit_content`, cut to
//! `observability.audit_max_chars` and with personal data and secrets
//! replaced by their category (`[EMAIL]`, [`crate::guard::redact_for_audit`]).

use super::report::RequestReport;
use crate::config::{Config, DeploymentId, FieldSet};
use crate::providers::TokenUsage;
use std::borrow::Cow;

use crate::guard::redact_for_audit;
use crate::request::parse_chat;
use crate::route::decision_reason;
use crate::route::screen::Screening;

/// Every field, in the order written; each is `wasm.signalbox.<field>` (owned by `crate::contract`).
pub use crate::contract::ACCESS_LOG_FIELDS as FIELDS;

/// The prompt and answer of an audited request, already redacted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditContent {
    pub prompt: Option<String>,
    pub answer: Option<String>,
}

/// Collects `(field, value)` pairs of the fields the config writes,
/// skipping fields without a value (and not computing the others').
struct Fields {
    written: FieldSet,
    pairs: Vec<(&'static str, String)>,
}

impl Fields {
    fn new(config: &Config, capacity: usize) -> Fields {
        Fields {
            written: config.observability.access_log_fields,
            pairs: Vec::with_capacity(capacity),
        }
    }

    fn put(&mut self, field: &'static str, value: impl FnOnce() -> Option<String>) {
        if !self.written.contains(field) {
            return;
        }
        if let Some(value) = value().filter(|value| !value.is_empty()) {
            self.pairs.push((field, value));
        }
    }
}

/// `(field, value)` for each field the request and its routing decision
/// give (request id to reason in [`FIELDS`]).
pub fn request_fields(config: &Config, report: &RequestReport<'_>) -> Vec<(&'static str, String)> {
    let mut fields = Fields::new(config, 13);
    let tenant = report
        .tenant
        .and_then(|tenant| config.governance.as_ref()?.tenants.get(tenant));
    let decision = report.decision;
    let classification = decision.and_then(|decision| decision.classification.as_ref());
    fields.put("request_id", || report.request_id.map(str::to_string));
    fields.put("endpoint", || Some(report.endpoint.to_string()));
    // OpenTelemetry's `gen_ai.operation.name`: every ingress but embeddings is a chat.
    let operation = if report.endpoint == "embeddings" {
        "embeddings"
    } else {
        "chat"
    };
    fields.put("operation", || Some(operation.to_string()));
    fields.put("tenant", || tenant.map(|tenant| tenant.name.clone()));
    fields.put("user", || report.user.map(str::to_string));
    fields.put("key", || report.key_name.map(str::to_string));
    fields.put("model_requested", || report.requested_model.map(str::to_string));
    fields.put("tier", || {
        decision
            .and_then(|decision| decision.tier)
            .map(|tier| config.tiers[tier].name.clone())
    });
    fields.put("score", || classification.map(|c| format!("{:.3}", c.score)));
    fields.put("signals", || classification.map(|c| c.explain()));
    fields.put("reason", || decision.map(|decision| decision_reason(config, decision)));
    fields.put("pii", || report.screening.and_then(Screening::pii_field));
    fields.put("injection", || report.screening.and_then(Screening::injection_field));
    fields.put("cache", || report.cache.map(|cache| cache.name().to_string()));
    fields.pairs
}

/// `(field, value)` for each field the request's end gives (model to
/// answer in [`FIELDS`]).
pub fn result_fields(
    config: &Config,
    report: &RequestReport<'_>,
    content: Option<&AuditContent>,
) -> Vec<(&'static str, String)> {
    let mut fields = Fields::new(config, FIELDS.len() - 13);
    let usage = report.consumption.usage();
    fields
        .pairs
        .extend(answer_fields(config, report.served_deployment(), usage));
    fields.put("route", || {
        (!report.trail.0.is_empty()).then(|| report.route().to_string())
    });
    fields.put("attempts", || {
        (!report.trail.0.is_empty()).then(|| report.trail.describe(config))
    });
    fields.put("outcome", || Some(report.outcome().name().to_string()));
    // The provider never reported (part of) it: prompt estimate plus relayed output.
    fields.put("usage_estimated", || {
        usage.map(|_| report.consumption.estimated().to_string())
    });
    fields.put("cost_usd", || {
        report
            .cost_micros(config)
            .map(|micros| format!("{:.6}", micros as f64 / 1e6))
    });
    fields.put("ttft_ms", || report.first_token_ms.map(|ms| ms.to_string()));
    fields.put("duration_ms", || Some(report.duration_ms.to_string()));
    fields.put("routing_us", || report.routing_us.map(|us| us.to_string()));
    if let Some(content) = content {
        fields.put("prompt", || content.prompt.clone());
        fields.put("answer", || content.answer.clone());
    }
    fields.pairs
}

/// What the answer gives (the deployment that served it, its usage), as
/// soon as it is complete: written then, they reach tracing's custom tags
/// (OpenTelemetry's `gen_ai.response.model`, `gen_ai.provider.name`,
/// `gen_ai.usage.*`), and `on_log` writes again those that changed (usage
/// the request's end knows better).
pub fn answer_fields(
    config: &Config,
    served: Option<DeploymentId>,
    usage: Option<TokenUsage>,
) -> Vec<(&'static str, String)> {
    let mut fields = Fields::new(config, 8);
    let served = served.and_then(|deployment| config.deployments.get(deployment));
    let model = served.map(|deployment| &config.models[deployment.model]);
    let provider = model.map(|model| &config.providers[model.provider]);
    fields.put("model", || model.map(|model| model.name.clone()));
    fields.put("provider", || provider.map(|provider| provider.name.clone()));
    fields.put("provider_name", || {
        provider.map(|provider| provider.spec.kind.semconv_name().to_string())
    });
    fields.put("response_model", || model.map(|model| model.upstream_id.clone()));
    fields.put("deployment", || served.map(|deployment| deployment.name.clone()));
    if let Some(usage) = usage {
        fields.put("input_tokens", || Some(usage.prompt_total().to_string()));
        fields.put("cached_tokens", || Some(usage.cached_input.to_string()));
        fields.put("output_tokens", || Some(usage.output.to_string()));
    }
    fields.pairs
}

/// The last user message of a chat request, redacted and cut.
pub fn audited_prompt(body: &[u8], max_chars: usize) -> Option<String> {
    let request = parse_chat(body).ok()?;
    let text = request.prompt_view().last_user_parts.join("\n");
    Some(truncate_chars(&redact_for_audit(&text), max_chars).into_owned())
}

/// The assistant text of an OpenAI-format answer (a whole body, or the
/// `chat.completion.chunk` events of a stream), redacted and cut.
pub fn audited_answer(body: &[u8], stream: bool, max_chars: usize) -> Option<String> {
    let mut text = String::new();
    if stream {
        let events = body
            .split(|byte| *byte == b'\n')
            .filter_map(|line| line.strip_prefix(b"data:"))
            .filter_map(|data| serde_json::from_slice::<serde_json::Value>(data.trim_ascii()).ok());
        for event in events {
            if let Some(delta) = event.pointer("/choices/0/delta/content").and_then(|v| v.as_str()) {
                text.push_str(delta);
            }
        }
    } else {
        let answer: serde_json::Value = serde_json::from_slice(body).ok()?;
        let choices = answer.get("choices")?.as_array()?;
        for content in choices
            .iter()
            .filter_map(|choice| choice.pointer("/message/content")?.as_str())
        {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(content);
        }
    }
    Some(truncate_chars(&redact_for_audit(&text), max_chars).into_owned())
}

/// At most `max_chars` characters of `text`, marked with `…` when cut.
fn truncate_chars(text: &str, max_chars: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => Cow::Owned(format!("{}…", &text[..end])),
        None => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::TokenUsage;
    use crate::route::attempts::AttemptRecord;
    use crate::route::AttemptTrail;
    use crate::telemetry::Outcome;
    use crate::testing::governed_config;

    /// A request `small` served for tenant research, usage estimated.
    fn served_report(config: &Config) -> RequestReport<'static> {
        let small = config.model_named("small").unwrap();
        let deployment = config.deployments.iter().position(|d| d.model == small).unwrap();
        RequestReport {
            request_id: Some("req-1"),
            tenant: Some(1),
            user: Some("alice"),
            key_name: Some("alice"),
            endpoint: "chat.completions",
            requested_model: Some("auto"),
            trail: AttemptTrail(vec![AttemptRecord {
                deployment,
                status: 200,
                escalated: false,
            }]),
            outcome: Some(Outcome::Ok),
            consumption: crate::govern::ledger::Consumption(vec![crate::govern::ledger::Consumed {
                model: small,
                usage: TokenUsage {
                    input: 10,
                    cached_input: 4,
                    cache_write: 0,
                    output: 6,
                },
                estimated: true,
            }]),
            first_token_ms: Some(12),
            duration_ms: 30,
            routing_us: Some(25),
            ..Default::default()
        }
    }

    #[test]
    fn a_served_request_fills_its_fields_and_skips_unknown_ones() {
        let config = governed_config();
        let report = served_report(&config);
        let mut fields = request_fields(&config, &report);
        fields.extend(result_fields(&config, &report, None));
        let get = |name: &str| fields.iter().find(|(field, _)| *field == name).map(|(_, v)| v.as_str());
        assert_eq!(get("tenant"), Some("research"));
        assert_eq!(get("model"), Some("small"));
        assert_eq!(get("provider"), Some("openai"));
        assert_eq!(get("route"), Some("primary"));
        assert_eq!(get("attempts"), Some("small:200"));
        assert_eq!(get("input_tokens"), Some("14"));
        assert_eq!(get("cached_tokens"), Some("4"));
        assert_eq!(get("usage_estimated"), Some("true"));
        assert_eq!(
            get("cost_usd"),
            Some(format!("{:.6}", report.cost_micros(&config).unwrap() as f64 / 1e6).as_str())
        );
        assert_eq!(get("ttft_ms"), Some("12"));
        // OpenTelemetry GenAI values for the tracing tags.
        assert_eq!(get("operation"), Some("chat"));
        assert_eq!(get("provider_name"), Some("openai"));
        assert_eq!(get("response_model"), Some("gpt-4o-mini"));
        assert_eq!(get("tier"), None);
        assert_eq!(get("prompt"), None);
        for (field, _) in &fields {
            assert!(FIELDS.contains(field), "{field}");
        }
    }

    #[test]
    fn only_the_configured_fields_are_written() {
        let mut config = governed_config();
        config.observability.access_log_fields = FieldSet::of_names(["tenant", "cost_usd", "prompt"]).unwrap();
        let report = served_report(&config);
        let content = AuditContent {
            prompt: Some("hello".into()),
            answer: Some("hi".into()),
        };
        let mut fields = request_fields(&config, &report);
        fields.extend(result_fields(&config, &report, Some(&content)));
        let names: Vec<&str> = fields.iter().map(|(field, _)| *field).collect();
        assert_eq!(names, ["tenant", "cost_usd", "prompt"]);
        assert_eq!(answer_fields(&config, report.served_deployment(), None), []);
    }

    #[test]
    fn audited_content_is_redacted_and_cut() {
        let body = br#"{"model":"auto","messages":[{"role":"system","content":"be nice"},{"role":"user","content":"I am bob@example.com, summarise this long text"}]}"#;
        assert_eq!(audited_prompt(body, 20).as_deref(), Some("I am [EMAIL], summar…"));
        let answer = br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"Call 415-555-0132"}}]}"#;
        assert_eq!(audited_answer(answer, false, 100).as_deref(), Some("Call [PHONE]"));
        let stream = b"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\ndata: [DONE]\n\n";
        assert_eq!(audited_answer(stream, true, 100).as_deref(), Some("Hello"));
        assert_eq!(audited_answer(b"not json", false, 100), None);
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate_chars("héllo wörld", 5), "héllo…");
        assert_eq!(truncate_chars("short", 10), "short");
    }
}
