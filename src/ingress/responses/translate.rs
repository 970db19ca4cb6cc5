//! A Responses request as an OpenAI chat body: `instructions` as the system
//! message, function calls and their outputs as chat tool calls and `tool`
//! messages. Also the planning body of a request only OpenAI can take.

use std::borrow::Cow;

use crate::error::GatewayError;

use super::super::chat_body::{
    ChatBody, ChatContent, ChatMessage, ChatPart, ChatTool, ChatToolCall, ChatToolChoice, FilePart, FunctionTool,
    ImageUrl, JsonSchema, ResponseFormat,
};
use super::super::wire::invalid;
use super::super::Translated;
use super::{Format, Item, Part, Request, Role, ToolChoice};

impl Request<'_> {
    /// The chat body's settings and its system message (`instructions`),
    /// before the conversation's items.
    fn chat_opening(&self) -> ChatBody<'_> {
        let mut chat = ChatBody {
            max_completion_tokens: self.max_output_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            user: self.user.as_deref(),
            ..ChatBody::new(&self.model, self.stream)
        };
        if let Some(instructions) = &self.instructions {
            chat.push(ChatMessage::text("system", Cow::Borrowed(instructions)));
        }
        chat
    }

    fn chat_tools(&self) -> Vec<ChatTool<'_>> {
        self.functions
            .iter()
            .map(|function| {
                ChatTool::function(FunctionTool {
                    name: &function.name,
                    description: function.description.as_deref(),
                    parameters: function.parameters,
                    strict: function.strict,
                })
            })
            .collect()
    }

    /// A chat body to *plan* a request only OpenAI can take (see
    /// [`Request::needs_openai`]): its texts as messages and its function
    /// tools, so routing, rules and the spend estimate read what the
    /// client sent. No provider is sent it: the attempts send the client's
    /// own body.
    pub fn to_planning_body(&self) -> Result<Vec<u8>, GatewayError> {
        let mut chat = self.chat_opening();
        let texts = |parts: &[Part<'_>]| -> String {
            let texts: Vec<&str> = parts
                .iter()
                .filter_map(|part| match part {
                    Part::Text(text) => Some(text.as_ref()),
                    _ => None,
                })
                .collect();
            texts.join("\n")
        };
        for item in &self.items {
            let (role, text) = match item {
                Item::Message {
                    role: Role::User,
                    parts,
                } => ("user", texts(parts)),
                Item::Message {
                    role: Role::Assistant,
                    parts,
                } => ("assistant", texts(parts)),
                Item::Message {
                    role: Role::System,
                    parts,
                } => ("system", texts(parts)),
                // What a tool returned is what the model reads next.
                Item::FunctionCallOutput { output, .. } => ("user", texts(output)),
                _ => continue,
            };
            chat.messages.push(ChatMessage::text(role, Cow::Owned(text)));
        }
        if !chat.messages.iter().any(|message| message.role == "user") {
            chat.messages.push(ChatMessage::text("user", Cow::Borrowed("")));
        }
        chat.tools = self.chat_tools();
        chat.to_bytes("input")
    }

    /// The request as an OpenAI chat body, or the error saying why only
    /// OpenAI's own Responses API can take it (stored state, built-in
    /// tools, file URLs): the router should then keep other providers out
    /// of the request's chain.
    pub fn to_chat_body(&self) -> Result<Translated, GatewayError> {
        if let Some(field) = self.stateful {
            return Err(openai_only(field, &format!("`{field}`")));
        }
        if let Some((param, kind)) = self.builtin_tools.first() {
            return Err(openai_only(param, &format!("the built-in `{kind}` tool")));
        }
        let mut chat = self.chat_opening();
        self.push_items(&mut chat)?;
        chat.tools = self.chat_tools();
        if !chat.tools.is_empty() {
            chat.tool_choice = match &self.tool_choice {
                None => None,
                Some(ToolChoice::Mode(mode)) => Some(ChatToolChoice::Mode(mode)),
                Some(ToolChoice::Function(name)) => Some(ChatToolChoice::named(name)),
                Some(ToolChoice::OpenAiOnly) => return Err(openai_only("tool_choice", "this `tool_choice`")),
            };
            chat.parallel_tool_calls = self.parallel_tool_calls;
        }
        chat.response_format = self.format.as_ref().map(response_format);
        Ok(Translated {
            body: chat.to_bytes("input")?,
            dropped: self.dropped.clone(),
        })
    }

    /// The conversation's items as chat messages.
    fn push_items<'r>(&'r self, chat: &mut ChatBody<'r>) -> Result<(), GatewayError> {
        // Images and files a function's output returned: a chat `tool`
        // message cannot carry them, so a user message right after does.
        let mut returned: Vec<ChatPart<'_>> = Vec::new();
        for item in &self.items {
            if !matches!(item, Item::FunctionCallOutput { .. }) {
                flush_user_parts(&mut returned, chat);
            }
            match item {
                Item::Message { role, parts } => chat.push(message(*role, parts)?),
                Item::FunctionCall {
                    call_id,
                    name,
                    arguments,
                } => chat.push(ChatMessage {
                    tool_calls: vec![ChatToolCall::function(call_id, name, arguments)],
                    content: None,
                    ..ChatMessage::text("assistant", Cow::Borrowed(""))
                }),
                Item::FunctionCallOutput { call_id, output } => {
                    let mut texts = Vec::new();
                    for part in output {
                        match part {
                            Part::Text(text) => texts.push(text.as_ref()),
                            other => returned.push(chat_part(other)?),
                        }
                    }
                    chat.push(ChatMessage::tool_result(call_id, Cow::Owned(texts.join("\n"))));
                }
                Item::Reasoning => {}
                Item::OpenAiOnly { param, what } => return Err(openai_only(param, what)),
            }
        }
        flush_user_parts(&mut returned, chat);
        Ok(())
    }
}

