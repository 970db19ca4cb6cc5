//! What a provider failure means: a [`FailureKind`] for routing (retry
//! elsewhere, back off, give up), how long to wait, and the OpenAI-shaped
//! error the client sees instead of the provider's own.
//!
//! Providers disagree on error shapes, so the body is read loosely: OpenAI,
//! Anthropic and Gemini nest `{"error": {...}}`, Bedrock puts `message` at the
//! top and the error name in `x-amzn-errortype`. The status decides first;
//! the provider's error type or message refines it.

use serde_json::Value;

use super::wire::dates;
use super::{Call, Credential, Failure, TranslatedResponse};
use crate::failure::FailureKind;
use crate::secret::Secret;

/// Longest wait a provider can ask for; anything longer is treated as this.
const MAX_RETRY_AFTER_MS: u64 = 24 * 3600 * 1000;
/// Longest provider message quoted back to a client.
const MAX_MESSAGE_CHARS: usize = 1000;

/// The parts of a provider error body worth reading.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct ErrorInfo {
    pub message: Option<String>,
    /// The provider's error name: OpenAI/Anthropic `type`, Gemini `status`,
    /// Bedrock's exception name.
    pub kind: Option<String>,
    pub code: Option<String>,
    pub param: Option<String>,
    /// Gemini's `RetryInfo.retryDelay`.
    pub retry_delay_ms: Option<u64>,
    /// Gemini's `ErrorInfo.reason` (`API_KEY_INVALID`, …).
    pub reason: Option<String>,
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

pub(crate) fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim())
}

impl ErrorInfo {
    pub(crate) fn parse(body: &[u8], headers: &[(String, String)]) -> ErrorInfo {
        let mut info = match serde_json::from_slice::<Value>(body) {
            Ok(value) => ErrorInfo::from_json(&value),
            Err(_) => ErrorInfo {
                message: non_json_message(body),
                ..ErrorInfo::default()
            },
        };
        if info.kind.is_none() {
            // Bedrock: `x-amzn-errortype: ThrottlingException:http://internal...`
            info.kind = header(headers, "x-amzn-errortype")
                .and_then(|value| value.split(':').next())
                .filter(|name| !name.is_empty())
                .map(str::to_string);
        }
        info
    }

    pub(crate) fn from_json(value: &Value) -> ErrorInfo {
        let error = match value.get("error") {
            Some(Value::String(message)) => {
                return ErrorInfo {
                    message: Some(message.clone()),
                    ..ErrorInfo::default()
                }
            }
            Some(error @ Value::Object(_)) => error,
            _ => value,
        };
        let details = || error.get("details").and_then(Value::as_array).into_iter().flatten();
        let retry_delay_ms = details()
            .filter_map(|detail| detail.get("retryDelay").and_then(Value::as_str))
            .find_map(parse_go_duration_ms);
        let reason = details().find_map(|detail| text(detail.get("reason")));
        ErrorInfo {
            message: text(error.get("message")).or_else(|| text(error.get("Message"))),
            kind: text(error.get("type"))
                .or_else(|| text(error.get("status")))
                .or_else(|| text(error.get("__type")))
                .filter(|kind| kind != "error"),
            code: text(error.get("code")),
            param: text(error.get("param")),
            retry_delay_ms,
            reason,
        }
    }
}

/// A short, printable excerpt of a non-JSON error body (an HTML page from a
/// proxy, a plain-text message).
fn non_json_message(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    (!text.is_empty() && !text.starts_with('<')).then(|| text.chars().take(200).collect())
}

fn contains_any(haystack: &str, needles: &[&str]) -> bool {
    needles.iter().any(|needle| haystack.contains(needle))
}

/// Whether an error says the prompt does not fit the model.
fn is_context_length(hint: &str, message: &str) -> bool {
    contains_any(hint, &["context_length", "context_window"])
        || contains_any(
            message,
            &[
                "context length",
                "context_length_exceeded",
                "context window",
                "maximum context",
                "prompt is too long",
                "input is too long",
                "too many tokens",
                "too many input tokens",
                "input token count",
                "exceeds the maximum number of tokens",
                "reduce the length",
            ],
        )
}

/// Error names (OpenAI/Anthropic `type` or `code`, Gemini `status` or
/// `ErrorInfo.reason`, Bedrock's exception) by which providers say the
/// gateway's own credentials were refused.
const AUTH_ERROR_NAMES: &[&str] = &[
    "invalid_api_key",
    "authentication_error",
    "permission_error",
    "unauthenticated",
    "permission_denied",
    "api_key_invalid",
    "accessdeniedexception",
    "unrecognizedclientexception",
    "invalidsignatureexception",
    "expiredtokenexception",
];

