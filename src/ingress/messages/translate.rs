//! A Messages request as an OpenAI chat body, for targets that are not
//! Anthropic's: the system prompt first, tool results as chat `tool`
//! messages, cache breakpoints on the messages they end.

use std::borrow::Cow;

use crate::error::GatewayError;

use super::super::chat_body::{
    ChatBody, ChatContent, ChatMessage, ChatPart, ChatTool, ChatToolCall, ChatToolChoice, FilePart, FunctionTool,
    ImageUrl, JsonSchema, ResponseFormat,
};
use super::super::wire::invalid;
use super::super::Translated;
use super::{Block, Request, Speaker, Tool, ToolChoice};

impl Request<'_> {
    /// The request as an OpenAI chat body, or the error saying why only an
    /// Anthropic target can take it (a server tool, a file reference, a URL
    /// document): the router should then keep non-Anthropic models out of
    /// the request's chain.
    pub fn to_chat_body(&self) -> Result<Translated, GatewayError> {
        let mut chat = self.chat_opening();
        self.push_messages(&mut chat)?;
        chat.tools = self.chat_tools()?;
        if !chat.tools.is_empty() {
            chat.tool_choice = self.tool_choice.as_ref().map(|choice| match choice {
                ToolChoice::Auto => ChatToolChoice::Mode("auto"),
                ToolChoice::Any => ChatToolChoice::Mode("required"),
                ToolChoice::None => ChatToolChoice::Mode("none"),
                ToolChoice::Tool(name) => ChatToolChoice::named(name),
            });
            // OpenAI refuses `parallel_tool_calls` without tools.
            chat.parallel_tool_calls = self.parallel_tool_calls;
        }
        chat.response_format = self.output_schema.map(|schema| ResponseFormat::JsonSchema {
            json_schema: JsonSchema {
                name: "output",
                description: None,
                schema,
                strict: Some(true),
            },
        });
        Ok(Translated {
            body: chat.to_bytes("messages")?,
            dropped: self.dropped.clone(),
        })
    }

    /// The chat body's settings and its system message, before the
    /// conversation.
    fn chat_opening(&self) -> ChatBody<'_> {
        let mut chat = ChatBody {
            max_completion_tokens: self.max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            stop: self.stop_sequences.iter().map(|stop| stop.as_ref()).collect(),
            user: self.user_id.as_deref(),
            ..ChatBody::new(&self.model, self.stream)
        };
        if !self.system.is_empty() {
            chat.push(ChatMessage {
                cache_breakpoint: self.system_cached,
                ..ChatMessage::text("system", Cow::Owned(self.system.join("\n\n")))
            });
        }
        chat
    }

    /// The conversation's messages, a breakpoint on the last chat message
    /// each cached one became.
    fn push_messages<'r>(&'r self, chat: &mut ChatBody<'r>) -> Result<(), GatewayError> {
        for message in &self.messages {
            let before = chat.messages.len();
            match message.speaker {
                Speaker::User => user_messages(&message.blocks, chat)?,
                Speaker::Assistant => {
                    // A turn of thinking alone says nothing chat can carry.
                    if let Some(message) = assistant_message(&message.blocks)? {
                        chat.push(message);
                    }
                }
            }
            if message.cached && chat.messages.len() > before {
                if let Some(last) = chat.messages.last_mut() {
                    last.cache_breakpoint = true;
                }
            }
        }
        Ok(())
    }

    /// The custom tools as chat functions; a server tool is the error.
    fn chat_tools(&self) -> Result<Vec<ChatTool<'_>>, GatewayError> {
        self.tools
            .iter()
            .map(|tool| match tool {
                Tool::Custom {
                    name,
                    description,
                    input_schema,
                    strict,
                } => Ok(ChatTool::function(FunctionTool {
                    name,
                    description: description.as_deref(),
                    parameters: Some(input_schema),
                    strict: *strict,
                })),
                Tool::Server { param, kind } => Err(anthropic_only(param, &format!("the `{kind}` server tool"))),
            })
            .collect()
    }
}

