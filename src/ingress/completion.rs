//! Reading the OpenAI chat answers Signalbox produces (a provider's own,
//! or what its adapters composed), whole or streamed, into the few facts an
//! ingress format writes its answer from: identity, text, tool calls, the
//! finish reason, usage, or an error.
//!
//! [`ChunkReader`] frames `data: {chat.completion.chunk}` events with
//! [`SseFramer`] (so any split point reads the same) and hands each fact
//! to the caller's encoder as a [`ChunkEvent`]; nothing is held beyond the
//! event being framed.

use serde::Deserialize;
use serde_json::Value;

use crate::error::GatewayError;
use crate::providers::sse::SseFramer;
use crate::providers::usage::{unreadable_as_none, OpenAiUsage};
use crate::providers::TokenUsage;
use crate::request::Text;

use super::wire::TextOr;
use super::StreamEncode;

/// An error as an OpenAI body carries it (`{"error":{...}}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ErrorDetails {
    pub message: String,
    /// OpenAI's `type` (`rate_limit_error`, `server_error`, ...).
    pub kind: Option<String>,
    /// OpenAI's or Signalbox's `code` (`rate_limit_exceeded`,
    /// `provider_overloaded`, ...).
    pub code: Option<String>,
}

impl ErrorDetails {
    /// The error of an OpenAI-shaped body; a body of another shape still
    /// gives a message.
    pub(crate) fn from_body(body: &[u8]) -> ErrorDetails {
        match serde_json::from_slice::<Value>(body) {
            Ok(value) => ErrorDetails::from_json(value.get("error").unwrap_or(&value)),
            Err(_) => ErrorDetails {
                message: String::from_utf8_lossy(body).chars().take(200).collect(),
                ..ErrorDetails::default()
            },
        }
    }

    fn from_json(error: &Value) -> ErrorDetails {
        let text = |key: &str| error.get(key).and_then(Value::as_str).map(str::to_string);
        ErrorDetails {
            message: text("message")
                .or_else(|| error.as_str().map(str::to_string))
                .unwrap_or_else(|| "The request failed.".to_string()),
            kind: text("type"),
            code: text("code"),
        }
    }

    pub(crate) fn gateway(message: impl Into<String>) -> ErrorDetails {
        ErrorDetails {
            message: message.into(),
            kind: Some("server_error".into()),
            code: Some("internal_error".into()),
        }
    }

    /// A tool call resumed after another began: neither format can reopen
    /// an output item, so the stream fails.
    pub(crate) fn interleaved_tool_calls() -> ErrorDetails {
        ErrorDetails::gateway("The model interleaved its tool calls; the stream cannot be translated.")
    }
}

/// A tool call in a whole answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AnsweredCall {
    pub id: String,
    pub name: String,
    /// JSON text, as OpenAI carries it.
    pub arguments: String,
}

/// A whole chat completion, read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
    pub id: String,
    pub model: String,
    pub created: u64,
    pub text: String,
    pub refusal: Option<String>,
    pub tool_calls: Vec<AnsweredCall>,
    pub finish_reason: String,
    pub usage: Option<TokenUsage>,
}

#[derive(Deserialize)]
struct CompletionIn<'a> {
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
    #[serde(default, borrow)]
    model: Option<Text<'a>>,
    #[serde(default)]
    created: Option<u64>,
    #[serde(default, borrow)]
    choices: Vec<ChoiceIn<'a>>,
    #[serde(default, deserialize_with = "unreadable_as_none")]
    usage: Option<OpenAiUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChoiceIn<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default, borrow)]
    message: Option<MessageIn<'a>>,
    #[serde(default, borrow)]
    delta: Option<MessageIn<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct MessageIn<'a> {
    #[serde(default, borrow)]
    content: Option<TextOr<'a, PartIn<'a>>>,
    #[serde(default, borrow)]
    refusal: Option<Text<'a>>,
    #[serde(default, borrow)]
    tool_calls: Vec<ToolCallIn<'a>>,
}

#[derive(Deserialize)]
struct PartIn<'a> {
    #[serde(default, borrow)]
    text: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct ToolCallIn<'a> {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
    #[serde(default, borrow)]
    function: Option<FunctionIn<'a>>,
}

#[derive(Deserialize)]
struct FunctionIn<'a> {
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default, borrow)]
    arguments: Option<Text<'a>>,
}

/// An id for an ingress format's answer object: `prefix` and the chat
/// answer's id (its `chatcmpl-` cut off), safe to use in any id field.
pub(crate) fn prefixed_id(prefix: &str, chat_id: &str) -> String {
    let rest = chat_id.strip_prefix("chatcmpl-").unwrap_or(chat_id);
    let rest: String = rest
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(64)
        .collect();
    format!("{prefix}{}", if rest.is_empty() { "signalbox" } else { &rest })
}

