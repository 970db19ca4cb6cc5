//! The OpenAI chat-completions body both ingress formats are translated
//! into, written with borrowed strings. Only what the translations set is
//! written: the body then goes through the same parsing, routing and
//! provider adapters as a chat request a client sent.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::error::GatewayError;

use super::wire::invalid;

#[derive(Serialize, Default)]
pub(crate) struct ChatBody<'r> {
    pub model: &'r str,
    pub messages: Vec<ChatMessage<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<&'r str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    /// Set with `stream` (see [`ChatBody::new`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ChatTool<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ChatToolChoice<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'r str>,
}

impl<'r> ChatBody<'r> {
    /// An empty body for `model`. A streamed one asks for the usage chunk:
    /// the ingress format's final event reports usage.
    pub(crate) fn new(model: &'r str, stream: bool) -> ChatBody<'r> {
        ChatBody {
            model,
            stream,
            stream_options: stream.then_some(StreamOptions { include_usage: true }),
            ..ChatBody::default()
        }
    }

    /// The body's bytes; a body without a message (the request held only
    /// what chat drops) is the client's 400 on `param`.
    pub(crate) fn to_bytes(&self, param: &str) -> Result<Vec<u8>, GatewayError> {
        if self.messages.is_empty() {
            return Err(invalid(param, "holds nothing this model's provider can be sent."));
        }
        serde_json::to_vec(self).map_err(|err| GatewayError::Internal {
            message: format!("The chat-completions body could not be written: {err}"),
        })
    }

    /// Appends a message, merging it into the previous one when both are
    /// the assistant's (a text message followed by its tool calls), as
    /// OpenAI's own turns look.
    pub(crate) fn push(&mut self, mut message: ChatMessage<'r>) {
        if let Some(last) = self.messages.last_mut() {
            if last.role == "assistant" && message.role == "assistant" {
                let merged = match (&mut last.content, message.content.take()) {
                    (_, None) => true,
                    (slot @ None, content) => {
                        *slot = content;
                        true
                    }
                    (Some(ChatContent::Text(text)), Some(ChatContent::Text(more))) => {
                        let text = text.to_mut();
                        text.push('\n');
                        text.push_str(&more);
                        true
                    }
                    (_, content) => {
                        message.content = content;
                        false
                    }
                };
                if merged {
                    last.tool_calls.append(&mut message.tool_calls);
                    return;
                }
            }
        }
        self.messages.push(message);
    }
}

#[derive(Serialize)]
pub(crate) struct StreamOptions {
    pub include_usage: bool,
}

#[derive(Serialize, Debug)]
pub(crate) struct ChatMessage<'r> {
    pub role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<ChatContent<'r>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ChatToolCall<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<&'r str>,
    /// A prompt-cache breakpoint after this message (the client marked a
    /// block of it with `cache_control`), under a name of the gateway's
    /// own: the Anthropic and Bedrock adapters honour it, the OpenAI one
    /// removes it. A chat client's own `cache_control` is left as it sent it.
    #[serde(rename = "signalbox_cache_breakpoint", skip_serializing_if = "std::ops::Not::not")]
    pub cache_breakpoint: bool,
}

impl<'r> ChatMessage<'r> {
    pub(crate) fn text(role: &'static str, text: Cow<'r, str>) -> ChatMessage<'r> {
        ChatMessage {
            role,
            content: Some(ChatContent::Text(text)),
            tool_calls: Vec::new(),
            tool_call_id: None,
            cache_breakpoint: false,
        }
    }

    pub(crate) fn tool_result(call_id: &'r str, text: Cow<'r, str>) -> ChatMessage<'r> {
        ChatMessage {
            tool_call_id: Some(call_id),
            ..ChatMessage::text("tool", text)
        }
    }
}

#[derive(Serialize, Debug)]
#[serde(untagged)]
pub(crate) enum ChatContent<'r> {
    Text(Cow<'r, str>),
    Parts(Vec<ChatPart<'r>>),
}

#[derive(Serialize, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ChatPart<'r> {
    Text { text: &'r str },
    ImageUrl { image_url: ImageUrl<'r> },
    File { file: FilePart<'r> },
}

#[derive(Serialize, Debug)]
pub(crate) struct ImageUrl<'r> {
    pub url: Cow<'r, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'r str>,
}

#[derive(Serialize, Debug, Default)]
pub(crate) struct FilePart<'r> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_data: Option<Cow<'r, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_id: Option<&'r str>,
}

#[derive(Serialize, Debug)]
pub(crate) struct ChatToolCall<'r> {
    pub id: &'r str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionCall<'r>,
}

impl<'r> ChatToolCall<'r> {
    pub(crate) fn function(id: &'r str, name: &'r str, arguments: &'r str) -> ChatToolCall<'r> {
        ChatToolCall {
            id,
            kind: "function",
            function: FunctionCall { name, arguments },
        }
    }
}

#[derive(Serialize, Debug)]
pub(crate) struct FunctionCall<'r> {
    pub name: &'r str,
    /// JSON text, as OpenAI carries it.
    pub arguments: &'r str,
}

#[derive(Serialize)]
pub(crate) struct ChatTool<'r> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionTool<'r>,
}

#[derive(Serialize)]
pub(crate) struct FunctionTool<'r> {
    pub name: &'r str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<&'r RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

impl<'r> ChatTool<'r> {
    pub(crate) fn function(function: FunctionTool<'r>) -> ChatTool<'r> {
        ChatTool {
            kind: "function",
            function,
        }
    }
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(untagged)]
pub(crate) enum ChatToolChoice<'r> {
    /// `auto`, `none` or `required`.
    Mode(&'static str),
    Function {
        #[serde(rename = "type")]
        kind: &'static str,
        function: NamedFunction<'r>,
    },
}

impl<'r> ChatToolChoice<'r> {
    pub(crate) fn named(name: &'r str) -> ChatToolChoice<'r> {
        ChatToolChoice::Function {
            kind: "function",
            function: NamedFunction { name },
        }
    }
}

#[derive(Serialize, Debug, PartialEq)]
pub(crate) struct NamedFunction<'r> {
    pub name: &'r str,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ResponseFormat<'r> {
    JsonObject,
    JsonSchema { json_schema: JsonSchema<'r> },
}

#[derive(Serialize)]
pub(crate) struct JsonSchema<'r> {
    pub name: &'r str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'r str>,
    pub schema: &'r RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}
