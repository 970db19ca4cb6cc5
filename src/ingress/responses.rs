//! OpenAI's Responses API as an ingress (`POST /v1/responses`, what Codex
//! and newer OpenAI SDK paths send), stateless: [`Request`] reads and
//! validates a body once, gives the router its [`IngressView`], and
//! translates it into an OpenAI chat body; [`answer`] writes a chat answer
//! back as a `response` object, [`stream`] as Responses streaming events.
//! Errors are OpenAI's own shape already ([`crate::error::GatewayError::to_json`]).
//!
//! Nothing is stored on translation: `store` is treated as false. What
//! needs OpenAI's own state or tools (`previous_response_id`,
//! `conversation`, stored `prompt`s, built-in tools) makes
//! [`Request::to_chat_body`] fail: such a request can only go natively to
//! OpenAI's `/v1/responses`. `background` is refused outright: its answer
//! is fetched later, past the gateway, so it could not be metered.

mod answer;
mod stream;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::GatewayError;
use crate::request::{PromptView, ResponseFormatKind, Text};
use crate::tokens;

use super::chat_body::{
    ChatBody, ChatContent, ChatMessage, ChatPart, ChatTool, ChatToolCall, ChatToolChoice, FilePart, FunctionTool,
    ImageUrl, JsonSchema, ResponseFormat, StreamOptions,
};
use super::wire::{check_range, invalid, parse_body, TextOr};
use super::{IngressView, Translated, DOCUMENT_TOKENS, IMAGE_TOKENS};

pub use answer::response_from_chat;
pub use stream::StreamEncoder;

#[derive(Deserialize)]
struct WireRequest<'a> {
    #[serde(borrow)]
    model: Text<'a>,
    #[serde(default, borrow)]
    input: Option<TextOr<'a, WireItem<'a>>>,
    #[serde(default, borrow)]
    instructions: Option<Text<'a>>,
    #[serde(default, borrow)]
    tools: Option<Vec<WireTool<'a>>>,
    #[serde(default, borrow)]
    tool_choice: Option<&'a RawValue>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default, borrow)]
    text: Option<WireTextConfig<'a>>,
    #[serde(default)]
    max_output_tokens: Option<i64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    store: Option<bool>,
    #[serde(default)]
    background: Option<bool>,
    #[serde(default, borrow)]
    previous_response_id: Option<Text<'a>>,
    #[serde(default, borrow)]
    conversation: Option<&'a RawValue>,
    #[serde(default, borrow)]
    prompt: Option<&'a RawValue>,
    #[serde(default, borrow)]
    user: Option<Text<'a>>,
    #[serde(default, borrow)]
    safety_identifier: Option<Text<'a>>,
    #[serde(default, borrow)]
    reasoning: Option<&'a RawValue>,
    #[serde(default, borrow)]
    include: Option<&'a RawValue>,
    #[serde(default, borrow)]
    truncation: Option<&'a RawValue>,
    #[serde(default, borrow)]
    service_tier: Option<&'a RawValue>,
    #[serde(default, borrow)]
    prompt_cache_key: Option<&'a RawValue>,
    #[serde(default, borrow)]
    metadata: Option<&'a RawValue>,
    #[serde(default, borrow)]
    top_logprobs: Option<&'a RawValue>,
    #[serde(default, borrow)]
    max_tool_calls: Option<&'a RawValue>,
}

/// Every input item type's fields, flat: the `type` says which apply.
#[derive(Deserialize)]
struct WireItem<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Text<'a>>,
    #[serde(default, borrow)]
    role: Option<Text<'a>>,
    #[serde(default, borrow)]
    content: Option<TextOr<'a, WirePart<'a>>>,
    #[serde(default, borrow)]
    call_id: Option<Text<'a>>,
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default, borrow)]
    arguments: Option<Text<'a>>,
    #[serde(default, borrow)]
    output: Option<TextOr<'a, WirePart<'a>>>,
}

