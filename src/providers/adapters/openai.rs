//! OpenAI and everything that speaks its API: OpenAI itself, Azure OpenAI
//! (deployment paths, `api-version`), and the OpenAI-compatible vendors
//! (Groq, Mistral, DeepSeek, Together, Cerebras, OpenRouter, vLLM, Ollama).
//!
//! The client's body goes upstream byte for byte except the model id and
//! what the vendor's [`Quirks`] require; answers come back unchanged, read
//! only for usage and failures. On streams, usage is requested from the
//! provider even when the client did not ask, and the extra usage-only chunk
//! is then kept from the client.

use serde::Deserialize;
use serde_json::Value;

use crate::error::GatewayError;
use crate::json_edit;
use crate::request::Text;

use crate::providers::failure::{self, ErrorInfo};
use crate::providers::openai_format::body_edit;
use crate::providers::openai_format::usage::{unreadable_as_none, OpenAiUsage, TokenUsage};
use crate::providers::stream::{unreadable_event, Handler, Output, Translator};
use crate::providers::wire::sigv4::uri_encode;
use crate::providers::wire::sse::{SseEvent, SseFramer};
use crate::providers::{Call, Operation, ProviderKind, StreamTranslator, TranslatedResponse, UpstreamRequest};

/// Where an OpenAI-compatible vendor departs from OpenAI in ways that break
/// requests. Vendors not listed in [`Quirks::for_vendor`] get
/// [`Quirks::STANDARD`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quirks {
    /// Accepts `stream_options`. Without it the field is removed (Mistral
    /// rejects it with a 422 but reports usage in its last chunk anyway).
    pub stream_options: bool,
    /// Knows `max_completion_tokens`; without it the field is renamed
    /// `max_tokens` (Mistral rejects the newer name).
    pub max_completion_tokens: bool,
    /// Serves OpenAI's Responses API (`/responses`): a Responses client's
    /// own body goes there as it came. Only `vendor: openai` says the
    /// provider is OpenAI itself; a provider without a vendor may be any
    /// OpenAI-compatible API, whose Responses support varies, so it gets chat.
    pub responses_api: bool,
}

impl Quirks {
    pub const STANDARD: Quirks = Quirks {
        stream_options: true,
        max_completion_tokens: true,
        responses_api: false,
    };
    pub const OPENAI: Quirks = Quirks {
        responses_api: true,
        ..Quirks::STANDARD
    };
    pub const MISTRAL: Quirks = Quirks {
        stream_options: false,
        max_completion_tokens: false,
        responses_api: false,
    };

    /// The quirks of a vendor by name (`"mistral"`, `"groq"`, ...), for
    /// configurations that name their vendor. `None` for unknown names.
    pub fn for_vendor(name: &str) -> Option<Quirks> {
        match name.to_ascii_lowercase().as_str() {
            "mistral" => Some(Quirks::MISTRAL),
            "openai" => Some(Quirks::OPENAI),
            "azure" | "groq" | "deepseek" | "together" | "cerebras" | "openrouter" | "vllm" | "ollama" => {
                Some(Quirks::STANDARD)
            }
            _ => None,
        }
    }
}

impl Default for Quirks {
    fn default() -> Self {
        Quirks::STANDARD
    }
}

/// Whether the gateway adds `stream_options.include_usage` for its own
/// accounting, so the provider's usage-only chunk must not reach the client.
fn injects_stream_usage(call: &Call<'_>) -> bool {
    call.operation == Operation::ChatCompletions
        && call.stream
        && !call.client_wants_usage
        && call.spec.quirks.stream_options
}

fn path(call: &Call<'_>) -> Result<String, GatewayError> {
    let endpoint = match call.operation {
        Operation::ChatCompletions => "chat/completions",
        Operation::Embeddings => "embeddings",
    };
    let base = &call.spec.base_path;
    if call.spec.kind != ProviderKind::Azure {
        return Ok(format!("{base}/{endpoint}"));
    }
    let version = call.spec.api_version.as_deref().ok_or_else(|| GatewayError::Internal {
        message: "The Azure OpenAI provider has no api_version configured.".into(),
    })?;
    Ok(format!(
        "{base}/openai/deployments/{}/{endpoint}?api-version={}",
        uri_encode(call.model_id, true),
        uri_encode(version, true)
    ))
}

