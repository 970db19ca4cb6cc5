//! AWS Bedrock Converse API: `POST {base}/model/{model id}/converse` and
//! `/converse-stream`, signed with SigV4 (service `bedrock`) or sent with a
//! Bedrock API key as a bearer token.
//!
//! Requests: `messages` of user/assistant turns with `text`, `image`,
//! `toolUse` and `toolResult` blocks, `system`, `inferenceConfig` and
//! `toolConfig`. Answers: `output.message.content` becomes content and tool
//! calls, `stopReason` a finish reason, and `usage` keeps cache reads and
//! writes apart. Streams are AWS event-stream frames, one Converse stream
//! event each, or an exception.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::GatewayError;
use crate::request::Text;

use crate::providers::failure::{self, header, ErrorInfo};
use crate::providers::openai_format::chat::{
    portable_tool_id, Block, Conversation, ImageSource, Schema, Speaker, ToolChoice,
};
use crate::providers::openai_format::compose::{Completion, ToolCall};
use crate::providers::openai_format::usage::unreadable_as_none;
use crate::providers::stream::{unreadable_event, Handler, Output, Translator};
use crate::providers::wire::eventstream::{EventStreamDecoder, Message};
use crate::providers::wire::sigv4::uri_encode;
use crate::providers::{Call, Operation, StreamTranslator, TokenUsage, TranslatedResponse, UpstreamRequest};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConverseRequest<'a> {
    messages: Vec<MessageOut<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<SystemOut<'a>>,
    #[serde(skip_serializing_if = "InferenceConfig::is_empty")]
    inference_config: InferenceConfig<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig<'a>>,
}

#[derive(Serialize)]
struct SystemText<'a> {
    text: &'a str,
}

/// A system entry: text, or a prompt-cache point after the text before it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum SystemOut<'a> {
    Text(&'a str),
    CachePoint(CachePointOut),
}

#[derive(Serialize)]
struct CachePointOut {
    #[serde(rename = "type")]
    kind: &'static str,
}

const CACHE_POINT: CachePointOut = CachePointOut { kind: "default" };

#[derive(Serialize)]
struct MessageOut<'a> {
    role: &'static str,
    content: Vec<BlockOut<'a>>,
}

