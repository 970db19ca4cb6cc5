//! Errors a client can receive from Signalbox itself, each mapped to an HTTP
//! status and an OpenAI-style body: `{"error":{"message","type","param","code"}}`.
//!
//! Messages are written for the API user and never contain secrets or request
//! bodies; the serde messages they may quote only name a type and a position.

use std::borrow::Cow;
use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq)]
pub enum GatewayError {
    /// The body is not the JSON shape the endpoint expects.
    InvalidRequest {
        message: String,
        /// The offending field (`temperature`, `messages[2].role`).
        param: Option<Cow<'static, str>>,
    },
    /// The body is larger than the configured `max_body_bytes`.
    BodyTooLarge { limit: usize },
    /// The method is not allowed on a path Signalbox owns.
    MethodNotAllowed { allowed: &'static str },
    /// `model` names neither a configured model nor an auto alias.
    UnknownModel { model: String },
    /// No configured model can take the request (context window, capabilities).
    NoUsableModel { message: String },
    /// Signalbox itself could not handle the request (host failure).
    Internal { message: String },
    /// No, an unknown, a disabled or a malformed virtual key.
    Unauthorized { reason: &'static str },
    /// The tenant's policy does not allow what was asked.
    Forbidden { message: String },
    /// The guardrails refuse the prompt: it carries data that may not
    /// leave (`sensitive_data`) or an injection attempt (`prompt_injection`).
    /// The message names categories or rules, never the text.
    ContentRefused { code: &'static str, message: String },
    /// Over a tenant's or user's per-minute limit.
    RateLimited {
        message: String,
        retry_after_secs: Option<u64>,
        headers: Vec<(&'static str, String)>,
    },
    /// A quota or budget is used up for its period.
    QuotaExceeded { message: String, retry_after_secs: u64 },
    /// The fleet ledger cannot answer and the tenant's budgets (or limits)
    /// fail closed: nothing is spent without the ledger.
    LedgerUnavailable,
    /// Feedback names a request id this gateway does not remember for the
    /// caller's key (unknown, pushed out by newer answers, another tenant's).
    RequestNotFound,
    /// Feedback for an answer that was rated already.
    AlreadyRated,
    /// Every deployment tried failed (rate limits, errors, timeouts).
    ProvidersUnavailable {
        /// `model:status` per attempt, `none` where no response came; empty
        /// when no attempt reached a provider.
        attempts: String,
        /// All failures were rate limits (the client should slow down).
        rate_limited: bool,
        retry_after_secs: Option<u64>,
    },
}

impl GatewayError {
    pub fn invalid(message: impl Into<String>) -> Self {
        GatewayError::InvalidRequest {
            message: message.into(),
            param: None,
        }
    }

    pub fn invalid_param(param: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        GatewayError::InvalidRequest {
            message: message.into(),
            param: Some(param.into()),
        }
    }

    pub fn status(&self) -> u32 {
        match self {
            GatewayError::InvalidRequest { .. }
            | GatewayError::NoUsableModel { .. }
            | GatewayError::ContentRefused { .. } => 400,
            GatewayError::UnknownModel { .. } => 404,
            GatewayError::Unauthorized { .. } => 401,
            GatewayError::Forbidden { .. } => 403,
            GatewayError::RateLimited { .. } | GatewayError::QuotaExceeded { .. } => 429,
            GatewayError::MethodNotAllowed { .. } => 405,
            GatewayError::RequestNotFound => 404,
            GatewayError::AlreadyRated => 409,
            GatewayError::BodyTooLarge { .. } => 413,
            GatewayError::Internal { .. } => 500,
            GatewayError::LedgerUnavailable => 503,
            GatewayError::ProvidersUnavailable { rate_limited: true, .. } => 429,
            GatewayError::ProvidersUnavailable { .. } => 503,
        }
    }

    /// OpenAI's `error.type`.
    pub fn error_type(&self) -> &'static str {
        match self {
            GatewayError::Internal { .. }
            | GatewayError::LedgerUnavailable
            | GatewayError::ProvidersUnavailable {
                rate_limited: false, ..
            } => "server_error",
            GatewayError::ProvidersUnavailable { rate_limited: true, .. } | GatewayError::RateLimited { .. } => {
                "rate_limit_error"
            }
            GatewayError::QuotaExceeded { .. } => "insufficient_quota",
            GatewayError::Unauthorized { .. } => "invalid_request_error",
            GatewayError::Forbidden { .. } => "permission_error",
            _ => "invalid_request_error",
        }
    }

    /// OpenAI's `error.code`, stable for clients to branch on.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::InvalidRequest { .. } => "invalid_request",
            GatewayError::BodyTooLarge { .. } => "request_too_large",
            GatewayError::MethodNotAllowed { .. } => "method_not_allowed",
            GatewayError::UnknownModel { .. } => "model_not_found",
            GatewayError::NoUsableModel { .. } => "context_length_exceeded",
            GatewayError::Internal { .. } => "internal_error",
            GatewayError::LedgerUnavailable => "ledger_unavailable",
            GatewayError::RequestNotFound => "request_not_found",
            GatewayError::AlreadyRated => "already_rated",
            GatewayError::ProvidersUnavailable { rate_limited: true, .. } | GatewayError::RateLimited { .. } => {
                "rate_limit_exceeded"
            }
            GatewayError::QuotaExceeded { .. } => "insufficient_quota",
            GatewayError::Unauthorized { .. } => "invalid_api_key",
            GatewayError::Forbidden { .. } => "model_not_allowed",
            GatewayError::ProvidersUnavailable { .. } => "providers_unavailable",
            GatewayError::ContentRefused { code, .. } => code,
        }
    }

    fn param(&self) -> Option<&str> {
        match self {
            GatewayError::InvalidRequest { param, .. } => param.as_deref(),
            GatewayError::UnknownModel { .. } => Some("model"),
            GatewayError::NoUsableModel { .. } => Some("messages"),
            _ => None,
        }
    }

    /// Extra response headers that belong with this error.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            GatewayError::MethodNotAllowed { allowed } => vec![("allow", allowed.to_string())],
            GatewayError::ProvidersUnavailable {
                retry_after_secs: Some(seconds),
                ..
            }
            | GatewayError::QuotaExceeded {
                retry_after_secs: seconds,
                ..
            } => vec![("retry-after", seconds.to_string())],
            GatewayError::RateLimited {
                retry_after_secs,
                headers,
                ..
            } => {
                let mut all = headers.clone();
                all.extend(retry_after_secs.map(|seconds| ("retry-after", seconds.to_string())));
                all
            }
            GatewayError::Unauthorized { .. } => vec![("www-authenticate", "Bearer".to_string())],
            GatewayError::LedgerUnavailable => vec![("retry-after", "1".to_string())],
            _ => Vec::new(),
        }
    }

    /// The OpenAI-style JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        error_body(&self.to_string(), self.error_type(), self.param(), Some(self.code()))
    }
}

