//! Ingress formats besides OpenAI chat: Anthropic's Messages API (what
//! Claude Code speaks) and OpenAI's Responses API (what Codex speaks).
//! Each request is read once, gives the router a [`IngressView`] to
//! classify, and is translated into an OpenAI chat-completions body, the
//! gateway's lingua franca, for the providers that need a translation; the
//! chat answer (whole or streamed) and errors are translated back into the
//! client's format. Pure Rust, data in and data out: the filter moves the
//! bytes.
//!
//! The API, per request:
//! - [`Ingress::for_path`]: which format a `POST` path speaks.
//! - [`messages::Request::parse`] / [`responses::Request::parse`]: validate
//!   a body (a 400 naming the field); `view()` for routing; `to_chat_body()`
//!   for a chat body plus what was dropped ([`Translated`]), or the error
//!   saying only the native API (Anthropic's, OpenAI's own) can take it.
//! - [`with_model`]: the native pass-through body, the client's bytes with
//!   only `model` replaced, for a target that speaks the client's format;
//!   [`messages::native_headers`] are the client headers that go with it.
//! - [`messages::response_from_chat`] / [`responses::response_from_chat`]:
//!   a whole chat completion in the client's format.
//! - [`messages::StreamEncoder`] / [`responses::StreamEncoder`]: chat chunk
//!   SSE in, the client format's events out, fed in any pieces
//!   (`push(bytes, out)`, then `finish(out)`).
//! - [`Ingress::error_body`] / [`Ingress::error_from_chat`]: a gateway
//!   error, or an OpenAI-shaped error body, in the client format's shape.
//! - [`messages::count_tokens`]: the local estimate for
//!   `/v1/messages/count_tokens`.
//! - [`relay`]: the router's way back, a chat answer (whole or streamed)
//!   in the client's format.

pub mod messages;
pub mod relay;
pub mod responses;

mod chat_body;
mod completion;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod testkit;
mod wire;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::error::GatewayError;
use crate::providers::set_member;
use crate::request::PromptView;
use crate::tokens;

/// The API a client speaks, by path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingress {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `POST /v1/messages`.
    Messages,
    /// `POST /v1/messages/count_tokens`: answered by the gateway itself.
    CountTokens,
    /// `POST /v1/responses`.
    Responses,
}

impl Ingress {
    /// The format of a request path (a query string is ignored).
    pub fn for_path(path: &str) -> Option<Ingress> {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        match path.trim_end_matches('/') {
            "/v1/chat/completions" => Some(Ingress::Chat),
            "/v1/messages" => Some(Ingress::Messages),
            "/v1/messages/count_tokens" => Some(Ingress::CountTokens),
            "/v1/responses" => Some(Ingress::Responses),
            _ => None,
        }
    }

    /// A gateway error's body in this format's shape (its status is
    /// `error.status()` whatever the format).
    pub fn error_body(self, error: &GatewayError) -> Vec<u8> {
        match self {
            Ingress::Messages | Ingress::CountTokens => messages::error_body(error),
            // The Responses API's errors are OpenAI's.
            Ingress::Chat | Ingress::Responses => error.to_json(),
        }
    }

    /// A provider's (already OpenAI-shaped) error answer with `status`, in
    /// this format's shape. The status does not change.
    pub fn error_from_chat(self, status: u16, body: &[u8]) -> Vec<u8> {
        match self {
            Ingress::Messages | Ingress::CountTokens => messages::error_from_chat(status, body),
            Ingress::Chat | Ingress::Responses => body.to_vec(),
        }
    }
}

/// What the router reads from a Messages or Responses request: the same
/// [`PromptView`] a chat request gives, and what chat keeps elsewhere.
#[derive(Debug, Default, Clone)]
pub struct IngressView<'a> {
    /// Last user text, turns, context tokens (images and documents
    /// included), tools, images, response format.
    pub prompt: PromptView<'a>,
    /// System text (Anthropic's `system`; Responses `instructions` and
    /// system/developer messages), for rules.
    pub system: Vec<&'a str>,
    /// Tool results the client sent back (agent loops send many).
    pub tool_results: u32,
    /// PDF and other documents.
    pub documents: u32,
}

impl IngressView<'_> {
    /// Estimated tokens of the whole prompt.
    pub fn prompt_tokens(&self) -> u32 {
        self.prompt
            .last_user_tokens()
            .saturating_add(self.prompt.context_tokens)
    }

    /// Counts an image of the context; its tokens, the fixed cost chat's
    /// estimate gives one too.
    fn add_image(&mut self) -> u32 {
        self.prompt.images += 1;
        tokens::IMAGE_TOKENS
    }

    /// Counts a document of the context; its tokens, as for chat.
    fn add_document(&mut self) -> u32 {
        self.documents += 1;
        tokens::DOCUMENT_TOKENS
    }
}

/// Context tokens of a function tool the request declares.
fn tool_tokens(name: &str, description: Option<&str>, schema: Option<&RawValue>) -> u32 {
    tokens::estimate(name)
        .saturating_add(description.map_or(0, tokens::estimate))
        .saturating_add(schema.map_or(0, |schema| tokens::estimate(schema.get())))
}

/// An incremental translator from a chat chunk stream to an ingress
/// format's events; the filter can hold either format's behind this.
pub trait StreamEncode {
    /// Translates the next piece of the chat stream, split anywhere.
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>);
    /// The chat stream ended: a stream cut short ends with an error event.
    fn finish(&mut self, out: &mut Vec<u8>);
}

/// A request translated into an OpenAI chat-completions body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    pub body: Vec<u8>,
    /// Request features chat cannot express, dropped rather than failing
    /// the request (for logs and headers), by the client format's names.
    pub dropped: Vec<&'static str>,
}

/// The client's body for a target that speaks the client's own format:
/// every byte as sent but `model`, which becomes the provider's `model_id`.
/// `None` if the body is not a JSON object (it was validated, so never).
pub fn with_model(body: &[u8], model_id: &str) -> Option<Vec<u8>> {
    set_member(body, "model", &crate::json_edit::quote(model_id))
}

/// One named server-sent event: `event: <name>`, `data: <value as JSON>`.
pub(crate) fn write_event(out: &mut Vec<u8>, name: &str, value: &impl Serialize) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Serializing plain structs and JSON values into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_format() {
        assert_eq!(Ingress::for_path("/v1/messages"), Some(Ingress::Messages));
        assert_eq!(Ingress::for_path("/v1/messages?beta=true"), Some(Ingress::Messages));
        assert_eq!(
            Ingress::for_path("/v1/messages/count_tokens"),
            Some(Ingress::CountTokens)
        );
        assert_eq!(Ingress::for_path("/v1/responses"), Some(Ingress::Responses));
        assert_eq!(Ingress::for_path("/v1/chat/completions"), Some(Ingress::Chat));
        assert_eq!(Ingress::for_path("/v1/responses/resp_1"), None);
        assert_eq!(Ingress::for_path("/v2/messages"), None);
    }

    #[test]
    fn the_native_body_changes_only_the_model() {
        let body = br#"{"model": "auto", "max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(
            with_model(body, "claude-sonnet-4-5").unwrap(),
            br#"{"model": "claude-sonnet-4-5", "max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#.to_vec()
        );
    }
}
