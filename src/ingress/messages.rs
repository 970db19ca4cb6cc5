//! Anthropic's Messages API as an ingress (`POST /v1/messages`, what Claude
//! Code and the `anthropic` SDKs send): [`Request`] reads and validates a
//! body once, gives the router its [`IngressView`], and translates it into
//! an OpenAI chat body for non-Anthropic targets; [`answer`] writes chat
//! answers and errors back as Anthropic messages and errors, [`stream`]
//! does it for streams.
//!
//! What chat cannot express is either dropped and reported (cache_control,
//! thinking, top_k, ...), or, when dropping would change the request's
//! meaning (server tools, file references, URL documents), makes
//! [`Request::to_chat_body`] fail: such a request can only go to an
//! Anthropic target, natively.

mod answer;
mod stream;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::GatewayError;
use crate::headers::HeaderMap;
use crate::request::{PromptView, ResponseFormatKind, Text};
use crate::tokens;

use super::chat_body::{
    ChatBody, ChatContent, ChatMessage, ChatPart, ChatTool, ChatToolCall, ChatToolChoice, FilePart, FunctionTool,
    ImageUrl, JsonSchema, ResponseFormat, StreamOptions,
};
use super::wire::{check_range, invalid, parse_body, TextOr};
use super::{IngressView, Translated, DOCUMENT_TOKENS, IMAGE_TOKENS};

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

/// OpenAI allows four stop sequences; Anthropic more.
const MAX_STOP_SEQUENCES: usize = 4;

#[derive(Deserialize)]
struct WireRequest<'a> {
    #[serde(borrow)]
    model: Text<'a>,
    #[serde(default)]
    max_tokens: Option<i64>,
    #[serde(borrow)]
    messages: Vec<WireMessage<'a>>,
    #[serde(default, borrow)]
    system: Option<TextOr<'a, WireBlock<'a>>>,
    #[serde(default, borrow)]
    tools: Option<Vec<WireTool<'a>>>,
    #[serde(default, borrow)]
    tool_choice: Option<WireToolChoice<'a>>,
    #[serde(default, borrow)]
    stop_sequences: Option<Vec<Text<'a>>>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    top_k: Option<i64>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default, borrow)]
    metadata: Option<WireMetadata<'a>>,
    #[serde(default, borrow)]
    output_config: Option<WireOutputConfig<'a>>,
    #[serde(default, borrow)]
    thinking: Option<&'a RawValue>,
    #[serde(default, borrow)]
    cache_control: Option<&'a RawValue>,
    #[serde(default, borrow)]
    service_tier: Option<&'a RawValue>,
    #[serde(default, borrow)]
    container: Option<&'a RawValue>,
    #[serde(default, borrow)]
    context_management: Option<&'a RawValue>,
    #[serde(default, borrow)]
    mcp_servers: Option<&'a RawValue>,
    #[serde(default, borrow)]
    inference_geo: Option<&'a RawValue>,
    #[serde(default, borrow)]
    speed: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireMessage<'a> {
    #[serde(borrow)]
    role: Text<'a>,
    #[serde(borrow)]
    content: TextOr<'a, WireBlock<'a>>,
}

/// Every content block type's fields, flat: the `type` says which apply.
#[derive(Deserialize)]
struct WireBlock<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(default, borrow)]
    text: Option<Text<'a>>,
    #[serde(default, borrow)]
    source: Option<WireSource<'a>>,
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default, borrow)]
    input: Option<&'a RawValue>,
    #[serde(default, borrow)]
    tool_use_id: Option<Text<'a>>,
    #[serde(default, borrow)]
    content: Option<TextOr<'a, WireBlock<'a>>>,
    #[serde(default)]
    is_error: Option<bool>,
    #[serde(default, borrow)]
    title: Option<Text<'a>>,
    #[serde(default, borrow)]
    cache_control: Option<&'a RawValue>,
    #[serde(default, borrow)]
    citations: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireSource<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(default, borrow)]
    media_type: Option<Text<'a>>,
    #[serde(default, borrow)]
    data: Option<Text<'a>>,
    #[serde(default, borrow)]
    url: Option<Text<'a>>,
    #[serde(default, borrow)]
    content: Option<TextOr<'a, WireBlock<'a>>>,
}

