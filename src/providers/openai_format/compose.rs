//! OpenAI-shaped output for the translating adapters: the `chat.completion`
//! body and `chat.completion.chunk` server-sent events (error bodies are
//! written by `crate::error`). Every adapter writes through these, so a
//! client sees one dialect whichever provider answered.

use serde::Serialize;

use super::usage::{OpenAiUsage, TokenUsage};
use crate::providers::failure::ClientError;

/// One SSE event carrying `value` as JSON.
fn write_event(out: &mut Vec<u8>, value: &impl Serialize) {
    out.extend_from_slice(b"data: ");
    // Serializing these plain structs into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
    out.extend_from_slice(b"\n\n");
}

pub(crate) const DONE_EVENT: &[u8] = b"data: [DONE]\n\n";

/// A finished tool call in a non-streamed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ToolCall {
    pub id: String,
    pub name: String,
    /// JSON text, as OpenAI carries it.
    pub arguments: String,
}

/// A whole non-streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Completion {
    pub id: String,
    pub model: String,
    pub created: u64,
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: &'static str,
    pub usage: Option<TokenUsage>,
}

#[derive(Serialize)]
struct CompletionJson<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [ChoiceJson<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<OpenAiUsage>,
}

#[derive(Serialize)]
struct ChoiceJson<'a> {
    index: u32,
    message: MessageJson<'a>,
    logprobs: Option<()>,
    finish_reason: &'a str,
}

#[derive(Serialize)]
struct MessageJson<'a> {
    role: &'static str,
    content: Option<&'a str>,
    refusal: Option<()>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallJson<'a>>,
}

#[derive(Serialize)]
struct ToolCallJson<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionJson<'a>,
}

#[derive(Serialize)]
struct FunctionJson<'a> {
    name: &'a str,
    arguments: &'a str,
}