#[derive(Deserialize)]
struct WirePart<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(default, borrow)]
    text: Option<Text<'a>>,
    #[serde(default, borrow)]
    refusal: Option<Text<'a>>,
    #[serde(default, borrow)]
    image_url: Option<Text<'a>>,
    #[serde(default, borrow)]
    detail: Option<Text<'a>>,
    #[serde(default, borrow)]
    file_id: Option<Text<'a>>,
    #[serde(default, borrow)]
    file_data: Option<Text<'a>>,
    #[serde(default, borrow)]
    filename: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct WireTool<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default, borrow)]
    description: Option<Text<'a>>,
    #[serde(default, borrow)]
    parameters: Option<&'a RawValue>,
    #[serde(default)]
    strict: Option<bool>,
}

#[derive(Deserialize)]
struct WireTextConfig<'a> {
    #[serde(default, borrow)]
    format: Option<WireFormat<'a>>,
    #[serde(default, borrow)]
    verbosity: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireFormat<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default, borrow)]
    description: Option<Text<'a>>,
    #[serde(default, borrow)]
    schema: Option<&'a RawValue>,
    #[serde(default)]
    strict: Option<bool>,
}

#[derive(Deserialize)]
struct WireNamedTool<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
}

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

fn required<'a>(text: Option<Text<'a>>, param: &str) -> Result<Cow<'a, str>, GatewayError> {
    text.map(|text| text.0).ok_or_else(|| invalid(param, "is required."))
}

fn part<'a>(wire: WirePart<'a>, param: &str) -> Result<Part<'a>, GatewayError> {
    let field = |name: &str| format!("{param}.{name}");
    Ok(match wire.kind.as_str() {
        "input_text" | "output_text" | "text" => Part::Text(required(wire.text, &field("text"))?),
        "refusal" => Part::Text(required(wire.refusal, &field("refusal"))?),
        "input_image" => match (wire.image_url, wire.file_id) {
            (Some(url), _) => Part::Image {
                url: url.0,
                detail: wire.detail.map(|detail| detail.0).filter(|detail| detail != "auto"),
            },
            (None, Some(_)) => Part::OpenAiOnly {
                param: field("file_id"),
                what: "an image by file id".into(),
            },
            (None, None) => return Err(invalid(field("image_url"), "is required.")),
        },
        "input_file" if wire.file_data.is_some() || wire.file_id.is_some() => Part::File(FileRef {
            filename: wire.filename.map(|name| name.0),
            file_data: wire.file_data.map(|data| data.0),
            file_id: wire.file_id.map(|id| id.0),
        }),
        other => Part::OpenAiOnly {
            param: field("type"),
            what: Cow::Owned(format!("an `{other}` part")),
        },
    })
}

fn parts<'a>(content: Option<TextOr<'a, WirePart<'a>>>, param: &str) -> Result<Vec<Part<'a>>, GatewayError> {
    match content {
        None => Err(invalid(param, "is required.")),
        Some(TextOr::Text(text)) => Ok(vec![Part::Text(text.0)]),
        Some(TextOr::List(list)) => list
            .into_iter()
            .enumerate()
            .map(|(index, wire)| part(wire, &format!("{param}[{index}]")))
            .collect(),
    }
}

fn item<'a>(wire: WireItem<'a>, index: usize) -> Result<Item<'a>, GatewayError> {
    let param = |name: &str| format!("input[{index}].{name}");
    let kind = wire.kind.as_ref().map(Text::as_str);
    Ok(match kind {
        None | Some("message") => {
            let role = match wire.role.as_ref().map(Text::as_str) {
                Some("user") => Role::User,
                Some("assistant") => Role::Assistant,
                Some("system" | "developer") => Role::System,
                _ => {
                    return Err(invalid(
                        param("role"),
                        "must be `user`, `assistant`, `system` or `developer`.",
                    ))
                }
            };
            Item::Message {
                role,
                parts: parts(wire.content, &param("content"))?,
            }
        }
        Some("function_call") => Item::FunctionCall {
            call_id: required(wire.call_id, &param("call_id"))?,
            name: required(wire.name, &param("name"))?,
            arguments: wire.arguments.map(|text| text.0).unwrap_or_default(),
        },
        Some("function_call_output") => Item::FunctionCallOutput {
            call_id: required(wire.call_id, &param("call_id"))?,
            output: parts(wire.output, &param("output"))?,
        },
        Some("reasoning") => Item::Reasoning,
        Some(other) => Item::OpenAiOnly {
            param: param("type"),
            what: Cow::Owned(format!("`{other}` items")),
        },
    })
}

