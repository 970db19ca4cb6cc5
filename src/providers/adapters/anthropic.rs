//! Anthropic Messages API (`POST {base}/messages`, `x-api-key`,
//! `anthropic-version`).
//!
//! Requests: system and developer text becomes `system`; turns alternate
//! user/assistant with text, image, `tool_use` and `tool_result` blocks;
//! tools carry `input_schema`; `tool_choice` maps to auto/none/any/tool;
//! `max_tokens` is required, so a default fills in. Answers: text and
//! `tool_use` blocks become content and `tool_calls`, `stop_reason` a finish
//! reason, and usage keeps fresh, cache-read and cache-write input apart.
//! Streams map `message_start` / `content_block_*` / `message_delta` /
//! `message_stop` onto OpenAI chunks as each event completes.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::GatewayError;
use crate::request::Text;

use crate::providers::failure::{self, ErrorInfo};
use crate::providers::openai_format::chat::{
    portable_tool_id, Block, CacheBreakpoint, Conversation, ImageSource, Schema, Speaker, ToolChoice, EPHEMERAL,
};
use crate::providers::openai_format::compose::{Completion, ToolCall};
use crate::providers::openai_format::usage::unreadable_as_none;
use crate::providers::stream::{unreadable_event, Handler, Output, Translator};
use crate::providers::wire::sse::{SseEvent, SseFramer};
use crate::providers::{Call, Operation, StreamTranslator, TokenUsage, TranslatedResponse, UpstreamRequest};

/// `max_tokens` when the client set none (Anthropic requires it).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Optional OpenAI parameters this adapter can express.
const SUPPORTED: &[&str] = &["user", "parallel_tool_calls"];

#[derive(Serialize)]
struct MessagesRequest<'a> {
    model: &'a str,
    max_tokens: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<TextBlock<'a>>,
    messages: Vec<MessageOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    stop_sequences: &'a [Cow<'a, str>],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoiceOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Metadata<'a>>,
}

#[derive(Serialize)]
struct TextBlock<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_control: Option<CacheBreakpoint>,
}

#[derive(Serialize)]
struct MessageOut<'a> {
    role: &'static str,
    content: Vec<MarkedBlock<'a>>,
}

/// A content block, with the prompt-cache breakpoint the client put after it.
#[derive(Serialize)]
struct MarkedBlock<'a> {
    #[serde(flatten)]
    block: BlockOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_control: Option<CacheBreakpoint>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockOut<'a> {
    Text {
        text: &'a str,
    },
    Image {
        source: ImageSourceOut<'a>,
    },
    ToolUse {
        id: Cow<'a, str>,
        name: &'a str,
        input: &'a RawValue,
    },
    ToolResult {
        tool_use_id: Cow<'a, str>,
        content: &'a str,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ImageSourceOut<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url { url: &'a str },
}

#[derive(Serialize)]
struct ToolOut<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: Schema<'a>,
}

#[derive(Serialize)]
struct ToolChoiceOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Serialize)]
struct Metadata<'a> {
    user_id: &'a str,
}

fn blocks<'c>(conversation: &'c Conversation<'_>) -> Result<Vec<MessageOut<'c>>, GatewayError> {
    let mut messages = Vec::with_capacity(conversation.turns.len());
    for turn in &conversation.turns {
        let mut content: Vec<MarkedBlock<'c>> = Vec::with_capacity(turn.blocks.len());
        for block in &turn.blocks {
            let block = match block {
                Block::CachePoint => {
                    if let Some(last) = content.last_mut() {
                        last.cache_control = Some(EPHEMERAL);
                    }
                    continue;
                }
                Block::Text(text) => BlockOut::Text { text },
                Block::Image(image) => BlockOut::Image {
                    source: match image.source()? {
                        ImageSource::Base64 { media_type, data } => ImageSourceOut::Base64 { media_type, data },
                        ImageSource::Url(url) => ImageSourceOut::Url { url },
                    },
                },
                Block::ToolCall(call) => BlockOut::ToolUse {
                    id: portable_tool_id(&call.id),
                    name: &call.name,
                    input: &call.arguments,
                },
                Block::ToolResult(result) => BlockOut::ToolResult {
                    tool_use_id: portable_tool_id(&result.id),
                    content: &result.content,
                },
            };
            content.push(MarkedBlock {
                block,
                cache_control: None,
            });
        }
        messages.push(MessageOut {
            role: match turn.speaker {
                Speaker::User => "user",
                Speaker::Assistant => "assistant",
            },
            content,
        });
    }
    Ok(messages)
}