/// A content block is an object with exactly one member naming its kind.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum BlockOut<'a> {
    Text(&'a str),
    Image(ImageOut<'a>),
    ToolUse(ToolUseOut<'a>),
    ToolResult(ToolResultOut<'a>),
    CachePoint(CachePointOut),
}

#[derive(Serialize)]
struct ImageOut<'a> {
    format: &'static str,
    source: ImageBytes<'a>,
}

#[derive(Serialize)]
struct ImageBytes<'a> {
    /// Base64 in JSON, exactly as the client's data URL carries it.
    bytes: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolUseOut<'a> {
    tool_use_id: Cow<'a, str>,
    name: &'a str,
    input: &'a RawValue,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolResultOut<'a> {
    tool_use_id: Cow<'a, str>,
    content: [SystemText<'a>; 1],
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct InferenceConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    stop_sequences: &'a [Cow<'a, str>],
}

impl InferenceConfig<'_> {
    fn is_empty(&self) -> bool {
        self.max_tokens.is_none()
            && self.temperature.is_none()
            && self.top_p.is_none()
            && self.stop_sequences.is_empty()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig<'a> {
    tools: Vec<ToolOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoiceOut<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolOut<'a> {
    tool_spec: ToolSpec<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolSpec<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: InputSchema<'a>,
}

#[derive(Serialize)]
struct InputSchema<'a> {
    json: Schema<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
/// `auto` is Converse's default, so it is never sent.
enum ToolChoiceOut<'a> {
    Any(Empty),
    Tool(Named<'a>),
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct Named<'a> {
    name: &'a str,
}

/// Converse image formats by media type.
fn image_format(media_type: &str) -> Result<&'static str, GatewayError> {
    match media_type.to_ascii_lowercase().as_str() {
        "image/png" => Ok("png"),
        "image/jpeg" | "image/jpg" => Ok("jpeg"),
        "image/gif" => Ok("gif"),
        "image/webp" => Ok("webp"),
        other => Err(GatewayError::invalid_param(
            "messages",
            format!("Bedrock takes png, jpeg, gif and webp images, not `{other}`."),
        )),
    }
}

fn messages<'c>(conversation: &'c Conversation<'_>, caches: CachePoints) -> Result<Vec<MessageOut<'c>>, GatewayError> {
    let mut messages = Vec::with_capacity(conversation.turns.len());
    for turn in &conversation.turns {
        let mut content = Vec::with_capacity(turn.blocks.len());
        for block in &turn.blocks {
            content.push(match block {
                // Bedrock refuses a message that opens with its cache point.
                Block::CachePoint if content.is_empty() || caches == CachePoints::None => continue,
                Block::CachePoint
                    if caches == CachePoints::Nova && matches!(content.last(), Some(BlockOut::ToolResult(_))) =>
                {
                    continue
                }
                Block::CachePoint => BlockOut::CachePoint(CACHE_POINT),
                Block::Text(text) => BlockOut::Text(text),
                Block::Image(image) => match image.source()? {
                    ImageSource::Base64 { media_type, data } => BlockOut::Image(ImageOut {
                        format: image_format(media_type)?,
                        source: ImageBytes { bytes: data },
                    }),
                    ImageSource::Url(_) => {
                        return Err(GatewayError::invalid_param(
                            "messages",
                            "Bedrock takes images inline: send them as base64 `data:` URLs.",
                        ))
                    }
                },
                Block::ToolCall(call) => BlockOut::ToolUse(ToolUseOut {
                    tool_use_id: portable_tool_id(&call.id),
                    name: &call.name,
                    input: &call.arguments,
                }),
                Block::ToolResult(result) => BlockOut::ToolResult(ToolResultOut {
                    tool_use_id: portable_tool_id(&result.id),
                    content: [SystemText { text: &result.content }],
                }),
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

/// Which models take cache points (also through cross-region profiles,
/// `us.anthropic.claude-…`): Bedrock refuses them from any other model, so
/// their breakpoints are left out rather than failing a request that
/// worked without them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CachePoints {
    None,
    /// Claude 3.7 Sonnet, 3.5 Haiku and the 4.x family.
    Claude,
    /// Nova, which refuses a cache point right after a tool result.
    Nova,
}

fn cache_points(model_id: &str) -> CachePoints {
    const CLAUDE: [&str; 5] = [
        "claude-3-7-sonnet",
        "claude-3-5-haiku",
        "claude-sonnet-4",
        "claude-opus-4",
        "claude-haiku-4",
    ];
    const NOVA: [&str; 5] = ["nova-micro", "nova-lite", "nova-pro", "nova-premier", "nova-2-"];
    if CLAUDE.iter().any(|family| model_id.contains(family)) {
        CachePoints::Claude
    } else if NOVA.iter().any(|family| model_id.contains(family)) {
        CachePoints::Nova
    } else {
        CachePoints::None
    }
}

/// The system prompt, with a cache point after it when the client put a
/// breakpoint there.
fn system<'c>(conversation: &'c Conversation<'_>, caches: CachePoints) -> Vec<SystemOut<'c>> {
    let mut system: Vec<SystemOut<'c>> = conversation.system.iter().map(|text| SystemOut::Text(text)).collect();
    if caches != CachePoints::None && conversation.system_cached && !system.is_empty() {
        system.push(SystemOut::CachePoint(CACHE_POINT));
    }
    system
}

/// The tool configuration, and whether `tool_choice` had to be dropped.
fn tool_config<'c>(conversation: &'c Conversation<'_>) -> (Option<ToolConfig<'c>>, bool) {
    if conversation.tools.is_empty() {
        return (None, false);
    }
    let choice = match &conversation.tool_choice {
        None | Some(ToolChoice::Auto) => None,
        Some(ToolChoice::Required) => Some(ToolChoiceOut::Any(Empty {})),
        Some(ToolChoice::Function(name)) => Some(ToolChoiceOut::Tool(Named { name })),
        Some(ToolChoice::None) => {
            // Converse has no "none": without tools the model cannot call
            // one, but a history with tool blocks requires them declared.
            if !conversation.has_tool_calls() {
                return (None, false);
            }
            return (Some(tool_config_with(conversation, None)), true);
        }
    };
    (Some(tool_config_with(conversation, choice)), false)
}

fn tool_config_with<'c>(conversation: &'c Conversation<'_>, tool_choice: Option<ToolChoiceOut<'c>>) -> ToolConfig<'c> {
    ToolConfig {
        tools: conversation
            .tools
            .iter()
            .map(|tool| ToolOut {
                tool_spec: ToolSpec {
                    name: &tool.name,
                    description: tool.description.as_deref(),
                    input_schema: InputSchema { json: tool.schema() },
                },
            })
            .collect(),
        tool_choice,
    }
}

pub(crate) fn build_request(call: &Call<'_>, body: &[u8]) -> Result<UpstreamRequest, GatewayError> {
    if call.operation == Operation::Embeddings {
        return Err(GatewayError::invalid_param(
            "model",
            "Embeddings are not translated for Bedrock; route them to an OpenAI-compatible or Gemini model.",
        ));
    }
    let conversation = Conversation::parse(body)?;
    let caches = cache_points(call.model_id);
    let (tool_config, dropped_choice) = tool_config(&conversation);
    let request = ConverseRequest {
        messages: messages(&conversation, caches)?,
        system: system(&conversation, caches),
        inference_config: InferenceConfig {
            max_tokens: conversation.max_tokens,
            // OpenAI's temperature runs to 2, the Bedrock models' to 1.
            temperature: conversation.temperature.map(|value| value.clamp(0.0, 1.0)),
            top_p: conversation.top_p,
            stop_sequences: &conversation.stop,
        },
        tool_config,
    };
    let body = serde_json::to_vec(&request).map_err(|err| GatewayError::Internal {
        message: format!("The Bedrock request could not be written: {err}"),
    })?;
    let mut dropped = conversation.unsupported(&[]);
    if dropped_choice {
        dropped.push("tool_choice");
    }
    let action = if call.stream { "converse-stream" } else { "converse" };
    Ok(UpstreamRequest {
        path: format!(
            "{}/model/{}/{action}",
            call.spec.base_path,
            uri_encode(call.model_id, true)
        ),
        headers: Vec::new(),
        body,
        dropped,
    })
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct UsageIn {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
    #[serde(default)]
    cache_write_input_tokens: u64,
}

impl UsageIn {
    /// Converse reports cache reads and writes beside `inputTokens`, not in it.
    fn usage(self) -> TokenUsage {
        TokenUsage {
            input: self.input_tokens,
            cached_input: self.cache_read_input_tokens,
            cache_write: self.cache_write_input_tokens,
            output: self.output_tokens,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseResponse<'a> {
    #[serde(default, borrow)]
    output: Option<OutputIn<'a>>,
    #[serde(default, borrow)]
    stop_reason: Option<Text<'a>>,
    #[serde(default, deserialize_with = "unreadable_as_none")]
    usage: Option<UsageIn>,
}

#[derive(Deserialize)]
struct OutputIn<'a> {
    #[serde(default, borrow)]
    message: Option<MessageIn<'a>>,
}

#[derive(Deserialize)]
struct MessageIn<'a> {
    #[serde(default, borrow)]
    content: Vec<BlockIn<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockIn<'a> {
    #[serde(default, borrow)]
    text: Option<Text<'a>>,
    #[serde(default, borrow)]
    tool_use: Option<ToolUseIn<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolUseIn<'a> {
    #[serde(default, borrow)]
    tool_use_id: Option<Text<'a>>,
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default, borrow)]
    input: Option<&'a RawValue>,
}

fn text_of(field: &Option<Text<'_>>) -> String {
    field.as_ref().map(|text| text.as_str().to_string()).unwrap_or_default()
}

fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        // end_turn, stop_sequence, malformed_* outputs
        _ => "stop",
    }
}

