//! OpenAI's Responses API answers, read rather than translated: a Responses
//! client's own request went to OpenAI as it came
//! (`route::attempts::is_native`), so its answer goes back as it came. The
//! gateway reads from it what billing, health and failover need: usage,
//! whether content has started, and failures.

use serde::Deserialize;
use serde_json::Value;

use crate::error::GatewayError;
use crate::request::Text;

use crate::providers::failure::{self, ErrorInfo};
use crate::providers::openai_format::usage::{unreadable_as_none, OpenAiUsage, TokenUsage};
use crate::providers::stream::{unreadable_event, Handler, Output, Translator};
use crate::providers::wire::sse::{SseEvent, SseFramer};
use crate::providers::{Call, StreamTranslator, TranslatedResponse};

/// The parts of a Responses `response` object the gateway reads.
#[derive(Deserialize)]
struct ResponseView<'a> {
    #[serde(default, borrow)]
    status: Option<Text<'a>>,
    /// Input and output tokens under the Responses names (accepted as
    /// aliases by [`OpenAiUsage`]).
    #[serde(default, deserialize_with = "unreadable_as_none")]
    usage: Option<OpenAiUsage>,
    #[serde(default)]
    error: Option<Value>,
}

/// A whole 2xx answer: as it came, with its usage; a `failed` response is
/// the provider's failure.
pub(crate) fn read_answer(call: &Call<'_>, body: &[u8]) -> TranslatedResponse {
    let answer: ResponseView<'_> = match serde_json::from_slice(body) {
        Ok(answer) => answer,
        Err(err) => return failure::unreadable(call, &err.to_string()),
    };
    if answer.status.as_ref().map(Text::as_str) == Some("failed") {
        let mut failed = failure::translate_error(call, 502, &[], body);
        failed.usage = answer.usage.as_ref().map(TokenUsage::from_openai);
        return failed;
    }
    TranslatedResponse {
        status: 200,
        body: body.to_vec(),
        usage: answer.usage.as_ref().map(TokenUsage::from_openai),
        failure: None,
    }
}

/// An error answer, as on chat, but for a 404: on chat it means the
/// provider does not serve the model (the deployment's fault); here a
/// client can name a stored object that does not exist (a response, a
/// conversation, a file), which is its own mistake and must not count
/// against a deployment every tenant shares.
pub(crate) fn read_error(
    call: &Call<'_>,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> TranslatedResponse {
    let names_the_model = || ErrorInfo::parse(body, headers).code.as_deref() == Some("model_not_found");
    if status != 404 || names_the_model() {
        return failure::translate_error(call, status, headers, body);
    }
    let mut refused = failure::translate_error(call, 400, headers, body);
    refused.status = 404;
    refused
}

#[derive(Deserialize)]
struct EventView<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(default, borrow)]
    delta: Option<Text<'a>>,
    #[serde(default, borrow)]
    response: Option<ResponseView<'a>>,
}

struct ResponsesStream;

impl Handler<SseFramer> for ResponsesStream {
    fn on_event(&mut self, event: SseEvent<'_>, output: &mut Output, out: &mut Vec<u8>) -> Result<(), GatewayError> {
        let data = event.data.trim_ascii();
        if !output.is_open() || data.is_empty() {
            return Ok(());
        }
        let view: EventView<'_> =
            serde_json::from_slice(data).map_err(|err| unreadable_event("OpenAI Responses", &err))?;
        let usage = || {
            view.response
                .as_ref()
                .and_then(|response| response.usage.as_ref())
                .map(TokenUsage::from_openai)
        };
        match view.kind.as_str() {
            "response.output_text.delta"
            | "response.refusal.delta"
            | "response.function_call_arguments.delta"
            | "response.reasoning_summary_text.delta" => {
                output.writer.mark_content();
                if let Some(delta) = &view.delta {
                    output.writer.count_relayed(delta.as_str());
                }
            }
            "response.completed" | "response.incomplete" => {
                output.usage = usage().or(output.usage);
                output.writer.mark_finished();
                output.complete(out);
            }
            "response.failed" => {
                output.usage = usage().or(output.usage);
                let error = view.response.and_then(|response| response.error).unwrap_or(Value::Null);
                output.provider_error(&ErrorInfo::from_json(&error), out);
            }
            "error" => {
                let error: Value = serde_json::from_slice(data).unwrap_or(Value::Null);
                output.provider_error(&ErrorInfo::from_json(&error), out);
            }
            _ => {}
        }
        Ok(())
    }
}

/// Longest Responses event read. `response.created`, `in_progress` and
/// `completed` carry the whole response object, which repeats the
/// request's `instructions` and tools (a client may send megabytes of
/// them) and, at the end, the whole output: chat's 1 MiB bound would take
/// a complete answer for a broken stream.
const MAX_EVENT_BYTES: usize = 32 << 20;