/// Whether the provider says, by status or by its structured error name,
/// that the gateway's credentials were refused. Never by free text: a
/// request whose content makes the provider echo "invalid api key" in a 400
/// is the client's error, not a broken key.
fn is_auth_failure(status: Option<u16>, info: &ErrorInfo) -> bool {
    let named = |name: Option<&String>| {
        name.is_some_and(|name| AUTH_ERROR_NAMES.iter().any(|known| name.eq_ignore_ascii_case(known)))
    };
    matches!(status, Some(401 | 403))
        || named(info.kind.as_ref())
        || named(info.code.as_ref())
        || named(info.reason.as_ref())
}

/// The failure kind from the HTTP status (when there is one; stream errors
/// have none) and the provider's error name and message.
pub(crate) fn kind_of(status: Option<u16>, info: &ErrorInfo) -> FailureKind {
    if is_auth_failure(status, info) {
        return FailureKind::Auth;
    }
    match status {
        Some(429) => return FailureKind::RateLimited,
        Some(529) => return FailureKind::Overloaded,
        Some(408 | 504) => return FailureKind::Timeout,
        _ => {}
    }
    let hint = format!(
        "{} {}",
        info.kind.as_deref().unwrap_or_default(),
        info.code.as_deref().unwrap_or_default()
    )
    .to_ascii_lowercase();
    let message = info.message.as_deref().unwrap_or_default().to_ascii_lowercase();
    if contains_any(
        &hint,
        &["rate_limit", "throttl", "resource_exhausted", "too_many_requests"],
    ) {
        return FailureKind::RateLimited;
    }
    if hint.contains("overloaded") {
        return FailureKind::Overloaded;
    }
    if contains_any(&hint, &["timeout", "deadline_exceeded"]) {
        return FailureKind::Timeout;
    }
    if contains_any(&hint, &["unavailable"]) || status == Some(503) {
        return FailureKind::Overloaded;
    }
    if is_context_length(&hint, &message) {
        return FailureKind::ContextLength;
    }
    match status {
        // An error with a success status is still the provider's fault.
        Some(status) => FailureKind::from_status(status).unwrap_or(FailureKind::Server),
        None if contains_any(&hint, &["invalid_request", "validation", "invalid_argument"]) => FailureKind::Client,
        None => FailureKind::Server,
    }
}

/// Milliseconds in a Go-style duration (`1s`, `6m0s`, `20ms`, `1h2m3.5s`) or
/// a protobuf JSON duration (`30s`, `1.5s`).
pub(crate) fn parse_go_duration_ms(text: &str) -> Option<u64> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total_ms = 0f64;
    while !rest.is_empty() {
        let number_len = rest.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
        let (number, after) = rest.split_at(number_len);
        let value: f64 = number.parse().ok()?;
        let unit_len = after
            .bytes()
            .take_while(|b| !(b.is_ascii_digit() || *b == b'.'))
            .count();
        let (unit, after) = after.split_at(unit_len);
        let scale = match unit {
            "h" => 3_600_000.0,
            "m" => 60_000.0,
            "s" => 1000.0,
            "ms" => 1.0,
            "us" | "µs" => 0.001,
            "ns" => 0.000_001,
            _ => return None,
        };
        total_ms += value * scale;
        rest = after;
    }
    Some(total_ms.ceil().min(MAX_RETRY_AFTER_MS as f64) as u64)
}

fn seconds_to_ms(text: &str) -> Option<u64> {
    let seconds: f64 = text.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| (seconds * 1000.0).ceil().min(MAX_RETRY_AFTER_MS as f64) as u64)
}