fn tool_choice<'a>(raw: &'a RawValue) -> Result<ToolChoice<'a>, GatewayError> {
    if let Ok(mode) = serde_json::from_str::<Cow<'_, str>>(raw.get()) {
        return match mode.as_ref() {
            "auto" => Ok(ToolChoice::Mode("auto")),
            "none" => Ok(ToolChoice::Mode("none")),
            "required" => Ok(ToolChoice::Mode("required")),
            _ => Err(invalid("tool_choice", "must be `auto`, `none`, `required` or a tool.")),
        };
    }
    let named: WireNamedTool<'a> = serde_json::from_str(raw.get())
        .map_err(|_| invalid("tool_choice", "must be `auto`, `none`, `required` or a tool."))?;
    match named.kind.as_str() {
        "function" => Ok(ToolChoice::Function(required(named.name, "tool_choice.name")?)),
        _ => Ok(ToolChoice::OpenAiOnly),
    }
}

fn format<'a>(wire: WireFormat<'a>) -> Result<Option<Format<'a>>, GatewayError> {
    Ok(match wire.kind.as_str() {
        "text" => None,
        "json_object" => Some(Format::JsonObject),
        "json_schema" => Some(Format::JsonSchema {
            name: required(wire.name, "text.format.name")?,
            description: wire.description.map(|text| text.0),
            schema: wire
                .schema
                .ok_or_else(|| invalid("text.format.schema", "is required."))?,
            strict: wire.strict,
        }),
        _ => {
            return Err(invalid(
                "text.format.type",
                "must be `text`, `json_object` or `json_schema`.",
            ))
        }
    })
}

