//! Whole answers and errors in Anthropic's shapes: a chat completion as a
//! `message` object, a gateway or provider error as
//! `{"type":"error","error":{"type","message"}}`, and the local
//! `count_tokens` estimate.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::error::GatewayError;
use crate::providers::chat::arguments_object;
use crate::providers::TokenUsage;

use super::super::completion::{prefixed_id, read_answer, ErrorDetails};
use super::Request;

/// Anthropic's `stop_reason` for an OpenAI `finish_reason`. Chat does not
/// say whether a stop sequence ended the answer, so `stop_sequence` is
/// never given.
pub(super) fn stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// A message id in Anthropic's style (`msg_…`), from the answer's own.
pub(super) fn message_id(chat_id: &str) -> String {
    if chat_id.starts_with("msg_") {
        return chat_id.to_string();
    }
    prefixed_id("msg_", chat_id)
}

/// A tool-use id for a call that came without one.
pub(super) fn tool_use_id(id: &str, message_id: &str, position: usize) -> String {
    if id.is_empty() {
        format!("toolu_{}_{position}", message_id.trim_start_matches("msg_"))
    } else {
        id.to_string()
    }
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct UsageOut {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
}

impl UsageOut {
    /// Anthropic counts fresh input, cache reads and cache writes apart, as
    /// [`TokenUsage`] does.
    pub(super) fn of(usage: TokenUsage) -> UsageOut {
        UsageOut {
            input_tokens: usage.input,
            output_tokens: usage.output,
            cache_creation_input_tokens: usage.cache_write,
            cache_read_input_tokens: usage.cached_input,
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentOut<'a> {
    Text {
        text: &'a str,
    },
    ToolUse {
        id: String,
        name: &'a str,
        input: Box<RawValue>,
    },
}

#[derive(Serialize)]
struct MessageOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<ContentOut<'a>>,
    stop_reason: &'static str,
    stop_sequence: Option<&'a str>,
    usage: UsageOut,
}

/// A whole chat completion (200) as an Anthropic `message`. Tool-call
/// arguments that are not a JSON object (models sometimes emit such) are
/// wrapped as `{"arguments": "<text>"}`: Anthropic's `input` is always an
/// object, and the client's next request carries the call back. An answer
/// that cannot be read is an error for [`error_body`].
pub fn response_from_chat(chat_body: &[u8]) -> Result<Vec<u8>, GatewayError> {
    let answer = read_answer(chat_body)?;
    let id = message_id(&answer.id);
    let mut content = Vec::with_capacity(1 + answer.tool_calls.len());
    let text = answer
        .refusal
        .as_deref()
        .filter(|_| answer.text.is_empty())
        .unwrap_or(&answer.text);
    if !text.is_empty() {
        content.push(ContentOut::Text { text });
    }
    for (position, call) in answer.tool_calls.iter().enumerate() {
        content.push(ContentOut::ToolUse {
            id: tool_use_id(&call.id, &id, position),
            name: &call.name,
            input: arguments_object(Some(&call.arguments))?,
        });
    }
    let message = MessageOut {
        id: &id,
        kind: "message",
        role: "assistant",
        model: &answer.model,
        content,
        stop_reason: stop_reason(&answer.finish_reason),
        stop_sequence: None,
        usage: UsageOut::of(answer.usage.unwrap_or_default()),
    };
    serde_json::to_vec(&message).map_err(|err| GatewayError::Internal {
        message: format!("The Anthropic message could not be written: {err}"),
    })
}

/// Anthropic's error type for an error Signalbox (or a provider through
/// it) reports with an HTTP status (none inside a stream), an OpenAI error
/// `type` and a `code`. The code is the most specific, then the status.
fn error_type(status: Option<u16>, kind: Option<&str>, code: Option<&str>) -> &'static str {
    match code {
        Some("rate_limit_exceeded" | "insufficient_quota") => return "rate_limit_error",
        Some("provider_overloaded" | "providers_unavailable") => return "overloaded_error",
        Some("provider_timeout") => return "timeout_error",
        Some("invalid_api_key") => return "authentication_error",
        Some("model_not_allowed") => return "permission_error",
        Some("model_not_found") => return "not_found_error",
        Some("request_too_large") => return "request_too_large",
        _ => {}
    }
    match status {
        Some(401) => "authentication_error",
        Some(402) => "billing_error",
        Some(403) => "permission_error",
        Some(404) => "not_found_error",
        Some(413) => "request_too_large",
        Some(429) => "rate_limit_error",
        Some(408 | 504) => "timeout_error",
        Some(503 | 529) => "overloaded_error",
        Some(400..=499) => "invalid_request_error",
        Some(_) => "api_error",
        None => match kind {
            Some("rate_limit_error") => "rate_limit_error",
            Some("invalid_request_error") => "invalid_request_error",
            Some("authentication_error") => "authentication_error",
            Some("permission_error") => "permission_error",
            _ => "api_error",
        },
    }
}

/// `{"type":"error","error":{"type","message"}}`.
#[derive(Serialize)]
pub(super) struct ErrorOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: ErrorInner<'a>,
}

#[derive(Serialize)]
struct ErrorInner<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
}

impl<'a> ErrorOut<'a> {
    fn new(kind: &'static str, message: &'a str) -> ErrorOut<'a> {
        ErrorOut {
            kind: "error",
            error: ErrorInner { kind, message },
        }
    }

    fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A gateway error in Anthropic's shape (the status stays `error.status()`).
pub fn error_body(error: &GatewayError) -> Vec<u8> {
    let status = u16::try_from(error.status()).ok();
    let message = error.to_string();
    ErrorOut::new(
        error_type(status, Some(error.error_type()), Some(error.code())),
        &message,
    )
    .to_json()
}

/// An OpenAI-shaped error body (a provider's, translated by its adapter,
/// or Signalbox's own) with `status`, in Anthropic's shape.
pub fn error_from_chat(status: u16, body: &[u8]) -> Vec<u8> {
    let details = ErrorDetails::from_body(body);
    let kind = error_type(Some(status), details.kind.as_deref(), details.code.as_deref());
    ErrorOut::new(kind, &details.message).to_json()
}

/// The data of the Anthropic error event for an error read inside a chat
/// stream.
pub(super) fn stream_error(details: &ErrorDetails) -> ErrorOut<'_> {
    ErrorOut::new(
        error_type(None, details.kind.as_deref(), details.code.as_deref()),
        &details.message,
    )
}

/// `POST /v1/messages/count_tokens`, answered locally:
/// `{"input_tokens": N}` with the gateway's estimate of the prompt (the
/// same the router uses against context windows). Providers' tokenizers
/// differ, so it is an estimate for any model.
pub fn count_tokens(body: &[u8]) -> Result<Vec<u8>, GatewayError> {
    let request = Request::parse_without_max_tokens(body)?;
    let tokens = request.view().prompt_tokens();
    Ok(format!("{{\"input_tokens\":{tokens}}}").into_bytes())
}