/// How long the provider asks to wait, from (in order of trust)
/// `retry-after-ms`, `retry-after`, the rate-limit reset headers, and
/// Gemini's `RetryInfo`.
pub(crate) fn retry_after_ms(headers: &[(String, String)], info: &ErrorInfo, now_unix_seconds: u64) -> Option<u64> {
    let now_ms = i64::try_from(now_unix_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
    let explicit_ms = header(headers, "retry-after-ms").and_then(|value| value.parse::<f64>().ok());
    if let Some(ms) = explicit_ms.filter(|ms| ms.is_finite() && *ms >= 0.0) {
        return Some((ms.ceil() as u64).min(MAX_RETRY_AFTER_MS));
    }
    if let Some(value) = header(headers, "retry-after") {
        if let Some(ms) = seconds_to_ms(value) {
            return Some(ms);
        }
        if let Some(at) = dates::parse_http_date(value) {
            return Some(until(at, now_ms));
        }
    }
    // (remaining, wait) for each limit the provider reports.
    let mut limits: Vec<(Option<&str>, u64)> = Vec::new();
    for limit in ["requests", "tokens"] {
        if let Some(ms) = header(headers, &format!("x-ratelimit-reset-{limit}")).and_then(parse_go_duration_ms) {
            limits.push((header(headers, &format!("x-ratelimit-remaining-{limit}")), ms));
        }
    }
    for limit in ["requests", "tokens", "input-tokens", "output-tokens"] {
        let reset = header(headers, &format!("anthropic-ratelimit-{limit}-reset")).and_then(dates::parse_rfc3339);
        if let Some(at) = reset {
            limits.push((
                header(headers, &format!("anthropic-ratelimit-{limit}-remaining")),
                until(at, now_ms),
            ));
        }
    }
    // The exhausted limits decide; without that hint, the longest wait.
    let exhausted = limits
        .iter()
        .filter(|(remaining, _)| *remaining == Some("0"))
        .map(|(_, ms)| *ms)
        .max();
    exhausted
        .or_else(|| limits.iter().map(|(_, ms)| *ms).max())
        .or(info.retry_delay_ms)
}

fn until(at_ms: i64, now_ms: i64) -> u64 {
    u64::try_from(at_ms.saturating_sub(now_ms))
        .unwrap_or(0)
        .min(MAX_RETRY_AFTER_MS)
}

pub(crate) fn classify(call: &Call<'_>, status: u16, headers: &[(String, String)], body: &[u8]) -> Option<Failure> {
    if (200..300).contains(&status) {
        return None;
    }
    let info = ErrorInfo::parse(body, headers);
    Some(Failure {
        kind: kind_of(Some(status), &info),
        retry_after_ms: retry_after_ms(headers, &info, call.now_unix_seconds),
    })
}

/// The OpenAI error a client sees for a provider failure.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClientError {
    pub status: u16,
    pub kind: &'static str,
    pub code: Option<String>,
    pub param: Option<String>,
    pub message: String,
}

impl ClientError {
    pub(crate) fn for_failure(
        context: &ErrorContext,
        kind: FailureKind,
        status: Option<u16>,
        info: &ErrorInfo,
    ) -> ClientError {
        let said = info
            .message
            .as_deref()
            .map(|message| context.scrub(message))
            .unwrap_or_else(|| match status {
                Some(status) => format!("The provider answered HTTP {status}."),
                None => "The provider reported an error.".to_string(),
            });
        let server = |status: u16, code: &str, message: String| ClientError {
            status,
            kind: "server_error",
            code: Some(code.to_string()),
            param: None,
            message,
        };
        match kind {
            FailureKind::Auth => server(
                502,
                "provider_auth_failed",
                "The provider rejected the gateway's credentials for this model; the gateway's provider configuration needs attention.".to_string(),
            ),
            FailureKind::RateLimited => ClientError {
                status: 429,
                kind: "rate_limit_error",
                code: Some("rate_limit_exceeded".to_string()),
                param: None,
                message: format!("The provider is rate limiting requests: {said}"),
            },
            FailureKind::Overloaded => server(503, "provider_overloaded", format!("The provider is overloaded: {said}")),
            FailureKind::Timeout => server(504, "provider_timeout", format!("The provider timed out: {said}")),
            FailureKind::Server if status == Some(404) => server(
                502,
                "provider_model_not_found",
                format!("The provider does not serve model `{}`: {said}", context.model_id),
            ),
            // Providers never report it (Envoy sees a connection fail); an
            // error written for it reads as any other provider fault.
            FailureKind::Server | FailureKind::Unreachable => {
                server(502, "provider_error", format!("The provider failed: {said}"))
            }
            FailureKind::ContextLength => ClientError {
                status: 400,
                kind: "invalid_request_error",
                code: Some("context_length_exceeded".to_string()),
                param: Some("messages".to_string()),
                message: said,
            },
            FailureKind::Client => ClientError {
                status: status.filter(|status| (400..500).contains(status)).unwrap_or(400),
                kind: "invalid_request_error",
                code: info.code.clone(),
                param: info.param.clone(),
                message: said,
            },
        }
    }