impl<'a> Request<'a> {
    /// Validates a `/v1/responses` body.
    pub fn parse(body: &'a [u8]) -> Result<Request<'a>, GatewayError> {
        let wire: WireRequest<'a> = parse_body(body)?;
        if wire.model.as_str().is_empty() {
            return Err(invalid("model", "must be a non-empty string."));
        }
        let max_output_tokens = match wire.max_output_tokens {
            Some(tokens) if tokens < 1 => return Err(invalid("max_output_tokens", "must be at least 1.")),
            tokens => tokens.and_then(|tokens| u64::try_from(tokens).ok()),
        };
        check_range("temperature", wire.temperature, 0.0, 2.0)?;
        check_range("top_p", wire.top_p, 0.0, 1.0)?;
        if wire.background == Some(true) {
            return Err(invalid(
                "background",
                "is not supported through the gateway: a background response is fetched later, where it could not be metered.",
            ));
        }
        let stateful = [
            ("previous_response_id", wire.previous_response_id.is_some()),
            ("conversation", wire.conversation.is_some()),
            ("prompt", wire.prompt.is_some()),
        ]
        .into_iter()
        .find_map(|(name, set)| set.then_some(name));
        let items = match wire.input {
            Some(TextOr::Text(text)) => vec![Item::Message {
                role: Role::User,
                parts: vec![Part::Text(text.0)],
            }],
            Some(TextOr::List(items)) => items
                .into_iter()
                .enumerate()
                .map(|(index, wire)| item(wire, index))
                .collect::<Result<_, _>>()?,
            None if stateful.is_some() => Vec::new(),
            None => return Err(invalid("input", "is required.")),
        };
        let mut functions = Vec::new();
        let mut builtin_tools = Vec::new();
        for (index, tool) in wire.tools.into_iter().flatten().enumerate() {
            if tool.kind.as_str() == "function" {
                let param = format!("tools[{index}].name");
                let name = required(tool.name, &param)?;
                if name.is_empty() {
                    return Err(invalid(param, "must not be empty."));
                }
                functions.push(FunctionDef {
                    name,
                    description: tool.description.map(|text| text.0),
                    parameters: tool.parameters,
                    strict: tool.strict,
                });
            } else {
                builtin_tools.push((format!("tools[{index}].type"), tool.kind.0));
            }
        }
        let mut dropped = Vec::new();
        let text = wire.text.map(|text| (text.format, text.verbosity.is_some()));
        for (name, set) in [
            ("store", wire.store == Some(true)),
            ("reasoning", wire.reasoning.is_some()),
            ("reasoning", items.iter().any(|item| matches!(item, Item::Reasoning))),
            ("text.verbosity", text.as_ref().is_some_and(|(_, verbosity)| *verbosity)),
            ("include", wire.include.is_some()),
            ("truncation", wire.truncation.is_some()),
            ("service_tier", wire.service_tier.is_some()),
            ("prompt_cache_key", wire.prompt_cache_key.is_some()),
            ("metadata", wire.metadata.is_some()),
            ("top_logprobs", wire.top_logprobs.is_some()),
            ("max_tool_calls", wire.max_tool_calls.is_some()),
        ] {
            if set && !dropped.contains(&name) {
                dropped.push(name);
            }
        }
        Ok(Request {
            model: wire.model.0,
            instructions: wire.instructions.map(|text| text.0),
            items,
            functions,
            builtin_tools,
            tool_choice: wire.tool_choice.map(tool_choice).transpose()?,
            parallel_tool_calls: wire.parallel_tool_calls,
            format: text.and_then(|(format, _)| format).map(format).transpose()?.flatten(),
            max_output_tokens,
            temperature: wire.temperature,
            top_p: wire.top_p,
            stream: wire.stream.unwrap_or(false),
            user: wire.user.or(wire.safety_identifier).map(|text| text.0),
            stateful,
            dropped,
        })
    }

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

    /// What the router reads: the last user message's text, the rest as
    /// context tokens.
    pub fn view(&self) -> IngressView<'_> {
        let last_user = self
            .items
            .iter()
            .rposition(|item| matches!(item, Item::Message { role: Role::User, .. }));
        let mut view = IngressView {
            prompt: PromptView {
                has_tools: !self.functions.is_empty() || !self.builtin_tools.is_empty(),
                response_format: match self.format {
                    None => ResponseFormatKind::None,
                    Some(Format::JsonObject) => ResponseFormatKind::JsonObject,
                    Some(Format::JsonSchema { .. }) => ResponseFormatKind::JsonSchema,
                },
                ..PromptView::default()
            },
            system: self.instructions.as_deref().into_iter().collect(),
            ..IngressView::default()
        };
        let mut context = self.instructions.as_deref().map_or(0, tokens::estimate);
        for function in &self.functions {
            context = context
                .saturating_add(tokens::estimate(&function.name))
                .saturating_add(function.description.as_deref().map_or(0, tokens::estimate))
                .saturating_add(function.parameters.map_or(0, |schema| tokens::estimate(schema.get())));
        }
        for (position, item) in self.items.iter().enumerate() {
            context = context.saturating_add(tokens::PER_MESSAGE_OVERHEAD);
            match item {
                Item::Message { role, parts } => {
                    if *role == Role::User {
                        view.prompt.user_turns += 1;
                    }
                    for part in parts {
                        match (part, *role, Some(position) == last_user) {
                            (Part::Text(text), Role::User, true) => view.prompt.last_user_parts.push(text),
                            (Part::Text(text), Role::System, _) => {
                                view.system.push(text);
                                context = context.saturating_add(tokens::estimate(text));
                            }
                            (part, _, _) => context = context.saturating_add(part_tokens(part, &mut view)),
                        }
                    }
                }
                Item::FunctionCall { name, arguments, .. } => {
                    context = context
                        .saturating_add(tokens::estimate(name))
                        .saturating_add(tokens::estimate(arguments));
                }
                Item::FunctionCallOutput { output, .. } => {
                    view.tool_results += 1;
                    for part in output {
                        context = context.saturating_add(part_tokens(part, &mut view));
                    }
                }
                Item::Reasoning | Item::OpenAiOnly { .. } => {}
            }
        }
        view.prompt.context_tokens = context;
        view
    }