#[derive(Deserialize)]
struct WireTool<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Text<'a>>,
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default, borrow)]
    description: Option<Text<'a>>,
    #[serde(default, borrow)]
    input_schema: Option<&'a RawValue>,
    #[serde(default)]
    strict: Option<bool>,
    #[serde(default, borrow)]
    cache_control: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireToolChoice<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default)]
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Deserialize)]
struct WireMetadata<'a> {
    #[serde(default, borrow)]
    user_id: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct WireOutputConfig<'a> {
    #[serde(default, borrow)]
    format: Option<WireOutputFormat<'a>>,
    #[serde(default, borrow)]
    effort: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireOutputFormat<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(default, borrow)]
    schema: Option<&'a RawValue>,
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

fn text_of<'a>(text: Option<Text<'a>>, param: &str) -> Result<Cow<'a, str>, GatewayError> {
    text.map(|text| text.0).ok_or_else(|| invalid(param, "is required."))
}

fn drop_once(dropped: &mut Vec<&'static str>, name: &'static str) {
    if !dropped.contains(&name) {
        dropped.push(name);
    }
}

/// An image or document `source`.
fn source<'a>(source: Option<WireSource<'a>>, param: &str, document: bool) -> Result<Block<'a>, GatewayError> {
    let param = format!("{param}.source");
    let source = source.ok_or_else(|| invalid(&param, "is required."))?;
    let field = |value: Option<Text<'a>>, name: &str| text_of(value, &format!("{param}.{name}"));
    match (source.kind.as_str(), document) {
        ("base64", _) => {
            let media_type = field(source.media_type, "media_type")?;
            let data = field(source.data, "data")?;
            let data_url = format!("data:{media_type};base64,{data}");
            Ok(if document {
                Block::Pdf { data_url, title: None }
            } else {
                Block::Image(Cow::Owned(data_url))
            })
        }
        ("url", false) => Ok(Block::Image(field(source.url, "url")?)),
        ("text", true) => Ok(Block::DocumentText(field(source.data, "data")?)),
        ("content", true) => {
            let blocks = match source.content {
                Some(TextOr::Text(text)) => return Ok(Block::DocumentText(text.0)),
                Some(TextOr::List(blocks)) => blocks,
                None => return Err(invalid(format!("{param}.content"), "is required.")),
            };
            let mut text = String::new();
            for (index, block) in blocks.into_iter().enumerate() {
                let block_param = format!("{param}.content[{index}]");
                if block.kind.as_str() != "text" {
                    return Err(invalid(&block_param, "a document's content must be text blocks."));
                }
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&text_of(block.text, &format!("{block_param}.text"))?);
            }
            Ok(Block::DocumentText(Cow::Owned(text)))
        }
        ("url" | "file", _) => Ok(Block::AnthropicOnly {
            what: Cow::Owned(format!("a `{}` source", source.kind.as_str())),
            param,
        }),
        (other, _) => Err(invalid(
            format!("{param}.type"),
            &format!("unknown source type `{other}`."),
        )),
    }
}