fn owned(text: Option<&Text<'_>>) -> String {
    text.map(|text| text.as_str().to_string()).unwrap_or_default()
}

/// The first choice (index 0) of an answer or chunk; the ingress formats
/// have one answer per request.
fn first_choice<'c, 'a>(choices: &'c [ChoiceIn<'a>]) -> Option<&'c ChoiceIn<'a>> {
    choices.iter().find(|choice| choice.index.unwrap_or(0) == 0)
}

fn text_of(content: Option<&TextOr<'_, PartIn<'_>>>, out: &mut String) {
    match content {
        Some(TextOr::Text(text)) => out.push_str(text.as_str()),
        Some(TextOr::List(parts)) => parts
            .iter()
            .filter_map(|part| part.text.as_ref())
            .for_each(|text| out.push_str(text.as_str())),
        None => {}
    }
}

/// Reads a whole chat completion. An error body, or one that is not a
/// chat completion, is an error: the filter answers it in the ingress
/// format's error shape.
pub(crate) fn read_answer(body: &[u8]) -> Result<Answer, GatewayError> {
    let unreadable = |why: String| GatewayError::Internal {
        message: format!("The model's answer could not be translated: {why}."),
    };
    let completion: CompletionIn<'_> = serde_json::from_slice(body).map_err(|err| unreadable(err.to_string()))?;
    if let Some(error) = &completion.error {
        return Err(unreadable(ErrorDetails::from_json(error).message));
    }
    let choice = first_choice(&completion.choices).ok_or_else(|| unreadable("it has no choices".into()))?;
    let message = choice.message.as_ref();
    let mut text = String::new();
    text_of(message.and_then(|message| message.content.as_ref()), &mut text);
    Ok(Answer {
        id: owned(completion.id.as_ref()),
        model: owned(completion.model.as_ref()),
        created: completion.created.unwrap_or(0),
        text,
        refusal: message
            .and_then(|message| message.refusal.as_ref())
            .map(|refusal| refusal.as_str().to_string()),
        tool_calls: message
            .map(|message| message.tool_calls.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|call| AnsweredCall {
                id: owned(call.id.as_ref()),
                name: owned(call.function.as_ref().and_then(|function| function.name.as_ref())),
                arguments: owned(call.function.as_ref().and_then(|function| function.arguments.as_ref())),
            })
            .collect(),
        finish_reason: owned(choice.finish_reason.as_ref()),
        usage: completion.usage.as_ref().map(TokenUsage::from_openai),
    })
}

