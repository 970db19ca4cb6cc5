//! Chat chunk streams as Anthropic's streaming events: `message_start`,
//! one `content_block_start` / `content_block_delta`… /
//! `content_block_stop` per text run or tool call (`text_delta`,
//! `input_json_delta`), then `message_delta` (stop reason, usage) and
//! `message_stop`; an error becomes `event: error`. Nothing is buffered
//! beyond the chunk being framed.

use serde::Serialize;

use crate::providers::TokenUsage;

use super::super::completion::{ChunkEncoder, ChunkEvent, ChunkHandler, ErrorDetails};
use super::super::write_event;
#[cfg(doc)]
use super::super::StreamEncode;
use super::answer::{message_id, stop_reason, stream_error, tool_use_id, UsageOut};

/// The content block being streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Nothing,
    Text,
    /// A tool call, by OpenAI's tool-call index.
    Tool(usize),
}

/// The events' `type` comes first, as Anthropic writes them.
#[derive(Serialize)]
struct MessageStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: MessageHead<'a>,
}

#[derive(Serialize)]
struct MessageHead<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: [(); 0],
    stop_reason: Option<&'static str>,
    stop_sequence: Option<&'static str>,
    usage: UsageOut,
}

#[derive(Serialize)]
struct BlockStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    content_block: StartingBlock<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartingBlock<'a> {
    Text {
        text: &'static str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: EmptyObject,
    },
}

#[derive(Serialize)]
struct EmptyObject {}

/// `content_block_stop` and `message_stop`.
#[derive(Serialize)]
struct Marker {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<u32>,
}

#[derive(Serialize)]
struct MessageDelta {
    #[serde(rename = "type")]
    kind: &'static str,
    delta: StopDelta,
    usage: UsageOut,
}

#[derive(Serialize)]
struct StopDelta {
    stop_reason: &'static str,
    stop_sequence: Option<&'static str>,
}

#[derive(Serialize)]
struct DeltaEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    delta: Delta<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Delta<'a> {
    TextDelta { text: &'a str },
    InputJsonDelta { partial_json: &'a str },
}

/// The Anthropic events of a chat stream.
#[derive(Debug)]
pub struct AnthropicEvents {
    started: bool,
    id: String,
    model: String,
    open: Open,
    /// Index of the next content block.
    next_index: u32,
    /// OpenAI indexes of the tool calls seen, in order.
    tool_calls: Vec<usize>,
    stop_reason: &'static str,
    usage: TokenUsage,
    /// `message_stop` or an error went out: nothing more is written.
    ended: bool,
}

/// Translates a chat chunk stream into Anthropic's events, as pieces
/// arrive ([`StreamEncode`]). The client's response is
/// `content-type: text/event-stream`.
pub type StreamEncoder = ChunkEncoder<AnthropicEvents>;

impl StreamEncoder {
    /// `model` names the answer's model until the stream says otherwise.
    pub fn new(model: &str) -> StreamEncoder {
        ChunkEncoder::with(AnthropicEvents {
            started: false,
            id: message_id(""),
            model: model.to_string(),
            open: Open::Nothing,
            next_index: 0,
            tool_calls: Vec::new(),
            stop_reason: "end_turn",
            usage: TokenUsage::default(),
            ended: false,
        })
    }
}

impl ChunkHandler for AnthropicEvents {
    fn on(&mut self, event: ChunkEvent<'_>, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        match event {
            ChunkEvent::Started { id, model, .. } => {
                if !id.is_empty() {
                    self.id = message_id(id);
                }
                if !model.is_empty() {
                    self.model = model.to_string();
                }
                self.start(out);
            }
            ChunkEvent::Text(text) => {
                if self.open != Open::Text {
                    self.open_block(Open::Text, StartingBlock::Text { text: "" }, out);
                }
                self.delta(Delta::TextDelta { text }, out);
            }
            ChunkEvent::ToolCall {
                index,
                id,
                name,
                arguments,
            } => self.tool_call(index, id.unwrap_or_default(), name.unwrap_or_default(), arguments, out),
            ChunkEvent::Finish(reason) => self.stop_reason = stop_reason(reason),
            ChunkEvent::Usage(usage) => self.usage = usage,
            ChunkEvent::Done => self.stop(out),
            ChunkEvent::Error(details) => self.fail(&details, out),
        }
    }
}

impl AnthropicEvents {
    /// A piece of tool call `index`'s arguments; its first piece opens a
    /// `tool_use` block with the call's id and name.
    fn tool_call(&mut self, index: usize, id: &str, name: &str, arguments: &str, out: &mut Vec<u8>) {
        if self.open != Open::Tool(index) {
            if self.tool_calls.contains(&index) {
                // Anthropic's blocks cannot be reopened.
                return self.fail(&ErrorDetails::interleaved_tool_calls(), out);
            }
            self.tool_calls.push(index);
            let id = tool_use_id(id, &self.id, self.tool_calls.len() - 1);
            let block = StartingBlock::ToolUse {
                id: &id,
                name,
                input: EmptyObject {},
            };
            self.open_block(Open::Tool(index), block, out);
        }
        if !arguments.is_empty() {
            self.delta(
                Delta::InputJsonDelta {
                    partial_json: arguments,
                },
                out,
            );
        }
    }

    /// The chat stream ended: the open block closes, then the message,
    /// with its stop reason and usage.
    fn stop(&mut self, out: &mut Vec<u8>) {
        self.start(out);
        self.close_block(out);
        let delta = MessageDelta {
            kind: "message_delta",
            delta: StopDelta {
                stop_reason: self.stop_reason,
                stop_sequence: None,
            },
            usage: UsageOut::of(self.usage),
        };
        write_event(out, "message_delta", &delta);
        let stop = Marker {
            kind: "message_stop",
            index: None,
        };
        write_event(out, "message_stop", &stop);
        self.ended = true;
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        // Input tokens are known only at the end of a chat stream; the
        // message_delta carries them.
        let message = MessageStart {
            kind: "message_start",
            message: MessageHead {
                id: &self.id,
                kind: "message",
                role: "assistant",
                model: &self.model,
                content: [],
                stop_reason: None,
                stop_sequence: None,
                usage: UsageOut::default(),
            },
        };
        write_event(out, "message_start", &message);
    }

    fn open_block(&mut self, open: Open, block: StartingBlock<'_>, out: &mut Vec<u8>) {
        self.start(out);
        self.close_block(out);
        let start = BlockStart {
            kind: "content_block_start",
            index: self.next_index,
            content_block: block,
        };
        write_event(out, "content_block_start", &start);
        self.open = open;
    }

    fn delta(&mut self, delta: Delta<'_>, out: &mut Vec<u8>) {
        let event = DeltaEvent {
            kind: "content_block_delta",
            index: self.next_index,
            delta,
        };
        write_event(out, "content_block_delta", &event);
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if self.open == Open::Nothing {
            return;
        }
        let stop = Marker {
            kind: "content_block_stop",
            index: Some(self.next_index),
        };
        write_event(out, "content_block_stop", &stop);
        self.open = Open::Nothing;
        self.next_index += 1;
    }

    fn fail(&mut self, details: &ErrorDetails, out: &mut Vec<u8>) {
        write_event(out, "error", &stream_error(details));
        self.ended = true;
    }
}
