//! Google Gemini API: `POST {base}/models/{model}:generateContent`,
//! `:streamGenerateContent?alt=sse` and `:batchEmbedContents`, with the key
//! in `x-goog-api-key`.
//!
//! Requests: `contents` of `user`/`model` turns, `systemInstruction`, parts
//! (text, `inlineData` images, `functionCall`, `functionResponse`), tools as
//! `functionDeclarations` with JSON Schema parameters, `toolConfig`, and
//! `generationConfig`. Answers: the first candidate's parts become content
//! and tool calls (with generated ids), `finishReason` a finish reason, and
//! `usageMetadata` the usage. A stream is SSE whose every event is a whole
//! `GenerateContentResponse`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::GatewayError;
use crate::request::Text;

use crate::providers::failure::{self, ErrorInfo};
use crate::providers::openai_format::chat::{Block, Conversation, ImageSource, ResponseFormat, Speaker, ToolChoice};
use crate::providers::openai_format::compose::{ChunkWriter, Completion, ToolCall};
use crate::providers::openai_format::embeddings::{self, EmbeddingsRequest};
use crate::providers::openai_format::usage::unreadable_as_none;
use crate::providers::stream::{unreadable_event, Handler, Output, Translator};
use crate::providers::wire::sigv4::uri_encode;
use crate::providers::wire::sse::{SseEvent, SseFramer};
use crate::providers::{Call, Operation, StreamTranslator, TokenUsage, TranslatedResponse, UpstreamRequest};

/// Optional OpenAI parameters this adapter can express.
const SUPPORTED: &[&str] = &["seed", "presence_penalty", "frequency_penalty", "response_format"];

/// Gemini 3 rejects replayed function calls without the thought signature
/// it issued. OpenAI clients cannot carry signatures, so replayed calls get
/// the value Google documents for histories that lack them.
const REPLAYED_CALL_SIGNATURE: &str = "skip_thought_signature_validator";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerateRequest<'a> {
    contents: Vec<ContentOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<ContentOut<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolsOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfigOut<'a>>,
    #[serde(skip_serializing_if = "GenerationConfig::is_empty")]
    generation_config: GenerationConfig<'a>,
}

#[derive(Serialize)]
struct ContentOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    parts: Vec<PartOut<'a>>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct PartOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inline_data: Option<InlineData<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    function_call: Option<FunctionCallOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    function_response: Option<FunctionResponseOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thought_signature: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InlineData<'a> {
    mime_type: &'a str,
    data: &'a str,
}

#[derive(Serialize)]
struct FunctionCallOut<'a> {
    name: &'a str,
    args: &'a RawValue,
}

#[derive(Serialize)]
struct FunctionResponseOut<'a> {
    name: &'a str,
    response: FunctionOutput<'a>,
}

