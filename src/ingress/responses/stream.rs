//! Chat chunk streams as Responses streaming events, each
//! `event: <type>` + `data: {"type", "sequence_number", ...}`:
//! `response.created`, `response.in_progress`, then per output item
//! `response.output_item.added`, its content (`response.content_part.added`,
//! `response.output_text.delta`… / `.done`, `response.content_part.done`, or
//! `response.function_call_arguments.delta`… / `.done`) and
//! `response.output_item.done`; the end is `response.completed` (or
//! `response.incomplete`) with usage, or `response.failed`.
//!
//! The API repeats the whole answer in its closing events, so the answer's
//! text and arguments are kept, up to [`MAX_ANSWER_BYTES`].

use serde::Serialize;

use crate::providers::TokenUsage;

use super::super::completion::{ChunkEncoder, ChunkEvent, ChunkHandler, ErrorDetails};
use super::super::write_event;
#[cfg(doc)]
use super::super::StreamEncode;
use super::answer::{
    call_id, call_item_id, message_item_id, response_id, Outcome, OutputContent, OutputItem, ResponseError, ResponseOut,
};

/// Largest answer (text and tool-call arguments) a stream keeps for its
/// closing events; beyond it the response fails rather than grow without
/// bound. Far above any model's output limit.
pub const MAX_ANSWER_BYTES: usize = 8 << 20;

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    sequence_number: u64,
    #[serde(flatten)]
    body: T,
}

#[derive(Serialize)]
struct ResponseEvent<'a> {
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
struct ItemEvent<'a> {
    output_index: usize,
    item: &'a OutputItem,
}

#[derive(Serialize)]
struct PartEvent<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    part: &'a OutputContent,
}

#[derive(Serialize)]
struct TextEvent<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    delta: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    logprobs: [(); 0],
}

#[derive(Serialize)]
struct ArgumentsEvent<'a> {
    item_id: &'a str,
    output_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    delta: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<&'a str>,
}

/// The output item being streamed, by its index in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Nothing,
    Text(usize),
    /// OpenAI's tool-call index and the item's output index.
    Tool(usize, usize),
}

/// The Responses events of a chat stream.
#[derive(Debug)]
pub struct ResponsesEvents {
    sequence: u64,
    started: bool,
    id: String,
    model: String,
    created: u64,
    output: Vec<OutputItem>,
    open: Open,
    /// OpenAI indexes of the tool calls seen, in order.
    tool_calls: Vec<usize>,
    outcome: Outcome,
    usage: Option<TokenUsage>,
    kept_bytes: usize,
    ended: bool,
}

/// Translates a chat chunk stream into Responses events, as pieces arrive
/// ([`StreamEncode`]). The client's response is
/// `content-type: text/event-stream`.
pub type StreamEncoder = ChunkEncoder<ResponsesEvents>;

impl StreamEncoder {
    /// `model` names the answer's model until the stream says otherwise;
    /// `now_unix_seconds` is `created_at` until then.
    pub fn new(model: &str, now_unix_seconds: u64) -> StreamEncoder {
        ChunkEncoder::with(ResponsesEvents {
            sequence: 0,
            started: false,
            id: response_id(""),
            model: model.to_string(),
            created: now_unix_seconds,
            output: Vec::new(),
            open: Open::Nothing,
            tool_calls: Vec::new(),
            outcome: Outcome::of("stop"),
            usage: None,
            kept_bytes: 0,
            ended: false,
        })
    }
}

/// Writes event `kind` with the next sequence number. A free function, so
/// an event can borrow the encoder's output while the number advances.
fn emit(sequence: &mut u64, out: &mut Vec<u8>, kind: &str, body: impl Serialize) {
    let envelope = Envelope {
        kind,
        sequence_number: *sequence,
        body,
    };
    write_event(out, kind, &envelope);
    *sequence += 1;
}

impl ChunkHandler for ResponsesEvents {
    fn on(&mut self, event: ChunkEvent<'_>, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        match event {
            ChunkEvent::Started { id, model, created } => {
                if !id.is_empty() {
                    self.id = response_id(id);
                }
                if !model.is_empty() {
                    self.model = model.to_string();
                }
                if created > 0 {
                    self.created = created;
                }
                self.start(out);
            }
            ChunkEvent::Text(text) => self.text(text, out),
            ChunkEvent::ToolCall {
                index,
                id,
                name,
                arguments,
            } => self.tool_call(index, id.unwrap_or_default(), name.unwrap_or_default(), arguments, out),
            ChunkEvent::Finish(reason) => self.outcome = Outcome::of(reason),
            ChunkEvent::Usage(usage) => self.usage = Some(usage),
            ChunkEvent::Done => self.complete(out),
            ChunkEvent::Error(details) => self.fail(&details, out),
        }
    }
}