impl Completion {
    pub(crate) fn to_json(&self) -> Vec<u8> {
        // OpenAI sends `content: null` when the answer is only tool calls.
        let content = (!self.text.is_empty() || self.tool_calls.is_empty()).then_some(self.text.as_str());
        let body = CompletionJson {
            id: &self.id,
            object: "chat.completion",
            created: self.created,
            model: &self.model,
            choices: [ChoiceJson {
                index: 0,
                message: MessageJson {
                    role: "assistant",
                    content,
                    refusal: None,
                    tool_calls: self
                        .tool_calls
                        .iter()
                        .map(|call| ToolCallJson {
                            id: &call.id,
                            kind: "function",
                            function: FunctionJson {
                                name: &call.name,
                                arguments: &call.arguments,
                            },
                        })
                        .collect(),
                },
                logprobs: None,
                finish_reason: self.finish_reason,
            }],
            usage: self.usage.map(TokenUsage::to_openai),
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

#[derive(Serialize)]
struct ChunkJson<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [ChunkChoice<'a>],
    /// Absent unless the client asked for usage; then `null` on every chunk
    /// but the last, as OpenAI does.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<OpenAiUsage>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallDelta<'a>; 1]>,
}

#[derive(Serialize)]
struct ToolCallDelta<'a> {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDelta<'a>,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

/// Writes a streamed answer as OpenAI chunks, in OpenAI's order: a role
/// chunk, content and tool-call deltas, one chunk with the finish reason,
/// the usage chunk when the client asked for it, then `[DONE]`.
#[derive(Debug)]
pub(crate) struct ChunkWriter {
    id: String,
    model: String,
    created: u64,
    usage_requested: bool,
    started: bool,
    finished: bool,
    closed: bool,
    saw_content: bool,
    tool_calls: usize,
    /// Tool calls opened without arguments and given none since: a call
    /// without parameters, whose arguments must still be JSON (`{}`).
    without_arguments: Vec<usize>,
    /// Content relayed so far, as (ASCII bytes, other characters): what the
    /// answer cost when the provider never reports usage.
    relayed: (usize, usize),
}

impl ChunkWriter {
    pub(crate) fn new(model: &str, created: u64, usage_requested: bool) -> ChunkWriter {
        ChunkWriter {
            // Providers without a response id get one that is stable for a
            // given answer (the translation is deterministic).
            id: format!("chatcmpl-{created}"),
            model: model.to_string(),
            created,
            usage_requested,
            started: false,
            finished: false,
            closed: false,
            saw_content: false,
            tool_calls: 0,
            without_arguments: Vec::new(),
            relayed: (0, 0),
        }
    }

    /// Counts content the client received (text, reasoning, tool calls).
    pub(crate) fn count_relayed(&mut self, content: &str) {
        let (ascii, other) = crate::tokens::count_ascii_and_chars(content.as_bytes());
        self.relayed = (
            self.relayed.0.saturating_add(ascii),
            self.relayed.1.saturating_add(other),
        );
    }

    /// Estimated output tokens of the content relayed so far.
    pub(crate) fn relayed_output_tokens(&self) -> u64 {
        u64::from(crate::tokens::from_counts(self.relayed.0, self.relayed.1))
    }

    /// The provider's response id and model; ignored once chunks are out.
    pub(crate) fn identify(&mut self, id: Option<&str>, model: Option<&str>) {
        if self.started {
            return;
        }
        if let Some(id) = id.filter(|id| !id.is_empty()) {
            self.id = id.to_string();
        }
        if let Some(model) = model.filter(|model| !model.is_empty()) {
            self.model = model.to_string();
        }
    }

    fn chunk(&self, out: &mut Vec<u8>, delta: Delta<'_>, finish_reason: Option<&str>) {
        write_event(
            out,
            &ChunkJson {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices: &[ChunkChoice {
                    index: 0,
                    delta,
                    logprobs: None,
                    finish_reason,
                }],
                usage: self.usage_requested.then_some(None),
            },
        );
    }

    /// The opening chunk with the assistant role, once.
    pub(crate) fn start(&mut self, out: &mut Vec<u8>) {
        if self.started || self.closed {
            return;
        }
        self.started = true;
        self.chunk(
            out,
            Delta {
                role: Some("assistant"),
                content: Some(""),
                ..Delta::default()
            },
            None,
        );
    }

    fn open(&mut self, out: &mut Vec<u8>) -> bool {
        self.start(out);
        !self.finished && !self.closed
    }

    pub(crate) fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        if text.is_empty() || !self.open(out) {
            return;
        }
        self.saw_content = true;
        self.count_relayed(text);
        self.chunk(
            out,
            Delta {
                content: Some(text),
                ..Delta::default()
            },
            None,
        );
    }

    /// Opens tool call number `tool_calls()` with its id, name and the first
    /// part of its arguments (all of them for providers that send calls whole).
    pub(crate) fn tool_call(&mut self, id: &str, name: &str, arguments: &str, out: &mut Vec<u8>) {
        if !self.open(out) {
            return;
        }
        self.saw_content = true;
        self.count_relayed(name);
        self.count_relayed(arguments);
        let index = self.tool_calls;
        self.tool_calls += 1;
        if arguments.is_empty() {
            self.without_arguments.push(index);
        }
        self.chunk(
            out,
            Delta {
                tool_calls: Some([ToolCallDelta {
                    index,
                    id: Some(id),
                    kind: Some("function"),
                    function: FunctionDelta {
                        name: Some(name),
                        arguments,
                    },
                }]),
                ..Delta::default()
            },
            None,
        );
    }

    /// More argument text for an open tool call.
    pub(crate) fn tool_arguments(&mut self, index: usize, fragment: &str, out: &mut Vec<u8>) {
        if fragment.is_empty() || index >= self.tool_calls || !self.open(out) {
            return;
        }
        self.without_arguments.retain(|call| *call != index);
        self.count_relayed(fragment);
        self.chunk(
            out,
            Delta {
                tool_calls: Some([ToolCallDelta {
                    index,
                    id: None,
                    kind: None,
                    function: FunctionDelta {
                        name: None,
                        arguments: fragment,
                    },
                }]),
                ..Delta::default()
            },
            None,
        );
    }

    pub(crate) fn tool_calls(&self) -> usize {
        self.tool_calls
    }

    /// The chunk with the finish reason, once.
    pub(crate) fn finish(&mut self, reason: &str, out: &mut Vec<u8>) {
        if !self.open(out) {
            return;
        }
        for index in std::mem::take(&mut self.without_arguments) {
            self.tool_arguments(index, "{}", out);
        }
        self.finished = true;
        self.chunk(out, Delta::default(), Some(reason));
    }

    /// An error event, in the shape OpenAI uses mid-stream.
    pub(crate) fn error(&mut self, error: &ClientError, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&error.to_json());
        out.extend_from_slice(b"\n\n");
    }

    /// The usage chunk (when the client asked and usage is known) and
    /// `[DONE]`, once.
    pub(crate) fn close(&mut self, usage: Option<TokenUsage>, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        self.closed = true;
        if let (true, Some(usage)) = (self.usage_requested, usage) {
            write_event(
                out,
                &ChunkJson {
                    id: &self.id,
                    object: "chat.completion.chunk",
                    created: self.created,
                    model: &self.model,
                    choices: &[],
                    usage: Some(Some(usage.to_openai())),
                },
            );
        }
        out.extend_from_slice(DONE_EVENT);
    }

    /// Marks the answer complete for streams passed through as they are.
    pub(crate) fn mark_finished(&mut self) {
        self.finished = true;
    }

    pub(crate) fn mark_content(&mut self) {
        self.saw_content = true;
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    pub(crate) fn saw_content(&self) -> bool {
        self.saw_content
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn events(bytes: &[u8]) -> Vec<Value> {
        String::from_utf8(bytes.to_vec())
            .unwrap()
            .split("\n\n")
            .filter(|event| !event.is_empty())
            .map(|event| {
                let data = event.strip_prefix("data: ").unwrap();
                serde_json::from_str(data).unwrap_or(Value::String(data.to_string()))
            })
            .collect()
    }

    #[test]
    fn a_tool_only_answer_has_null_content() {
        let completion = Completion {
            id: "msg_1".into(),
            model: "m".into(),
            created: 7,
            text: String::new(),
            tool_calls: vec![ToolCall {
                id: "call_1".into(),
                name: "f".into(),
                arguments: "{}".into(),
            }],
            finish_reason: "tool_calls",
            usage: None,
        };
        let value: Value = serde_json::from_slice(&completion.to_json()).unwrap();
        assert_eq!(value["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(value["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "f");
        assert!(value.get("usage").is_none());
    }

    #[test]
    fn chunks_follow_openais_order_and_carry_null_usage_when_asked() {
        let mut writer = ChunkWriter::new("m", 7, true);
        let mut out = Vec::new();
        writer.text("Hi", &mut out);
        writer.tool_call("call_1", "f", "", &mut out);
        writer.tool_arguments(0, "{}", &mut out);
        writer.tool_arguments(3, "ignored: no such call", &mut out);
        writer.finish("tool_calls", &mut out);
        writer.text("ignored: after the finish", &mut out);
        writer.close(
            Some(TokenUsage {
                input: 3,
                output: 2,
                ..TokenUsage::default()
            }),
            &mut out,
        );
        writer.close(None, &mut out);
        let events = events(&out);
        assert_eq!(events.len(), 7);
        assert_eq!(
            events[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        assert_eq!(events[0]["usage"], Value::Null);
        assert_eq!(events[1]["choices"][0]["delta"], json!({"content": "Hi"}));
        assert_eq!(
            events[2]["choices"][0]["delta"]["tool_calls"][0],
            json!({"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}})
        );
        assert_eq!(
            events[3]["choices"][0]["delta"]["tool_calls"][0],
            json!({"index": 0, "function": {"arguments": "{}"}})
        );
        assert_eq!(events[4]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(events[5]["choices"], json!([]));
        assert_eq!(events[5]["usage"]["prompt_tokens"], 3);
        assert_eq!(events[6], Value::String("[DONE]".into()));
    }

    #[test]
    fn without_a_usage_request_chunks_have_no_usage_field() {
        let mut writer = ChunkWriter::new("m", 7, false);
        let mut out = Vec::new();
        writer.text("Hi", &mut out);
        writer.close(Some(TokenUsage::default()), &mut out);
        let events = events(&out);
        assert!(events[0].get("usage").is_none());
        assert_eq!(events.len(), 3);
    }
}
