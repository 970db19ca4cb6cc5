//! A stored answer: a whole OpenAI chat completion, read strictly (only
//! what can be replayed both whole and as a stream is kept), and replayed
//! either way under a fresh id and creation time.
//!
//! The stream replay writes through the adapters' [`ChunkWriter`], so a
//! cached stream has exactly the shape of a translated one: a role chunk,
//! the text in pieces, each tool call, the finish reason, the usage chunk
//! when the client asked for it, then `[DONE]`.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::json_edit;
use crate::providers::compose::ChunkWriter;
use crate::providers::usage::OpenAiUsage;
use crate::providers::TokenUsage;

/// Text is replayed in events of at most this many bytes: small enough for
/// any client's line buffer, without an event per token.
const REPLAY_PIECE_BYTES: usize = 4096;

#[derive(Debug, Deserialize)]
struct CompletionIn {
    #[serde(default)]
    object: Option<String>,
    #[serde(default)]
    model: Option<String>,
    choices: Vec<ChoiceIn>,
    #[serde(default)]
    usage: Option<OpenAiUsage>,
}

#[derive(Debug, Deserialize)]
struct ChoiceIn {
    #[serde(default)]
    index: u32,
    message: MessageIn,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    logprobs: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct MessageIn {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallIn>>,
    /// Everything else (`refusal`, `annotations`, `audio`,
    /// `reasoning_content`, ...): kept only when empty, since a stream
    /// replay could not carry it.
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
struct ToolCallIn {
    id: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    function: FunctionIn,
}

#[derive(Debug, Deserialize)]
struct FunctionIn {
    name: String,
    arguments: String,
}

/// A function call of a stored answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// What a replay needs from a stored answer.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAnswer {
    /// The answer's `model` (what the client saw), if it named one.
    pub model: Option<String>,
    pub text: String,
    pub tool_calls: Vec<StoredCall>,
    /// `stop` or `tool_calls`.
    pub finish_reason: String,
    pub usage: Option<TokenUsage>,
}

/// Why an answer cannot be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerProblem {
    /// Not a chat completion with one choice the replay can reproduce.
    Unreplayable,
    /// It did not finish on its own (`length`, `content_filter`, none), or
    /// it says nothing: an empty `stop` is how the adapters report Gemini's
    /// MALFORMED_FUNCTION_CALL or an answer without candidates, and
    /// Bedrock's malformed outputs.
    Unfinished,
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(members) => members.is_empty(),
        Value::Number(_) | Value::Bool(true) => false,
    }
}

/// Reads a whole chat completion that can be replayed both ways: one
/// choice, an assistant message of text and function calls only, no
/// logprobs, finished with `stop` or `tool_calls`, not empty.
pub fn read_answer(body: &[u8]) -> Result<StoredAnswer, AnswerProblem> {
    let completion: CompletionIn = serde_json::from_slice(body).map_err(|_| AnswerProblem::Unreplayable)?;
    let replayable = completion
        .object
        .as_deref()
        .is_none_or(|object| object == "chat.completion")
        && completion.choices.len() == 1;
    let Some(choice) = completion.choices.into_iter().next().filter(|_| replayable) else {
        return Err(AnswerProblem::Unreplayable);
    };
    let message = choice.message;
    let calls = message.tool_calls.unwrap_or_default();
    let plain = choice.index == 0
        && choice.logprobs.as_ref().is_none_or(is_empty)
        && message.role.as_deref().is_none_or(|role| role == "assistant")
        && message.rest.values().all(is_empty)
        && calls
            .iter()
            .all(|call| call.kind.as_deref().is_none_or(|kind| kind == "function"));
    if !plain {
        return Err(AnswerProblem::Unreplayable);
    }
    let finish_reason = choice.finish_reason.unwrap_or_default();
    let text = message.content.unwrap_or_default();
    if !matches!(finish_reason.as_str(), "stop" | "tool_calls") || (text.is_empty() && calls.is_empty()) {
        return Err(AnswerProblem::Unfinished);
    }
    Ok(StoredAnswer {
        model: completion.model.filter(|model| !model.is_empty()),
        text,
        tool_calls: calls
            .into_iter()
            .map(|call| StoredCall {
                id: call.id,
                name: call.function.name,
                arguments: call.function.arguments,
            })
            .collect(),
        finish_reason,
        usage: completion.usage.as_ref().map(TokenUsage::from_openai),
    })
}

/// The stored answer as `chat.completion.chunk` events under `id` and
/// `created`, named `model` unless the answer names its own; `None` when it
/// cannot be read (the caller treats it as a miss).
pub fn replay_stream(body: &[u8], id: &str, created: u64, model: &str, include_usage: bool) -> Option<Vec<u8>> {
    let answer = read_answer(body).ok()?;
    let mut writer = ChunkWriter::new(answer.model.as_deref().unwrap_or(model), created, include_usage);
    writer.identify(Some(id), None);
    let mut out = Vec::with_capacity(body.len() + 512);
    writer.start(&mut out);
    for piece in pieces(&answer.text, REPLAY_PIECE_BYTES) {
        writer.text(piece, &mut out);
    }
    for call in &answer.tool_calls {
        writer.tool_call(&call.id, &call.name, &call.arguments, &mut out);
    }
    writer.finish(&answer.finish_reason, &mut out);
    writer.close(answer.usage, &mut out);
    Some(out)
}

/// The stored answer as sent, with its `id` and `created` replaced: every
/// other byte is the provider's.
pub fn replay_whole(body: &[u8], id: &str, created: u64) -> Vec<u8> {
    let created_text = created.to_string();
    let mut edits: Vec<(std::ops::Range<usize>, Vec<u8>)> =
        [("id", json_edit::quote(id)), ("created", created_text.into_bytes())]
            .into_iter()
            .filter_map(|(member, value)| Some((json_edit::member_value_span(body, member)?, value)))
            .collect();
    // Later spans first, so earlier ones keep their offsets.
    edits.sort_by_key(|(span, _)| std::cmp::Reverse(span.start));
    edits.into_iter().fold(body.to_vec(), |out, (span, value)| {
        json_edit::splice(&out, span, &value)
    })
}

/// `text` cut into pieces of at most `limit` bytes, at character boundaries.
fn pieces(text: &str, limit: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = rest.len().min(limit.max(4));
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}