/// `stream_options` with `include_usage: true`, keeping any other option
/// the client set.
fn with_stream_usage(body: &[u8]) -> Vec<u8> {
    let existing = json_edit::member_value_span(body, "stream_options")
        .and_then(|span| body.get(span))
        .and_then(|value| serde_json::from_slice::<serde_json::Map<String, Value>>(value).ok());
    let mut options = existing.unwrap_or_default();
    options.insert("include_usage".into(), Value::Bool(true));
    let value = serde_json::to_vec(&options).unwrap_or_else(|_| br#"{"include_usage":true}"#.to_vec());
    body_edit::set_member(body, "stream_options", &value).unwrap_or_else(|| body.to_vec())
}

pub(crate) fn build_request(call: &Call<'_>, body: &[u8]) -> Result<UpstreamRequest, GatewayError> {
    let span = json_edit::member_value_span(body, "model")
        .ok_or_else(|| GatewayError::invalid_param("model", "`model` must be a top-level string field."))?;
    let mut body = json_edit::splice(body, span, &json_edit::quote(call.model_id));
    let mut dropped = Vec::new();
    if call.operation == Operation::ChatCompletions {
        let quirks = call.spec.quirks;
        if injects_stream_usage(call) {
            body = with_stream_usage(&body);
        } else if !quirks.stream_options {
            if let Some(edited) = body_edit::remove_member(&body, "stream_options") {
                body = edited;
                dropped.push("stream_options");
            }
        }
        if let Some(stripped) = without_cache_breakpoints(&body) {
            body = stripped;
            dropped.push("cache_control");
        }
        if !quirks.max_completion_tokens && json_edit::member_value_span(&body, "max_completion_tokens").is_some() {
            // The newer name wins when a client sent both.
            body = body_edit::remove_member(&body, "max_tokens").unwrap_or(body);
            body = body_edit::rename_member(&body, "max_completion_tokens", "max_tokens").unwrap_or(body);
        }
    }
    Ok(UpstreamRequest {
        path: path(call)?,
        headers: Vec::new(),
        body,
        dropped,
    })
}

/// The body without the gateway's own prompt-cache breakpoints (see
/// `ingress::chat_body`), which only Anthropic and Bedrock read; a chat
/// client's `cache_control` passes as it sent it (OpenRouter reads it).
/// `None` when there are none (the common case costs one search).
fn without_cache_breakpoints(body: &[u8]) -> Option<Vec<u8>> {
    memchr::memmem::find(body, b"\"signalbox_cache_breakpoint\"")?;
    let mut value: Value = serde_json::from_slice(body).ok()?;
    let mut removed = false;
    for message in value.get_mut("messages")?.as_array_mut()? {
        if let Some(message) = message.as_object_mut() {
            removed |= message.remove("signalbox_cache_breakpoint").is_some();
        }
    }
    removed.then(|| serde_json::to_vec(&value).ok()).flatten()
}

/// The parts of an OpenAI answer the gateway reads.
#[derive(Deserialize)]
struct AnswerView {
    #[serde(default)]
    choices: Option<serde::de::IgnoredAny>,
    #[serde(default, deserialize_with = "unreadable_as_none")]
    usage: Option<OpenAiUsage>,
    #[serde(default)]
    error: Option<Value>,
}

pub(crate) fn translate_response(call: &Call<'_>, body: &[u8]) -> TranslatedResponse {
    let answer: AnswerView = match serde_json::from_slice(body) {
        Ok(answer) => answer,
        Err(err) => return failure::unreadable(call, &err.to_string()),
    };
    if let (Some(error), None) = (&answer.error, &answer.choices) {
        // Some vendors answer 200 with an error object.
        if call.operation == Operation::ChatCompletions {
            let code = ErrorInfo::from_json(error)
                .code
                .and_then(|code| code.parse::<u16>().ok());
            return failure::translate_error(call, code.filter(|c| *c >= 400).unwrap_or(502), &[], body);
        }
    }
    TranslatedResponse {
        status: 200,
        body: body.to_vec(),
        usage: answer.usage.as_ref().map(TokenUsage::from_openai),
        failure: None,
    }
}

#[derive(Deserialize)]
struct ChunkView<'a> {
    #[serde(default, borrow)]
    choices: Option<Vec<ChoiceView<'a>>>,
    #[serde(default, deserialize_with = "unreadable_as_none")]
    usage: Option<OpenAiUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChoiceView<'a> {
    #[serde(default, borrow)]
    delta: Option<DeltaView<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct DeltaView<'a> {
    #[serde(default, borrow)]
    content: Option<Text<'a>>,
    #[serde(default, borrow)]
    reasoning_content: Option<Text<'a>>,
    #[serde(default, borrow)]
    tool_calls: Option<&'a serde_json::value::RawValue>,
}