/// The system prompt as text blocks, the last one marked when the client
/// put a cache breakpoint on it.
fn system_blocks<'c>(conversation: &'c Conversation<'_>) -> Vec<TextBlock<'c>> {
    let last = conversation.system.len().saturating_sub(1);
    conversation
        .system
        .iter()
        .enumerate()
        .map(|(position, text)| TextBlock {
            kind: "text",
            text,
            cache_control: (conversation.system_cached && position == last).then_some(EPHEMERAL),
        })
        .collect()
}

fn tool_choice<'c>(conversation: &'c Conversation<'_>) -> Option<ToolChoiceOut<'c>> {
    if conversation.tools.is_empty() {
        return None;
    }
    let serial = (conversation.parallel_tool_calls == Some(false)).then_some(true);
    let (kind, name) = match &conversation.tool_choice {
        None if serial.is_none() => return None,
        None | Some(ToolChoice::Auto) => ("auto", None),
        Some(ToolChoice::None) => {
            return Some(ToolChoiceOut {
                kind: "none",
                name: None,
                disable_parallel_tool_use: None,
            })
        }
        Some(ToolChoice::Required) => ("any", None),
        Some(ToolChoice::Function(name)) => ("tool", Some(name.as_ref())),
    };
    Some(ToolChoiceOut {
        kind,
        name,
        disable_parallel_tool_use: serial,
    })
}

pub(crate) fn build_request(call: &Call<'_>, body: &[u8]) -> Result<UpstreamRequest, GatewayError> {
    if call.operation == Operation::Embeddings {
        return Err(GatewayError::invalid_param(
            "model",
            "Anthropic models do not offer embeddings.",
        ));
    }
    let conversation = Conversation::parse(body)?;
    let request = MessagesRequest {
        model: call.model_id,
        max_tokens: conversation.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        system: system_blocks(&conversation),
        messages: blocks(&conversation)?,
        // OpenAI's temperature runs to 2, Anthropic's to 1.
        temperature: conversation.temperature.map(|value| value.clamp(0.0, 1.0)),
        top_p: conversation.top_p,
        stop_sequences: &conversation.stop,
        stream: call.stream,
        tools: conversation
            .tools
            .iter()
            .map(|tool| ToolOut {
                name: &tool.name,
                description: tool.description.as_deref(),
                input_schema: tool.schema(),
            })
            .collect(),
        tool_choice: tool_choice(&conversation),
        metadata: conversation.user.as_deref().map(|user_id| Metadata { user_id }),
    };
    let body = serde_json::to_vec(&request).map_err(|err| GatewayError::Internal {
        message: format!("The Anthropic request could not be written: {err}"),
    })?;
    Ok(UpstreamRequest {
        path: format!("{}/messages", call.spec.base_path),
        headers: vec![("anthropic-version".into(), call.spec.anthropic_version.clone())],
        body,
        dropped: conversation.unsupported(SUPPORTED),
    })
}

#[derive(Deserialize, Default, Clone, Copy)]
struct UsageIn {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

impl UsageIn {
    /// Anthropic counts fresh, cache-read and cache-write input apart, as
    /// [`TokenUsage`] does. Stream events report some counts each; later
    /// counts replace earlier ones (they are cumulative).
    fn merge_into(self, usage: &mut Option<TokenUsage>) {
        let merged = usage.get_or_insert_with(TokenUsage::default);
        let fields = [
            (self.input_tokens, &mut merged.input),
            (self.cache_read_input_tokens, &mut merged.cached_input),
            (self.cache_creation_input_tokens, &mut merged.cache_write),
            (self.output_tokens, &mut merged.output),
        ];
        for (count, field) in fields {
            if let Some(count) = count {
                *field = count;
            }
        }
    }
}

#[derive(Deserialize)]
struct ContentBlockIn<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(default, borrow)]
    text: Option<Text<'a>>,
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default, borrow)]
    input: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct MessageIn<'a> {
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
    #[serde(default, borrow)]
    model: Option<Text<'a>>,
    #[serde(default, borrow)]
    content: Vec<ContentBlockIn<'a>>,
    #[serde(default, borrow)]
    stop_reason: Option<Text<'a>>,
    #[serde(default, deserialize_with = "unreadable_as_none")]
    usage: Option<UsageIn>,
}

fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn
        _ => "stop",
    }
}

pub(crate) fn translate_response(call: &Call<'_>, body: &[u8]) -> TranslatedResponse {
    let message: MessageIn<'_> = match serde_json::from_slice(body) {
        Ok(message) => message,
        Err(err) => return failure::unreadable(call, &err.to_string()),
    };
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in &message.content {
        match block.kind.as_str() {
            "text" => text.push_str(block.text.as_ref().map(Text::as_str).unwrap_or_default()),
            "tool_use" => tool_calls.push(ToolCall {
                id: block.id.as_ref().map(|id| id.as_str().to_string()).unwrap_or_default(),
                name: block
                    .name
                    .as_ref()
                    .map(|name| name.as_str().to_string())
                    .unwrap_or_default(),
                arguments: block
                    .input
                    .map_or_else(|| "{}".to_string(), |input| input.get().to_string()),
            }),
            // Thinking and server-tool blocks have no OpenAI counterpart.
            _ => {}
        }
    }
    let mut usage = None;
    if let Some(counts) = message.usage {
        counts.merge_into(&mut usage);
    }
    let completion = Completion {
        id: message
            .id
            .map_or_else(|| format!("chatcmpl-{}", call.now_unix_seconds), |id| id.0.into_owned()),
        model: message
            .model
            .map_or_else(|| call.model_id.to_string(), |model| model.0.into_owned()),
        created: call.now_unix_seconds,
        text,
        tool_calls,
        finish_reason: finish_reason(message.stop_reason.as_ref().map(Text::as_str).unwrap_or_default()),
        usage,
    };
    TranslatedResponse {
        status: 200,
        body: completion.to_json(),
        usage,
        failure: None,
    }
}

#[derive(Deserialize)]
struct EventIn<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(default, borrow)]
    message: Option<MessageIn<'a>>,
    #[serde(default)]
    index: Option<u64>,
    #[serde(default, borrow)]
    content_block: Option<ContentBlockIn<'a>>,
    #[serde(default, borrow)]
    delta: Option<DeltaIn<'a>>,
    #[serde(default, deserialize_with = "unreadable_as_none")]
    usage: Option<UsageIn>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct DeltaIn<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Text<'a>>,
    #[serde(default, borrow)]
    text: Option<Text<'a>>,
    #[serde(default, borrow)]
    partial_json: Option<Text<'a>>,
    #[serde(default, borrow)]
    stop_reason: Option<Text<'a>>,
}

/// Anthropic stream events to OpenAI chunks.
#[derive(Default)]
struct AnthropicStream {
    /// (content block index, OpenAI tool-call index) of each tool_use block.
    tool_blocks: Vec<(u64, usize)>,
}

