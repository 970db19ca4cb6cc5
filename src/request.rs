//! A borrowed view of an OpenAI chat-completions request.
//!
//! Only what routing needs is deserialized; every other field stays in the
//! original bytes, which are forwarded untouched apart from spliced edits
//! (see [`crate::json_edit`]). Strings borrow from the body unless they
//! contain escapes, so parsing a typical request allocates little more than
//! the message list.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::GatewayError;
use crate::tokens;

/// A JSON string, borrowed from the body when it has no escapes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Text<'a>(pub Cow<'a, str>);

impl<'a> Text<'a> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(value)))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(value.to_owned())))
            }
            fn visit_string<E: de::Error>(self, value: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(value)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

/// One part of a multi-part message; only text parts matter for routing.
#[derive(Debug, Deserialize)]
pub struct ContentPart<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Text<'a>,
    #[serde(default, borrow)]
    pub text: Option<Text<'a>>,
}

/// `content` is either a string or a list of parts.
#[derive(Debug)]
pub enum Content<'a> {
    Text(Text<'a>),
    Parts(Vec<ContentPart<'a>>),
}

impl<'de: 'a, 'a> Deserialize<'de> for Content<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ContentVisitor;
        impl<'de> Visitor<'de> for ContentVisitor {
            type Value = Content<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of content parts")
            }
            fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
                Ok(Content::Text(Text(Cow::Borrowed(value))))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(Content::Text(Text(Cow::Owned(value.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, value: String) -> Result<Self::Value, E> {
                Ok(Content::Text(Text(Cow::Owned(value))))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(64));
                while let Some(part) = seq.next_element()? {
                    parts.push(part);
                }
                Ok(Content::Parts(parts))
            }
        }
        deserializer.deserialize_any(ContentVisitor)
    }
}

#[derive(Debug, Deserialize)]
pub struct Message<'a> {
    pub role: Role,
    #[serde(default, borrow)]
    pub content: Option<Content<'a>>,
}

impl Message<'_> {
    /// A tool's (or legacy function's) answer fed back to the model.
    pub fn is_tool_result(&self) -> bool {
        matches!(self.role, Role::Tool | Role::Function)
    }
}

impl<'a> Message<'a> {
    /// The text pieces of this message, in order.
    pub fn text_parts(&self) -> impl Iterator<Item = &str> {
        let (single, parts) = match &self.content {
            Some(Content::Text(text)) => (Some(text.as_str()), None),
            Some(Content::Parts(parts)) => (
                None,
                Some(parts.iter().filter_map(|part| part.text.as_ref().map(Text::as_str))),
            ),
            None => (None, None),
        };
        single.into_iter().chain(parts.into_iter().flatten())
    }

    pub fn image_count(&self) -> usize {
        match &self.content {
            Some(Content::Parts(parts)) => parts.iter().filter(|part| part.kind.as_str() == "image_url").count(),
            _ => 0,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ResponseFormat<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Text<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseFormatKind {
    #[default]
    None,
    Text,
    JsonObject,
    JsonSchema,
}

/// The fields of a chat-completions request that routing reads.
#[derive(Debug, Deserialize)]
pub struct ChatRequest<'a> {
    #[serde(borrow)]
    pub model: Text<'a>,
    #[serde(borrow)]
    pub messages: Vec<Message<'a>>,
    #[serde(default, borrow)]
    pub tools: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub functions: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub response_format: Option<ResponseFormat<'a>>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// The fields of an embeddings request that routing reads.
#[derive(Debug, Deserialize)]
pub struct EmbeddingsRequest<'a> {
    #[serde(borrow)]
    pub model: Text<'a>,
    #[serde(borrow)]
    pub input: &'a RawValue,
}

/// Parses an embeddings body (`model` and `input` required).
pub fn parse_embeddings(body: &[u8]) -> Result<EmbeddingsRequest<'_>, GatewayError> {
    let request: EmbeddingsRequest<'_> = serde_json::from_slice(body).map_err(|err| match err.classify() {
        serde_json::error::Category::Data => GatewayError::invalid(format!("Invalid request body: {err}")),
        _ => GatewayError::invalid(format!("Request body is not valid JSON: {err}")),
    })?;
    if matches!(request.input.get().trim(), "[]" | "\"\"" | "null") {
        return Err(GatewayError::invalid_param("input", "`input` must not be empty."));
    }
    Ok(request)
}

