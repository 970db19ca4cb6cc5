//! Anthropic's Messages API as an ingress (`POST /v1/messages`, what Claude
//! Code and the `anthropic` SDKs send): [`Request`] reads and validates a
//! body once ([`parse`], from the serde types in [`schema`]), gives the
//! router its [`IngressView`](super::IngressView) ([`view`]), and
//! translates it into an OpenAI chat body for non-Anthropic targets
//! ([`translate`]); [`answer`] writes chat answers and errors back as
//! Anthropic messages and errors, [`stream`] does it for streams.
//!
//! What chat cannot express is either dropped and reported (cache_control,
//! thinking, top_k, ...), or, when dropping would change the request's
//! meaning (server tools, file references, URL documents), makes
//! [`Request::to_chat_body`] fail: such a request can only go to an
//! Anthropic target, natively.

mod answer;
mod parse;
mod schema;
mod stream;
#[cfg(test)]
mod tests;
mod translate;
mod view;

use std::borrow::Cow;

use serde_json::value::RawValue;

use crate::headers::HeaderMap;

pub use answer::{count_tokens, error_body, error_from_chat, response_from_chat};
pub use stream::StreamEncoder;

/// Client headers a native (Anthropic) target gets as the client sent
/// them: the API version the body is written for, and the betas it uses.
pub const NATIVE_HEADERS: &[&str] = &["anthropic-version", "anthropic-beta"];

/// The headers to set on a native pass-through attempt: the client's
/// [`NATIVE_HEADERS`], and `default_version` (the provider's configured
/// `anthropic-version`) when the client sent none.
pub fn native_headers(client: &HeaderMap, default_version: &str) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = NATIVE_HEADERS
        .iter()
        .filter_map(|name| client.get(name).map(|value| (name.to_string(), value.to_string())))
        .collect();
    if !headers.iter().any(|(name, _)| name == "anthropic-version") {
        headers.push(("anthropic-version".into(), default_version.to_string()));
    }
    headers
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Speaker {
    User,
    Assistant,
}

/// A validated content block.
#[derive(Debug)]
enum Block<'a> {
    Text(Cow<'a, str>),
    /// A `data:` URL or an http(s) link.
    Image(Cow<'a, str>),
    /// A base64 PDF, as a `data:` URL.
    Pdf {
        data_url: String,
        title: Option<Cow<'a, str>>,
    },
    /// A plain-text or content document, as text.
    DocumentText(Cow<'a, str>),
    ToolUse {
        id: Cow<'a, str>,
        name: Cow<'a, str>,
        input: &'a RawValue,
    },
    ToolResult {
        tool_use_id: Cow<'a, str>,
        content: Vec<Block<'a>>,
    },
    /// Thinking and redacted thinking: only their own model reads them.
    Thinking,
    /// A block only the Anthropic API can take (server tools and their
    /// results, file references, URL documents, types added later).
    AnthropicOnly {
        param: String,
        what: Cow<'a, str>,
    },
}

#[derive(Debug)]
struct Message<'a> {
    speaker: Speaker,
    blocks: Vec<Block<'a>>,
    /// A block carries `cache_control`: a prompt-cache breakpoint after it.
    cached: bool,
}

#[derive(Debug)]
enum Tool<'a> {
    Custom {
        name: Cow<'a, str>,
        description: Option<Cow<'a, str>>,
        input_schema: &'a RawValue,
        strict: Option<bool>,
    },
    /// A server tool (`web_search_20250305`, `bash_20250124`, ...): run by
    /// Anthropic, so only an Anthropic target can take it.
    Server { param: String, kind: Cow<'a, str> },
}

#[derive(Debug, PartialEq)]
enum ToolChoice<'a> {
    Auto,
    Any,
    None,
    Tool(Cow<'a, str>),
}

/// A validated Messages request (`/v1/messages`, or `count_tokens`).
#[derive(Debug)]
pub struct Request<'a> {
    model: Cow<'a, str>,
    max_tokens: Option<u64>,
    system: Vec<Cow<'a, str>>,
    /// A system block carries `cache_control`.
    system_cached: bool,
    messages: Vec<Message<'a>>,
    tools: Vec<Tool<'a>>,
    tool_choice: Option<ToolChoice<'a>>,
    parallel_tool_calls: Option<bool>,
    stop_sequences: Vec<Cow<'a, str>>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    stream: bool,
    user_id: Option<Cow<'a, str>>,
    output_schema: Option<&'a RawValue>,
    /// Features the client used that chat cannot express.
    dropped: Vec<&'static str>,
}

impl Request<'_> {
    /// The model the client asked for (`auto`, a configured name, ...).
    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn stream(&self) -> bool {
        self.stream
    }

    /// The output budget (required on `/v1/messages`).
    pub fn max_tokens(&self) -> Option<u64> {
        self.max_tokens
    }
}
