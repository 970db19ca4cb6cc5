//! Reading a chat request into a [`Conversation`]: the optional parameters
//! set, the tools and tool choice, then the messages as alternating turns.

use std::borrow::Cow;

use serde_json::value::RawValue;

use crate::error::GatewayError;
use crate::request::{Role, Text};

use super::schema::{
    Stop, WireContent, WireFunction, WireMessage, WireNamedChoice, WireRequest, WireResponseFormat, WireTool,
};
use super::{
    arguments_object, Block, Conversation, Image, ResponseFormat, Speaker, Tool, ToolCall, ToolChoice, ToolResult,
};

fn invalid(param: &'static str, message: impl Into<String>) -> GatewayError {
    GatewayError::invalid_param(param, message)
}

/// `tool_choice` (or legacy `function_call`): a mode string or a named function.
fn tool_choice<'a>(raw: &'a RawValue, param: &'static str) -> Result<ToolChoice<'a>, GatewayError> {
    if let Ok(mode) = serde_json::from_str::<String>(raw.get()) {
        return match mode.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" | "any" => Ok(ToolChoice::Required),
            _ => Err(invalid(
                param,
                format!("`{param}` must be auto, none, required or a function."),
            )),
        };
    }
    let named: WireNamedChoice<'a> =
        serde_json::from_str(raw.get()).map_err(|err| invalid(param, format!("Invalid `{param}`: {err}")))?;
    named
        .function
        .map(|function| function.name)
        .or(named.name)
        .map(|name| ToolChoice::Function(name.0))
        .ok_or_else(|| invalid(param, format!("`{param}` must name a function.")))
}

/// The text pieces of a content value (refusals count as text).
fn text_pieces<'a>(content: Option<WireContent<'a>>, role: &str) -> Result<Vec<Cow<'a, str>>, GatewayError> {
    match content {
        None => Ok(Vec::new()),
        Some(WireContent::Text(text)) => Ok(vec![text.0]),
        Some(WireContent::Parts(parts)) => parts
            .into_iter()
            .map(|part| match (part.kind.as_str(), part.text, part.refusal) {
                ("text", Some(text), _) | ("refusal", _, Some(text)) => Ok(text.0),
                (kind, _, _) => Err(invalid(
                    "messages",
                    format!("A {role} message cannot carry a `{kind}` part for this model's provider."),
                )),
            })
            .collect(),
    }
}

/// Every call made so far, (id, name), to link results to calls.
type Calls<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

impl<'a> Conversation<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Conversation<'a>, GatewayError> {
        let wire: WireRequest<'a> = serde_json::from_slice(body)
            .map_err(|err| GatewayError::invalid(format!("Invalid request body: {err}")))?;
        let response_format = wire.response_format.as_ref().map(response_format).transpose()?;
        let set = set_parameters(&wire, response_format.as_ref());
        let tools = tools(wire.tools, wire.functions)?;
        let tool_choice = match (wire.tool_choice, wire.function_call) {
            (Some(raw), _) => Some(tool_choice(raw, "tool_choice")?),
            (None, Some(raw)) => Some(tool_choice(raw, "function_call")?),
            (None, None) => None,
        };
        let stop = match wire.stop {
            None => Vec::new(),
            Some(Stop::One(text)) => vec![text.0],
            Some(Stop::Many(texts)) => texts.into_iter().map(|text| text.0).collect(),
        };