    /// The chat body's settings and its system message (`instructions`),
    /// before the conversation's items.
    fn chat_opening(&self) -> ChatBody<'_> {
        let mut chat = ChatBody {
            model: &self.model,
            max_completion_tokens: self.max_output_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            stream: self.stream,
            stream_options: self.stream.then_some(StreamOptions { include_usage: true }),
            user: self.user.as_deref(),
            ..ChatBody::default()
        };
        if let Some(instructions) = &self.instructions {
            chat.push(ChatMessage::text("system", Cow::Borrowed(instructions)));
        }
        chat
    }

    fn chat_tools(&self) -> Vec<ChatTool<'_>> {
        self.functions
            .iter()
            .map(|function| {
                ChatTool::function(FunctionTool {
                    name: &function.name,
                    description: function.description.as_deref(),
                    parameters: function.parameters,
                    strict: function.strict,
                })
            })
            .collect()
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

    /// A chat body to *plan* a request only OpenAI can take (see
    /// [`Request::needs_openai`]): its texts as messages and its function
    /// tools, so routing, rules and the spend estimate read what the
    /// client sent. No provider is sent it: the attempts send the client's
    /// own body.
    pub fn to_planning_body(&self) -> Result<Vec<u8>, GatewayError> {
        let mut chat = self.chat_opening();
        let texts = |parts: &[Part<'_>]| -> String {
            let texts: Vec<&str> = parts
                .iter()
                .filter_map(|part| match part {
                    Part::Text(text) => Some(text.as_ref()),
                    _ => None,
                })
                .collect();
            texts.join("\n")
        };
        for item in &self.items {
            let (role, text) = match item {
                Item::Message {
                    role: Role::User,
                    parts,
                } => ("user", texts(parts)),
                Item::Message {
                    role: Role::Assistant,
                    parts,
                } => ("assistant", texts(parts)),
                Item::Message {
                    role: Role::System,
                    parts,
                } => ("system", texts(parts)),
                // What a tool returned is what the model reads next.
                Item::FunctionCallOutput { output, .. } => ("user", texts(output)),
                _ => continue,
            };
            chat.messages.push(ChatMessage::text(role, Cow::Owned(text)));
        }
        if !chat.messages.iter().any(|message| message.role == "user") {
            chat.messages.push(ChatMessage::text("user", Cow::Borrowed("")));
        }
        chat.tools = self.chat_tools();
        chat.to_bytes("input")
    }

    /// The request as an OpenAI chat body, or the error saying why only
    /// OpenAI's own Responses API can take it (stored state, built-in
    /// tools, file URLs): the router should then keep other providers out
    /// of the request's chain.
    pub fn to_chat_body(&self) -> Result<Translated, GatewayError> {
        if let Some(field) = self.stateful {
            return Err(openai_only(field, &format!("`{field}`")));
        }
        if let Some((param, kind)) = self.builtin_tools.first() {
            return Err(openai_only(param, &format!("the built-in `{kind}` tool")));
        }
        let mut chat = self.chat_opening();
        // Images and files a function's output returned: a chat `tool`
        // message cannot carry them, so a user message right after does.
        let mut returned: Vec<ChatPart<'_>> = Vec::new();
        for item in &self.items {
            if !matches!(item, Item::FunctionCallOutput { .. }) {
                flush_user_parts(&mut returned, &mut chat);
            }
            match item {
                Item::Message { role, parts } => chat.push(message(*role, parts)?),
                Item::FunctionCall {
                    call_id,
                    name,
                    arguments,
                } => chat.push(ChatMessage {
                    tool_calls: vec![ChatToolCall::function(call_id, name, arguments)],
                    content: None,
                    ..ChatMessage::text("assistant", Cow::Borrowed(""))
                }),
                Item::FunctionCallOutput { call_id, output } => {
                    let mut texts = Vec::new();
                    for part in output {
                        match part {
                            Part::Text(text) => texts.push(text.as_ref()),
                            other => returned.push(chat_part(other)?),
                        }
                    }
                    chat.push(ChatMessage::tool_result(call_id, Cow::Owned(texts.join("\n"))));
                }
                Item::Reasoning => {}
                Item::OpenAiOnly { param, what } => return Err(openai_only(param, what)),
            }
        }
        flush_user_parts(&mut returned, &mut chat);
        chat.tools = self.chat_tools();
        if !chat.tools.is_empty() {
            chat.tool_choice = match &self.tool_choice {
                None => None,
                Some(ToolChoice::Mode(mode)) => Some(ChatToolChoice::Mode(mode)),
                Some(ToolChoice::Function(name)) => Some(ChatToolChoice::named(name)),
                Some(ToolChoice::OpenAiOnly) => return Err(openai_only("tool_choice", "this `tool_choice`")),
            };
            chat.parallel_tool_calls = self.parallel_tool_calls;
        }
        chat.response_format = self.format.as_ref().map(|format| match format {
            Format::JsonObject => ResponseFormat::JsonObject,
            Format::JsonSchema {
                name,
                description,
                schema,
                strict,
            } => ResponseFormat::JsonSchema {
                json_schema: JsonSchema {
                    name,
                    description: description.as_deref(),
                    schema,
                    strict: *strict,
                },
            },
        });
        Ok(Translated {
            body: chat.to_bytes("input")?,
            dropped: self.dropped.clone(),
        })
    }
}