fn anthropic_only(param: &str, what: &str) -> GatewayError {
    invalid(
        param,
        &format!(
            "{what} can only be sent to an Anthropic model, and this request's model is served by another provider."
        ),
    )
}

/// The chat part of a user-visible block (text, image, document).
fn part<'r>(block: &'r Block<'_>) -> Result<ChatPart<'r>, GatewayError> {
    Ok(match block {
        Block::Text(text) | Block::DocumentText(text) => ChatPart::Text { text },
        Block::Image(url) => ChatPart::ImageUrl {
            image_url: ImageUrl {
                url: Cow::Borrowed(url),
                detail: None,
            },
        },
        Block::Pdf { data_url, title } => ChatPart::File {
            file: FilePart {
                filename: Some(title.as_deref().unwrap_or("document.pdf")),
                file_data: Some(Cow::Borrowed(data_url)),
                file_id: None,
            },
        },
        Block::AnthropicOnly { param, what } => return Err(anthropic_only(param, what)),
        // Callers route these elsewhere.
        Block::ToolUse { .. } | Block::ToolResult { .. } | Block::Thinking => {
            return Err(GatewayError::Internal {
                message: "A tool block reached the user content of a chat message.".into(),
            })
        }
    })
}

/// A user message: each tool result becomes a chat `tool` message (chat
/// wants them right after the assistant's calls), the rest one `user`
/// message. Images and documents inside tool results, which a chat `tool`
/// message cannot carry, join that user message.
fn user_messages<'r>(blocks: &'r [Block<'_>], chat: &mut ChatBody<'r>) -> Result<(), GatewayError> {
    let mut parts = Vec::new();
    for block in blocks {
        match block {
            Block::ToolResult { tool_use_id, content } => {
                let mut text = String::new();
                for inner in content {
                    match inner {
                        Block::Text(piece) | Block::DocumentText(piece) => {
                            if !text.is_empty() {
                                text.push('\n');
                            }
                            text.push_str(piece);
                        }
                        other => parts.push(part(other)?),
                    }
                }
                chat.push(ChatMessage::tool_result(tool_use_id, Cow::Owned(text)));
            }
            Block::Thinking => {}
            other => parts.push(part(other)?),
        }
    }
    let content = match parts.as_slice() {
        [] => return Ok(()),
        [ChatPart::Text { text }] => ChatContent::Text(Cow::Borrowed(text)),
        _ => ChatContent::Parts(parts),
    };
    chat.push(ChatMessage {
        content: Some(content),
        ..ChatMessage::text("user", Cow::Borrowed(""))
    });
    Ok(())
}

/// An assistant message: its text joined, its tool uses as tool calls;
/// `None` when nothing is left.
fn assistant_message<'r>(blocks: &'r [Block<'_>]) -> Result<Option<ChatMessage<'r>>, GatewayError> {
    let mut texts: Vec<&str> = Vec::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block {
            Block::Text(text) => texts.push(text),
            Block::ToolUse { id, name, input } => tool_calls.push(ChatToolCall::function(id, name, input.get())),
            Block::Thinking => {}
            Block::AnthropicOnly { param, what } => return Err(anthropic_only(param, what)),
            Block::Image(_) | Block::Pdf { .. } | Block::DocumentText(_) | Block::ToolResult { .. } => {
                return Err(invalid(
                    "messages",
                    "an assistant message can only carry text and tool calls for this model's provider.",
                ))
            }
        }
    }
    if texts.is_empty() && tool_calls.is_empty() {
        return Ok(None);
    }
    Ok(Some(ChatMessage {
        role: "assistant",
        content: (!texts.is_empty()).then(|| ChatContent::Text(Cow::Owned(texts.join("\n")))),
        tool_calls,
        tool_call_id: None,
        cache_breakpoint: false,
    }))
}
