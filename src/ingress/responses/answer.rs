//! The Responses API's `response` object, for whole answers and for the
//! snapshots its streaming events carry: output items (a `message` with
//! `output_text` or `refusal` content, `function_call`s), a status, and
//! usage.

use serde::Serialize;

use crate::error::GatewayError;
use crate::providers::TokenUsage;

use super::super::completion::{prefixed_id, read_answer, ErrorDetails};

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum OutputItem {
    Message {
        id: String,
        status: &'static str,
        role: &'static str,
        content: Vec<OutputContent>,
    },
    FunctionCall {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
        status: &'static str,
    },
}

impl OutputItem {
    pub(super) fn message(id: String, status: &'static str, content: Vec<OutputContent>) -> OutputItem {
        OutputItem::Message {
            id,
            status,
            role: "assistant",
            content,
        }
    }

    pub(super) fn set_status(&mut self, new: &'static str) {
        match self {
            OutputItem::Message { status, .. } | OutputItem::FunctionCall { status, .. } => *status = new,
        }
    }
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum OutputContent {
    OutputText {
        text: String,
        annotations: [(); 0],
        logprobs: [(); 0],
    },
    Refusal {
        refusal: String,
    },
}

impl OutputContent {
    pub(super) fn text(text: String) -> OutputContent {
        OutputContent::OutputText {
            text,
            annotations: [],
            logprobs: [],
        }
    }
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct UsageOut {
    input_tokens: u64,
    input_tokens_details: InputDetails,
    output_tokens: u64,
    output_tokens_details: OutputDetails,
    total_tokens: u64,
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
struct InputDetails {
    cached_tokens: u64,
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
struct OutputDetails {
    reasoning_tokens: u64,
}

impl UsageOut {
    /// The Responses API counts every prompt token as input, cached ones
    /// included, as chat does. Chat answers do not always say how many
    /// output tokens were reasoning: 0 here.
    pub(super) fn of(usage: TokenUsage) -> UsageOut {
        UsageOut {
            input_tokens: usage.prompt_total(),
            input_tokens_details: InputDetails {
                cached_tokens: usage.cached_input,
            },
            output_tokens: usage.output,
            output_tokens_details: OutputDetails { reasoning_tokens: 0 },
            total_tokens: usage.total(),
        }
    }
}

/// How an answer ended, in the Responses API's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Outcome {
    pub status: &'static str,
    /// Why an `incomplete` answer stopped.
    pub reason: Option<&'static str>,
}

impl Outcome {
    pub(super) fn of(finish_reason: &str) -> Outcome {
        let incomplete = |reason| Outcome {
            status: "incomplete",
            reason: Some(reason),
        };
        match finish_reason {
            "length" => incomplete("max_output_tokens"),
            "content_filter" => incomplete("content_filter"),
            _ => Outcome {
                status: "completed",
                reason: None,
            },
        }
    }
}

#[derive(Serialize, Debug)]
pub(super) struct ResponseError<'a> {
    code: &'static str,
    message: &'a str,
}

impl<'a> ResponseError<'a> {
    /// The Responses API's error codes are few: a rate limit, a prompt it
    /// refused, or a server error.
    pub(super) fn of(details: &'a ErrorDetails) -> ResponseError<'a> {
        let code = match (details.code.as_deref(), details.kind.as_deref()) {
            (Some("rate_limit_exceeded" | "insufficient_quota"), _) | (_, Some("rate_limit_error")) => {
                "rate_limit_exceeded"
            }
            (_, Some("invalid_request_error")) => "invalid_prompt",
            _ => "server_error",
        };
        ResponseError {
            code,
            message: &details.message,
        }
    }
}

#[derive(Serialize, Debug)]
pub(super) struct Incomplete {
    reason: &'static str,
}

/// A `response` object: whole, or a stream's snapshot.
#[derive(Serialize, Debug)]
pub(super) struct ResponseOut<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created_at: u64,
    pub status: &'static str,
    pub error: Option<ResponseError<'a>>,
    pub incomplete_details: Option<Incomplete>,
    pub model: &'a str,
    pub output: &'a [OutputItem],
    pub parallel_tool_calls: bool,
    pub tool_choice: &'static str,
    pub tools: [(); 0],
    pub store: bool,
    pub usage: Option<UsageOut>,
}

impl<'a> ResponseOut<'a> {
    pub(super) fn new(id: &'a str, created_at: u64, model: &'a str, output: &'a [OutputItem]) -> ResponseOut<'a> {
        ResponseOut {
            id,
            object: "response",
            created_at,
            status: "in_progress",
            error: None,
            incomplete_details: None,
            model,
            output,
            parallel_tool_calls: true,
            tool_choice: "auto",
            tools: [],
            store: false,
            usage: None,
        }
    }

    pub(super) fn ended(mut self, outcome: Outcome, usage: Option<TokenUsage>) -> ResponseOut<'a> {
        self.status = outcome.status;
        self.incomplete_details = outcome.reason.map(|reason| Incomplete { reason });
        self.usage = usage.map(UsageOut::of);
        self
    }
}

/// The ids of an answer's response, its message item, and its `n`th
/// function call item.
pub(super) fn response_id(chat_id: &str) -> String {
    prefixed_id("resp_", chat_id)
}

pub(super) fn message_item_id(response_id: &str) -> String {
    format!("msg_{}", response_id.trim_start_matches("resp_"))
}

pub(super) fn call_item_id(response_id: &str, position: usize) -> String {
    format!("fc_{}_{position}", response_id.trim_start_matches("resp_"))
}

/// A tool call's `call_id`, made up for a call that came without one.
pub(super) fn call_id(id: &str, response_id: &str, position: usize) -> String {
    if id.is_empty() {
        format!("call_{}_{position}", response_id.trim_start_matches("resp_"))
    } else {
        id.to_string()
    }
}

/// A whole chat completion (200) as a Responses `response` object. An
/// answer that cannot be read is an error for the client's error body.
pub fn response_from_chat(chat_body: &[u8]) -> Result<Vec<u8>, GatewayError> {
    let answer = read_answer(chat_body)?;
    let id = response_id(&answer.id);
    let outcome = Outcome::of(&answer.finish_reason);
    let mut output = Vec::with_capacity(1 + answer.tool_calls.len());
    let content: Vec<OutputContent> = [
        (!answer.text.is_empty()).then(|| OutputContent::text(answer.text.clone())),
        answer.refusal.clone().map(|refusal| OutputContent::Refusal { refusal }),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !content.is_empty() {
        let status = if outcome.status == "completed" {
            "completed"
        } else {
            "incomplete"
        };
        output.push(OutputItem::message(message_item_id(&id), status, content));
    }
    for (position, call) in answer.tool_calls.iter().enumerate() {
        output.push(OutputItem::FunctionCall {
            id: call_item_id(&id, position),
            call_id: call_id(&call.id, &id, position),
            name: call.name.clone(),
            arguments: call.arguments.clone(),
            status: "completed",
        });
    }
    let response = ResponseOut::new(&id, answer.created, &answer.model, &output).ended(outcome, answer.usage);
    serde_json::to_vec(&response).map_err(|err| GatewayError::Internal {
        message: format!("The response object could not be written: {err}"),
    })
}