    pub(crate) fn to_json(&self) -> Vec<u8> {
        crate::error::error_body(&self.message, self.kind, self.param.as_deref(), self.code.as_deref())
    }
}

/// What an error message needs from the call: the model named in it and
/// the secrets that must never appear in it. Owned, so stream translators
/// can keep it.
#[derive(Debug, Clone)]
pub(crate) struct ErrorContext {
    model_id: String,
    secrets: Vec<Secret>,
}

impl ErrorContext {
    pub(crate) fn of(call: &Call<'_>) -> ErrorContext {
        let secrets = match call.credential {
            Some(Credential::Bearer(secret)) | Some(Credential::Header { value: secret, .. }) => vec![secret.clone()],
            Some(Credential::AwsSigV4 {
                secret_access_key,
                session_token,
                ..
            }) => std::iter::once(secret_access_key)
                .chain(session_token)
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        ErrorContext {
            model_id: call.model_id.to_string(),
            secrets,
        }
    }

    /// A provider message made safe to show: no credential of ours in it,
    /// and not longer than a screenful.
    fn scrub(&self, message: &str) -> String {
        // Secrets go before the cut: a key across the cut would otherwise
        // survive as a prefix no longer equal to the key.
        let mut message = message.to_string();
        for secret in self
            .secrets
            .iter()
            .map(Secret::expose)
            .filter(|secret| secret.len() >= 4)
        {
            message = message.replace(secret, "[redacted]");
        }
        message.chars().take(MAX_MESSAGE_CHARS).collect()
    }
}

/// The client's view of a non-2xx provider answer.
pub(crate) fn translate_error(
    call: &Call<'_>,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> TranslatedResponse {
    let info = ErrorInfo::parse(body, headers);
    let kind = kind_of(Some(status), &info);
    let error = ClientError::for_failure(&ErrorContext::of(call), kind, Some(status), &info);
    TranslatedResponse {
        status: error.status,
        body: error.to_json(),
        usage: None,
        failure: Some(Failure {
            kind,
            retry_after_ms: retry_after_ms(headers, &info, call.now_unix_seconds),
        }),
    }
}

/// A 2xx answer the gateway could not read: the provider broke its contract.
pub(crate) fn unreadable(call: &Call<'_>, what: &str) -> TranslatedResponse {
    let info = ErrorInfo {
        message: Some(format!("its answer could not be read ({what})")),
        ..ErrorInfo::default()
    };
    let error = ClientError::for_failure(&ErrorContext::of(call), FailureKind::Server, None, &info);
    TranslatedResponse {
        status: error.status,
        body: error.to_json(),
        usage: None,
        failure: Some(Failure {
            kind: FailureKind::Server,
            retry_after_ms: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testkit::{bearer, call_for, spec};
    use crate::providers::ProviderKind;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn kind(status: u16, body: &str) -> FailureKind {
        let spec = spec(ProviderKind::Openai);
        classify(&call_for(&spec), status, &[], body.as_bytes()).unwrap().kind
    }

    #[test]
    fn success_is_no_failure() {
        let spec = spec(ProviderKind::Openai);
        assert_eq!(classify(&call_for(&spec), 200, &[], b"{}"), None);
    }

    #[test]
    fn statuses_decide_first() {
        assert_eq!(kind(429, "{}"), FailureKind::RateLimited);
        assert_eq!(kind(401, "{}"), FailureKind::Auth);
        assert_eq!(kind(403, "{}"), FailureKind::Auth);
        assert_eq!(kind(408, ""), FailureKind::Timeout);
        assert_eq!(kind(504, "<html>gateway timeout</html>"), FailureKind::Timeout);
        assert_eq!(kind(529, "{}"), FailureKind::Overloaded);
        assert_eq!(kind(500, "{}"), FailureKind::Server);
        assert_eq!(kind(502, "not json"), FailureKind::Server);
        assert_eq!(kind(404, "{}"), FailureKind::Server);
        assert_eq!(kind(422, "{}"), FailureKind::Client);
        assert_eq!(
            kind(
                400,
                r#"{"error":{"message":"bad temperature","type":"invalid_request_error"}}"#
            ),
            FailureKind::Client
        );
    }

    #[test]
    fn overload_is_told_apart_from_other_server_errors() {
        assert_eq!(kind(503, "{}"), FailureKind::Overloaded);
        let anthropic = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(kind(500, anthropic), FailureKind::Overloaded);
        let gemini = r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#;
        assert_eq!(kind(503, gemini), FailureKind::Overloaded);
    }

    #[test]
    fn every_providers_context_overflow_is_context_length() {
        let bodies = [
            r#"{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 205351 tokens > 200000 maximum"}}"#,
            r#"{"error":{"code":400,"message":"The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}"#,
            r#"{"message":"Input is too long for requested model."}"#,
        ];
        for body in bodies {
            assert_eq!(kind(400, body), FailureKind::ContextLength, "{body}");
        }
    }

    #[test]
    fn a_rejected_gemini_key_is_an_auth_failure_despite_its_400() {
        let body = r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}"#;
        assert_eq!(kind(400, body), FailureKind::Auth);
    }

    #[test]
    fn a_message_that_merely_mentions_a_key_is_the_clients_error() {
        for body in [
            r#"{"error":{"message":"invalid api key format in your prompt","type":"invalid_request_error"}}"#,
            r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT"}}"#,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"authentication failed for tool"}}"#,
        ] {
            assert_eq!(kind(400, body), FailureKind::Client, "{body}");
        }
        let anthropic = r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#;
        assert_eq!(kind(401, anthropic), FailureKind::Auth);
        let bedrock = headers(&[("x-amzn-errortype", "UnrecognizedClientException")]);
        let spec = spec(ProviderKind::Bedrock);
        assert_eq!(
            classify(&call_for(&spec), 400, &bedrock, b"{}").unwrap().kind,
            FailureKind::Auth
        );
    }

    #[test]
    fn bedrock_errors_are_named_by_header() {
        let spec = spec(ProviderKind::Bedrock);
        let call = call_for(&spec);
        let throttled = headers(&[(
            "x-amzn-errortype",
            "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
        )]);
        let failure = classify(&call, 400, &throttled, br#"{"message":"Too many requests"}"#).unwrap();
        assert_eq!(failure.kind, FailureKind::RateLimited);
        let timeout = headers(&[("x-amzn-errortype", "ModelTimeoutException")]);
        assert_eq!(
            classify(&call, 424, &timeout, b"{}").unwrap().kind,
            FailureKind::Timeout
        );
    }

    #[test]
    fn retry_after_comes_from_the_most_trusted_header() {
        let info = ErrorInfo::default();
        let wait = |pairs: &[(&str, &str)]| retry_after_ms(&headers(pairs), &info, 1_440_938_160);
        assert_eq!(wait(&[("retry-after", "7")]), Some(7000));
        assert_eq!(wait(&[("Retry-After", "1.5")]), Some(1500));
        assert_eq!(wait(&[("retry-after-ms", "250"), ("retry-after", "7")]), Some(250));
        assert_eq!(wait(&[("retry-after", "Sun, 30 Aug 2015 12:36:30 GMT")]), Some(30_000));
        assert_eq!(wait(&[("retry-after", "Sun, 30 Aug 2015 12:00:00 GMT")]), Some(0));
        assert_eq!(wait(&[("retry-after", "soon")]), None);
        assert_eq!(wait(&[]), None);
    }

    #[test]
    fn openai_reset_headers_prefer_the_exhausted_limit() {
        let info = ErrorInfo::default();
        let pairs = headers(&[
            ("x-ratelimit-reset-requests", "6m0s"),
            ("x-ratelimit-remaining-requests", "12"),
            ("x-ratelimit-reset-tokens", "20ms"),
            ("x-ratelimit-remaining-tokens", "0"),
        ]);
        assert_eq!(retry_after_ms(&pairs, &info, 0), Some(20));
        let pairs = headers(&[
            ("x-ratelimit-reset-requests", "1s"),
            ("x-ratelimit-reset-tokens", "1m2.5s"),
        ]);
        assert_eq!(retry_after_ms(&pairs, &info, 0), Some(62_500));
    }

    #[test]
    fn anthropic_resets_are_timestamps_relative_to_now() {
        let pairs = headers(&[
            ("anthropic-ratelimit-requests-reset", "2015-08-30T12:36:20Z"),
            ("anthropic-ratelimit-requests-remaining", "0"),
            ("anthropic-ratelimit-tokens-reset", "2015-08-30T12:37:00Z"),
            ("anthropic-ratelimit-tokens-remaining", "5000"),
        ]);
        assert_eq!(
            retry_after_ms(&pairs, &ErrorInfo::default(), 1_440_938_160),
            Some(20_000)
        );
    }

    #[test]
    fn gemini_retry_info_is_read_from_the_body() {
        let body = br#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"31s"}]}}"#;
        let spec = spec(ProviderKind::Gemini);
        let failure = classify(&call_for(&spec), 429, &[], body).unwrap();
        assert_eq!(
            failure,
            Failure {
                kind: FailureKind::RateLimited,
                retry_after_ms: Some(31_000)
            }
        );
    }

    #[test]
    fn go_durations_parse_and_nonsense_does_not() {
        assert_eq!(parse_go_duration_ms("1h2m3s"), Some(3_723_000));
        assert_eq!(parse_go_duration_ms("0.5s"), Some(500));
        assert_eq!(parse_go_duration_ms("1500us"), Some(2));
        for bad in ["", "s", "1", "1x", "..s", "1.2.3s"] {
            assert_eq!(parse_go_duration_ms(bad), None, "{bad}");
        }
        assert_eq!(parse_go_duration_ms("99999999h"), Some(MAX_RETRY_AFTER_MS));
    }

    #[test]
    fn an_auth_failure_never_echoes_the_providers_message() {
        let spec = spec(ProviderKind::Openai);
        let credential = bearer("sk-live-abcdef123456");
        let mut call = call_for(&spec);
        call.credential = Some(&credential);
        let body = br#"{"error":{"message":"Incorrect API key provided: sk-live-abcdef123456.","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        let translated = translate_error(&call, 401, &[], body);
        assert_eq!(translated.status, 502);
        let text = String::from_utf8(translated.body).unwrap();
        assert!(!text.contains("sk-live"), "{text}");
        assert_eq!(translated.failure.unwrap().kind, FailureKind::Auth);
    }

    #[test]
    fn a_secret_across_the_length_cut_leaves_no_prefix() {
        let spec = spec(ProviderKind::Openai);
        let key = bearer("sk-provider-secret-0123456789");
        let mut call = call_for(&spec);
        call.credential = Some(&key);
        let context = ErrorContext::of(&call);
        let message = format!("{}sk-provider-secret-0123456789", "x".repeat(MAX_MESSAGE_CHARS - 12));
        let scrubbed = context.scrub(&message);
        assert!(!scrubbed.contains("sk-provider"), "{scrubbed}");
    }

    #[test]
    fn our_secret_is_scrubbed_from_any_quoted_message() {
        let spec = spec(ProviderKind::Openai);
        let credential = bearer("sk-live-abcdef123456");
        let mut call = call_for(&spec);
        call.credential = Some(&credential);
        let body = br#"{"error":{"message":"key sk-live-abcdef123456 lacks access to this param","type":"invalid_request_error"}}"#;
        let text = String::from_utf8(translate_error(&call, 400, &[], body).body).unwrap();
        assert!(text.contains("[redacted]") && !text.contains("sk-live"), "{text}");
    }

    #[test]
    fn client_statuses_keep_their_meaning() {
        let spec = spec(ProviderKind::Anthropic);
        let call = call_for(&spec);
        let cases: &[(u16, &str, u16, &str)] = &[
            (
                429,
                r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
                429,
                "rate_limit_exceeded",
            ),
            (
                529,
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                503,
                "provider_overloaded",
            ),
            (
                500,
                r#"{"type":"error","error":{"type":"api_error","message":"boom"}}"#,
                502,
                "provider_error",
            ),
            (504, "", 504, "provider_timeout"),
            (
                413,
                r#"{"type":"error","error":{"type":"request_too_large","message":"too big"}}"#,
                413,
                "null",
            ),
            (
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 9 tokens > 5 maximum"}}"#,
                400,
                "context_length_exceeded",
            ),
        ];
        for (status, body, client_status, code) in cases {
            let translated = translate_error(&call, *status, &[], body.as_bytes());
            assert_eq!(translated.status, *client_status, "{body}");
            let value: Value = serde_json::from_slice(&translated.body).unwrap();
            assert_eq!(value["error"]["code"].to_string().trim_matches('"'), *code, "{value}");
            assert!(value["error"]["message"].is_string());
        }
    }

    #[test]
    fn garbage_error_bodies_never_panic() {
        let spec = spec(ProviderKind::Bedrock);
        let call = call_for(&spec);
        for body in [
            &b"\xff\xfe"[..],
            b"[]",
            b"{\"error\":5}",
            b"{\"error\":{\"details\":7}}",
            b"null",
            b"{\"message\":[1]}",
        ] {
            for status in [0, 100, 302, 400, 418, 599, 700] {
                let _ = translate_error(&call, status, &[], body);
            }
        }
    }
}