/// Passes OpenAI chunks through, reading usage, completion and errors.
struct OpenAiStream {
    hide_usage_chunk: bool,
}

impl Handler<SseFramer> for OpenAiStream {
    fn on_event(&mut self, event: SseEvent<'_>, output: &mut Output, out: &mut Vec<u8>) -> Result<(), GatewayError> {
        if !output.is_open() {
            return Ok(());
        }
        let data = event.data.trim_ascii();
        if data == b"[DONE]" {
            output.writer.close(None, out);
            return Ok(());
        }
        // Fields the gateway skips are not checked by the JSON reader, and
        // the event goes to the client as it is: it must be text.
        let data = std::str::from_utf8(data).map_err(|_| GatewayError::Internal {
            message: "An OpenAI stream event is not UTF-8.".into(),
        })?;
        let chunk: ChunkView<'_> = serde_json::from_str(data).map_err(|err| unreadable_event("OpenAI", &err))?;
        if let Some(error) = &chunk.error {
            output.provider_error(&ErrorInfo::from_json(error), out);
            return Ok(());
        }
        if let Some(usage) = &chunk.usage {
            output.usage = Some(TokenUsage::from_openai(usage));
        }
        let choices = chunk.choices.as_deref().unwrap_or_default();
        for choice in choices {
            if choice.finish_reason.is_some() {
                output.writer.mark_finished();
            }
            let Some(delta) = &choice.delta else { continue };
            let texts = [&delta.content, &delta.reasoning_content];
            let has_content = delta.tool_calls.is_some()
                || texts
                    .iter()
                    .any(|text| text.as_ref().is_some_and(|text| !text.as_str().is_empty()));
            if has_content {
                output.writer.mark_content();
            }
            for text in texts.into_iter().flatten() {
                output.writer.count_relayed(text.as_str());
            }
            if let Some(calls) = delta.tool_calls {
                output.writer.count_relayed(calls.get());
            }
        }
        if self.hide_usage_chunk && choices.is_empty() && chunk.usage.is_some() {
            return Ok(());
        }
        out.extend_from_slice(b"data: ");
        // A multi-line `data:` event joins its lines with `\n`; outside JSON
        // strings that is whitespace, and inside them newlines are escaped.
        let start = out.len();
        out.extend_from_slice(data.as_bytes());
        if memchr::memchr(b'\n', data.as_bytes()).is_some() {
            for byte in out.get_mut(start..).unwrap_or_default() {
                if *byte == b'\n' {
                    *byte = b' ';
                }
            }
        }
        out.extend_from_slice(b"\n\n");
        Ok(())
    }
}