/// What the classifier and the selector read from a request.
#[derive(Debug, Default, Clone)]
pub struct PromptView<'a> {
    /// Text parts of the last user message.
    pub last_user_parts: Vec<&'a str>,
    pub user_turns: u32,
    /// Estimated tokens of everything but the last user message: system
    /// prompt, earlier turns, tool definitions, per-message overhead.
    pub context_tokens: u32,
    pub has_tools: bool,
    /// Tool (or function) results in the conversation: an agent loop.
    pub tool_results: u32,
    pub images: u32,
    pub response_format: ResponseFormatKind,
}

impl<'a> PromptView<'a> {
    /// Estimated tokens of the last user message (the classifier computes the
    /// same number during its scan; this is for requests it does not score).
    pub fn last_user_tokens(&self) -> u32 {
        self.last_user_parts
            .iter()
            .map(|part| tokens::estimate(part))
            .fold(0, u32::saturating_add)
    }
}

/// Parses a chat-completions body, turning every problem into a 400 with a
/// message that says what is wrong and where.
pub fn parse_chat(body: &[u8]) -> Result<ChatRequest<'_>, GatewayError> {
    let request: ChatRequest<'_> = serde_json::from_slice(body).map_err(|err| {
        let message = match err.classify() {
            serde_json::error::Category::Data => format!("Invalid request body: {err}"),
            _ => format!("Request body is not valid JSON: {err}"),
        };
        GatewayError::invalid(message)
    })?;
    if request.model.as_str().is_empty() {
        return Err(GatewayError::invalid_param(
            "model",
            "`model` must be a non-empty string.",
        ));
    }
    if request.messages.is_empty() {
        return Err(GatewayError::invalid_param(
            "messages",
            "`messages` must contain at least one message.",
        ));
    }
    Ok(request)
}

fn is_present(raw: Option<&RawValue>) -> bool {
    raw.is_some_and(|value| !matches!(value.get().trim(), "[]" | "null" | "{}"))
}

fn raw_tokens(raw: Option<&RawValue>) -> u32 {
    raw.map_or(0, |value| tokens::estimate(value.get()))
}

