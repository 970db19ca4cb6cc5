//! The names the two Signalbox filters share with each other, with Envoy's
//! configuration and with clients: filter-state keys and `x-signalbox-*`
//! headers. The router (the HTTP filter, `filter::http`) and the upstream
//! filter (one per attempt, in the router's `upstream_http_filters`,
//! `filter::upstream`) meet through filter state and, for what Envoy need
//! not see (the attempts' trail, time to first content, usage), through a
//! record in their shared VM (`filter::shared`); the Envoy YAML reads
//! some of it too (the route's cluster matcher reads [`NEXT_CLUSTER_STATE`],
//! access logs and tracing tags read [`ACCESS_LOG_FIELDS`]). Envoy stores a
//! Wasm filter's state under `wasm.<key>`, so `signalbox.next` is
//! `wasm.signalbox.next` in the YAML. Every value here is part of that
//! contract: renaming one breaks shipped configurations. A test checks that
//! every `wasm.signalbox.*` name in the shipped YAML is named here.
//!
//! A leaf module: it imports nothing, so any layer may use it.

/// What Envoy puts before a Wasm filter's state key (`wasm.signalbox.next`).
pub const ENVOY_STATE_PREFIX: &str = "wasm.";
/// What every Signalbox filter-state key starts with.
pub const STATE_PREFIX: &str = "signalbox.";

// Filter state between the two filters and Envoy's route.

/// Written by the router (first attempt) and the upstream filter (retries,
/// escalations); read by the route's cluster matcher in the Envoy YAML.
pub const NEXT_CLUSTER_STATE: &str = "signalbox.next";
/// Written by the router once routed (the attempt plan); read by the upstream filter per attempt.
pub const PLAN_STATE: &str = "signalbox.plan";
/// Written by the upstream filter when a cascade skips links; read by the next attempt's upstream filter.
pub const LINK_SHIFT_STATE: &str = "signalbox.link_shift";
/// Written by the router when the client left early; read by an attempt's upstream filter ending after that.
pub const CLIENT_GONE_STATE: &str = "signalbox.client_gone";
/// Written by the upstream filter (chain positions whose half-open trial began); read by the router.
pub const TRIALS_BEGUN_STATE: &str = "signalbox.trials_begun";
/// Written by the upstream filter (weaknesses a cascade escalated); read by the router for [`HEADER_CASCADE`].
pub const CASCADE_STATE: &str = "signalbox.cascade";

/// Declares the access-log fields and their filter-state keys side by
/// side: the keys are written per request, so they are spelled out at
/// compile time rather than formatted each time.
macro_rules! access_log_fields {
    ($($field:literal,)*) => {
        /// Access-log fields, each the filter state `signalbox.<field>` ([`field_state`]),
        /// in the order written. Written by the router (`telemetry::access_log`);
        /// read by Envoy's access logs and tracing tags
        /// (`%FILTER_STATE(wasm.signalbox.<field>:PLAIN)%`).
        pub const ACCESS_LOG_FIELDS: &[&str] = &[$($field,)*];
        /// `ACCESS_LOG_FIELDS[i]`'s filter-state key (`STATE_PREFIX` + field).
        const ACCESS_LOG_STATE_KEYS: &[&str] = &[$(concat!("signalbox.", $field),)*];
    };
}

access_log_fields! {
    "request_id",
    "endpoint",
    "operation",
    "tenant",
    "user",
    "key",
    "model_requested",
    "tier",
    "score",
    "signals",
    "reason",
    "pii",
    "injection",
    "cache",
    "model",
    "provider",
    "provider_name",
    "response_model",
    "deployment",
    "route",
    "attempts",
    "outcome",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "cost_usd",
    "usage_estimated",
    "ttft_ms",
    "duration_ms",
    "routing_us",
    "prompt",
    "answer",
}

/// The filter-state key of access-log field `field` (`signalbox.tier`);
/// `None` for a name that is not a field.
pub fn field_state(field: &str) -> Option<&'static str> {
    let index = ACCESS_LOG_FIELDS.iter().position(|known| *known == field)?;
    ACCESS_LOG_STATE_KEYS.get(index).copied()
}