pub(crate) fn stream_translator(call: &Call<'_>) -> Box<dyn StreamTranslator> {
    Box::new(Translator::new(
        SseFramer::default(),
        OpenAiStream {
            hide_usage_chunk: injects_stream_usage(call),
        },
        // Usage chunks are the provider's, passed through or hidden.
        Output::new(call, false),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testkit::{
        assert_garbage_is_survived, assert_split_invariant, bearer, call_for, run_stream, spec, stream_call,
    };
    use crate::providers::{build_request as build, translate_response as translate, ProviderSpec};

    fn chat(call: &Call<'_>, body: &str) -> (String, String) {
        let upstream = build(call, body.as_bytes()).unwrap();
        (upstream.path, String::from_utf8(upstream.body).unwrap())
    }

    #[test]
    fn the_gateways_cache_breakpoints_are_removed_and_a_clients_kept() {
        let spec = spec(ProviderKind::Openai);
        let call = call_for(&spec);
        let body = r#"{"model":"auto","messages":[{"role":"system","content":"rules","signalbox_cache_breakpoint":true},{"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}}]}]}"#;
        let upstream = build(&call, body.as_bytes()).unwrap();
        let sent: Value = serde_json::from_slice(&upstream.body).unwrap();
        assert!(
            sent["messages"][0].get("signalbox_cache_breakpoint").is_none(),
            "{sent}"
        );
        assert_eq!(sent["messages"][1]["content"][0]["cache_control"]["type"], "ephemeral");
        assert_eq!(upstream.dropped, vec!["cache_control"]);
        let plain = r#"{"model":"auto","messages":[{"role":"user","content":"signalbox_cache_breakpoint"}]}"#;
        assert!(
            build(&call, plain.as_bytes()).unwrap().dropped.is_empty(),
            "text that names it is left alone"
        );
    }

    #[test]
    fn a_passed_through_stream_counts_the_content_it_relayed() {
        let spec = spec(ProviderKind::Openai);
        let call = stream_call(&spec, false);
        let stream = include_str!("../fixtures/openai/content_and_tool_chunks.sse");
        let mut translator = stream_translator(&call);
        let mut out = Vec::new();
        translator.push(stream.as_bytes(), &mut out).unwrap();
        assert!(translator.relayed_output_tokens() >= u64::from(crate::tokens::estimate("Hello there, friend")));
        assert_eq!(translator.usage(), None);
    }

    #[test]
    fn the_model_id_path_and_key_are_the_providers() {
        let spec = spec(ProviderKind::Openai);
        let key = bearer("sk-test-openai");
        let mut call = call_for(&spec);
        call.credential = Some(&key);
        let body = br#"{"model":"auto","messages":[{"role":"user","content":"hi"}],"temperature":0.3}"#;
        let upstream = build(&call, body).unwrap();
        assert_eq!(upstream.path, "/v1/chat/completions");
        assert!(upstream
            .headers
            .contains(&("authorization".to_string(), "Bearer sk-test-openai".to_string())));
        assert_eq!(
            upstream.body,
            br#"{"model":"gpt-test","messages":[{"role":"user","content":"hi"}],"temperature":0.3}"#.to_vec()
        );
        assert!(upstream.dropped.is_empty());
    }

    #[test]
    fn a_vendor_base_path_prefixes_the_endpoint() {
        let spec = ProviderSpec {
            base_path: "/openai/v1".into(),
            ..spec(ProviderKind::Openai)
        };
        let (path, _) = chat(&call_for(&spec), r#"{"model":"x","messages":[]}"#);
        assert_eq!(path, "/openai/v1/chat/completions");
    }

    #[test]
    fn azure_addresses_the_deployment_with_an_api_version() {
        let spec = ProviderSpec {
            api_version: Some("2024-10-21".into()),
            ..ProviderSpec::new(ProviderKind::Azure)
        };
        let mut call = call_for(&spec);
        call.model_id = "my gpt";
        let (path, body) = chat(&call, r#"{"model":"auto","messages":[]}"#);
        assert_eq!(
            path,
            "/openai/deployments/my%20gpt/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(body, r#"{"model":"my gpt","messages":[]}"#);
        call.operation = Operation::Embeddings;
        assert_eq!(
            build(&call, br#"{"model":"a","input":"x"}"#).unwrap().path,
            "/openai/deployments/my%20gpt/embeddings?api-version=2024-10-21"
        );
        let unversioned = ProviderSpec::new(ProviderKind::Azure);
        assert_eq!(
            build(&call_for(&unversioned), br#"{"model":"a"}"#)
                .unwrap_err()
                .status(),
            500
        );
    }

    #[test]
    fn a_stream_asks_for_usage_when_the_client_did_not() {
        let spec = spec(ProviderKind::Openai);
        let mut call = stream_call(&spec, false);
        let (_, body) = chat(&call, r#"{"model":"m","stream":true,"messages":[]}"#);
        assert_eq!(
            body,
            r#"{"stream_options":{"include_usage":true},"model":"gpt-test","stream":true,"messages":[]}"#
        );
        let (_, body) = chat(
            &call,
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":false,"x":1},"messages":[]}"#,
        );
        assert_eq!(
            body,
            r#"{"model":"gpt-test","stream":true,"stream_options":{"include_usage":true,"x":1},"messages":[]}"#
        );
        call.client_wants_usage = true;
        let sent = r#"{"model":"gpt-test","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
        assert_eq!(chat(&call, sent).1, sent);
    }

    #[test]
    fn mistral_gets_neither_stream_options_nor_max_completion_tokens() {
        let spec = ProviderSpec {
            quirks: Quirks::for_vendor("Mistral").unwrap(),
            ..spec(ProviderKind::Openai)
        };
        let call = stream_call(&spec, true);
        let upstream = build(
            &call,
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"max_tokens":5,"max_completion_tokens":9,"messages":[]}"#,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(upstream.body).unwrap(),
            r#"{"model":"gpt-test","stream":true,"max_tokens":9,"messages":[]}"#
        );
        assert_eq!(upstream.dropped, vec!["stream_options"]);
    }

    #[test]
    fn a_plain_answer_passes_through_with_its_usage_read() {
        let spec = spec(ProviderKind::Openai);
        let body = include_str!("../fixtures/openai/chat_completion.json").as_bytes();
        let translated = translate(&call_for(&spec), 200, &[], body);
        assert_eq!(translated.status, 200);
        assert_eq!(translated.body, body.to_vec());
        assert_eq!(
            translated.usage,
            Some(TokenUsage {
                input: 4,
                cached_input: 8,
                cache_write: 0,
                output: 3
            })
        );
    }

    #[test]
    fn an_error_answered_with_200_is_still_an_error() {
        let spec = spec(ProviderKind::Openai);
        let translated = translate(
            &call_for(&spec),
            200,
            &[],
            br#"{"error":{"message":"upstream overloaded","code":503}}"#,
        );
        assert_eq!(translated.status, 503);
        assert_eq!(
            translated.failure.unwrap().kind,
            crate::failure::FailureKind::Overloaded
        );
    }

    #[test]
    fn embeddings_pass_through_with_usage() {
        let spec = spec(ProviderKind::Openai);
        let mut call = call_for(&spec);
        call.operation = Operation::Embeddings;
        assert_eq!(chat(&call, r#"{"model":"e","input":"x"}"#).0, "/v1/embeddings");
        let body = include_str!("../fixtures/openai/embeddings_answer.json").as_bytes();
        let translated = translate(&call, 200, &[], body);
        assert_eq!(translated.usage.unwrap().input, 3);
        assert_eq!(translated.body, body.to_vec());
    }

    // A recorded stream (fixtures/README.md) with a keep-alive comment and the usage chunk.
    const STREAM: &str = include_str!("../fixtures/openai/text_stream.sse");

    #[test]
    fn the_injected_usage_chunk_is_recorded_but_kept_from_the_client() {
        let spec = spec(ProviderKind::Openai);
        let call = stream_call(&spec, false);
        let run = run_stream(&call, STREAM.as_bytes());
        assert!(!run.text.contains("prompt_tokens"));
        assert!(run.text.contains("Héllo"));
        assert!(run.text.ends_with("data: [DONE]\n\n"));
        assert_eq!(run.text.matches("data: ").count(), 4);
        assert_eq!(run.usage.unwrap().input, 9);
        assert!(run.saw_content && run.failure.is_none());
    }

    #[test]
    fn a_client_that_asked_for_usage_gets_the_usage_chunk() {
        let spec = spec(ProviderKind::Openai);
        let call = stream_call(&spec, true);
        let run = run_stream(&call, STREAM.as_bytes());
        assert!(run.text.contains("\"prompt_tokens\":9"));
        assert_eq!(run.text.matches("data: ").count(), 5);
    }

    #[test]
    fn openai_streams_translate_the_same_at_every_split_point() {
        let spec = spec(ProviderKind::Openai);
        let call = stream_call(&spec, false);
        assert_split_invariant(&call, STREAM.as_bytes());
    }

    #[test]
    fn a_stream_cut_before_its_finish_ends_with_an_error_event() {
        let spec = spec(ProviderKind::Openai);
        let call = stream_call(&spec, false);
        let cut = STREAM.find(": keep-alive").unwrap();
        let run = run_stream(&call, &STREAM.as_bytes()[..cut]);
        assert!(run.text.contains("\"error\""), "{}", run.text);
        assert!(run.text.ends_with("data: [DONE]\n\n"));
        assert_eq!(run.failure.unwrap().kind, crate::failure::FailureKind::Server);
    }

    #[test]
    fn an_in_stream_error_is_a_failure() {
        let spec = spec(ProviderKind::Openai);
        let call = call_for(&spec);
        let stream = "data: {\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}\n\n";
        let run = run_stream(&call, stream.as_bytes());
        assert_eq!(run.failure.unwrap().kind, crate::failure::FailureKind::RateLimited);
        assert!(run.text.contains("rate_limit_exceeded"));
    }

    #[test]
    fn garbage_data_is_an_error() {
        let spec = spec(ProviderKind::Openai);
        let call = call_for(&spec);
        let mut translator = stream_translator(&call);
        let mut out = Vec::new();
        assert!(translator.push(b"data: {not json\n\n", &mut out).is_err());
        assert!(translator.push(b"data: {}\n\n", &mut out).is_err());
        translator.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("could not be read") && text.ends_with("data: [DONE]\n\n"),
            "{text}"
        );
    }

    #[test]
    fn garbage_never_panics_the_openai_translator() {
        let spec = spec(ProviderKind::Openai);
        let call = stream_call(&spec, false);
        assert_garbage_is_survived(&call, STREAM.as_bytes());
    }
}
