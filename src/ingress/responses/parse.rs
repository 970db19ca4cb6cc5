//! Reading a Responses body into a validated [`Request`]: every problem is
//! a 400 naming the field; what only OpenAI's own API can take is kept,
//! marked, for the translation to refuse.

use std::borrow::Cow;

use serde_json::value::RawValue;

use crate::error::GatewayError;
use crate::request::Text;

use super::super::wire::{
    check_model, check_range, drop_present, invalid, output_budget, parse_body, required, required_name, TextOr,
};
use super::schema::{WireFormat, WireItem, WireNamedTool, WirePart, WireRequest, WireTool};
use super::{FileRef, Format, FunctionDef, Item, Part, Request, Role, ToolChoice};

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
        let max_output_tokens = check_settings(&wire)?;
        let stateful = [
            ("previous_response_id", wire.previous_response_id.is_some()),
            ("conversation", wire.conversation.is_some()),
            ("prompt", wire.prompt.is_some()),
        ]
        .into_iter()
        .find_map(|(name, set)| set.then_some(name));
        let items = items(wire.input, stateful.is_some())?;
        let (functions, builtin_tools) = tools(wire.tools)?;
        let mut dropped = Vec::new();
        let text = wire.text.map(|text| (text.format, text.verbosity.is_some()));
        drop_present(
            &mut dropped,
            [
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
            ],
        );
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
}

/// Checks the model, the output budget and the sampling settings, and
/// refuses `background`; the budget as a number.
fn check_settings(wire: &WireRequest<'_>) -> Result<Option<u64>, GatewayError> {
    check_model(&wire.model)?;
    let max_output_tokens = output_budget("max_output_tokens", wire.max_output_tokens)?;
    check_range("temperature", wire.temperature, 0.0, 2.0)?;
    check_range("top_p", wire.top_p, 0.0, 1.0)?;
    if wire.background == Some(true) {
        return Err(invalid(
            "background",
            "is not supported through the gateway: a background response is fetched later, where it could not be metered.",
        ));
    }
    Ok(max_output_tokens)
}

/// The conversation: `input` as text is one user message. A request that
/// continues stored state may send none.
fn items<'a>(input: Option<TextOr<'a, WireItem<'a>>>, stateful: bool) -> Result<Vec<Item<'a>>, GatewayError> {
    match input {
        Some(TextOr::Text(text)) => Ok(vec![Item::Message {
            role: Role::User,
            parts: vec![Part::Text(text.0)],
        }]),
        Some(TextOr::List(items)) => items
            .into_iter()
            .enumerate()
            .map(|(index, wire)| item(wire, index))
            .collect(),
        None if stateful => Ok(Vec::new()),
        None => Err(invalid("input", "is required.")),
    }
}

/// OpenAI's built-in tools, as (param, type).
type BuiltinTools<'a> = Vec<(String, Cow<'a, str>)>;

/// The function tools, and the built-in ones only OpenAI can run.
fn tools<'a>(wire: Option<Vec<WireTool<'a>>>) -> Result<(Vec<FunctionDef<'a>>, BuiltinTools<'a>), GatewayError> {
    let mut functions = Vec::new();
    let mut builtin_tools = Vec::new();
    for (index, tool) in wire.into_iter().flatten().enumerate() {
        if tool.kind.as_str() == "function" {
            functions.push(FunctionDef {
                name: required_name(tool.name, &format!("tools[{index}].name"))?,
                description: tool.description.map(|text| text.0),
                parameters: tool.parameters,
                strict: tool.strict,
            });
        } else {
            builtin_tools.push((format!("tools[{index}].type"), tool.kind.0));
        }
    }
    Ok((functions, builtin_tools))
}