impl<'a> ChatRequest<'a> {
    pub fn prompt_view(&self) -> PromptView<'_> {
        let last_user = self.messages.iter().rposition(|message| message.role == Role::User);
        let mut view = PromptView {
            has_tools: is_present(self.tools) || is_present(self.functions),
            response_format: match self.response_format.as_ref().map(|format| format.kind.as_str()) {
                None => ResponseFormatKind::None,
                Some("json_object") => ResponseFormatKind::JsonObject,
                Some("json_schema") => ResponseFormatKind::JsonSchema,
                Some(_) => ResponseFormatKind::Text,
            },
            context_tokens: raw_tokens(self.tools).saturating_add(raw_tokens(self.functions)),
            ..PromptView::default()
        };
        for (position, message) in self.messages.iter().enumerate() {
            if message.role == Role::User {
                view.user_turns += 1;
            }
            view.tool_results += u32::from(message.is_tool_result());
            view.images += message.image_count() as u32;
            view.context_tokens = view.context_tokens.saturating_add(tokens::PER_MESSAGE_OVERHEAD);
            if Some(position) == last_user {
                view.last_user_parts.extend(message.text_parts());
            } else {
                for part in message.text_parts() {
                    view.context_tokens = view.context_tokens.saturating_add(tokens::estimate(part));
                }
            }
        }
        view
    }

    /// Text of every system or developer message, in order.
    pub fn system_parts(&self) -> impl Iterator<Item = &str> {
        self.messages
            .iter()
            .filter(|message| matches!(message.role, Role::System | Role::Developer))
            .flat_map(|message| message.text_parts())
    }

    /// Whether a streaming client asked for the final usage chunk.
    pub fn wants_stream_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|options| options.include_usage)
            .unwrap_or(false)
    }

    /// The output budget the client asked for, if any.
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_request_borrows_its_strings() {
        let body = br#"{"model":"auto","messages":[{"role":"user","content":"hello"}],"temperature":0.2}"#;
        let request = parse_chat(body).unwrap();
        assert!(matches!(request.model.0, Cow::Borrowed("auto")));
        let view = request.prompt_view();
        assert_eq!(view.last_user_parts, vec!["hello"]);
        assert_eq!(view.user_turns, 1);
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let body = br#"{"model":"a\u0075to","messages":[{"role":"user","content":"line\nbreak"}]}"#;
        let request = parse_chat(body).unwrap();
        assert_eq!(request.model.as_str(), "auto");
        assert_eq!(request.prompt_view().last_user_parts, vec!["line\nbreak"]);
    }

    #[test]
    fn multi_part_content_keeps_text_and_counts_images() {
        let body = br#"{"model":"auto","messages":[
            {"role":"system","content":"be brief"},
            {"role":"user","content":"first question"},
            {"role":"assistant","content":null,"tool_calls":[{"id":"1"}]},
            {"role":"user","content":[{"type":"text","text":"look at"},{"type":"image_url","image_url":{"url":"data:x"}},{"type":"text","text":"this"}]}
        ],"tools":[{"type":"function","function":{"name":"f"}}],"response_format":{"type":"json_schema","json_schema":{}}}"#;
        let request = parse_chat(body).unwrap();
        let view = request.prompt_view();
        assert_eq!(view.last_user_parts, vec!["look at", "this"]);
        assert_eq!(view.user_turns, 2);
        assert_eq!(view.images, 1);
        assert!(view.has_tools);
        assert_eq!(view.response_format, ResponseFormatKind::JsonSchema);
        assert!(view.context_tokens > 4 * 4);
        assert_eq!(request.system_parts().collect::<Vec<_>>(), vec!["be brief"]);
    }

    #[test]
    fn tool_results_in_the_conversation_are_counted() {
        let body = br#"{"model":"auto","messages":[
            {"role":"user","content":"book a table"},
            {"role":"assistant","content":null,"tool_calls":[{"id":"1"}]},
            {"role":"tool","tool_call_id":"1","content":"no table at 8"},
            {"role":"assistant","content":null,"tool_calls":[{"id":"2"}]},
            {"role":"tool","tool_call_id":"2","content":"table at 9"},
            {"role":"function","name":"legacy","content":"ok"}
        ]}"#;
        assert_eq!(parse_chat(body).unwrap().prompt_view().tool_results, 3);
    }

    #[test]
    fn empty_tools_do_not_count_as_tools() {
        let body = br#"{"model":"auto","messages":[{"role":"user","content":"x"}],"tools":[]}"#;
        assert!(!parse_chat(body).unwrap().prompt_view().has_tools);
    }

    #[test]
    fn malformed_bodies_are_invalid_requests() {
        let cases: &[&[u8]] = &[
            b"",
            b"not json",
            b"{\"model\":\"auto\",\"messages\":[",
            b"[1,2,3]",
            b"{\"model\":5,\"messages\":[]}",
            b"{\"model\":\"auto\"}",
            b"{\"model\":\"auto\",\"messages\":[]}",
            b"{\"model\":\"\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
            b"{\"model\":\"auto\",\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}",
            b"{\"model\":\"auto\",\"messages\":[{\"role\":\"user\",\"content\":7}]}",
            b"{\"model\":\"auto\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}",
            b"{\"model\":\"auto\",\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
        ];
        for body in cases {
            let err = parse_chat(body).unwrap_err();
            assert_eq!(err.status(), 400, "{:?}", String::from_utf8_lossy(body));
        }
    }

    fn nested(prefix: &str, depth: usize, suffix: &str) -> Vec<u8> {
        let mut body = prefix.as_bytes().to_vec();
        body.extend(std::iter::repeat_n(b'[', depth));
        body.extend(std::iter::repeat_n(b']', depth));
        body.extend_from_slice(suffix.as_bytes());
        body
    }

    #[test]
    fn deep_nesting_never_overflows_the_stack() {
        // Fields routing ignores are skipped iteratively and forwarded as sent.
        let ignored = nested(
            r#"{"model":"auto","messages":[{"role":"user","content":"x"}],"extra":"#,
            100_000,
            "}",
        );
        assert!(parse_chat(&ignored).is_ok());
        // Inside the fields routing reads, nesting is a type error.
        let read = nested(
            r#"{"model":"auto","messages":[{"role":"user","content":"#,
            100_000,
            "}]}",
        );
        assert_eq!(parse_chat(&read).unwrap_err().status(), 400);
    }

    #[test]
    fn embeddings_requests_need_a_model_and_some_input() {
        let request = parse_embeddings(br#"{"model":"emb","input":["a","b"],"dimensions":8}"#).unwrap();
        assert_eq!(request.model.as_str(), "emb");
        assert_eq!(request.input.get(), r#"["a","b"]"#);
        for body in [
            &br#"{"model":"emb"}"#[..],
            br#"{"model":"emb","input":[]}"#,
            br#"{"input":"x"}"#,
            b"nope",
        ] {
            assert_eq!(parse_embeddings(body).unwrap_err().status(), 400);
        }
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        let body = br#"{"model":"auto","messages":[{"role":"user","content":"x"}],"max_tokens":10,"max_completion_tokens":20}"#;
        assert_eq!(parse_chat(body).unwrap().max_output_tokens(), Some(20));
    }
}