/// Reads one content block; `dropped` collects features chat loses.
fn block<'a>(wire: WireBlock<'a>, param: &str, dropped: &mut Vec<&'static str>) -> Result<Block<'a>, GatewayError> {
    let field = |name: &str| format!("{param}.{name}");
    Ok(match wire.kind.as_str() {
        "text" => Block::Text(text_of(wire.text, &field("text"))?),
        "image" => source(wire.source, param, false)?,
        "document" => {
            if wire.citations.is_some() {
                drop_once(dropped, "citations");
            }
            match source(wire.source, param, true)? {
                Block::Pdf { data_url, .. } => Block::Pdf {
                    data_url,
                    title: wire.title.map(|title| title.0),
                },
                other => other,
            }
        }
        "tool_use" => {
            let input = wire.input.ok_or_else(|| invalid(field("input"), "is required."))?;
            if !input.get().trim_start().starts_with('{') {
                return Err(invalid(field("input"), "must be an object."));
            }
            Block::ToolUse {
                id: text_of(wire.id, &field("id"))?,
                name: text_of(wire.name, &field("name"))?,
                input,
            }
        }
        "tool_result" => {
            if wire.is_error == Some(true) {
                drop_once(dropped, "is_error");
            }
            let content = match wire.content {
                None => Vec::new(),
                Some(TextOr::Text(text)) => vec![Block::Text(text.0)],
                Some(TextOr::List(blocks)) => blocks
                    .into_iter()
                    .enumerate()
                    .map(|(index, inner)| block(inner, &format!("{param}.content[{index}]"), dropped))
                    .collect::<Result<_, _>>()?,
            };
            if let Some(nested) = content.iter().position(|inner| {
                matches!(
                    inner,
                    Block::ToolUse { .. } | Block::ToolResult { .. } | Block::Thinking
                )
            }) {
                return Err(invalid(
                    format!("{param}.content[{nested}]"),
                    "a tool result cannot hold tool calls, results or thinking.",
                ));
            }
            Block::ToolResult {
                tool_use_id: text_of(wire.tool_use_id, &field("tool_use_id"))?,
                content,
            }
        }
        "thinking" | "redacted_thinking" => {
            drop_once(dropped, "thinking");
            Block::Thinking
        }
        other => Block::AnthropicOnly {
            param: field("type"),
            what: Cow::Owned(format!("`{other}` blocks")),
        },
    })
}

fn message<'a>(
    wire: WireMessage<'a>,
    index: usize,
    dropped: &mut Vec<&'static str>,
) -> Result<Message<'a>, GatewayError> {
    let speaker = match wire.role.as_str() {
        "user" => Speaker::User,
        "assistant" => Speaker::Assistant,
        _ => {
            return Err(invalid(
                format!("messages[{index}].role"),
                "must be `user` or `assistant` (the system prompt goes in `system`).",
            ))
        }
    };
    // A breakpoint on any of the message's blocks (or inside a tool
    // result): chat marks the message, so the cache ends after it.
    let marked = |block: &WireBlock<'_>| {
        block.cache_control.is_some()
            || matches!(&block.content, Some(TextOr::List(inner)) if inner.iter().any(|inner| inner.cache_control.is_some()))
    };
    let cached = matches!(&wire.content, TextOr::List(blocks) if blocks.iter().any(marked));
    let blocks: Vec<Block<'a>> = match wire.content {
        TextOr::Text(text) => vec![Block::Text(text.0)],
        TextOr::List(blocks) => blocks
            .into_iter()
            .enumerate()
            .map(|(position, wire)| block(wire, &format!("messages[{index}].content[{position}]"), dropped))
            .collect::<Result<_, _>>()?,
    };
    for (position, block) in blocks.iter().enumerate() {
        let misplaced = match (speaker, block) {
            (Speaker::User, Block::ToolUse { .. }) => Some("`tool_use` blocks belong in assistant messages."),
            (Speaker::Assistant, Block::ToolResult { .. }) => Some("`tool_result` blocks belong in user messages."),
            _ => None,
        };
        if let Some(problem) = misplaced {
            return Err(invalid(format!("messages[{index}].content[{position}]"), problem));
        }
    }
    Ok(Message {
        speaker,
        blocks,
        cached,
    })
}