pub(crate) fn translate_response(call: &Call<'_>, headers: &[(String, String)], body: &[u8]) -> TranslatedResponse {
    let response: ConverseResponse<'_> = match serde_json::from_slice(body) {
        Ok(response) => response,
        Err(err) => return failure::unreadable(call, &err.to_string()),
    };
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    let blocks = response
        .output
        .iter()
        .filter_map(|output| output.message.as_ref())
        .flat_map(|message| &message.content);
    for block in blocks {
        if let Some(piece) = &block.text {
            text.push_str(piece.as_str());
        } else if let Some(tool) = &block.tool_use {
            tool_calls.push(ToolCall {
                id: text_of(&tool.tool_use_id),
                name: text_of(&tool.name),
                arguments: tool
                    .input
                    .map_or_else(|| "{}".to_string(), |input| input.get().to_string()),
            });
        }
        // Reasoning, citations and guard content have no OpenAI counterpart.
    }
    let usage = response.usage.map(UsageIn::usage);
    let id = header(headers, "x-amzn-requestid").map_or_else(|| call.now_unix_seconds.to_string(), str::to_string);
    let completion = Completion {
        id: format!("chatcmpl-{id}"),
        model: call.model_id.to_string(),
        created: call.now_unix_seconds,
        text,
        tool_calls,
        finish_reason: finish_reason(response.stop_reason.as_ref().map(Text::as_str).unwrap_or_default()),
        usage,
    };
    TranslatedResponse {
        status: 200,
        body: completion.to_json(),
        usage,
        failure: None,
    }
}