/// Every filter-state key Signalbox writes, without Envoy's `wasm.` prefix.
pub fn state_keys() -> Vec<String> {
    let shared = [
        NEXT_CLUSTER_STATE,
        PLAN_STATE,
        LINK_SHIFT_STATE,
        CLIENT_GONE_STATE,
        TRIALS_BEGUN_STATE,
        CASCADE_STATE,
    ];
    shared
        .iter()
        .map(|key| key.to_string())
        .chain(ACCESS_LOG_STATE_KEYS.iter().map(|key| key.to_string()))
        .collect()
}

// Response headers, written by the router for the client (the upstream
// filter only writes provider-bound request headers).

/// Written by the router (served model); read by clients.
pub const HEADER_MODEL: &str = "x-signalbox-model";
/// Written by the router (served provider); read by clients.
pub const HEADER_PROVIDER: &str = "x-signalbox-provider";
/// Written by the router (the tier routed to); read by clients.
pub const HEADER_TIER: &str = "x-signalbox-tier";
/// Written by the router with explanations (the classifier's score); read by clients.
pub const HEADER_SCORE: &str = "x-signalbox-score";
/// Written by the router with explanations (the signals behind the score); read by clients.
pub const HEADER_SIGNALS: &str = "x-signalbox-signals";
/// Written by the router with explanations (why this route); read by clients.
pub const HEADER_REASON: &str = "x-signalbox-reason";
/// Written by the router with explanations: what named the conversation the deployment was kept for.
pub const HEADER_AFFINITY: &str = "x-signalbox-affinity";
/// Written by the router with explanations and tier pinning: `new`, `kept` or `raised`.
pub const HEADER_PIN: &str = "x-signalbox-pin";
/// Sent by clients to ask for explanations; read by the router.
pub const HEADER_EXPLAIN: &str = "x-signalbox-explain";
/// Written by the router (`primary`, `fallback-<n>` or `cascade`); read by clients.
pub const HEADER_ROUTE: &str = "x-signalbox-route";
/// Written by the router with explanations or after a cascade (the attempts made); read by clients.
pub const HEADER_ATTEMPTS: &str = "x-signalbox-attempts";
/// Written by the router after a cascade (the weaknesses that escalated the cheaper answer); read by clients.
pub const HEADER_CASCADE: &str = "x-signalbox-cascade";
/// Written by the router (`hit`, `miss`, `stale` or `bypass`); read by clients.
pub const HEADER_CACHE: &str = "x-signalbox-cache";
/// Written by the router on a semantic hit (cosine similarity); read by clients.
pub const HEADER_CACHE_SIMILARITY: &str = "x-signalbox-cache-similarity";
/// Written by the router (what the guardrails did, `mask; card=1 email=2`); read by clients.
pub const HEADER_PII: &str = "x-signalbox-pii";
/// Written by the router for a flagged request (injection score); read by clients.
pub const HEADER_INJECTION: &str = "x-signalbox-injection";
/// Written by the router (the request's cost); read by clients.
pub const HEADER_COST: &str = "x-signalbox-cost-usd";
/// Written by the router (input tokens); read by clients.
pub const HEADER_INPUT_TOKENS: &str = "x-signalbox-input-tokens";
/// Written by the router (cached input tokens); read by clients.
pub const HEADER_CACHED_TOKENS: &str = "x-signalbox-cached-tokens";
/// Written by the router (output tokens); read by clients.
pub const HEADER_OUTPUT_TOKENS: &str = "x-signalbox-output-tokens";

/// Written by Envoy on every attempt (`include_request_attempt_count` in the YAML); read by the upstream filter.
pub const ATTEMPT_COUNT_HEADER: &str = "x-envoy-attempt-count";

// Request headers from clients.

/// Sent by clients to force a tier; read by the router only with `trust_client_headers`.
pub const HEADER_FORCE_TIER: &str = "x-signalbox-tier";
/// Sent by clients to force a model; read by the router only with `trust_client_headers`.
pub const HEADER_FORCE_MODEL: &str = "x-signalbox-model";
/// Every client-sent header with this prefix is dropped by the router before routing.
pub const CLIENT_HEADER_PREFIX: &str = "x-signalbox-";

#[cfg(test)]
mod tests;