/// One fact from a chat chunk stream, in stream order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ChunkEvent<'e> {
    /// The first chunk: the answer's id, model and creation time.
    Started {
        id: &'e str,
        model: &'e str,
        created: u64,
    },
    /// Answer text (or refusal text).
    Text(&'e str),
    /// A tool call's opening (with its id and name) or more of its
    /// arguments; `index` is OpenAI's tool-call index.
    ToolCall {
        index: usize,
        id: Option<&'e str>,
        name: Option<&'e str>,
        arguments: &'e str,
    },
    Finish(&'e str),
    Usage(TokenUsage),
    /// The answer failed (an error event, an unreadable or cut-short
    /// stream). Nothing follows.
    Error(ErrorDetails),
    /// `[DONE]`: the answer is complete. Nothing follows.
    Done,
}

/// Reads a chat chunk stream piece by piece.
#[derive(Debug, Default)]
pub(crate) struct ChunkReader {
    framer: SseFramer,
    started: bool,
    /// `[DONE]` or an error was read: later bytes are ignored.
    ended: bool,
    tool_calls: ToolCallIndexes,
}

/// The index of each tool-call delta. OpenAI numbers them; some compatible
/// servers do not, sending each call whole in its own chunk: then a delta
/// with a new id starts the next call and one without continues the last.
#[derive(Debug, Default)]
struct ToolCallIndexes {
    /// Calls seen so far (one past the highest index).
    count: usize,
    last: Option<usize>,
    last_id: String,
}

impl ToolCallIndexes {
    fn of(&mut self, numbered: Option<usize>, id: Option<&str>) -> usize {
        let starts_a_call = id.is_some_and(|id| id != self.last_id);
        let index = match (numbered, self.last) {
            (Some(index), _) => index,
            (None, Some(last)) if !starts_a_call => last,
            (None, _) => self.count,
        };
        if let Some(id) = id.filter(|_| starts_a_call) {
            id.clone_into(&mut self.last_id);
        }
        self.count = self.count.max(index.saturating_add(1));
        self.last = Some(index);
        index
    }
}

impl ChunkReader {
    /// Reads the next piece of the stream, calling `on` for every fact in
    /// the events it completes.
    pub(crate) fn push(&mut self, bytes: &[u8], on: &mut dyn FnMut(ChunkEvent<'_>)) {
        if self.ended {
            return;
        }
        self.framer.feed(bytes);
        self.drain(on);
    }

    /// The stream ended: a stream cut short ends with an error.
    pub(crate) fn finish(&mut self, on: &mut dyn FnMut(ChunkEvent<'_>)) {
        if self.ended {
            return;
        }
        self.framer.end();
        self.drain(on);
        if !self.ended {
            self.ended = true;
            on(ChunkEvent::Error(ErrorDetails::gateway(
                "The model's stream ended before the answer was complete.",
            )));
        }
    }

    fn drain(&mut self, on: &mut dyn FnMut(ChunkEvent<'_>)) {
        while !self.ended {
            let event = match self.framer.next_event() {
                Ok(Some(event)) => event,
                Ok(None) => return,
                Err(error) => {
                    self.ended = true;
                    on(ChunkEvent::Error(ErrorDetails::gateway(error.to_string())));
                    return;
                }
            };
            let data = event.data.trim_ascii();
            if data == b"[DONE]" {
                self.ended = true;
                on(ChunkEvent::Done);
                return;
            }
            let chunk: CompletionIn<'_> = match serde_json::from_slice(data) {
                Ok(chunk) => chunk,
                Err(err) => {
                    self.ended = true;
                    on(ChunkEvent::Error(ErrorDetails::gateway(format!(
                        "A chunk of the model's stream could not be read: {err}."
                    ))));
                    return;
                }
            };
            if let Some(error) = &chunk.error {
                self.ended = true;
                on(ChunkEvent::Error(ErrorDetails::from_json(error)));
                return;
            }
            if !self.started {
                self.started = true;
                on(ChunkEvent::Started {
                    id: chunk.id.as_ref().map(Text::as_str).unwrap_or_default(),
                    model: chunk.model.as_ref().map(Text::as_str).unwrap_or_default(),
                    created: chunk.created.unwrap_or(0),
                });
            }
            if let Some(choice) = first_choice(&chunk.choices) {
                if let Some(delta) = &choice.delta {
                    read_delta(delta, &mut self.tool_calls, on);
                }
                if let Some(reason) = &choice.finish_reason {
                    on(ChunkEvent::Finish(reason.as_str()));
                }
            }
            if let Some(usage) = &chunk.usage {
                on(ChunkEvent::Usage(TokenUsage::from_openai(usage)));
            }
        }
    }
}

/// An ingress format's half of a stream encoder: writes its events for
/// each fact of the chat stream.
pub(crate) trait ChunkHandler {
    fn on(&mut self, event: ChunkEvent<'_>, out: &mut Vec<u8>);
}

/// A chat chunk stream reader and a format's [`ChunkHandler`]: the
/// formats' `StreamEncoder`s.
#[derive(Debug)]
pub struct ChunkEncoder<H> {
    reader: ChunkReader,
    handler: H,
}

impl<H> ChunkEncoder<H> {
    pub(crate) fn with(handler: H) -> ChunkEncoder<H> {
        ChunkEncoder {
            reader: ChunkReader::default(),
            handler,
        }
    }
}

impl<H: ChunkHandler> StreamEncode for ChunkEncoder<H> {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let handler = &mut self.handler;
        self.reader.push(chunk, &mut |event| handler.on(event, out));
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        let handler = &mut self.handler;
        self.reader.finish(&mut |event| handler.on(event, out));
    }
}

fn read_delta(delta: &MessageIn<'_>, indexes: &mut ToolCallIndexes, on: &mut dyn FnMut(ChunkEvent<'_>)) {
    let texts = match &delta.content {
        Some(TextOr::Text(text)) => vec![text.as_str()],
        Some(TextOr::List(parts)) => parts
            .iter()
            .filter_map(|part| part.text.as_ref())
            .map(Text::as_str)
            .collect(),
        None => Vec::new(),
    };
    let refusal = delta.refusal.as_ref().map(Text::as_str);
    for text in texts.into_iter().chain(refusal).filter(|text| !text.is_empty()) {
        on(ChunkEvent::Text(text));
    }
    for call in &delta.tool_calls {
        let function = call.function.as_ref();
        let id = call.id.as_ref().map(Text::as_str).filter(|id| !id.is_empty());
        on(ChunkEvent::ToolCall {
            index: indexes.of(call.index, id),
            id,
            name: function
                .and_then(|function| function.name.as_ref())
                .map(Text::as_str)
                .filter(|name| !name.is_empty()),
            arguments: function
                .and_then(|function| function.arguments.as_ref())
                .map(Text::as_str)
                .unwrap_or_default(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(stream: &[u8]) -> Vec<String> {
        let mut reader = ChunkReader::default();
        let mut events = Vec::new();
        let mut on = |event: ChunkEvent<'_>| events.push(format!("{event:?}"));
        reader.push(stream, &mut on);
        reader.finish(&mut on);
        events
    }

    #[test]
    fn a_chunk_stream_reads_as_facts_in_order() {
        let stream = concat!(
            "data: {\"id\":\"chatcmpl-1\",\"model\":\"gpt\",\"created\":7,\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n",
            "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{}\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n",
            "data: [DONE]\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"ignored\"}}]}\n\n",
        );
        assert_eq!(
            read_all(stream.as_bytes()),
            vec![
                r#"Started { id: "chatcmpl-1", model: "gpt", created: 7 }"#,
                r#"Text("Hi")"#,
                r#"ToolCall { index: 0, id: Some("call_1"), name: Some("f"), arguments: "" }"#,
                r#"ToolCall { index: 0, id: None, name: None, arguments: "{}" }"#,
                r#"Finish("tool_calls")"#,
                "Usage(TokenUsage { input: 5, cached_input: 0, cache_write: 0, output: 2 })",
                "Done",
            ]
        );
    }

    #[test]
    fn an_error_event_garbage_or_a_cut_ends_the_stream_with_an_error() {
        let error = read_all(b"data: {\"error\":{\"message\":\"slow down\",\"type\":\"rate_limit_error\",\"code\":\"rate_limit_exceeded\"}}\n\ndata: [DONE]\n\n");
        assert_eq!(error.len(), 1);
        assert!(error[0].contains("slow down") && error[0].contains("rate_limit_exceeded"));
        let garbage = read_all(b"data: {nope\n\n");
        assert!(garbage[0].starts_with("Error") && garbage[0].contains("could not be read"));
        let cut = read_all(b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n");
        assert!(cut.last().unwrap().contains("ended before the answer was complete"));
    }

    #[test]
    fn tool_calls_without_an_index_are_told_apart_by_their_ids() {
        let stream = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\":1}\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"id\":\"call_1\",\"function\":{\"arguments\":\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"id\":\"call_2\",\"type\":\"function\",\"function\":{\"name\":\"g\",\"arguments\":\"{}\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: [DONE]\n\n",
        );
        let calls: Vec<String> = read_all(stream.as_bytes())
            .into_iter()
            .filter(|event| event.starts_with("ToolCall"))
            .collect();
        let index_of = |event: &String| {
            event
                .split("index: ")
                .nth(1)
                .and_then(|rest| rest.split(',').next())
                .map(str::to_string)
        };
        let indexes: Vec<_> = calls.iter().filter_map(index_of).collect();
        // A continuation (no id, or the same id) stays on its call; a new id starts the next.
        assert_eq!(indexes, ["0", "0", "0", "1"], "{calls:?}");
    }

    #[test]
    fn an_unreadable_usage_does_not_end_the_stream() {
        let events = read_all(
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":-5}}\n\ndata: [DONE]\n\n",
        );
        assert!(events.iter().all(|event| !event.starts_with("Error")), "{events:?}");
        assert_eq!(events.last().map(String::as_str), Some("Done"));
    }

    #[test]
    fn a_whole_answer_reads_its_text_calls_and_usage() {
        let answer = read_answer(
            br#"{"id":"chatcmpl-9","object":"chat.completion","created":3,"model":"gpt-4o","choices":[{"index":0,
                "message":{"role":"assistant","content":"Sure.","tool_calls":[{"id":"call_1","type":"function",
                "function":{"name":"f","arguments":"{\"a\":1}"}}]},"finish_reason":"tool_calls"}],
                "usage":{"prompt_tokens":10,"completion_tokens":4,"total_tokens":14,"prompt_tokens_details":{"cached_tokens":6}}}"#,
        )
        .unwrap();
        assert_eq!(answer.text, "Sure.");
        assert_eq!(answer.tool_calls[0].arguments, r#"{"a":1}"#);
        assert_eq!(answer.finish_reason, "tool_calls");
        assert_eq!(answer.usage.unwrap().cached_input, 6);
        assert!(read_answer(br#"{"error":{"message":"bad"}}"#).is_err());
        assert!(read_answer(br#"{"choices":[]}"#).is_err());
        assert!(read_answer(b"<html>").is_err());
    }
}