/// Every Converse stream event payload, read into one shape.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventIn<'a> {
    #[serde(default)]
    content_block_index: Option<u64>,
    #[serde(default, borrow)]
    start: Option<StartIn<'a>>,
    #[serde(default, borrow)]
    delta: Option<DeltaIn<'a>>,
    #[serde(default, borrow)]
    stop_reason: Option<Text<'a>>,
    #[serde(default, deserialize_with = "unreadable_as_none")]
    usage: Option<UsageIn>,
    #[serde(default, borrow)]
    message: Option<Text<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartIn<'a> {
    #[serde(default, borrow)]
    tool_use: Option<ToolUseIn<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeltaIn<'a> {
    #[serde(default, borrow)]
    text: Option<Text<'a>>,
    #[serde(default, borrow)]
    tool_use: Option<ToolInputDelta<'a>>,
}

#[derive(Deserialize)]
struct ToolInputDelta<'a> {
    #[serde(default, borrow)]
    input: Option<Text<'a>>,
}

/// Converse stream events to OpenAI chunks.
#[derive(Default)]
struct BedrockStream {
    /// (content block index, OpenAI tool-call index) of each toolUse block.
    tool_blocks: Vec<(u64, usize)>,
}

impl Handler<EventStreamDecoder> for BedrockStream {
    fn on_event(&mut self, message: Message<'_>, output: &mut Output, out: &mut Vec<u8>) -> Result<(), GatewayError> {
        if !output.is_open() {
            return Ok(());
        }
        let payload =
            || serde_json::from_slice::<EventIn<'_>>(message.payload).map_err(|err| unreadable_event("Bedrock", &err));
        match message.header_str(":message-type") {
            Some("exception") => {
                let info = ErrorInfo {
                    kind: message.header_str(":exception-type").map(str::to_string),
                    message: payload()
                        .ok()
                        .and_then(|event| event.message)
                        .map(|text| text.0.into_owned()),
                    ..ErrorInfo::default()
                };
                output.provider_error(&info, out);
                return Ok(());
            }
            Some("error") => {
                let info = ErrorInfo {
                    kind: message.header_str(":error-code").map(str::to_string),
                    message: message.header_str(":error-message").map(str::to_string),
                    ..ErrorInfo::default()
                };
                output.provider_error(&info, out);
                return Ok(());
            }
            _ => {}
        }
        match message.header_str(":event-type").unwrap_or_default() {
            "messageStart" => output.writer.start(out),
            "contentBlockStart" => {
                let event = payload()?;
                if let Some(tool) = event.start.as_ref().and_then(|start| start.tool_use.as_ref()) {
                    self.tool_blocks.push((
                        event.content_block_index.unwrap_or_default(),
                        output.writer.tool_calls(),
                    ));
                    output
                        .writer
                        .tool_call(&text_of(&tool.tool_use_id), &text_of(&tool.name), "", out);
                }
            }
            "contentBlockDelta" => {
                let event = payload()?;
                let Some(delta) = &event.delta else {
                    return Ok(());
                };
                if let Some(text) = &delta.text {
                    output.writer.text(text.as_str(), out);
                } else if let Some(input) = delta.tool_use.as_ref().and_then(|tool| tool.input.as_ref()) {
                    let index = event.content_block_index.unwrap_or_default();
                    if let Some(&(_, call)) = self.tool_blocks.iter().find(|(block, _)| *block == index) {
                        output.writer.tool_arguments(call, input.as_str(), out);
                    }
                }
            }
            "messageStop" => {
                let event = payload()?;
                let reason = event.stop_reason.as_ref().map(Text::as_str).unwrap_or_default();
                output.writer.finish(finish_reason(reason), out);
            }
            "metadata" => {
                // The last event: usage, then the client's stream can end.
                if let Some(usage) = payload()?.usage {
                    output.usage = Some(usage.usage());
                }
                output.complete(out);
            }
            // contentBlockStop, and event types added later.
            _ => {}
        }
        Ok(())
    }
}