impl ResponsesEvents {
    /// A piece of the answer's text, in the open message (opened first
    /// if need be).
    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        if !self.keep(text.len(), out) {
            return;
        }
        let index = match self.open {
            Open::Text(index) => index,
            _ => self.open_text(out),
        };
        let Some(OutputItem::Message { id, content, .. }) = self.output.get_mut(index) else {
            return;
        };
        if let Some(OutputContent::OutputText { text: kept, .. }) = content.first_mut() {
            kept.push_str(text);
        }
        let body = TextEvent {
            item_id: id,
            output_index: index,
            content_index: 0,
            delta: Some(text),
            text: None,
            logprobs: [],
        };
        emit(&mut self.sequence, out, "response.output_text.delta", body);
    }

    /// A piece of tool call `index`'s arguments; its first piece opens the
    /// call's item with its id and name.
    fn tool_call(&mut self, index: usize, id: &str, name: &str, arguments: &str, out: &mut Vec<u8>) {
        if !self.keep(arguments.len(), out) {
            return;
        }
        let item = match self.open {
            Open::Tool(open, item) if open == index => item,
            _ if self.tool_calls.contains(&index) => {
                return self.fail(&ErrorDetails::interleaved_tool_calls(), out);
            }
            _ => self.open_call(index, id, name, out),
        };
        if arguments.is_empty() {
            return;
        }
        let Some(OutputItem::FunctionCall {
            id, arguments: kept, ..
        }) = self.output.get_mut(item)
        else {
            return;
        };
        kept.push_str(arguments);
        let body = ArgumentsEvent {
            item_id: id,
            output_index: item,
            delta: Some(arguments),
            arguments: None,
        };
        emit(&mut self.sequence, out, "response.function_call_arguments.delta", body);
    }

    /// The chat stream ended: the open item closes, and the response
    /// completes (or is incomplete, cut short by a limit).
    fn complete(&mut self, out: &mut Vec<u8>) {
        self.start(out);
        self.close(out);
        let kind = if self.outcome.status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        let response =
            ResponseOut::new(&self.id, self.created, &self.model, &self.output).ended(self.outcome, self.usage);
        emit(&mut self.sequence, out, kind, ResponseEvent { response });
        self.ended = true;
    }

    /// Counts `bytes` more of kept answer; past the limit the response
    /// fails.
    fn keep(&mut self, bytes: usize, out: &mut Vec<u8>) -> bool {
        self.kept_bytes = self.kept_bytes.saturating_add(bytes);
        if self.kept_bytes > MAX_ANSWER_BYTES {
            self.fail(
                &ErrorDetails::gateway(format!(
                    "The answer exceeded the gateway's limit of {MAX_ANSWER_BYTES} bytes for a streamed response."
                )),
                out,
            );
            return false;
        }
        self.start(out);
        true
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        for kind in ["response.created", "response.in_progress"] {
            let response = ResponseOut::new(&self.id, self.created, &self.model, &self.output);
            emit(&mut self.sequence, out, kind, ResponseEvent { response });
        }
    }

    /// Adds an item to the output, announced.
    fn add(&mut self, item: OutputItem, out: &mut Vec<u8>) -> usize {
        self.close(out);
        let index = self.output.len();
        self.output.push(item);
        if let Some(item) = self.output.get(index) {
            let body = ItemEvent {
                output_index: index,
                item,
            };
            emit(&mut self.sequence, out, "response.output_item.added", body);
        }
        index
    }

    fn open_text(&mut self, out: &mut Vec<u8>) -> usize {
        let item = OutputItem::message(message_item_id(&self.id), "in_progress", Vec::new());
        let index = self.add(item, out);
        if let Some(OutputItem::Message { id, content, .. }) = self.output.get_mut(index) {
            content.push(OutputContent::text(String::new()));
            if let Some(part) = content.first() {
                let body = PartEvent {
                    item_id: id,
                    output_index: index,
                    content_index: 0,
                    part,
                };
                emit(&mut self.sequence, out, "response.content_part.added", body);
            }
        }
        self.open = Open::Text(index);
        index
    }

    fn open_call(&mut self, openai_index: usize, id: &str, name: &str, out: &mut Vec<u8>) -> usize {
        let position = self.tool_calls.len();
        self.tool_calls.push(openai_index);
        let item = OutputItem::FunctionCall {
            id: call_item_id(&self.id, position),
            call_id: call_id(id, &self.id, position),
            name: name.to_string(),
            arguments: String::new(),
            status: "in_progress",
        };
        let index = self.add(item, out);
        self.open = Open::Tool(openai_index, index);
        index
    }

    /// Closes the open item with its `.done` events.
    fn close(&mut self, out: &mut Vec<u8>) {
        let index = match self.open {
            Open::Nothing => return,
            Open::Text(index) | Open::Tool(_, index) => index,
        };
        self.open = Open::Nothing;
        // Only the answer's last item can have been cut short.
        let status = if self.outcome.reason.is_some() {
            "incomplete"
        } else {
            "completed"
        };
        let Some(item) = self.output.get_mut(index) else {
            return;
        };
        item.set_status(status);
        let sequence = &mut self.sequence;
        match &*item {
            OutputItem::Message { id, content, .. } => {
                for (content_index, part) in content.iter().enumerate() {
                    let text = match part {
                        OutputContent::OutputText { text, .. } => text,
                        OutputContent::Refusal { refusal } => refusal,
                    };
                    let done = TextEvent {
                        item_id: id,
                        output_index: index,
                        content_index,
                        delta: None,
                        text: Some(text),
                        logprobs: [],
                    };
                    emit(sequence, out, "response.output_text.done", done);
                    let body = PartEvent {
                        item_id: id,
                        output_index: index,
                        content_index,
                        part,
                    };
                    emit(sequence, out, "response.content_part.done", body);
                }
            }
            OutputItem::FunctionCall { id, arguments, .. } => {
                let body = ArgumentsEvent {
                    item_id: id,
                    output_index: index,
                    delta: None,
                    arguments: Some(arguments),
                };
                emit(sequence, out, "response.function_call_arguments.done", body);
            }
        }
        let body = ItemEvent {
            output_index: index,
            item,
        };
        emit(sequence, out, "response.output_item.done", body);
    }

    fn fail(&mut self, details: &ErrorDetails, out: &mut Vec<u8>) {
        self.start(out);
        let mut response = ResponseOut::new(&self.id, self.created, &self.model, &self.output);
        response.status = "failed";
        response.error = Some(ResponseError::of(details));
        emit(&mut self.sequence, out, "response.failed", ResponseEvent { response });
        self.ended = true;
    }
}