/// A function result must be an object: JSON objects go as they are, any
/// other text under `output`, as Google's docs suggest.
#[derive(Serialize)]
#[serde(untagged)]
enum FunctionOutput<'a> {
    Object(Box<RawValue>),
    Text { output: &'a str },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolsOut<'a> {
    function_declarations: Vec<DeclarationOut<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeclarationOut<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    /// Full JSON Schema, unlike `parameters` (an OpenAPI subset that rejects
    /// keywords such as `additionalProperties`).
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters_json_schema: Option<&'a RawValue>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfigOut<'a> {
    function_calling_config: FunctionCallingConfig<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FunctionCallingConfig<'a> {
    mode: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    allowed_function_names: Vec<&'a str>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    stop_sequences: &'a [Cow<'a, str>],
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_json_schema: Option<&'a RawValue>,
}

impl GenerationConfig<'_> {
    fn is_empty(&self) -> bool {
        self.max_output_tokens.is_none()
            && self.temperature.is_none()
            && self.top_p.is_none()
            && self.stop_sequences.is_empty()
            && self.seed.is_none()
            && self.presence_penalty.is_none()
            && self.frequency_penalty.is_none()
            && self.response_mime_type.is_none()
    }
}

/// `models/{id}`, or the id as given when it is already a resource path
/// (`tunedModels/...`).
fn model_resource(model_id: &str) -> String {
    if model_id.contains('/') {
        uri_encode(model_id, false)
    } else {
        format!("models/{}", uri_encode(model_id, true))
    }
}

fn function_output(content: &str) -> FunctionOutput<'_> {
    match serde_json::from_str::<Box<RawValue>>(content) {
        Ok(raw) if raw.get().starts_with('{') => FunctionOutput::Object(raw),
        _ => FunctionOutput::Text { output: content },
    }
}

fn contents<'c>(conversation: &'c Conversation<'_>) -> Result<Vec<ContentOut<'c>>, GatewayError> {
    let mut contents = Vec::with_capacity(conversation.turns.len());
    for turn in &conversation.turns {
        let mut parts = Vec::with_capacity(turn.blocks.len());
        let mut signed = false;
        for block in &turn.blocks {
            parts.push(match block {
                // Gemini caches through its own API, not by breakpoints.
                Block::CachePoint => continue,
                Block::Text(text) => PartOut {
                    text: Some(text),
                    ..PartOut::default()
                },
                Block::Image(image) => match image.source()? {
                    ImageSource::Base64 { media_type, data } => PartOut {
                        inline_data: Some(InlineData {
                            mime_type: media_type,
                            data,
                        }),
                        ..PartOut::default()
                    },
                    ImageSource::Url(_) => {
                        return Err(GatewayError::invalid_param(
                            "messages",
                            "Gemini takes images inline: send them as base64 `data:` URLs.",
                        ))
                    }
                },
                Block::ToolCall(call) => {
                    // Only a turn's first call carries a signature.
                    let thought_signature = (!signed).then_some(REPLAYED_CALL_SIGNATURE);
                    signed = true;
                    PartOut {
                        function_call: Some(FunctionCallOut {
                            name: &call.name,
                            args: &call.arguments,
                        }),
                        thought_signature,
                        ..PartOut::default()
                    }
                }
                Block::ToolResult(result) => PartOut {
                    function_response: Some(FunctionResponseOut {
                        name: &result.name,
                        response: function_output(&result.content),
                    }),
                    ..PartOut::default()
                },
            });
        }
        contents.push(ContentOut {
            role: Some(match turn.speaker {
                Speaker::User => "user",
                Speaker::Assistant => "model",
            }),
            parts,
        });
    }
    Ok(contents)
}

fn tool_config<'c>(conversation: &'c Conversation<'_>) -> Option<ToolConfigOut<'c>> {
    let (mode, allowed) = match conversation.tool_choice.as_ref()? {
        ToolChoice::Auto => ("AUTO", Vec::new()),
        ToolChoice::None => ("NONE", Vec::new()),
        ToolChoice::Required => ("ANY", Vec::new()),
        ToolChoice::Function(name) => ("ANY", vec![name.as_ref()]),
    };
    (!conversation.tools.is_empty()).then_some(ToolConfigOut {
        function_calling_config: FunctionCallingConfig {
            mode,
            allowed_function_names: allowed,
        },
    })
}

fn chat_request(call: &Call<'_>, body: &[u8]) -> Result<UpstreamRequest, GatewayError> {
    let conversation = Conversation::parse(body)?;
    let (response_mime_type, response_json_schema) = match &conversation.response_format {
        Some(ResponseFormat::JsonObject) => (Some("application/json"), None),
        Some(ResponseFormat::JsonSchema { schema }) => (Some("application/json"), *schema),
        Some(ResponseFormat::Text) | None => (None, None),
    };
    let declarations: Vec<DeclarationOut<'_>> = conversation
        .tools
        .iter()
        .map(|tool| DeclarationOut {
            name: &tool.name,
            description: tool.description.as_deref(),
            parameters_json_schema: tool.parameters,
        })
        .collect();
    let request = GenerateRequest {
        contents: contents(&conversation)?,
        system_instruction: (!conversation.system.is_empty()).then(|| ContentOut {
            role: None,
            parts: conversation
                .system
                .iter()
                .map(|text| PartOut {
                    text: Some(text),
                    ..PartOut::default()
                })
                .collect(),
        }),
        tools: if declarations.is_empty() {
            Vec::new()
        } else {
            vec![ToolsOut {
                function_declarations: declarations,
            }]
        },
        tool_config: tool_config(&conversation),
        generation_config: GenerationConfig {
            max_output_tokens: conversation.max_tokens,
            temperature: conversation.temperature,
            top_p: conversation.top_p,
            stop_sequences: &conversation.stop,
            seed: conversation.seed,
            presence_penalty: conversation.presence_penalty,
            frequency_penalty: conversation.frequency_penalty,
            response_mime_type,
            response_json_schema,
        },
    };
    let body = serde_json::to_vec(&request).map_err(|err| GatewayError::Internal {
        message: format!("The Gemini request could not be written: {err}"),
    })?;
    let method = if call.stream {
        "streamGenerateContent?alt=sse"
    } else {
        "generateContent"
    };
    Ok(UpstreamRequest {
        path: format!("{}/{}:{method}", call.spec.base_path, model_resource(call.model_id)),
        headers: Vec::new(),
        body,
        dropped: conversation.unsupported(SUPPORTED),
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EmbedRequestOut<'a> {
    model: &'a str,
    content: ContentOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimensionality: Option<u64>,
}

#[derive(Serialize)]
struct BatchEmbedOut<'a> {
    requests: Vec<EmbedRequestOut<'a>>,
}

fn embeddings_request(call: &Call<'_>, body: &[u8]) -> Result<UpstreamRequest, GatewayError> {
    let request = EmbeddingsRequest::parse(body)?;
    let model = model_resource(call.model_id);
    let batch = BatchEmbedOut {
        requests: request
            .inputs
            .iter()
            .map(|input| EmbedRequestOut {
                model: &model,
                content: ContentOut {
                    role: None,
                    parts: vec![PartOut {
                        text: Some(input),
                        ..PartOut::default()
                    }],
                },
                output_dimensionality: request.dimensions,
            })
            .collect(),
    };
    let body = serde_json::to_vec(&batch).map_err(|err| GatewayError::Internal {
        message: format!("The Gemini request could not be written: {err}"),
    })?;
    Ok(UpstreamRequest {
        path: format!("{}/{model}:batchEmbedContents", call.spec.base_path),
        headers: Vec::new(),
        body,
        dropped: Vec::new(),
    })
}

pub(crate) fn build_request(call: &Call<'_>, body: &[u8]) -> Result<UpstreamRequest, GatewayError> {
    match call.operation {
        Operation::ChatCompletions => chat_request(call, body),
        Operation::Embeddings => embeddings_request(call, body),
    }
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
    #[serde(default)]
    tool_use_prompt_token_count: u64,
}

impl UsageMetadata {
    /// Gemini's prompt count includes cached tokens; thinking is billed as
    /// output, as OpenAI counts reasoning in `completion_tokens`.
    fn usage(self) -> TokenUsage {
        let prompt = self.prompt_token_count.saturating_add(self.tool_use_prompt_token_count);
        TokenUsage {
            input: prompt.saturating_sub(self.cached_content_token_count),
            cached_input: self.cached_content_token_count.min(prompt),
            cache_write: 0,
            output: self.candidates_token_count.saturating_add(self.thoughts_token_count),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResponseIn<'a> {
    #[serde(default, borrow)]
    candidates: Vec<CandidateIn<'a>>,
    #[serde(default, deserialize_with = "unreadable_as_none")]
    usage_metadata: Option<UsageMetadata>,
    #[serde(default, borrow)]
    model_version: Option<Text<'a>>,
    #[serde(default, borrow)]
    response_id: Option<Text<'a>>,
    #[serde(default, borrow)]
    prompt_feedback: Option<PromptFeedback<'a>>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback<'a> {
    #[serde(default, borrow)]
    block_reason: Option<Text<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CandidateIn<'a> {
    #[serde(default, borrow)]
    content: Option<ContentIn<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct ContentIn<'a> {
    #[serde(default, borrow)]
    parts: Vec<PartIn<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartIn<'a> {
    #[serde(default, borrow)]
    text: Option<Text<'a>>,
    #[serde(default)]
    thought: bool,
    #[serde(default, borrow)]
    function_call: Option<FunctionCallIn<'a>>,
}

#[derive(Deserialize)]
struct FunctionCallIn<'a> {
    #[serde(borrow)]
    name: Text<'a>,
    #[serde(default, borrow)]
    args: Option<&'a RawValue>,
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
}

impl ResponseIn<'_> {
    fn parts(&self) -> impl Iterator<Item = &PartIn<'_>> {
        self.candidates
            .first()
            .and_then(|candidate| candidate.content.as_ref())
            .into_iter()
            .flat_map(|content| &content.parts)
            .filter(|part| !part.thought)
    }

    /// The finish reason, once the answer is over.
    fn finish_reason(&self, made_tool_calls: bool) -> Option<&'static str> {
        let blocked = self.candidates.is_empty()
            && self
                .prompt_feedback
                .as_ref()
                .is_some_and(|feedback| feedback.block_reason.is_some());
        if blocked {
            return Some("content_filter");
        }
        let reason = self.candidates.first()?.finish_reason.as_ref()?;
        Some(match reason.as_str() {
            "STOP" if made_tool_calls => "tool_calls",
            "MAX_TOKENS" => "length",
            "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => "content_filter",
            _ => "stop",
        })
    }
}

/// Gemini function calls may come without ids; the generated ones are
/// unique per answer so a later turn can name the call it answers.
fn call_id(call: &FunctionCallIn<'_>, response_id: &str, index: usize) -> String {
    match &call.id {
        Some(id) if !id.as_str().is_empty() => id.as_str().to_string(),
        _ => format!("call_{response_id}_{index}"),
    }
}

fn arguments<'a>(call: &FunctionCallIn<'a>) -> &'a str {
    call.args.map_or("{}", RawValue::get)
}

