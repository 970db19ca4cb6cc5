//! Reading a Messages body into a validated [`Request`]: every problem is a
//! 400 naming the field, and what chat cannot express is either noted as
//! dropped or kept as a block only an Anthropic target can take.

use std::borrow::Cow;

use serde_json::value::RawValue;

use crate::error::GatewayError;
use crate::request::Text;

use super::super::wire::{
    check_model, check_range, drop_once, drop_present, invalid, output_budget, parse_body, required, required_name,
    TextOr,
};
use super::schema::{WireBlock, WireMessage, WireOutputConfig, WireRequest, WireSource, WireTool, WireToolChoice};
use super::{Block, Message, Request, Speaker, Tool, ToolChoice};

/// OpenAI allows four stop sequences; Anthropic more.
const MAX_STOP_SEQUENCES: usize = 4;

/// An image or document `source`.
fn source<'a>(source: Option<WireSource<'a>>, param: &str, document: bool) -> Result<Block<'a>, GatewayError> {
    let param = format!("{param}.source");
    let source = source.ok_or_else(|| invalid(&param, "is required."))?;
    let field = |value: Option<Text<'a>>, name: &str| required(value, &format!("{param}.{name}"));
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
                text.push_str(&required(block.text, &format!("{block_param}.text"))?);
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
        "text" => Block::Text(required(wire.text, &field("text"))?),
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
                id: required(wire.id, &field("id"))?,
                name: required(wire.name, &field("name"))?,
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
                tool_use_id: required(wire.tool_use_id, &field("tool_use_id"))?,
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
        None | Some("custom") => Ok(Tool::Custom {
            name: required_name(wire.name, &param("name"))?,
            description: wire.description.map(|text| text.0),
            input_schema: wire
                .input_schema
                .ok_or_else(|| invalid(param("input_schema"), "is required."))?,
            strict: wire.strict,
        }),
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
        "tool" => ToolChoice::Tool(required(wire.name, "tool_choice.name")?),
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
        let max_tokens = check_settings(&wire)?;
        let mut dropped = Vec::new();
        drop_present(
            &mut dropped,
            [
                ("top_k", wire.top_k.is_some()),
                ("thinking", wire.thinking.is_some()),
                ("cache_control", wire.cache_control.is_some()),
                ("service_tier", wire.service_tier.is_some()),
                ("container", wire.container.is_some()),
                ("context_management", wire.context_management.is_some()),
                ("mcp_servers", wire.mcp_servers.is_some()),
                ("inference_geo", wire.inference_geo.is_some()),
                ("speed", wire.speed.is_some()),
            ],
        );
        let (system, system_cached) = system(wire.system)?;
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
        let stop_sequences = stop_sequences(wire.stop_sequences, &mut dropped);
        let output_schema = match wire.output_config {
            Some(config) => output_schema(config, &mut dropped)?,
            None => None,
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
}

/// Checks the model, the output budget, that there are messages, and the
/// sampling settings; the budget as a number.
fn check_settings(wire: &WireRequest<'_>) -> Result<Option<u64>, GatewayError> {
    check_model(&wire.model)?;
    let max_tokens = output_budget("max_tokens", wire.max_tokens)?;
    if wire.messages.is_empty() {
        return Err(invalid("messages", "must contain at least one message."));
    }
    check_range("temperature", wire.temperature, 0.0, 1.0)?;
    check_range("top_p", wire.top_p, 0.0, 1.0)?;
    if wire.top_k.is_some_and(|k| k < 0) {
        return Err(invalid("top_k", "must not be negative."));
    }
    Ok(max_tokens)
}

/// The system prompt's texts, and whether a block of it carries
/// `cache_control`.
fn system<'a>(wire: Option<TextOr<'a, WireBlock<'a>>>) -> Result<(Vec<Cow<'a, str>>, bool), GatewayError> {
    let blocks = match wire {
        None => return Ok((Vec::new(), false)),
        Some(TextOr::Text(text)) => return Ok((vec![text.0], false)),
        Some(TextOr::List(blocks)) => blocks,
    };
    let mut cached = false;
    let texts = blocks
        .into_iter()
        .enumerate()
        .map(|(index, block)| {
            let param = format!("system[{index}]");
            if block.kind.as_str() != "text" {
                return Err(invalid(format!("{param}.type"), "system blocks must be text."));
            }
            cached |= block.cache_control.is_some();
            required(block.text, &format!("{param}.text"))
        })
        .collect::<Result<_, _>>()?;
    Ok((texts, cached))
}

/// The non-empty stop sequences, as many as OpenAI takes (the rest are
/// dropped).
fn stop_sequences<'a>(wire: Option<Vec<Text<'a>>>, dropped: &mut Vec<&'static str>) -> Vec<Cow<'a, str>> {
    let mut stop_sequences: Vec<Cow<'a, str>> = wire
        .into_iter()
        .flatten()
        .map(|text| text.0)
        .filter(|text| !text.is_empty())
        .collect();
    if stop_sequences.len() > MAX_STOP_SEQUENCES {
        stop_sequences.truncate(MAX_STOP_SEQUENCES);
        drop_once(dropped, "stop_sequences");
    }
    stop_sequences
}

/// The JSON schema `output_config` asks the answer to follow, if any
/// (`effort` is dropped).
fn output_schema<'a>(
    config: WireOutputConfig<'a>,
    dropped: &mut Vec<&'static str>,
) -> Result<Option<&'a RawValue>, GatewayError> {
    if config.effort.is_some() {
        drop_once(dropped, "output_config.effort");
    }
    match config.format {
        None => Ok(None),
        Some(format) if format.kind.as_str() == "json_schema" => {
            Ok(Some(format.schema.ok_or_else(|| {
                invalid("output_config.format.schema", "is required.")
            })?))
        }
        Some(_) => Err(invalid("output_config.format.type", "must be `json_schema`.")),
    }
}