/// Reads a Responses event stream for usage, content and failures. What it
/// writes is not the client's: the filter relays the provider's events.
pub(crate) fn stream_reader(call: &Call<'_>) -> Box<dyn StreamTranslator> {
    Box::new(Translator::new(
        SseFramer::new(MAX_EVENT_BYTES),
        ResponsesStream,
        Output::new(call, false),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::FailureKind;
    use crate::providers::testkit::{call_for, spec};
    use crate::providers::ProviderKind;

    const COMPLETED: &str = include_str!("../fixtures/responses/completed.json");

    #[test]
    fn a_whole_answer_goes_as_it_came_with_its_usage() {
        let spec = spec(ProviderKind::Openai);
        let read = read_answer(&call_for(&spec), COMPLETED.as_bytes());
        assert_eq!(read.status, 200);
        assert_eq!(read.body, COMPLETED.as_bytes());
        let usage = read.usage.unwrap();
        assert_eq!((usage.input, usage.cached_input, usage.output), (20, 100, 9));
        assert!(read.failure.is_none());
    }

    #[test]
    fn a_404_is_the_clients_unless_it_names_the_model() {
        let spec = spec(ProviderKind::Openai);
        let unknown_response = br#"{"error":{"message":"Response 'resp_x' not found","type":"invalid_request_error","param":"previous_response_id","code":null}}"#;
        let read = read_error(&call_for(&spec), 404, &[], unknown_response);
        assert_eq!(read.status, 404);
        assert_eq!(read.failure.map(|failure| failure.kind), Some(FailureKind::Client));
        let unknown_model = br#"{"error":{"message":"The model does not exist","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#;
        let read = read_error(&call_for(&spec), 404, &[], unknown_model);
        assert_eq!(read.failure.map(|failure| failure.kind), Some(FailureKind::Server));
    }

    #[test]
    fn a_failed_or_unreadable_answer_is_the_providers_failure() {
        let spec = spec(ProviderKind::Openai);
        let failed = r#"{"id":"r","status":"failed","error":{"code":"server_error","message":"boom"}}"#;
        let read = read_answer(&call_for(&spec), failed.as_bytes());
        assert!(read.status >= 500);
        assert!(read.failure.is_some());
        assert!(read_answer(&call_for(&spec), b"{not json").failure.is_some());
    }

    fn events(names_and_data: &[(&str, &str)]) -> String {
        names_and_data
            .iter()
            .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
            .collect()
    }

    #[test]
    fn a_stream_is_read_for_content_usage_and_its_end_in_any_chunking() {
        let spec = spec(ProviderKind::Openai);
        let stream = include_str!("../fixtures/responses/text_stream.sse");
        for size in [1, 7, stream.len()] {
            let mut reader = stream_reader(&call_for(&spec));
            let mut out = Vec::new();
            for piece in stream.as_bytes().chunks(size) {
                reader.push(piece, &mut out).unwrap();
            }
            reader.finish(&mut out);
            assert!(reader.saw_content());
            assert_eq!(reader.usage().map(|usage| usage.output), Some(9));
            assert_eq!(reader.failure(), None, "chunks of {size}");
            assert!(reader.relayed_output_tokens() > 0);
        }
    }

    #[test]
    fn failures_in_a_stream_are_seen() {
        let spec = spec(ProviderKind::Openai);
        for stream in [
            events(&[(
                "error",
                r#"{"type":"error","code":"rate_limit_exceeded","message":"slow down"}"#,
            )]),
            events(&[(
                "response.failed",
                r#"{"type":"response.failed","response":{"status":"failed","error":{"code":"server_error","message":"x"}}}"#,
            )]),
            // Cut before the end.
            events(&[(
                "response.output_text.delta",
                r#"{"type":"response.output_text.delta","delta":"Hel"}"#,
            )]),
            "data: {garbage\n\n".to_string(),
        ] {
            let mut reader = stream_reader(&call_for(&spec));
            let mut out = Vec::new();
            let _ = reader.push(stream.as_bytes(), &mut out);
            reader.finish(&mut out);
            assert!(reader.failure().is_some(), "{stream}");
        }
        let mut limited = stream_reader(&call_for(&spec));
        let mut out = Vec::new();
        let stream = events(&[(
            "error",
            r#"{"type":"error","code":"rate_limit_exceeded","message":"slow down"}"#,
        )]);
        limited.push(stream.as_bytes(), &mut out).unwrap();
        assert_eq!(
            limited.failure().map(|failure| failure.kind),
            Some(FailureKind::RateLimited)
        );
    }
}
