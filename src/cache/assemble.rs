//! A streamed answer put back together as the whole chat completion it
//! streams, so it can be kept in the cache like a whole one (most agent
//! traffic streams). Only what a replay reproduces is gathered: one
//! choice's text and function calls, its finish reason; anything else (a
//! second choice, a refusal, an error event) makes the answer unkeepable.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::providers::compose::{Completion, ToolCall};
use crate::providers::sse::{SseEvent, SseFramer};
use crate::providers::TokenUsage;

#[derive(Deserialize)]
struct ChunkIn<'a> {
    #[serde(default, borrow)]
    id: Option<&'a str>,
    #[serde(default, borrow)]
    model: Option<&'a str>,
    #[serde(default)]
    created: Option<u64>,
    #[serde(default)]
    choices: Vec<ChoiceIn>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ChoiceIn {
    #[serde(default)]
    index: u64,
    #[serde(default)]
    delta: DeltaIn,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct DeltaIn {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolDeltaIn>,
}

#[derive(Deserialize)]
struct ToolDeltaIn {
    #[serde(default)]
    index: usize,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDeltaIn>,
}

#[derive(Deserialize)]
struct FunctionDeltaIn {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// Most function calls one kept answer may carry (a bound on the index a
/// stream may name).
const MAX_TOOL_CALLS: usize = 128;

/// A cacheable answer's bytes gathered as they pass, whole or streamed,
/// within the policy's entry size.
#[derive(Debug)]
pub enum AnswerCapture {
    Whole(Vec<u8>),
    Stream(Box<StreamAssembler>),
}

impl AnswerCapture {
    pub fn new(stream: bool) -> AnswerCapture {
        if stream {
            AnswerCapture::Stream(Box::default())
        } else {
            AnswerCapture::Whole(Vec::new())
        }
    }

    /// Takes the next piece; `false` once the answer outgrew `max_bytes`
    /// (give up: it cannot be kept).
    pub fn feed(&mut self, chunk: &[u8], max_bytes: usize) -> bool {
        match self {
            AnswerCapture::Whole(bytes) => {
                bytes.extend_from_slice(chunk);
                bytes.len() <= max_bytes
            }
            AnswerCapture::Stream(assembler) => {
                assembler.feed(chunk);
                assembler.gathered() <= max_bytes
            }
        }
    }

    /// The whole completion to keep (a stream's with `usage` when known).
    pub fn finish(self, usage: Option<TokenUsage>) -> Option<Vec<u8>> {
        match self {
            AnswerCapture::Whole(bytes) => Some(bytes),
            AnswerCapture::Stream(assembler) => assembler.finish(usage),
        }
    }
}

/// Gathers a `chat.completion.chunk` stream, fed as it arrives.
#[derive(Debug, Default)]
pub struct StreamAssembler {
    framer: SseFramer,
    id: String,
    model: String,
    created: u64,
    text: String,
    tool_calls: Vec<ToolCall>,
    finish_reason: Option<&'static str>,
    /// Something a whole answer cannot be rebuilt from was seen.
    spoiled: bool,
}

impl StreamAssembler {
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.spoiled {
            return;
        }
        self.framer.feed(chunk);
        self.drain();
    }

    /// Bytes of text and function calls gathered so far.
    pub fn gathered(&self) -> usize {
        self.tool_calls
            .iter()
            .map(|call| call.id.len() + call.name.len() + call.arguments.len())
            .sum::<usize>()
            + self.text.len()
    }

    /// The whole completion (with `usage` when known), or `None` when the
    /// stream did not finish on its own or held something unkeepable.
    pub fn finish(mut self, usage: Option<TokenUsage>) -> Option<Vec<u8>> {
        self.framer.end();
        self.drain();
        let finish_reason = self.finish_reason.filter(|_| !self.spoiled)?;
        let completion = Completion {
            id: self.id,
            model: self.model,
            created: self.created,
            text: self.text,
            tool_calls: self.tool_calls,
            finish_reason,
            usage,
        };
        Some(completion.to_json())
    }

    fn drain(&mut self) {
        loop {
            match self.framer.next_event() {
                Ok(Some(SseEvent { data, .. })) => {
                    let data = data.to_vec();
                    self.read(&data);
                }
                Ok(None) => return,
                Err(_) => {
                    self.spoiled = true;
                    return;
                }
            }
        }
    }

    fn read(&mut self, data: &[u8]) {
        if data.trim_ascii() == b"[DONE]" || data.trim_ascii().is_empty() {
            return;
        }
        let Ok(chunk) = serde_json::from_slice::<ChunkIn>(data) else {
            self.spoiled = true;
            return;
        };
        if chunk.error.is_some() {
            self.spoiled = true;
            return;
        }
        for (field, value) in [(&mut self.id, chunk.id), (&mut self.model, chunk.model)] {
            if let Some(value) = value.filter(|_| field.is_empty()) {
                *field = value.to_string();
            }
        }
        self.created = self.created.max(chunk.created.unwrap_or(0));
        for choice in chunk.choices {
            self.read_choice(choice);
        }
    }

    fn read_choice(&mut self, choice: ChoiceIn) {
        if choice.index != 0 || choice.delta.refusal.is_some() || self.finish_reason.is_some() {
            self.spoiled = true;
            return;
        }
        if let Some(content) = choice.delta.content {
            self.text.push_str(&content);
        }
        for call in choice.delta.tool_calls {
            if call.index >= MAX_TOOL_CALLS {
                self.spoiled = true;
                return;
            }
            if self.tool_calls.len() <= call.index {
                self.tool_calls.resize_with(call.index + 1, || ToolCall {
                    id: String::new(),
                    name: String::new(),
                    arguments: String::new(),
                });
            }
            let Some(slot) = self.tool_calls.get_mut(call.index) else {
                return;
            };
            if let Some(id) = call.id {
                slot.id = id;
            }
            if let Some(function) = call.function {
                slot.name.push_str(function.name.as_deref().unwrap_or_default());
                slot.arguments
                    .push_str(function.arguments.as_deref().unwrap_or_default());
            }
        }
        self.finish_reason = match choice.finish_reason.as_deref() {
            None => None,
            Some("stop") => Some("stop"),
            Some("tool_calls") => Some("tool_calls"),
            Some(_) => {
                self.spoiled = true;
                None
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::answer::read_answer;

    fn event(value: serde_json::Value) -> String {
        format!("data: {value}\n\n")
    }

    fn assemble(stream: &str, usage: Option<TokenUsage>) -> Option<serde_json::Value> {
        let mut assembler = StreamAssembler::default();
        // Split anywhere: the framer must not care.
        for piece in stream.as_bytes().chunks(7) {
            assembler.feed(piece);
        }
        assembler
            .finish(usage)
            .map(|body| serde_json::from_slice(&body).expect("JSON"))
    }

    fn delta(delta: serde_json::Value, finish: Option<&str>) -> String {
        event(
            serde_json::json!({"id":"c1","object":"chat.completion.chunk","created":5,"model":"m",
            "choices":[{"index":0,"delta":delta,"finish_reason":finish}]}),
        )
    }

    #[test]
    fn a_text_stream_becomes_the_whole_completion_it_streams() {
        let stream = [
            delta(serde_json::json!({"role":"assistant","content":""}), None),
            delta(serde_json::json!({"content":"Hello, "}), None),
            delta(serde_json::json!({"content":"world."}), None),
            delta(serde_json::json!({}), Some("stop")),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        let usage = TokenUsage {
            input: 9,
            output: 3,
            ..TokenUsage::default()
        };
        let whole = assemble(&stream, Some(usage)).unwrap();
        assert_eq!(whole["choices"][0]["message"]["content"], "Hello, world.");
        assert_eq!(whole["choices"][0]["finish_reason"], "stop");
        assert_eq!(whole["usage"]["completion_tokens"], 3);
        assert_eq!(whole["id"], "c1");
        let body = serde_json::to_vec(&whole).unwrap();
        assert!(read_answer(&body).is_ok(), "the assembled answer is keepable");
    }

    #[test]
    fn tool_calls_are_gathered_by_index() {
        let stream = [
            delta(serde_json::json!({"tool_calls":[{"index":0,"id":"t1","type":"function","function":{"name":"look","arguments":"{\"q\""}}]}), None),
            delta(serde_json::json!({"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]}), None),
            delta(serde_json::json!({}), Some("tool_calls")),
        ]
        .concat();
        let whole = assemble(&stream, None).unwrap();
        let call = &whole["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["id"], "t1");
        assert_eq!(call["function"]["name"], "look");
        assert_eq!(call["function"]["arguments"], "{\"q\":1}");
    }

    #[test]
    fn unfinished_refused_several_choice_or_failed_streams_are_not_kept() {
        let text = delta(serde_json::json!({"content":"hi"}), None);
        assert!(assemble(&text, None).is_none(), "no finish reason");
        let cut = [text.clone(), delta(serde_json::json!({}), Some("length"))].concat();
        assert!(assemble(&cut, None).is_none());
        let refused = [
            delta(serde_json::json!({"refusal":"no"}), None),
            delta(serde_json::json!({}), Some("stop")),
        ]
        .concat();
        assert!(assemble(&refused, None).is_none());
        let second = event(serde_json::json!({"choices":[{"index":1,"delta":{"content":"x"},"finish_reason":"stop"}]}));
        assert!(assemble(&[text.clone(), second].concat(), None).is_none());
        let failed = [text, event(serde_json::json!({"error":{"message":"boom"}}))].concat();
        assert!(assemble(&failed, None).is_none());
        assert!(assemble("data: {not json\n\n", None).is_none());
    }
}