/// `{"error":{"message","type","param","code"}}`: the one writer of an
/// OpenAI-style error body, for the gateway's own errors and providers' alike.
pub fn error_body(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a> {
        error: Inner<'a>,
    }
    #[derive(Serialize)]
    struct Inner<'a> {
        message: &'a str,
        #[serde(rename = "type")]
        kind: &'a str,
        param: Option<&'a str>,
        code: Option<&'a str>,
    }
    serde_json::to_vec(&Body {
        error: Inner {
            message,
            kind,
            param,
            code,
        },
    })
    .unwrap_or_default()
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewayError::InvalidRequest { message, .. } => f.write_str(message),
            GatewayError::BodyTooLarge { limit } => {
                write!(f, "Request body is larger than the gateway's limit of {limit} bytes.")
            }
            GatewayError::MethodNotAllowed { allowed } => {
                write!(f, "Method not allowed on this path; use {allowed}.")
            }
            GatewayError::UnknownModel { model } => write!(
                f,
                "The model `{}` does not exist on this gateway. Use `auto` or a configured model name (GET /v1/models lists them).",
                truncate_for_message(model)
            ),
            GatewayError::NoUsableModel { message }
            | GatewayError::Internal { message }
            | GatewayError::Forbidden { message }
            | GatewayError::ContentRefused { message, .. }
            | GatewayError::RateLimited { message, .. }
            | GatewayError::QuotaExceeded { message, .. } => f.write_str(message),
            GatewayError::Unauthorized { reason } => write!(f, "Invalid API key: {reason}."),
            GatewayError::LedgerUnavailable => f.write_str(
                "The spend ledger is unavailable and this key's budget cannot be checked; retry shortly.",
            ),
            GatewayError::RequestNotFound => f.write_str(
                "No answer with this request id is remembered for this key (unknown, too old, or another tenant's).",
            ),
            GatewayError::AlreadyRated => f.write_str("This answer was rated already."),
            GatewayError::ProvidersUnavailable { attempts, rate_limited, retry_after_secs } => {
                let what = if *rate_limited { "rate-limited" } else { "unavailable" };
                if attempts.is_empty() {
                    write!(f, "Every provider for this request is {what} (none could be reached).")?;
                } else {
                    write!(f, "Every provider for this request is {what} (tried {attempts}).")?;
                }
                match retry_after_secs {
                    Some(seconds) => write!(f, " Retry after {seconds} s."),
                    None => f.write_str(" Retry later."),
                }
            }
        }
    }
}

/// Client-supplied text quoted back in an error is cut short so a huge value
/// cannot bloat the reply.
fn truncate_for_message(text: &str) -> &str {
    const MAX: usize = 80;
    if text.len() <= MAX {
        return text;
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A configuration problem, naming the field path (`tiers[1].max_score`) and
/// what is wrong with it. Returned at load time; Envoy then refuses the config.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "invalid signalbox configuration: {}", self.message)
        } else {
            write!(
                f,
                "invalid signalbox configuration at `{}`: {}",
                self.path, self.message
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_renders_the_openai_shape() {
        let err = GatewayError::UnknownModel { model: "gpt-9".into() };
        let value: serde_json::Value = serde_json::from_slice(&err.to_json()).unwrap();
        assert_eq!(err.status(), 404);
        assert_eq!(value["error"]["code"], "model_not_found");
        assert_eq!(value["error"]["type"], "invalid_request_error");
        assert_eq!(value["error"]["param"], "model");
        assert!(value["error"]["message"].as_str().unwrap().contains("gpt-9"));
    }

    #[test]
    fn a_huge_model_name_is_cut_short_at_a_char_boundary() {
        let model = "é".repeat(500);
        let message = GatewayError::UnknownModel { model }.to_string();
        assert!(message.len() < 300);
    }
}