fn tool<'a>(wire: WireTool<'a>, index: usize, dropped: &mut Vec<&'static str>) -> Result<Tool<'a>, GatewayError> {
    if wire.cache_control.is_some() {
        drop_once(dropped, "cache_control");
    }
    let param = |name: &str| format!("tools[{index}].{name}");
    match wire.kind.as_ref().map(Text::as_str) {
        None | Some("custom") => {
            let name = text_of(wire.name, &param("name"))?;
            if name.is_empty() {
                return Err(invalid(param("name"), "must not be empty."));
            }
            Ok(Tool::Custom {
                name,
                description: wire.description.map(|text| text.0),
                input_schema: wire
                    .input_schema
                    .ok_or_else(|| invalid(param("input_schema"), "is required."))?,
                strict: wire.strict,
            })
        }
        Some(_) => Ok(Tool::Server {
            param: param("type"),
            kind: wire.kind.map(|kind| kind.0).unwrap_or_default(),
        }),
    }
}

fn tool_choice<'a>(wire: WireToolChoice<'a>) -> Result<(ToolChoice<'a>, Option<bool>), GatewayError> {
    let choice = match wire.kind.as_str() {
        "auto" => ToolChoice::Auto,
        "any" => ToolChoice::Any,
        "none" => ToolChoice::None,
        "tool" => ToolChoice::Tool(text_of(wire.name, "tool_choice.name")?),
        _ => return Err(invalid("tool_choice.type", "must be `auto`, `any`, `tool` or `none`.")),
    };
    // Anthropic's `disable_parallel_tool_use` is OpenAI's
    // `parallel_tool_calls` negated.
    Ok((choice, wire.disable_parallel_tool_use.map(|disable| !disable)))
}