        let mut conversation = Conversation {
            system: Vec::new(),
            system_cached: false,
            turns: Vec::new(),
            tools,
            tool_choice,
            max_tokens: wire.max_completion_tokens.or(wire.max_tokens),
            temperature: wire.temperature,
            top_p: wire.top_p,
            stop: stop.into_iter().filter(|text| !text.is_empty()).collect(),
            response_format,
            parallel_tool_calls: wire.parallel_tool_calls,
            user: wire.user.map(|text| text.0),
            seed: wire.seed,
            presence_penalty: wire.presence_penalty,
            frequency_penalty: wire.frequency_penalty,
            set,
        };
        conversation.read_messages(wire.messages)?;
        Ok(conversation)
    }

    fn read_messages(&mut self, messages: Vec<WireMessage<'a>>) -> Result<(), GatewayError> {
        let mut calls: Calls<'a> = Vec::new();
        for message in messages {
            let cached = message.cache_breakpoint.is_some();
            let end_before = self.end();
            match message.role {
                Role::System | Role::Developer => {
                    let pieces = text_pieces(message.content, "system")?;
                    self.system.extend(pieces.into_iter().filter(|text| !text.is_empty()));
                    self.system_cached |= cached;
                }
                Role::User => {
                    let blocks = user_blocks(message.content)?;
                    self.push(Speaker::User, blocks);
                }
                Role::Assistant => {
                    let blocks = assistant_blocks(message, &mut calls)?;
                    self.push(Speaker::Assistant, blocks);
                }
                Role::Tool => {
                    let result = tool_result(message, &calls)?;
                    self.push(Speaker::User, vec![Block::ToolResult(result)]);
                }
                Role::Function => {
                    let result = function_result(message, &calls)?;
                    self.push(Speaker::User, vec![Block::ToolResult(result)]);
                }
            }
            if cached && self.end() != end_before {
                if let Some(turn) = self.turns.last_mut() {
                    turn.blocks.push(Block::CachePoint);
                }
            }
        }
        Ok(())
    }

    /// Where the conversation ends: its turns, and the last turn's blocks.
    fn end(&self) -> (usize, usize) {
        (self.turns.len(), self.turns.last().map_or(0, |turn| turn.blocks.len()))
    }
}

fn response_format<'a>(format: &WireResponseFormat<'a>) -> Result<ResponseFormat<'a>, GatewayError> {
    Ok(match format.kind.as_str() {
        "text" => ResponseFormat::Text,
        "json_object" => ResponseFormat::JsonObject,
        "json_schema" => ResponseFormat::JsonSchema {
            schema: format.json_schema.as_ref().and_then(|schema| schema.schema),
        },
        other => {
            return Err(invalid(
                "response_format",
                format!("Unknown response_format type `{other}`."),
            ))
        }
    })
}

/// The optional parameters the client set to a value that matters, in
/// the order adapters report them.
fn set_parameters(wire: &WireRequest<'_>, response_format: Option<&ResponseFormat<'_>>) -> Vec<&'static str> {
    let mut set = Vec::new();
    let mut mark = |name: &'static str, condition: bool| {
        if condition {
            set.push(name);
        }
    };
    mark("n", wire.n.is_some_and(|n| n > 1));
    mark("logprobs", wire.logprobs == Some(true));
    mark("top_logprobs", wire.top_logprobs.is_some());
    mark(
        "logit_bias",
        wire.logit_bias.is_some_and(|raw| raw.get().trim() != "{}"),
    );
    mark(
        "presence_penalty",
        wire.presence_penalty.is_some_and(|value| value != 0.0),
    );
    mark(
        "frequency_penalty",
        wire.frequency_penalty.is_some_and(|value| value != 0.0),
    );
    mark("seed", wire.seed.is_some());
    mark("user", wire.user.is_some());
    mark("parallel_tool_calls", wire.parallel_tool_calls == Some(false));
    mark("store", wire.store == Some(true));
    mark(
        "response_format",
        !matches!(response_format, None | Some(ResponseFormat::Text)),
    );
    for (name, raw) in [
        ("reasoning_effort", wire.reasoning_effort),
        ("service_tier", wire.service_tier),
        ("metadata", wire.metadata),
        ("modalities", wire.modalities),
        ("audio", wire.audio),
        ("prediction", wire.prediction),
        ("web_search_options", wire.web_search_options),
        ("verbosity", wire.verbosity),
    ] {
        mark(name, raw.is_some());
    }
    set
}

/// Function tools, then legacy `functions` (tools by another name); any
/// other tool type is refused.
fn tools<'a>(
    tools: Option<Vec<WireTool<'a>>>,
    functions: Option<Vec<WireFunction<'a>>>,
) -> Result<Vec<Tool<'a>>, GatewayError> {
    let mut read = Vec::new();
    for tool in tools.into_iter().flatten() {
        match (tool.kind.as_ref().map(Text::as_str), tool.function) {
            (None | Some("function"), Some(function)) => read.push(Tool {
                name: function.name.0,
                description: function.description.map(|text| text.0),
                parameters: function.parameters,
            }),
            (kind, _) => {
                return Err(invalid(
                    "tools",
                    format!(
                        "Only function tools can be sent to this model's provider (got `{}`).",
                        kind.unwrap_or("?")
                    ),
                ))
            }
        }
    }
    for function in functions.into_iter().flatten() {
        read.push(Tool {
            name: function.name.0,
            description: function.description.map(|text| text.0),
            parameters: function.parameters,
        });
    }
    Ok(read)
}