pub(crate) fn stream_translator(call: &Call<'_>) -> Box<dyn StreamTranslator> {
    Box::new(Translator::new(
        EventStreamDecoder::new(),
        BedrockStream::default(),
        Output::new(call, call.client_wants_usage),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::FailureKind;
    use crate::providers::eventstream::encode_message;
    use crate::providers::testkit::{
        assert_garbage_is_survived, assert_split_invariant, bedrock_event, bedrock_stream, call_for, request_for,
        run_stream, secret, spec, stream_call, NOW,
    };
    use crate::providers::{build_request as build, translate_response as translate, Credential, ProviderKind};
    use serde_json::{json, Value};

    const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";

    fn request(body: &str) -> (UpstreamRequest, Value) {
        request_for(ProviderKind::Bedrock, MODEL, body)
    }

    #[test]
    fn a_plain_request_becomes_a_converse_request() {
        let (upstream, body) = request(
            r#"{"model":"auto","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello"}],
               "max_tokens":200,"temperature":0.2,"top_p":0.9,"stop":["END"],"seed":1}"#,
        );
        assert_eq!(
            upstream.path,
            "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
        );
        assert_eq!(
            body,
            json!({"messages": [{"role": "user", "content": [{"text": "Hello"}]}],
                "system": [{"text": "Be brief."}],
                "inferenceConfig": {"maxTokens": 200, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]}})
        );
        assert_eq!(upstream.dropped, vec!["seed"]);
        assert!(upstream
            .headers
            .contains(&(":authority".into(), "bedrock-runtime.us-east-1.amazonaws.com".into())));
    }

    const MARKED: &str = r#"{"model":"m","tools":[{"type":"function","function":{"name":"Bash","parameters":{"type":"object"}}}],"messages":[
        {"role":"system","content":"rules","signalbox_cache_breakpoint":true},
        {"role":"user","content":[{"type":"text","text":"long context"}],"signalbox_cache_breakpoint":true},
        {"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"Bash","arguments":"{}"}}]},
        {"role":"tool","tool_call_id":"c1","content":"out","signalbox_cache_breakpoint":true}]}"#;
    const CACHE_POINT_JSON: &str = r#"{"cachePoint":{"type":"default"}}"#;

    #[test]
    fn cache_breakpoints_become_cache_points_where_the_model_takes_them() {
        let point: Value = serde_json::from_str(CACHE_POINT_JSON).unwrap();
        let (_, claude) = request_for(
            ProviderKind::Bedrock,
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            MARKED,
        );
        assert_eq!(claude["system"], json!([{"text": "rules"}, point]));
        assert_eq!(
            claude["messages"][0]["content"],
            json!([{"text": "long context"}, point])
        );
        assert_eq!(claude["messages"][2]["content"][1], point, "after a tool result too");
        // Nova refuses one right after a tool result; keeps the others.
        let (_, nova) = request_for(ProviderKind::Bedrock, "amazon.nova-pro-v1:0", MARKED);
        assert_eq!(nova["messages"][0]["content"][1], point);
        assert_eq!(nova["messages"][2]["content"].as_array().unwrap().len(), 1);
        // Models without prompt caching (the older Claude ones too) get none.
        for model in [
            "anthropic.claude-3-haiku-20240307-v1:0",
            "anthropic.claude-3-5-sonnet-20241022-v2:0",
            "meta.llama3-70b-instruct-v1:0",
        ] {
            let (_, body) = request_for(ProviderKind::Bedrock, model, MARKED);
            assert!(!body.to_string().contains("cachePoint"), "{model}: {body}");
        }
    }

    #[test]
    fn a_stream_goes_to_converse_stream() {
        let spec = spec(ProviderKind::Bedrock);
        let call = stream_call(&spec, false);
        let upstream = build(&call, br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#).unwrap();
        assert_eq!(upstream.path, "/model/gpt-test/converse-stream");
    }

    #[test]
    fn requests_are_signed_with_sigv4() {
        let spec = spec(ProviderKind::Bedrock);
        let credential = Credential::AwsSigV4 {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: secret("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: Some(secret("session-token-value")),
        };
        let mut call = call_for(&spec);
        call.model_id = MODEL;
        call.credential = Some(&credential);
        let upstream = build(&call, br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#).unwrap();
        let header = |name: &str| {
            upstream
                .headers
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        assert_eq!(header("x-amz-date").as_deref(), Some("20231114T221320Z"));
        assert_eq!(header("x-amz-security-token").as_deref(), Some("session-token-value"));
        let authorization = header("authorization").unwrap();
        assert!(authorization.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-east-1/bedrock/aws4_request, \
             SignedHeaders=host;x-amz-date;x-amz-security-token, Signature="
        ));
        // The signature covers the body as sent, over the doubly encoded path.
        let canonical = crate::providers::sigv4::canonical_request(&crate::providers::sigv4::CanonicalInput {
            method: "POST",
            path: &upstream.path,
            query: &[],
            headers: &[
                ("host", "bedrock-runtime.us-east-1.amazonaws.com"),
                ("x-amz-date", "20231114T221320Z"),
                ("x-amz-security-token", "session-token-value"),
            ],
            payload_sha256: &crate::providers::sigv4::sha256_hex(&upstream.body),
        })
        .0;
        let scope = "20231114/us-east-1/bedrock/aws4_request";
        let to_sign = crate::providers::sigv4::string_to_sign("20231114T221320Z", scope, &canonical);
        let key = crate::providers::sigv4::signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20231114",
            "us-east-1",
            "bedrock",
        );
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key).unwrap();
        mac.update(to_sign.as_bytes());
        let expected = crate::providers::sigv4::hex(&mac.finalize().into_bytes());
        assert!(authorization.ends_with(&format!("Signature={expected}")));
        assert!(canonical.contains("/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse"));
    }

    #[test]
    fn a_tool_conversation_becomes_tool_use_and_tool_result_blocks() {
        let (_, body) = request(
            r#"{"model":"a","tools":[{"type":"function","function":{"name":"get_weather","description":"Weather",
                 "parameters":{"type":"object","properties":{"city":{"type":"string"}}}}},{"type":"function","function":{"name":"now"}}],
               "tool_choice":"required",
               "messages":[{"role":"user","content":[{"type":"text","text":"Weather?"},{"type":"image_url","image_url":{"url":"data:image/webp;base64,UklGR"}}]},
                {"role":"assistant","tool_calls":[{"id":"tooluse_kZJMlvQmRJ6eAyJE5GIl7Q","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
                {"role":"tool","tool_call_id":"tooluse_kZJMlvQmRJ6eAyJE5GIl7Q","content":"18C"}]}"#,
        );
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": [{"text": "Weather?"}, {"image": {"format": "webp", "source": {"bytes": "UklGR"}}}]},
                {"role": "assistant", "content": [{"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "get_weather", "input": {"city": "Paris"}}}]},
                {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "content": [{"text": "18C"}]}}]}
            ])
        );
        assert_eq!(
            body["toolConfig"],
            json!({"tools": [
                {"toolSpec": {"name": "get_weather", "description": "Weather", "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}}}},
                {"toolSpec": {"name": "now", "inputSchema": {"json": {"type": "object", "properties": {}}}}}],
                "toolChoice": {"any": {}}})
        );
    }

    #[test]
    fn tool_choice_none_drops_the_tools_unless_the_history_needs_them() {
        let tools = r#""tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"none""#;
        let (upstream, body) = request(&format!(
            r#"{{"model":"a",{tools},"messages":[{{"role":"user","content":"x"}}]}}"#
        ));
        assert!(body.get("toolConfig").is_none());
        assert!(upstream.dropped.is_empty());
        let (upstream, body) = request(&format!(
            r#"{{"model":"a",{tools},"messages":[{{"role":"user","content":"x"}},
               {{"role":"assistant","tool_calls":[{{"id":"c1","type":"function","function":{{"name":"f","arguments":"{{}}"}}}}]}},
               {{"role":"tool","tool_call_id":"c1","content":"ok"}}]}}"#
        ));
        assert_eq!(body["toolConfig"]["tools"][0]["toolSpec"]["name"], "f");
        assert!(body["toolConfig"].get("toolChoice").is_none());
        assert_eq!(upstream.dropped, vec!["tool_choice"]);
        let (_, body) = request(
            r#"{"model":"a","tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"f"}},"messages":[{"role":"user","content":"x"}]}"#,
        );
        assert_eq!(body["toolConfig"]["toolChoice"], json!({"tool": {"name": "f"}}));
    }

    #[test]
    fn images_must_be_inline_and_of_a_known_format() {
        let spec = spec(ProviderKind::Bedrock);
        for url in ["https://x/y.png", "data:image/bmp;base64,Qk0="] {
            let body = format!(
                r#"{{"model":"a","messages":[{{"role":"user","content":[{{"type":"image_url","image_url":{{"url":"{url}"}}}}]}}]}}"#
            );
            assert_eq!(
                build(&call_for(&spec), body.as_bytes()).unwrap_err().status(),
                400,
                "{url}"
            );
        }
    }

    #[test]
    fn a_converse_answer_becomes_a_chat_completion() {
        let spec = spec(ProviderKind::Bedrock);
        let headers = vec![("x-amzn-RequestId".to_string(), "5b3c-req".to_string())];
        let body = include_str!("../fixtures/bedrock/converse_answer.json").as_bytes();
        let translated = translate(&call_for(&spec), 200, &headers, body);
        let json: Value = serde_json::from_slice(&translated.body).unwrap();
        assert_eq!(json["id"], "chatcmpl-5b3c-req");
        assert_eq!(json["created"], NOW);
        assert_eq!(json["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(json["choices"][0]["message"]["content"], "Checking.");
        assert_eq!(
            json["choices"][0]["message"]["tool_calls"][0],
            json!({"id": "tooluse_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}})
        );
        assert_eq!(
            translated.usage,
            Some(TokenUsage {
                input: 30,
                cached_input: 400,
                cache_write: 100,
                output: 12
            })
        );
        assert_eq!(json["usage"]["prompt_tokens"], 530);
    }

    #[test]
    fn stop_reasons_map_to_finish_reasons() {
        let spec = spec(ProviderKind::Bedrock);
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("guardrail_intervened", "content_filter"),
            ("content_filtered", "content_filter"),
        ] {
            let body = format!(
                r#"{{"output":{{"message":{{"role":"assistant","content":[{{"text":"x"}}]}}}},"stopReason":"{stop}"}}"#
            );
            let json: Value =
                serde_json::from_slice(&translate(&call_for(&spec), 200, &[], body.as_bytes()).body).unwrap();
            assert_eq!(json["choices"][0]["finish_reason"], finish, "{stop}");
        }
    }

    #[test]
    fn a_throttling_error_is_rate_limiting() {
        let spec = spec(ProviderKind::Bedrock);
        let headers = vec![(
            "x-amzn-errortype".to_string(),
            "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/".to_string(),
        )];
        let translated = translate(
            &call_for(&spec),
            429,
            &headers,
            br#"{"message":"Too many requests, please wait before trying again."}"#,
        );
        assert_eq!(translated.status, 429);
        assert_eq!(translated.failure.unwrap().kind, FailureKind::RateLimited);
    }

    // Recorded streams (fixtures/README.md), one event a line.
    fn text_stream() -> Vec<u8> {
        bedrock_stream(include_str!("../fixtures/bedrock/text_stream.events"))
    }

    fn tool_stream() -> Vec<u8> {
        bedrock_stream(include_str!("../fixtures/bedrock/tool_stream.events"))
    }

    #[test]
    fn an_event_stream_becomes_openai_chunks() {
        let spec = spec(ProviderKind::Bedrock);
        let run = run_stream(&stream_call(&spec, true), &text_stream());
        assert_eq!(run.content(), "Hello, wörld ✓");
        let events = run.events();
        assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(events[events.len() - 2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(events[events.len() - 1]["usage"]["prompt_tokens"], 17);
        assert_eq!(
            run.usage,
            Some(TokenUsage {
                input: 11,
                cached_input: 6,
                cache_write: 0,
                output: 4
            })
        );
        assert!(run.text.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn a_streamed_tool_use_becomes_tool_call_deltas() {
        let spec = spec(ProviderKind::Bedrock);
        let run = run_stream(&stream_call(&spec, false), &tool_stream());
        let events = run.events();
        assert_eq!(
            events[1]["choices"][0]["delta"]["tool_calls"],
            json!([{"index": 0, "id": "tooluse_abc", "type": "function", "function": {"name": "get_weather", "arguments": ""}}])
        );
        let arguments: String = events[2..4]
            .iter()
            .map(|event| {
                event["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(arguments, r#"{"city":"Paris"}"#);
        assert_eq!(events[4]["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn bedrock_streams_translate_the_same_at_every_split_point() {
        let spec = spec(ProviderKind::Bedrock);
        assert_split_invariant(&stream_call(&spec, true), &text_stream());
        assert_split_invariant(&stream_call(&spec, false), &tool_stream());
    }

    #[test]
    fn an_exception_event_is_a_failure() {
        let spec = spec(ProviderKind::Bedrock);
        let mut stream = text_stream();
        stream.truncate(stream.len() / 2);
        let whole_events: Vec<u8> = [
            bedrock_event("messageStart", r#"{"role":"assistant"}"#),
            encode_message(
                &[
                    (":exception-type", "throttlingException"),
                    (":content-type", "application/json"),
                    (":message-type", "exception"),
                ],
                br#"{"message":"Too many requests, please wait before trying again."}"#,
            ),
        ]
        .concat();
        let run = run_stream(&stream_call(&spec, true), &whole_events);
        assert_eq!(run.failure.unwrap().kind, FailureKind::RateLimited);
        assert!(run.text.contains("Too many requests"));
        assert!(run.text.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn a_corrupted_frame_is_an_error_and_ends_the_stream() {
        let spec = spec(ProviderKind::Bedrock);
        let mut stream = text_stream();
        let middle = stream.len() / 2;
        stream[middle] ^= 0x40;
        let call = stream_call(&spec, true);
        let mut translator = crate::providers::stream_translator(&call);
        let mut out = Vec::new();
        assert!(translator.push(&stream, &mut out).is_err());
        translator.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("corrupt") && text.ends_with("data: [DONE]\n\n"), "{text}");
        assert_eq!(translator.failure().unwrap().kind, FailureKind::Server);
    }

    #[test]
    fn a_stream_cut_mid_frame_is_reported() {
        let spec = spec(ProviderKind::Bedrock);
        let stream = text_stream();
        let run = run_stream(&stream_call(&spec, true), &stream[..stream.len() - 3]);
        assert!(run.text.contains("middle of a message"), "{}", run.text);
        assert_eq!(run.failure.unwrap().kind, FailureKind::Server);
    }

    #[test]
    fn garbage_never_panics_the_bedrock_translator() {
        let spec = spec(ProviderKind::Bedrock);
        assert_garbage_is_survived(&stream_call(&spec, true), &tool_stream());
    }
}