impl<'a> Request<'a> {
    /// Validates a `/v1/messages` body: `model`, `max_tokens` and
    /// `messages` are required, as Anthropic requires them.
    pub fn parse(body: &'a [u8]) -> Result<Request<'a>, GatewayError> {
        let request = Request::parse_without_max_tokens(body)?;
        if request.max_tokens.is_none() {
            return Err(invalid("max_tokens", "is required."));
        }
        Ok(request)
    }

    /// Validates a `/v1/messages/count_tokens` body (no `max_tokens`).
    pub fn parse_without_max_tokens(body: &'a [u8]) -> Result<Request<'a>, GatewayError> {
        let wire: WireRequest<'a> = parse_body(body)?;
        if wire.model.as_str().is_empty() {
            return Err(invalid("model", "must be a non-empty string."));
        }
        let max_tokens = match wire.max_tokens {
            Some(tokens) if tokens < 1 => return Err(invalid("max_tokens", "must be at least 1.")),
            tokens => tokens.and_then(|tokens| u64::try_from(tokens).ok()),
        };
        if wire.messages.is_empty() {
            return Err(invalid("messages", "must contain at least one message."));
        }
        check_range("temperature", wire.temperature, 0.0, 1.0)?;
        check_range("top_p", wire.top_p, 0.0, 1.0)?;
        if wire.top_k.is_some_and(|k| k < 0) {
            return Err(invalid("top_k", "must not be negative."));
        }
        let mut dropped = Vec::new();
        for (name, present) in [
            ("top_k", wire.top_k.is_some()),
            ("thinking", wire.thinking.is_some()),
            ("cache_control", wire.cache_control.is_some()),
            ("service_tier", wire.service_tier.is_some()),
            ("container", wire.container.is_some()),
            ("context_management", wire.context_management.is_some()),
            ("mcp_servers", wire.mcp_servers.is_some()),
            ("inference_geo", wire.inference_geo.is_some()),
            ("speed", wire.speed.is_some()),
        ] {
            if present {
                drop_once(&mut dropped, name);
            }
        }
        let mut system_cached = false;
        let system = match wire.system {
            None => Vec::new(),
            Some(TextOr::Text(text)) => vec![text.0],
            Some(TextOr::List(blocks)) => blocks
                .into_iter()
                .enumerate()
                .map(|(index, block)| {
                    let param = format!("system[{index}]");
                    if block.kind.as_str() != "text" {
                        return Err(invalid(format!("{param}.type"), "system blocks must be text."));
                    }
                    system_cached |= block.cache_control.is_some();
                    text_of(block.text, &format!("{param}.text"))
                })
                .collect::<Result<_, _>>()?,
        };
        let messages = wire
            .messages
            .into_iter()
            .enumerate()
            .map(|(index, wire)| message(wire, index, &mut dropped))
            .collect::<Result<_, _>>()?;
        let tools = wire
            .tools
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(index, wire)| tool(wire, index, &mut dropped))
            .collect::<Result<_, _>>()?;
        let (tool_choice, parallel_tool_calls) = match wire.tool_choice.map(tool_choice).transpose()? {
            Some((choice, parallel)) => (Some(choice), parallel),
            None => (None, None),
        };
        let mut stop_sequences: Vec<Cow<'a, str>> = wire
            .stop_sequences
            .into_iter()
            .flatten()
            .map(|text| text.0)
            .filter(|text| !text.is_empty())
            .collect();
        if stop_sequences.len() > MAX_STOP_SEQUENCES {
            stop_sequences.truncate(MAX_STOP_SEQUENCES);
            drop_once(&mut dropped, "stop_sequences");
        }
        let output_schema = match wire.output_config {
            None => None,
            Some(config) => {
                if config.effort.is_some() {
                    drop_once(&mut dropped, "output_config.effort");
                }
                match config.format {
                    None => None,
                    Some(format) if format.kind.as_str() == "json_schema" => Some(
                        format
                            .schema
                            .ok_or_else(|| invalid("output_config.format.schema", "is required."))?,
                    ),
                    Some(_) => {
                        return Err(invalid("output_config.format.type", "must be `json_schema`."));
                    }
                }
            }
        };
        Ok(Request {
            model: wire.model.0,
            max_tokens,
            system,
            system_cached,
            messages,
            tools,
            tool_choice,
            parallel_tool_calls,
            stop_sequences,
            temperature: wire.temperature,
            top_p: wire.top_p,
            stream: wire.stream.unwrap_or(false),
            user_id: wire.metadata.and_then(|metadata| metadata.user_id).map(|text| text.0),
            output_schema,
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

    /// The output budget (required on `/v1/messages`).
    pub fn max_tokens(&self) -> Option<u64> {
        self.max_tokens
    }

    /// What the router reads: the last user message's text (a user
    /// message that only returns tool results is part of the context, as
    /// a chat `tool` message is), the rest as context tokens.
    pub fn view(&self) -> IngressView<'_> {
        let is_instruction = |message: &Message<'_>| {
            message.speaker == Speaker::User && message.blocks.iter().any(|block| matches!(block, Block::Text(_)))
        };
        let last_user = self.messages.iter().rposition(is_instruction);
        let mut view = IngressView {
            prompt: PromptView {
                has_tools: !self.tools.is_empty(),
                response_format: if self.output_schema.is_some() {
                    ResponseFormatKind::JsonSchema
                } else {
                    ResponseFormatKind::None
                },
                ..PromptView::default()
            },
            system: self.system.iter().map(|text| text.as_ref()).collect(),
            ..IngressView::default()
        };
        let mut context = self
            .system
            .iter()
            .map(|text| tokens::estimate(text))
            .fold(0, u32::saturating_add);
        for tool in &self.tools {
            if let Tool::Custom {
                name,
                description,
                input_schema,
                ..
            } = tool
            {
                context = context
                    .saturating_add(tokens::estimate(name))
                    .saturating_add(description.as_deref().map_or(0, tokens::estimate))
                    .saturating_add(tokens::estimate(input_schema.get()));
            }
        }
        for (position, message) in self.messages.iter().enumerate() {
            if is_instruction(message) {
                view.prompt.user_turns += 1;
            }
            context = context.saturating_add(tokens::PER_MESSAGE_OVERHEAD);
            let last = Some(position) == last_user;
            for block in &message.blocks {
                if let (true, Block::Text(text)) = (last, block) {
                    view.prompt.last_user_parts.push(text);
                } else {
                    context = context.saturating_add(block_tokens(block, &mut view));
                }
            }
        }
        view.prompt.context_tokens = context;
        view
    }

    /// The request as an OpenAI chat body, or the error saying why only an
    /// Anthropic target can take it (a server tool, a file reference, a URL
    /// document): the router should then keep non-Anthropic models out of
    /// the request's chain.
    pub fn to_chat_body(&self) -> Result<Translated, GatewayError> {
        let mut chat = ChatBody {
            model: &self.model,
            max_completion_tokens: self.max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            stop: self.stop_sequences.iter().map(|stop| stop.as_ref()).collect(),
            stream: self.stream,
            stream_options: self.stream.then_some(StreamOptions { include_usage: true }),
            user: self.user_id.as_deref(),
            ..ChatBody::default()
        };
        if !self.system.is_empty() {
            chat.push(ChatMessage {
                cache_breakpoint: self.system_cached,
                ..ChatMessage::text("system", Cow::Owned(self.system.join("\n\n")))
            });
        }
        for message in &self.messages {
            let before = chat.messages.len();
            match message.speaker {
                Speaker::User => user_messages(&message.blocks, &mut chat)?,
                Speaker::Assistant => {
                    // A turn of thinking alone says nothing chat can carry.
                    if let Some(message) = assistant_message(&message.blocks)? {
                        chat.push(message);
                    }
                }
            }
            if message.cached && chat.messages.len() > before {
                if let Some(last) = chat.messages.last_mut() {
                    last.cache_breakpoint = true;
                }
            }
        }
        for tool in &self.tools {
            match tool {
                Tool::Custom {
                    name,
                    description,
                    input_schema,
                    strict,
                } => chat.tools.push(ChatTool::function(FunctionTool {
                    name,
                    description: description.as_deref(),
                    parameters: Some(input_schema),
                    strict: *strict,
                })),
                Tool::Server { param, kind } => {
                    return Err(anthropic_only(param, &format!("the `{kind}` server tool")))
                }
            }
        }
        if !chat.tools.is_empty() {
            chat.tool_choice = self.tool_choice.as_ref().map(|choice| match choice {
                ToolChoice::Auto => ChatToolChoice::Mode("auto"),
                ToolChoice::Any => ChatToolChoice::Mode("required"),
                ToolChoice::None => ChatToolChoice::Mode("none"),
                ToolChoice::Tool(name) => ChatToolChoice::named(name),
            });
            // OpenAI refuses `parallel_tool_calls` without tools.
            chat.parallel_tool_calls = self.parallel_tool_calls;
        }
        chat.response_format = self.output_schema.map(|schema| ResponseFormat::JsonSchema {
            json_schema: JsonSchema {
                name: "output",
                description: None,
                schema,
                strict: Some(true),
            },
        });
        Ok(Translated {
            body: chat.to_bytes("messages")?,
            dropped: self.dropped.clone(),
        })
    }
}

/// Context tokens of a block outside the last user text, counting what
/// the view tallies on the way.
fn block_tokens(block: &Block<'_>, view: &mut IngressView<'_>) -> u32 {
    match block {
        Block::Text(text) | Block::DocumentText(text) => tokens::estimate(text),
        Block::Image(_) => {
            view.prompt.images += 1;
            IMAGE_TOKENS
        }
        Block::Pdf { .. } => {
            view.documents += 1;
            DOCUMENT_TOKENS
        }
        Block::ToolUse { name, input, .. } => tokens::estimate(name).saturating_add(tokens::estimate(input.get())),
        Block::ToolResult { content, .. } => {
            view.tool_results += 1;
            content
                .iter()
                .map(|inner| block_tokens(inner, view))
                .fold(0, u32::saturating_add)
        }
        Block::Thinking | Block::AnthropicOnly { .. } => 0,
    }
}

fn anthropic_only(param: &str, what: &str) -> GatewayError {
    invalid(
        param,
        &format!(
            "{what} can only be sent to an Anthropic model, and this request's model is served by another provider."
        ),
    )
}

/// The chat part of a user-visible block (text, image, document).
fn part<'r>(block: &'r Block<'_>) -> Result<ChatPart<'r>, GatewayError> {
    Ok(match block {
        Block::Text(text) | Block::DocumentText(text) => ChatPart::Text { text },
        Block::Image(url) => ChatPart::ImageUrl {
            image_url: ImageUrl {
                url: Cow::Borrowed(url),
                detail: None,
            },
        },
        Block::Pdf { data_url, title } => ChatPart::File {
            file: FilePart {
                filename: Some(title.as_deref().unwrap_or("document.pdf")),
                file_data: Some(Cow::Borrowed(data_url)),
                file_id: None,
            },
        },
        Block::AnthropicOnly { param, what } => return Err(anthropic_only(param, what)),
        // Callers route these elsewhere.
        Block::ToolUse { .. } | Block::ToolResult { .. } | Block::Thinking => {
            return Err(GatewayError::Internal {
                message: "A tool block reached the user content of a chat message.".into(),
            })
        }
    })
}

/// A user message: each tool result becomes a chat `tool` message (chat
/// wants them right after the assistant's calls), the rest one `user`
/// message. Images and documents inside tool results, which a chat `tool`
/// message cannot carry, join that user message.
fn user_messages<'r>(blocks: &'r [Block<'_>], chat: &mut ChatBody<'r>) -> Result<(), GatewayError> {
    let mut parts = Vec::new();
    for block in blocks {
        match block {
            Block::ToolResult { tool_use_id, content } => {
                let mut text = String::new();
                for inner in content {
                    match inner {
                        Block::Text(piece) | Block::DocumentText(piece) => {
                            if !text.is_empty() {
                                text.push('\n');
                            }
                            text.push_str(piece);
                        }
                        other => parts.push(part(other)?),
                    }
                }
                chat.push(ChatMessage::tool_result(tool_use_id, Cow::Owned(text)));
            }
            Block::Thinking => {}
            other => parts.push(part(other)?),
        }
    }
    let content = match parts.as_slice() {
        [] => return Ok(()),
        [ChatPart::Text { text }] => ChatContent::Text(Cow::Borrowed(text)),
        _ => ChatContent::Parts(parts),
    };
    chat.push(ChatMessage {
        content: Some(content),
        ..ChatMessage::text("user", Cow::Borrowed(""))
    });
    Ok(())
}

/// An assistant message: its text joined, its tool uses as tool calls;
/// `None` when nothing is left.
fn assistant_message<'r>(blocks: &'r [Block<'_>]) -> Result<Option<ChatMessage<'r>>, GatewayError> {
    let mut texts: Vec<&str> = Vec::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block {
            Block::Text(text) => texts.push(text),
            Block::ToolUse { id, name, input } => tool_calls.push(ChatToolCall::function(id, name, input.get())),
            Block::Thinking => {}
            Block::AnthropicOnly { param, what } => return Err(anthropic_only(param, what)),
            Block::Image(_) | Block::Pdf { .. } | Block::DocumentText(_) | Block::ToolResult { .. } => {
                return Err(invalid(
                    "messages",
                    "an assistant message can only carry text and tool calls for this model's provider.",
                ))
            }
        }
    }
    if texts.is_empty() && tool_calls.is_empty() {
        return Ok(None);
    }
    Ok(Some(ChatMessage {
        role: "assistant",
        content: (!texts.is_empty()).then(|| ChatContent::Text(Cow::Owned(texts.join("\n")))),
        tool_calls,
        tool_call_id: None,
        cache_breakpoint: false,
    }))
}