/// `text.format` as chat's `response_format`.
fn response_format<'r>(format: &'r Format<'_>) -> ResponseFormat<'r> {
    match format {
        Format::JsonObject => ResponseFormat::JsonObject,
        Format::JsonSchema {
            name,
            description,
            schema,
            strict,
        } => ResponseFormat::JsonSchema {
            json_schema: JsonSchema {
                name,
                description: description.as_deref(),
                schema,
                strict: *strict,
            },
        },
    }
}

fn openai_only(param: &str, what: &str) -> GatewayError {
    invalid(
        param,
        &format!("{what} needs OpenAI's own Responses API, and this request's model is served by another provider."),
    )
}

fn chat_part<'r>(part: &'r Part<'_>) -> Result<ChatPart<'r>, GatewayError> {
    Ok(match part {
        Part::Text(text) => ChatPart::Text { text },
        Part::Image { url, detail } => ChatPart::ImageUrl {
            image_url: ImageUrl {
                url: Cow::Borrowed(url),
                detail: detail.as_deref(),
            },
        },
        Part::File(file) => ChatPart::File {
            file: FilePart {
                filename: file.filename.as_deref(),
                file_data: file.file_data.as_deref().map(Cow::Borrowed),
                file_id: file.file_id.as_deref(),
            },
        },
        Part::OpenAiOnly { param, what } => return Err(openai_only(param, what)),
    })
}

fn message<'r>(role: Role, parts: &'r [Part<'_>]) -> Result<ChatMessage<'r>, GatewayError> {
    let joined = || -> Result<Cow<'r, str>, GatewayError> {
        let mut texts = Vec::with_capacity(parts.len());
        for part in parts {
            match part {
                Part::Text(text) => texts.push(text.as_ref()),
                Part::OpenAiOnly { param, what } => return Err(openai_only(param, what)),
                _ => {
                    return Err(invalid(
                        "input",
                        "only user messages can carry images and files for this model's provider.",
                    ))
                }
            }
        }
        Ok(match texts.as_slice() {
            [one] => Cow::Borrowed(*one),
            _ => Cow::Owned(texts.join("\n")),
        })
    };
    Ok(match role {
        Role::System => ChatMessage::text("system", joined()?),
        Role::Assistant => ChatMessage::text("assistant", joined()?),
        Role::User => {
            let content = match parts {
                [Part::Text(text)] => ChatContent::Text(Cow::Borrowed(text)),
                _ => ChatContent::Parts(parts.iter().map(chat_part).collect::<Result<_, _>>()?),
            };
            ChatMessage {
                content: Some(content),
                ..ChatMessage::text("user", Cow::Borrowed(""))
            }
        }
    })
}

fn flush_user_parts<'r>(parts: &mut Vec<ChatPart<'r>>, chat: &mut ChatBody<'r>) {
    if parts.is_empty() {
        return;
    }
    chat.push(ChatMessage {
        content: Some(ChatContent::Parts(std::mem::take(parts))),
        ..ChatMessage::text("user", Cow::Borrowed(""))
    });
}