impl Handler<SseFramer> for AnthropicStream {
    fn on_event(&mut self, event: SseEvent<'_>, output: &mut Output, out: &mut Vec<u8>) -> Result<(), GatewayError> {
        if !output.is_open() {
            return Ok(());
        }
        let event: EventIn<'_> =
            serde_json::from_slice(event.data).map_err(|err| unreadable_event("Anthropic", &err))?;
        match event.kind.as_str() {
            "message_start" => {
                if let Some(message) = &event.message {
                    output.writer.identify(
                        message.id.as_ref().map(Text::as_str),
                        message.model.as_ref().map(Text::as_str),
                    );
                    if let Some(counts) = message.usage {
                        counts.merge_into(&mut output.usage);
                    }
                }
                output.writer.start(out);
            }
            "content_block_start" => {
                let Some(block) = &event.content_block else {
                    return Ok(());
                };
                match block.kind.as_str() {
                    "tool_use" => {
                        self.tool_blocks
                            .push((event.index.unwrap_or_default(), output.writer.tool_calls()));
                        let text =
                            |field: &Option<Text<'_>>| field.as_ref().map(Text::as_str).unwrap_or_default().to_string();
                        output.writer.tool_call(&text(&block.id), &text(&block.name), "", out);
                    }
                    "text" => output
                        .writer
                        .text(block.text.as_ref().map(Text::as_str).unwrap_or_default(), out),
                    _ => {}
                }
            }
            "content_block_delta" => {
                let Some(delta) = &event.delta else {
                    return Ok(());
                };
                match delta.kind.as_ref().map(Text::as_str) {
                    Some("text_delta") => output
                        .writer
                        .text(delta.text.as_ref().map(Text::as_str).unwrap_or_default(), out),
                    Some("input_json_delta") => {
                        let index = event.index.unwrap_or_default();
                        if let Some(&(_, call)) = self.tool_blocks.iter().find(|(block, _)| *block == index) {
                            let fragment = delta.partial_json.as_ref().map(Text::as_str).unwrap_or_default();
                            output.writer.tool_arguments(call, fragment, out);
                        }
                    }
                    // Thinking, signatures and citations have no OpenAI counterpart.
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(counts) = event.usage {
                    counts.merge_into(&mut output.usage);
                }
                if let Some(reason) = event.delta.as_ref().and_then(|delta| delta.stop_reason.as_ref()) {
                    output.writer.finish(finish_reason(reason.as_str()), out);
                }
            }
            "message_stop" => output.complete(out),
            "error" => {
                let info = event.error.as_ref().map(ErrorInfo::from_json).unwrap_or_default();
                output.provider_error(&info, out);
            }
            // ping, content_block_stop, and event types added later.
            _ => {}
        }
        Ok(())
    }
}

pub(crate) fn stream_translator(call: &Call<'_>) -> Box<dyn StreamTranslator> {
    Box::new(Translator::new(
        SseFramer::default(),
        AnthropicStream::default(),
        Output::new(call, call.client_wants_usage),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::FailureKind;
    use crate::providers::testkit::{
        answer_from, assert_garbage_is_survived, assert_split_invariant, call_for, request_for, run_stream, spec,
        stream_call,
    };
    use crate::providers::{build_request as build, translate_response as translate, ProviderKind};
    use serde_json::json;

    fn request(body: &str) -> (UpstreamRequest, Value) {
        request_for(ProviderKind::Anthropic, "claude-test", body)
    }

    fn answer(body: &str) -> (TranslatedResponse, Value) {
        answer_from(ProviderKind::Anthropic, body)
    }

    #[test]
    fn cache_breakpoints_mark_the_block_before_them() {
        let (_, body) = request(
            r#"{"model":"auto","messages":[
                {"role":"system","content":"rules","signalbox_cache_breakpoint":true},
                {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}],"signalbox_cache_breakpoint":true}]}"#,
        );
        assert_eq!(
            body["system"],
            json!([{"type": "text", "text": "rules", "cache_control": {"type": "ephemeral"}}])
        );
        assert_eq!(
            body["messages"][0]["content"],
            json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b", "cache_control": {"type": "ephemeral"}}])
        );
    }

    #[test]
    fn a_plain_request_becomes_a_messages_request() {
        let (upstream, body) = request(
            r#"{"model":"auto","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello"}],
               "temperature":1.5,"top_p":0.9,"stop":["END"],"max_completion_tokens":300,"max_tokens":100}"#,
        );
        assert_eq!(upstream.path, "/v1/messages");
        assert!(upstream
            .headers
            .contains(&("anthropic-version".into(), "2023-06-01".into())));
        assert!(upstream
            .headers
            .contains(&("content-type".into(), "application/json".into())));
        assert_eq!(
            body,
            json!({"model": "claude-test", "max_tokens": 300, "system": [{"type": "text", "text": "Be brief."}],
                "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
                "temperature": 1.0, "top_p": 0.9, "stop_sequences": ["END"]})
        );
        assert!(upstream.dropped.is_empty());
    }

    #[test]
    fn max_tokens_defaults_because_anthropic_requires_it() {
        let spec = spec(ProviderKind::Anthropic);
        let call = stream_call(&spec, false);
        let upstream = build(
            &call,
            br#"{"model":"a","messages":[{"role":"user","content":"x"}],"stream":true}"#,
        )
        .unwrap();
        let body: Value = serde_json::from_slice(&upstream.body).unwrap();
        assert_eq!(body["max_tokens"], DEFAULT_MAX_TOKENS);
        assert_eq!(body["stream"], true);
    }

    #[test]
    fn images_become_base64_or_url_sources() {
        let (_, body) = request(
            r#"{"model":"a","messages":[{"role":"user","content":[{"type":"text","text":"What is this?"},
                {"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/4AAQ"}},
                {"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}]}"#,
        );
        assert_eq!(
            body["messages"][0]["content"],
            json!([{"type": "text", "text": "What is this?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}])
        );
    }

    #[test]
    fn a_tool_conversation_becomes_tool_use_and_tool_result_blocks() {
        let (_, body) = request(
            r#"{"model":"a","tools":[{"type":"function","function":{"name":"get_weather","description":"Weather by city",
                "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},
                {"type":"function","function":{"name":"now"}}],
               "tool_choice":{"type":"function","function":{"name":"get_weather"}},"parallel_tool_calls":false,"user":"u-1",
               "messages":[{"role":"user","content":"Weather in Paris and the time?"},
                {"role":"assistant","content":"Checking.","tool_calls":[
                  {"id":"toolu_01","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
                  {"id":"call 2","type":"function","function":{"name":"now","arguments":"{}"}}]},
                {"role":"tool","tool_call_id":"toolu_01","content":"18C"},
                {"role":"tool","tool_call_id":"call 2","content":"noon"},
                {"role":"user","content":"Thanks"}]}"#,
        );
        let portable = portable_tool_id("call 2").into_owned();
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and the time?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": portable, "name": "now", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C"},
                    {"type": "tool_result", "tool_use_id": portable, "content": "noon"},
                    {"type": "text", "text": "Thanks"}]}
            ])
        );
        assert_eq!(
            body["tools"],
            json!([{"name": "get_weather", "description": "Weather by city", "input_schema":
                    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
                {"name": "now", "input_schema": {"type": "object", "properties": {}}}])
        );
        assert_eq!(
            body["tool_choice"],
            json!({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true})
        );
        assert_eq!(body["metadata"], json!({"user_id": "u-1"}));
    }

    #[test]
    fn tool_choice_modes_map_to_anthropics() {
        let choice = |mode: &str| {
            let (_, body) = request(&format!(
                r#"{{"model":"a","tool_choice":"{mode}","tools":[{{"type":"function","function":{{"name":"f"}}}}],"messages":[{{"role":"user","content":"x"}}]}}"#
            ));
            body["tool_choice"].clone()
        };
        assert_eq!(choice("auto"), json!({"type": "auto"}));
        assert_eq!(choice("none"), json!({"type": "none"}));
        assert_eq!(choice("required"), json!({"type": "any"}));
    }

    #[test]
    fn what_anthropic_cannot_express_is_reported_as_dropped() {
        let (upstream, body) = request(
            r#"{"model":"a","messages":[{"role":"user","content":"x"}],"seed":1,"response_format":{"type":"json_object"},"n":2,"logprobs":true}"#,
        );
        assert_eq!(upstream.dropped, vec!["n", "logprobs", "seed", "response_format"]);
        assert!(body.get("seed").is_none());
    }

    #[test]
    fn embeddings_are_not_an_anthropic_operation() {
        let spec = spec(ProviderKind::Anthropic);
        let mut call = call_for(&spec);
        call.operation = Operation::Embeddings;
        assert_eq!(build(&call, br#"{"model":"a","input":"x"}"#).unwrap_err().status(), 400);
    }

    #[test]
    fn a_text_answer_becomes_a_chat_completion() {
        let (translated, body) = answer(include_str!("../fixtures/anthropic/text_answer.json"));
        assert_eq!(translated.status, 200);
        assert_eq!(
            body,
            json!({"id": "msg_01XFDUDYJgAACzvnptvVoYEL", "object": "chat.completion", "created": crate::providers::testkit::NOW,
                "model": "claude-sonnet-4-20250514",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!", "refusal": null},
                    "logprobs": null, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18,
                    "prompt_tokens_details": {"cached_tokens": 0}}})
        );
    }

    #[test]
    fn an_anthropic_tool_use_becomes_an_openai_tool_call() {
        let (_, body) = answer(include_str!("../fixtures/anthropic/tool_use_answer.json"));
        let choice = &body["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], "Let me check.");
        assert_eq!(
            choice["message"]["tool_calls"],
            json!([{"id": "toolu_01A09q90qw90lq917835lq9", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"location\": \"San Francisco, CA\"}"}}])
        );
    }

    #[test]
    fn stop_reasons_map_to_finish_reasons() {
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
        ] {
            let (_, body) = answer(&format!(r#"{{"content":[],"stop_reason":"{stop}"}}"#));
            assert_eq!(body["choices"][0]["finish_reason"], finish, "{stop}");
        }
    }

    #[test]
    fn cache_reads_and_writes_are_counted_apart() {
        let (translated, body) = answer(include_str!("../fixtures/anthropic/cache_usage_answer.json"));
        assert_eq!(
            translated.usage,
            Some(TokenUsage {
                input: 50,
                cached_input: 300,
                cache_write: 2000,
                output: 9
            })
        );
        assert_eq!(body["usage"]["prompt_tokens"], 2350);
        assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 300);
    }

    #[test]
    fn an_unreadable_answer_is_a_server_failure() {
        let (translated, _) = answer("<html>");
        assert_eq!(translated.status, 502);
        assert_eq!(translated.failure.unwrap().kind, FailureKind::Server);
    }

    #[test]
    fn an_overloaded_error_keeps_its_meaning() {
        let spec = spec(ProviderKind::Anthropic);
        let translated = translate(
            &call_for(&spec),
            529,
            &[],
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#,
        );
        assert_eq!(translated.status, 503);
        let body: Value = serde_json::from_slice(&translated.body).unwrap();
        assert_eq!(body["error"]["type"], "server_error");
        assert_eq!(translated.failure.unwrap().kind, FailureKind::Overloaded);
    }

    // Recorded streams (fixtures/README.md); the tool stream ends its lines with CRLF.
    const TEXT_STREAM: &str = include_str!("../fixtures/anthropic/text_stream.sse");
    const TOOL_STREAM: &str = include_str!("../fixtures/anthropic/tool_stream.sse");

    #[test]
    fn a_text_stream_becomes_openai_chunks() {
        let spec = spec(ProviderKind::Anthropic);
        let run = run_stream(&stream_call(&spec, true), TEXT_STREAM.as_bytes());
        assert_eq!(run.content(), "Hello, wörld 🌍!");
        let events = run.events();
        assert_eq!(events[0]["id"], "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY");
        assert_eq!(events[0]["model"], "claude-sonnet-4-20250514");
        assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
        let finish = &events[events.len() - 2];
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        let usage = &events[events.len() - 1];
        assert_eq!(
            usage["usage"],
            json!({"prompt_tokens": 35, "completion_tokens": 15, "total_tokens": 50,
            "prompt_tokens_details": {"cached_tokens": 10}})
        );
        assert!(run.text.ends_with("data: [DONE]\n\n"));
        assert_eq!(
            run.usage,
            Some(TokenUsage {
                input: 25,
                cached_input: 10,
                cache_write: 0,
                output: 15
            })
        );
        assert!(run.saw_content);
    }

    #[test]
    fn a_streamed_anthropic_tool_use_becomes_openai_tool_call_deltas() {
        let spec = spec(ProviderKind::Anthropic);
        let run = run_stream(&stream_call(&spec, false), TOOL_STREAM.as_bytes());
        let events = run.events();
        assert!(!run.text.contains("The user wants weather"));
        assert_eq!(run.content(), "Checking.");
        let calls: Vec<&Value> = events
            .iter()
            .filter_map(|event| event["choices"][0]["delta"].get("tool_calls"))
            .collect();
        assert_eq!(
            calls[0],
            &json!([{"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
                "function": {"name": "get_weather", "arguments": ""}}])
        );
        let arguments: String = calls[1..]
            .iter()
            .map(|call| call[0]["function"]["arguments"].as_str().unwrap())
            .collect();
        assert_eq!(arguments, r#"{"location": "San Francisco, CA"}"#);
        assert_eq!(events.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");
        assert!(events.iter().all(|event| event.get("usage").is_none()));
        assert_eq!(run.usage.unwrap().output, 89);
    }

    #[test]
    fn a_streamed_tool_use_without_parameters_gets_empty_object_arguments() {
        let spec = spec(ProviderKind::Anthropic);
        let stream = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"now\",\"input\":{}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":3}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let run = run_stream(&stream_call(&spec, false), stream.as_bytes());
        let arguments: String = run
            .events()
            .iter()
            .filter_map(|event| event["choices"][0]["delta"].get("tool_calls"))
            .map(|call| call[0]["function"]["arguments"].as_str().unwrap().to_string())
            .collect();
        // As the whole answer's `input: {}` becomes: arguments are always JSON.
        assert_eq!(arguments, "{}");
    }

    #[test]
    fn anthropic_streams_translate_the_same_at_every_split_point() {
        let spec = spec(ProviderKind::Anthropic);
        assert_split_invariant(&stream_call(&spec, true), TEXT_STREAM.as_bytes());
        assert_split_invariant(&stream_call(&spec, false), TOOL_STREAM.as_bytes());
    }

    #[test]
    fn an_overloaded_error_event_is_a_failure_and_an_error_chunk() {
        let spec = spec(ProviderKind::Anthropic);
        let cut = TEXT_STREAM.find("event: content_block_stop").unwrap();
        let stream = format!(
            "{}event: error\ndata: {{\"type\": \"error\", \"error\": {{\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}}}\n\n",
            &TEXT_STREAM[..cut]
        );
        let run = run_stream(&stream_call(&spec, true), stream.as_bytes());
        assert_eq!(run.failure.unwrap().kind, FailureKind::Overloaded);
        let events = run.events();
        assert_eq!(events.last().unwrap()["error"]["code"], "provider_overloaded");
        assert!(run.text.ends_with("data: [DONE]\n\n"));
        assert_eq!(run.content(), "Hello, wörld 🌍!");
    }

    #[test]
    fn a_stream_cut_short_ends_with_an_error_event() {
        let spec = spec(ProviderKind::Anthropic);
        let cut = TEXT_STREAM.find("event: message_delta").unwrap();
        let run = run_stream(&stream_call(&spec, true), &TEXT_STREAM.as_bytes()[..cut]);
        assert_eq!(run.failure.unwrap().kind, FailureKind::Server);
        assert!(run.text.contains("ended before the answer was complete"));
    }

    #[test]
    fn a_stream_cut_short_still_knows_what_it_relayed() {
        let spec = spec(ProviderKind::Anthropic);
        let cut = TEXT_STREAM.find("event: content_block_stop").unwrap();
        let mut translator = stream_translator(&stream_call(&spec, false));
        let mut out = Vec::new();
        translator.push(&TEXT_STREAM.as_bytes()[..cut], &mut out).unwrap();
        assert_eq!(
            translator.relayed_output_tokens(),
            u64::from(crate::tokens::estimate("Hello, wörld 🌍!"))
        );
        assert_eq!(
            translator.usage().map(|usage| usage.input),
            Some(25),
            "message_start told the input"
        );
    }

    #[test]
    fn garbage_never_panics_the_anthropic_translator() {
        let spec = spec(ProviderKind::Anthropic);
        assert_garbage_is_survived(&stream_call(&spec, true), TOOL_STREAM.as_bytes());
    }
}