pub(crate) fn translate_response(call: &Call<'_>, body: &[u8]) -> TranslatedResponse {
    if call.operation == Operation::Embeddings {
        return translate_embeddings(call, body);
    }
    let response: ResponseIn<'_> = match serde_json::from_slice(body) {
        Ok(response) => response,
        Err(err) => return failure::unreadable(call, &err.to_string()),
    };
    let response_id = response.response_id.as_ref().map(Text::as_str);
    let id = response_id.map_or_else(|| call.now_unix_seconds.to_string(), str::to_string);
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for part in response.parts() {
        if let Some(function) = &part.function_call {
            tool_calls.push(ToolCall {
                id: call_id(function, &id, tool_calls.len()),
                name: function.name.as_str().to_string(),
                arguments: arguments(function).to_string(),
            });
        } else if let Some(piece) = &part.text {
            text.push_str(piece.as_str());
        }
    }
    let usage = response.usage_metadata.map(UsageMetadata::usage);
    let completion = Completion {
        id: response_id.map_or_else(|| format!("chatcmpl-{id}"), str::to_string),
        model: response
            .model_version
            .as_ref()
            .map_or_else(|| call.model_id.to_string(), |model| model.as_str().to_string()),
        created: call.now_unix_seconds,
        finish_reason: response.finish_reason(!tool_calls.is_empty()).unwrap_or("stop"),
        text,
        tool_calls,
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
struct BatchEmbedIn {
    #[serde(default)]
    embeddings: Vec<EmbeddingIn>,
}

#[derive(Deserialize)]
struct EmbeddingIn {
    #[serde(default)]
    values: Vec<f32>,
}

/// The answer to a batchEmbedContents request. The request is needed again
/// for the encoding the client asked for and, as the Gemini API reports no
/// usage for embeddings, for an estimate of it.
fn translate_embeddings(call: &Call<'_>, body: &[u8]) -> TranslatedResponse {
    let answer: BatchEmbedIn = match serde_json::from_slice(body) {
        Ok(answer) => answer,
        Err(err) => return failure::unreadable(call, &err.to_string()),
    };
    let vectors: Vec<Vec<f32>> = answer
        .embeddings
        .into_iter()
        .map(|embedding| embedding.values)
        .collect();
    TranslatedResponse {
        status: 200,
        body: embeddings::response_json(&vectors, call.model_id, TokenUsage::default(), false),
        usage: None,
        failure: None,
    }
}

/// An embeddings answer completed with what only the client's request
/// knows: base64 encoding and the estimated usage.
pub(crate) fn translate_embeddings_with_request(
    call: &Call<'_>,
    request_body: &[u8],
    body: &[u8],
) -> TranslatedResponse {
    let (Ok(request), Ok(answer)) = (
        EmbeddingsRequest::parse(request_body),
        serde_json::from_slice::<BatchEmbedIn>(body),
    ) else {
        return translate_embeddings(call, body);
    };
    let vectors: Vec<Vec<f32>> = answer
        .embeddings
        .into_iter()
        .map(|embedding| embedding.values)
        .collect();
    let usage = TokenUsage {
        input: request.estimated_tokens(),
        ..TokenUsage::default()
    };
    TranslatedResponse {
        status: 200,
        body: embeddings::response_json(&vectors, call.model_id, usage, request.base64),
        usage: Some(usage),
        failure: None,
    }
}

/// Gemini stream events (each a whole response) to OpenAI chunks.
struct GeminiStream {
    /// Names generated call ids when the response has no id.
    created: u64,
}

impl GeminiStream {
    fn write(&self, response: &ResponseIn<'_>, writer: &mut ChunkWriter, out: &mut Vec<u8>) {
        writer.identify(
            response.response_id.as_ref().map(Text::as_str),
            response.model_version.as_ref().map(Text::as_str),
        );
        writer.start(out);
        let response_id = response
            .response_id
            .as_ref()
            .map_or_else(|| self.created.to_string(), |id| id.as_str().to_string());
        for part in response.parts() {
            if let Some(function) = &part.function_call {
                // Gemini sends each call whole, never as argument deltas.
                let id = call_id(function, &response_id, writer.tool_calls());
                writer.tool_call(&id, function.name.as_str(), arguments(function), out);
            } else if let Some(text) = &part.text {
                writer.text(text.as_str(), out);
            }
        }
        if let Some(reason) = response.finish_reason(writer.tool_calls() > 0) {
            writer.finish(reason, out);
        }
    }
}

impl Handler<SseFramer> for GeminiStream {
    fn on_event(&mut self, event: SseEvent<'_>, output: &mut Output, out: &mut Vec<u8>) -> Result<(), GatewayError> {
        if !output.is_open() {
            return Ok(());
        }
        let response: ResponseIn<'_> =
            serde_json::from_slice(event.data).map_err(|err| unreadable_event("Gemini", &err))?;
        if let Some(error) = &response.error {
            output.provider_error(&ErrorInfo::from_json(error), out);
            return Ok(());
        }
        if let Some(usage) = response.usage_metadata {
            output.usage = Some(usage.usage());
        }
        self.write(&response, &mut output.writer, out);
        Ok(())
    }
}

pub(crate) fn stream_translator(call: &Call<'_>) -> Box<dyn StreamTranslator> {
    Box::new(Translator::new(
        SseFramer::default(),
        GeminiStream {
            created: call.now_unix_seconds,
        },
        Output::new(call, call.client_wants_usage),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::FailureKind;
    use crate::providers::testkit::{
        answer_from, assert_garbage_is_survived, assert_split_invariant, call_for, request_for, run_stream, spec,
        stream_call, NOW,
    };
    use crate::providers::{build_request as build, translate_response as translate, ProviderKind};
    use serde_json::json;

    fn request(body: &str) -> (UpstreamRequest, Value) {
        request_for(ProviderKind::Gemini, "gemini-2.5-flash", body)
    }

    fn answer(body: &str) -> (TranslatedResponse, Value) {
        answer_from(ProviderKind::Gemini, body)
    }

    #[test]
    fn a_plain_request_becomes_generate_content() {
        let (upstream, body) = request(
            r#"{"model":"auto","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello"},
               {"role":"assistant","content":"Hi!"},{"role":"user","content":"How are you?"}],
               "max_tokens":100,"temperature":0.5,"top_p":0.8,"stop":"END","seed":3,"user":"u"}"#,
        );
        assert_eq!(upstream.path, "/v1beta/models/gemini-2.5-flash:generateContent");
        assert_eq!(
            body,
            json!({"contents": [
                    {"role": "user", "parts": [{"text": "Hello"}]},
                    {"role": "model", "parts": [{"text": "Hi!"}]},
                    {"role": "user", "parts": [{"text": "How are you?"}]}],
                "systemInstruction": {"parts": [{"text": "Be brief."}]},
                "generationConfig": {"maxOutputTokens": 100, "temperature": 0.5, "topP": 0.8, "stopSequences": ["END"], "seed": 3}})
        );
        assert_eq!(upstream.dropped, vec!["user"]);
    }

    #[test]
    fn a_stream_asks_for_server_sent_events() {
        let spec = spec(ProviderKind::Gemini);
        let mut call = stream_call(&spec, false);
        call.model_id = "tunedModels/my-model";
        let upstream = build(&call, br#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        assert_eq!(
            upstream.path,
            "/v1beta/tunedModels/my-model:streamGenerateContent?alt=sse"
        );
    }

    #[test]
    fn json_output_asks_for_a_json_mime_type_and_schema() {
        let (_, body) = request(
            r#"{"model":"a","messages":[{"role":"user","content":"x"}],
               "response_format":{"type":"json_schema","json_schema":{"name":"r","schema":{"type":"object","properties":{"a":{"type":"integer"}}}}}}"#,
        );
        assert_eq!(
            body["generationConfig"],
            json!({"responseMimeType": "application/json",
                "responseJsonSchema": {"type": "object", "properties": {"a": {"type": "integer"}}}})
        );
    }

    #[test]
    fn images_go_inline_and_links_are_refused() {
        let (_, body) = request(
            r#"{"model":"a","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}},{"type":"text","text":"What?"}]}]}"#,
        );
        assert_eq!(
            body["contents"][0]["parts"],
            json!([{"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}, {"text": "What?"}])
        );
        let spec = spec(ProviderKind::Gemini);
        let link = br#"{"model":"a","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}"#;
        assert_eq!(build(&call_for(&spec), link).unwrap_err().status(), 400);
    }

    #[test]
    fn a_tool_conversation_becomes_function_calls_and_responses() {
        let (_, body) = request(
            r#"{"model":"a","tools":[{"type":"function","function":{"name":"get_weather","description":"Weather",
                 "parameters":{"type":"object","properties":{"city":{"type":"string"}},"additionalProperties":false}}}],
               "tool_choice":"required",
               "messages":[{"role":"user","content":"Weather in Paris and Rome?"},
                {"role":"assistant","tool_calls":[
                  {"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
                  {"id":"call_2","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Rome\"}"}}]},
                {"role":"tool","tool_call_id":"call_1","content":"{\"temp\":18}"},
                {"role":"tool","tool_call_id":"call_2","content":"sunny"}]}"#,
        );
        assert_eq!(
            body["contents"][1],
            json!({"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": REPLAYED_CALL_SIGNATURE},
                {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]})
        );
        assert_eq!(
            body["contents"][2],
            json!({"role": "user", "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temp": 18}}},
                {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}}]})
        );
        assert_eq!(
            body["tools"],
            json!([{"functionDeclarations": [{"name": "get_weather", "description": "Weather",
                "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": false}}]}])
        );
        assert_eq!(body["toolConfig"], json!({"functionCallingConfig": {"mode": "ANY"}}));
    }

    #[test]
    fn a_named_tool_choice_restricts_the_allowed_functions() {
        let (_, body) = request(
            r#"{"model":"a","tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"f"}},
               "messages":[{"role":"user","content":"x"}]}"#,
        );
        assert_eq!(
            body["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}})
        );
        assert_eq!(body["tools"][0]["functionDeclarations"][0], json!({"name": "f"}));
    }

    #[test]
    fn a_text_answer_becomes_a_chat_completion() {
        let (translated, body) = answer(include_str!("../fixtures/gemini/text_answer.json"));
        assert_eq!(body["id"], "abc123");
        assert_eq!(body["model"], "gemini-2.5-flash");
        assert_eq!(body["choices"][0]["message"]["content"], "Hello there");
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            translated.usage,
            Some(TokenUsage {
                input: 12,
                cached_input: 8,
                cache_write: 0,
                output: 20
            })
        );
        assert_eq!(body["usage"]["prompt_tokens"], 20);
    }

    #[test]
    fn a_gemini_function_call_becomes_an_openai_tool_call() {
        let (_, body) = answer(include_str!("../fixtures/gemini/function_call_answer.json"));
        let choice = &body["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], Value::Null);
        assert_eq!(
            choice["message"]["tool_calls"],
            json!([{"id": "call_r1_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                   {"id": "fc-7", "type": "function", "function": {"name": "now", "arguments": "{}"}}])
        );
    }

    #[test]
    fn finish_reasons_map_and_blocked_prompts_are_filtered() {
        for (reason, finish) in [
            ("MAX_TOKENS", "length"),
            ("SAFETY", "content_filter"),
            ("RECITATION", "content_filter"),
            ("OTHER", "stop"),
        ] {
            let (_, body) = answer(&format!(
                r#"{{"candidates":[{{"content":{{"parts":[{{"text":"x"}}]}},"finishReason":"{reason}"}}]}}"#
            ));
            assert_eq!(body["choices"][0]["finish_reason"], finish, "{reason}");
        }
        let (_, body) = answer(include_str!("../fixtures/gemini/blocked_prompt_answer.json"));
        assert_eq!(body["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(body["choices"][0]["message"]["content"], "");
    }

    #[test]
    fn a_quota_error_keeps_its_retry_delay() {
        let spec = spec(ProviderKind::Gemini);
        let body = include_str!("../fixtures/gemini/quota_error.json").as_bytes();
        let translated = translate(&call_for(&spec), 429, &[], body);
        assert_eq!(translated.status, 429);
        assert_eq!(translated.failure.unwrap().retry_after_ms, Some(12_000));
    }

    #[test]
    fn embeddings_become_a_batch_request_and_an_openai_list() {
        let spec = spec(ProviderKind::Gemini);
        let mut call = call_for(&spec);
        call.operation = Operation::Embeddings;
        call.model_id = "gemini-embedding-001";
        let request_body = br#"{"model":"e","input":["hello world","bye"],"dimensions":3}"#;
        let upstream = build(&call, request_body).unwrap();
        assert_eq!(upstream.path, "/v1beta/models/gemini-embedding-001:batchEmbedContents");
        let sent: Value = serde_json::from_slice(&upstream.body).unwrap();
        assert_eq!(
            sent["requests"][1],
            json!({"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "bye"}]}, "outputDimensionality": 3})
        );
        let answer = include_str!("../fixtures/gemini/embeddings_answer.json").as_bytes();
        let translated = crate::providers::translate_embeddings(&call, request_body, 200, &[], answer);
        let body: Value = serde_json::from_slice(&translated.body).unwrap();
        assert_eq!(body["data"][0]["embedding"], json!([0.5, -0.25, 1.0]));
        assert_eq!(body["data"][1]["index"], 1);
        assert_eq!(body["model"], "gemini-embedding-001");
        assert!(translated.usage.unwrap().input > 0);
        // Without the request, the answer still translates (without base64 or usage).
        let plain = translate(&call, 200, &[], answer);
        assert_eq!(plain.status, 200);
    }

    // Recorded streams (fixtures/README.md), with CRLF line ends.
    const TEXT_STREAM: &str = include_str!("../fixtures/gemini/text_stream.sse");
    const TOOL_STREAM: &str = include_str!("../fixtures/gemini/tool_stream.sse");

    #[test]
    fn a_text_stream_becomes_openai_chunks() {
        let spec = spec(ProviderKind::Gemini);
        let run = run_stream(&stream_call(&spec, true), TEXT_STREAM.as_bytes());
        assert_eq!(run.content(), "The sky is blue — ☀️.");
        let events = run.events();
        assert_eq!(events[0]["id"], "r-42");
        assert_eq!(events[0]["created"], NOW);
        assert_eq!(events[events.len() - 2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(events[events.len() - 1]["usage"]["completion_tokens"], 7);
        assert!(run.saw_content);
    }

    #[test]
    fn a_streamed_function_call_arrives_whole() {
        let spec = spec(ProviderKind::Gemini);
        let run = run_stream(&stream_call(&spec, false), TOOL_STREAM.as_bytes());
        let events = run.events();
        assert_eq!(
            events[1]["choices"][0]["delta"]["tool_calls"],
            json!([{"index": 0, "id": "call_t-1_0", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}])
        );
        assert_eq!(events[2]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(run.usage.unwrap().output, 45);
    }

    #[test]
    fn gemini_streams_translate_the_same_at_every_split_point() {
        let spec = spec(ProviderKind::Gemini);
        assert_split_invariant(&stream_call(&spec, true), TEXT_STREAM.as_bytes());
        assert_split_invariant(&stream_call(&spec, false), TOOL_STREAM.as_bytes());
    }

    #[test]
    fn an_error_in_the_stream_is_a_failure() {
        let spec = spec(ProviderKind::Gemini);
        let stream = "data: {\"error\": {\"code\": 503, \"message\": \"The model is overloaded.\", \"status\": \"UNAVAILABLE\"}}\n\n";
        let run = run_stream(&stream_call(&spec, false), stream.as_bytes());
        assert_eq!(run.failure.unwrap().kind, FailureKind::Overloaded);
        assert!(run.text.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn garbage_never_panics_the_gemini_translator() {
        let spec = spec(ProviderKind::Gemini);
        assert_garbage_is_survived(&stream_call(&spec, true), TEXT_STREAM.as_bytes());
    }
}