/// An assistant message's text and its tool calls (each noted in `calls`).
fn assistant_blocks<'a>(message: WireMessage<'a>, calls: &mut Calls<'a>) -> Result<Vec<Block<'a>>, GatewayError> {
    let mut blocks: Vec<Block<'a>> = text_pieces(message.content, "assistant")?
        .into_iter()
        .filter(|text| !text.is_empty())
        .map(Block::Text)
        .collect();
    for call in message.tool_calls.into_iter().flatten() {
        calls.push((call.id.0.clone(), call.function.name.0.clone()));
        blocks.push(Block::ToolCall(ToolCall {
            id: call.id.0,
            arguments: arguments_object(call.function.arguments.as_ref().map(Text::as_str))?,
            name: call.function.name.0,
        }));
    }
    if let Some(call) = message.function_call {
        // Legacy calls have no id; one is made from the call's position.
        let id: Cow<'a, str> = Cow::Owned(format!("call_legacy_{}", calls.len()));
        calls.push((id.clone(), call.name.0.clone()));
        blocks.push(Block::ToolCall(ToolCall {
            id,
            arguments: arguments_object(call.arguments.as_ref().map(Text::as_str))?,
            name: call.name.0,
        }));
    }
    Ok(blocks)
}

/// A `tool` message: the result of the earlier call with its id.
fn tool_result<'a>(message: WireMessage<'a>, calls: &Calls<'a>) -> Result<ToolResult<'a>, GatewayError> {
    let id = message
        .tool_call_id
        .ok_or_else(|| invalid("messages", "A `tool` message needs a `tool_call_id`."))?
        .0;
    let name = calls
        .iter()
        .rev()
        .find(|(call_id, _)| *call_id == id)
        .map(|(_, name)| name.clone())
        .ok_or_else(|| {
            invalid(
                "messages",
                format!("The `tool` message for `{id}` answers no earlier tool call."),
            )
        })?;
    let content = join(text_pieces(message.content, "tool")?);
    Ok(ToolResult { id, name, content })
}

/// A legacy `function` message: the result of the last legacy call of
/// that function.
fn function_result<'a>(message: WireMessage<'a>, calls: &Calls<'a>) -> Result<ToolResult<'a>, GatewayError> {
    let name = message
        .name
        .ok_or_else(|| invalid("messages", "A `function` message needs a `name`."))?
        .0;
    let id = calls
        .iter()
        .rev()
        .find(|(id, called)| *called == name && id.starts_with("call_legacy_"))
        .map(|(id, _)| id.clone())
        .ok_or_else(|| {
            invalid(
                "messages",
                format!("The `function` message for `{name}` answers no earlier call."),
            )
        })?;
    let content = join(text_pieces(message.content, "function")?);
    Ok(ToolResult { id, name, content })
}

fn join(pieces: Vec<Cow<'_, str>>) -> Cow<'_, str> {
    if pieces.len() == 1 {
        pieces.into_iter().next().unwrap_or_default()
    } else {
        Cow::Owned(pieces.join("\n"))
    }
}

fn user_blocks(content: Option<WireContent<'_>>) -> Result<Vec<Block<'_>>, GatewayError> {
    match content {
        None => Ok(Vec::new()),
        Some(WireContent::Text(text)) => Ok((!text.0.is_empty())
            .then_some(Block::Text(text.0))
            .into_iter()
            .collect()),
        Some(WireContent::Parts(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for part in parts {
                match (part.kind.as_str(), part.text, part.image_url) {
                    ("text", Some(text), _) => {
                        if !text.0.is_empty() {
                            blocks.push(Block::Text(text.0));
                        }
                    }
                    ("image_url", _, Some(image)) => blocks.push(Block::Image(Image { url: image.url.0 })),
                    (kind, _, _) => {
                        return Err(invalid(
                            "messages",
                            format!("A `{kind}` content part cannot be sent to this model's provider."),
                        ))
                    }
                }
            }
            Ok(blocks)
        }
    }
}
