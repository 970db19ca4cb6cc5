//! OpenAI's Responses API as an ingress (`POST /v1/responses`, what Codex
//! and newer OpenAI SDK paths send), stateless: [`Request`] reads and
//! validates a body once ([`parse`], from the serde types in [`schema`]),
//! gives the router its [`IngressView`](super::IngressView) ([`view`]),
//! and translates it into an OpenAI chat body ([`translate`]); [`answer`]
//! writes a chat answer back as a `response` object, [`stream`] as
//! Responses streaming events.
//! Errors are OpenAI's own shape already ([`crate::error::GatewayError::to_json`]).
//!
//! Nothing is stored on translation: `store` is treated as false. What
//! needs OpenAI's own state or tools (`previous_response_id`,
//! `conversation`, stored `prompt`s, built-in tools) makes
//! [`Request::to_chat_body`] fail: such a request can only go natively to
//! OpenAI's `/v1/responses`. `background` is refused outright: its answer
//! is fetched later, past the gateway, so it could not be metered.

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

pub use answer::response_from_chat;
pub use stream::StreamEncoder;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    User,
    Assistant,
    /// `system` and `developer`.
    System,
}

/// A validated content part.
#[derive(Debug)]
enum Part<'a> {
    Text(Cow<'a, str>),
    Image {
        url: Cow<'a, str>,
        detail: Option<Cow<'a, str>>,
    },
    File(FileRef<'a>),
    /// Only OpenAI's own Responses API can take it (a file URL, an image
    /// by file id, audio, types added later).
    OpenAiOnly {
        param: String,
        what: Cow<'a, str>,
    },
}

#[derive(Debug)]
struct FileRef<'a> {
    filename: Option<Cow<'a, str>>,
    file_data: Option<Cow<'a, str>>,
    file_id: Option<Cow<'a, str>>,
}

#[derive(Debug)]
enum Item<'a> {
    Message {
        role: Role,
        parts: Vec<Part<'a>>,
    },
    FunctionCall {
        call_id: Cow<'a, str>,
        name: Cow<'a, str>,
        arguments: Cow<'a, str>,
    },
    FunctionCallOutput {
        call_id: Cow<'a, str>,
        output: Vec<Part<'a>>,
    },
    /// A reasoning item from an earlier turn: only its own model reads it.
    Reasoning,
    OpenAiOnly {
        param: String,
        what: Cow<'a, str>,
    },
}

#[derive(Debug)]
struct FunctionDef<'a> {
    name: Cow<'a, str>,
    description: Option<Cow<'a, str>>,
    parameters: Option<&'a RawValue>,
    strict: Option<bool>,
}

#[derive(Debug, PartialEq)]
enum ToolChoice<'a> {
    Mode(&'static str),
    Function(Cow<'a, str>),
    OpenAiOnly,
}

#[derive(Debug)]
enum Format<'a> {
    JsonObject,
    JsonSchema {
        name: Cow<'a, str>,
        description: Option<Cow<'a, str>>,
        schema: &'a RawValue,
        strict: Option<bool>,
    },
}

/// A validated Responses request.
#[derive(Debug)]
pub struct Request<'a> {
    model: Cow<'a, str>,
    instructions: Option<Cow<'a, str>>,
    items: Vec<Item<'a>>,
    functions: Vec<FunctionDef<'a>>,
    /// OpenAI's built-in tools (what chat cannot express): (param, type).
    builtin_tools: Vec<(String, Cow<'a, str>)>,
    tool_choice: Option<ToolChoice<'a>>,
    parallel_tool_calls: Option<bool>,
    format: Option<Format<'a>>,
    max_output_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    stream: bool,
    user: Option<Cow<'a, str>>,
    /// What needs OpenAI's stored state: the first such field's name.
    stateful: Option<&'static str>,
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

    pub fn max_output_tokens(&self) -> Option<u64> {
        self.max_output_tokens
    }

    /// OpenAI's built-in tools the request offers, as (param, type).
    pub fn builtin_tools(&self) -> impl Iterator<Item = (&str, &str)> {
        self.builtin_tools
            .iter()
            .map(|(param, kind)| (param.as_str(), kind.as_ref()))
    }

    /// Whether OpenAI adds stored input the gateway never sees (an earlier
    /// response, a conversation, a stored prompt): its size is unknown.
    pub fn reads_stored_input(&self) -> bool {
        self.stateful.is_some()
    }

    /// Whether only OpenAI's own Responses API can take the request: stored
    /// state, a built-in tool, a part or item chat has no form for.
    pub fn needs_openai(&self) -> bool {
        let openai_only = |part: &Part<'_>| matches!(part, Part::OpenAiOnly { .. });
        self.stateful.is_some()
            || !self.builtin_tools.is_empty()
            || self.tool_choice == Some(ToolChoice::OpenAiOnly)
            || self.items.iter().any(|item| match item {
                Item::Message { parts, .. } | Item::FunctionCallOutput { output: parts, .. } => {
                    parts.iter().any(openai_only)
                }
                Item::OpenAiOnly { .. } => true,
                Item::FunctionCall { .. } | Item::Reasoning => false,
            })
    }
}