fn part_tokens(part: &Part<'_>, view: &mut IngressView<'_>) -> u32 {
    match part {
        Part::Text(text) => tokens::estimate(text),
        Part::Image { .. } => {
            view.prompt.images += 1;
            IMAGE_TOKENS
        }
        Part::File(_) => {
            view.documents += 1;
            DOCUMENT_TOKENS
        }
        Part::OpenAiOnly { .. } => 0,
    }
}

fn openai_only(param: &str, what: &str) -> GatewayError {
    invalid(
        param,
        &format!("{what} needs OpenAI's own Responses API, and this request's model is served by another provider."),
    )
}

fn chat_part<'r>(part: &'r Part<'_>) -> Result<ChatPart<'r>, GatewayError> {
    Ok(match part {
        Part::Text(text) => ChatPart::Text { text },
        Part::Image { url, detail } => ChatPart::ImageUrl {
            image_url: ImageUrl {
                url: Cow::Borrowed(url),
                detail: detail.as_deref(),
            },
        },
        Part::File(file) => ChatPart::File {
            file: FilePart {
                filename: file.filename.as_deref(),
                file_data: file.file_data.as_deref().map(Cow::Borrowed),
                file_id: file.file_id.as_deref(),
            },
        },
        Part::OpenAiOnly { param, what } => return Err(openai_only(param, what)),
    })
}

fn message<'r>(role: Role, parts: &'r [Part<'_>]) -> Result<ChatMessage<'r>, GatewayError> {
    let joined = || -> Result<Cow<'r, str>, GatewayError> {
        let mut texts = Vec::with_capacity(parts.len());
        for part in parts {
            match part {
                Part::Text(text) => texts.push(text.as_ref()),
                Part::OpenAiOnly { param, what } => return Err(openai_only(param, what)),
                _ => {
                    return Err(invalid(
                        "input",
                        "only user messages can carry images and files for this model's provider.",
                    ))
                }
            }
        }
        Ok(match texts.as_slice() {
            [one] => Cow::Borrowed(*one),
            _ => Cow::Owned(texts.join("\n")),
        })
    };
    Ok(match role {
        Role::System => ChatMessage::text("system", joined()?),
        Role::Assistant => ChatMessage::text("assistant", joined()?),
        Role::User => {
            let content = match parts {
                [Part::Text(text)] => ChatContent::Text(Cow::Borrowed(text)),
                _ => ChatContent::Parts(parts.iter().map(chat_part).collect::<Result<_, _>>()?),
            };
            ChatMessage {
                content: Some(content),
                ..ChatMessage::text("user", Cow::Borrowed(""))
            }
        }
    })
}

fn flush_user_parts<'r>(parts: &mut Vec<ChatPart<'r>>, chat: &mut ChatBody<'r>) {
    if parts.is_empty() {
        return;
    }
    chat.push(ChatMessage {
        content: Some(ChatContent::Parts(std::mem::take(parts))),
        ..ChatMessage::text("user", Cow::Borrowed(""))
    });
}
