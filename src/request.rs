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
    /// An assistant's tool calls (names and arguments go upstream as
    /// prompt), kept as the raw JSON: only their size is read.
    #[serde(default, borrow)]
    pub tool_calls: Option<&'a RawValue>,
    /// The legacy single `function_call` of an assistant message.
    #[serde(default, borrow)]
    pub function_call: Option<&'a RawValue>,
    /// A participant's name and an assistant's refusal: prompt text the
    /// provider reads, counted by size like the tool calls.
    #[serde(default, borrow)]
    pub name: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub refusal: Option<&'a RawValue>,
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
        self.media_parts().filter(|kind| *kind == Media::Image).count()
    }

    /// The non-text parts that carry input (images, audio, files).
    fn media_parts(&self) -> impl Iterator<Item = Media> + '_ {
        let parts = match &self.content {
            Some(Content::Parts(parts)) => parts.as_slice(),
            _ => &[],
        };
        parts.iter().filter_map(|part| match part.kind.as_str() {
            "image_url" | "input_image" => Some(Media::Image),
            "input_audio" => Some(Media::Audio),
            "file" | "input_file" => Some(Media::Document),
            _ => None,
        })
    }

    /// Estimated prompt tokens of everything in this message but its text
    /// parts: tool calls (raw JSON: names, arguments and their few bytes of
    /// framing, a slight over-count) and media parts at their fixed costs.
    pub fn non_text_tokens(&self) -> u32 {
        let raw = |value: Option<&RawValue>| value.map_or(0, |value| tokens::estimate(value.get()));
        self.media_parts()
            .map(Media::tokens)
            .fold(raw(self.tool_calls), u32::saturating_add)
            .saturating_add(raw(self.function_call))
            .saturating_add(raw(self.name))
            .saturating_add(raw(self.refusal))
    }
}

/// A content part that is not text, by what it costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Media {
    Image,
    Audio,
    Document,
}

impl Media {
    fn tokens(self) -> u32 {
        match self {
            Media::Image => tokens::IMAGE_TOKENS,
            Media::Audio => tokens::AUDIO_TOKENS,
            Media::Document => tokens::DOCUMENT_TOKENS,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ResponseFormat<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Text<'a>,
    /// The schema the answer must follow: providers send it to the model
    /// as prompt, so its size counts.
    #[serde(default, borrow)]
    pub json_schema: Option<&'a RawValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseFormatKind {
    #[default]
    None,
    Text,
    JsonObject,
    JsonSchema,
}

/// The fields of a chat-completions request that routing reads, and those
/// whose shape is checked before anything is forwarded (as OpenAI's API
/// checks them: a malformed request is the client's 400, never a provider
/// failure).
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
    pub tool_choice: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub response_format: Option<ResponseFormat<'a>>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub max_tokens: Option<i64>,
    #[serde(default)]
    pub max_completion_tokens: Option<i64>,
    #[serde(default)]
    pub n: Option<i64>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    #[serde(default, borrow)]
    pub stop: Option<&'a RawValue>,
    /// Who the end user is (raw JSON): a conversation key for affinity.
    #[serde(default, borrow)]
    pub user: Option<&'a RawValue>,
    /// OpenAI's key for its prompt cache (raw JSON): also one for affinity.
    #[serde(default, borrow)]
    pub prompt_cache_key: Option<&'a RawValue>,
    /// Predicted Outputs: content the provider may bill as output whether
    /// or not the answer uses it (rejected prediction tokens are billed).
    #[serde(default, borrow)]
    pub prediction: Option<&'a RawValue>,
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

/// The body as text. serde_json skips the members routing does not read
/// without checking their UTF-8, and those bytes go upstream as sent: a body
/// that is not UTF-8 is not JSON (RFC 8259), so it is refused here.
fn utf8_body(body: &[u8]) -> Result<&str, GatewayError> {
    std::str::from_utf8(body)
        .map_err(|err| GatewayError::invalid(format!("Request body is not valid JSON: it is not UTF-8 ({err}).")))
}

/// Parses an embeddings body (`model` and `input` required).
pub fn parse_embeddings(body: &[u8]) -> Result<EmbeddingsRequest<'_>, GatewayError> {
    let request: EmbeddingsRequest<'_> = deserialize_body(body)?;
    if matches!(request.input.get().trim(), "[]" | "\"\"" | "null") {
        return Err(GatewayError::invalid_param("input", "`input` must not be empty."));
    }
    check_depth(body)?;
    Ok(request)
}

/// Deepest nesting of arrays and objects a request may have (OpenAI's
/// bodies need a handful; a deep one is an attack on whoever parses it).
pub const MAX_JSON_DEPTH: usize = 64;

pub(crate) fn check_depth(body: &[u8]) -> Result<(), GatewayError> {
    if crate::json_edit::depth_exceeds(body, MAX_JSON_DEPTH) {
        return Err(GatewayError::invalid(format!(
            "The request body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels."
        )));
    }
    Ok(())
}

/// Deserializes a request body; a mistake is a 400 naming the field where
/// it is (`messages[1].role`) and what was expected.
pub(crate) fn deserialize_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, GatewayError> {
    let text = utf8_body(body)?;
    let err = match serde_json::from_str(text) {
        Ok(request) => return Ok(request),
        Err(err) => err,
    };
    if err.classify() != serde_json::error::Category::Data {
        return Err(GatewayError::invalid(format!("Request body is not valid JSON: {err}")));
    }
    let path = crate::json_path::error_path(body, &err);
    if path.is_empty() {
        return Err(GatewayError::invalid(format!("Invalid request body: {err}")));
    }
    Err(GatewayError::invalid_param(
        path.clone(),
        format!("Invalid `{path}`: {}", without_position(&err.to_string())),
    ))
}

/// A serde message without its ` at line 1 column 57` tail.
fn without_position(message: &str) -> &str {
    message.rsplit_once(" at line ").map_or(message, |(head, _)| head)
}

/// What the classifier and the selector read from a request.
#[derive(Debug, Default, Clone)]
pub struct PromptView<'a> {
    /// Text parts of the last user message.
    pub last_user_parts: Vec<&'a str>,
    pub user_turns: u32,
    /// Estimated tokens of everything but the last user message's text:
    /// system prompt, earlier turns (tool results, assistants' tool calls),
    /// tool definitions, a `json_schema` response format, images, audio and
    /// files at fixed costs, per-message overhead.
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
    let request: ChatRequest<'_> = deserialize_body(body)?;
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
    request.check_parameters()?;
    check_depth(body)?;
    Ok(request)
}

fn out_of_range(param: &'static str, range: &str) -> GatewayError {
    GatewayError::invalid_param(param, format!("`{param}` must be {range}."))
}

fn check_number(param: &'static str, value: Option<f64>, low: f64, high: f64) -> Result<(), GatewayError> {
    match value {
        Some(number) if !(low..=high).contains(&number) => {
            Err(out_of_range(param, &format!("a number between {low} and {high}")))
        }
        _ => Ok(()),
    }
}

fn check_integer(param: &'static str, value: Option<i64>, low: i64, high: i64) -> Result<(), GatewayError> {
    match value {
        Some(number) if !(low..=high).contains(&number) => {
            Err(out_of_range(param, &format!("an integer between {low} and {high}")))
        }
        _ => Ok(()),
    }
}

fn raw_is_null(raw: Option<&RawValue>) -> bool {
    raw.is_none_or(|value| value.get().trim() == "null")
}

/// `stop`: a string, or an array of at most four strings.
fn check_stop(raw: Option<&RawValue>) -> Result<(), GatewayError> {
    if raw_is_null(raw) {
        return Ok(());
    }
    let text = raw.map_or("", RawValue::get);
    let fits = serde_json::from_str::<Cow<'_, str>>(text).is_ok()
        || serde_json::from_str::<Vec<Cow<'_, str>>>(text).is_ok_and(|stops| stops.len() <= 4);
    if fits {
        Ok(())
    } else {
        Err(out_of_range("stop", "a string or an array of up to 4 strings"))
    }
}

/// One entry of `tools` (or legacy `functions`): an object with a string
/// `type`; function tools need a named `function`.
#[derive(Deserialize)]
struct ToolShape<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Text<'a>>,
    #[serde(default, borrow)]
    function: Option<&'a RawValue>,
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct NamedShape<'a> {
    #[serde(borrow)]
    name: Text<'a>,
}

fn check_tools(param: &'static str, raw: Option<&RawValue>, legacy: bool) -> Result<(), GatewayError> {
    if raw_is_null(raw) {
        return Ok(());
    }
    let text = raw.map_or("", RawValue::get);
    let tools: Vec<ToolShape<'_>> =
        serde_json::from_str(text).map_err(|_| out_of_range(param, "an array of tool objects with a `type`"))?;
    for tool in &tools {
        let named = if legacy {
            tool.name.as_ref().is_some_and(|name| !name.as_str().is_empty())
        } else {
            match tool.kind.as_ref().map(Text::as_str) {
                Some("function") => tool
                    .function
                    .and_then(|function| serde_json::from_str::<NamedShape<'_>>(function.get()).ok())
                    .is_some_and(|function| !function.name.as_str().is_empty()),
                Some(_) => true,
                None => false,
            }
        };
        if !named {
            return Err(GatewayError::invalid_param(
                param,
                format!("Every entry of `{param}` must be an object with a `type` (and a function `name`)."),
            ));
        }
    }
    Ok(())
}

/// `tool_choice`: `none`, `auto`, `required`, or an object with a `type`.
fn check_tool_choice(raw: Option<&RawValue>) -> Result<(), GatewayError> {
    if raw_is_null(raw) {
        return Ok(());
    }
    let text = raw.map_or("", RawValue::get);
    if let Ok(mode) = serde_json::from_str::<Cow<'_, str>>(text) {
        return match mode.as_ref() {
            "none" | "auto" | "required" => Ok(()),
            _ => Err(out_of_range(
                "tool_choice",
                "`none`, `auto`, `required` or a tool object",
            )),
        };
    }
    #[derive(Deserialize)]
    struct ChoiceShape<'a> {
        #[serde(rename = "type", borrow)]
        _kind: Text<'a>,
    }
    serde_json::from_str::<ChoiceShape<'_>>(text)
        .map(|_| ())
        .map_err(|_| out_of_range("tool_choice", "`none`, `auto`, `required` or a tool object"))
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
            context_tokens: raw_tokens(self.tools)
                .saturating_add(raw_tokens(self.functions))
                .saturating_add(raw_tokens(
                    self.response_format.as_ref().and_then(|format| format.json_schema),
                )),
            ..PromptView::default()
        };
        for (position, message) in self.messages.iter().enumerate() {
            if message.role == Role::User {
                view.user_turns += 1;
            }
            view.tool_results += u32::from(message.is_tool_result());
            view.images = view
                .images
                .saturating_add(u32::try_from(message.image_count()).unwrap_or(u32::MAX));
            view.context_tokens = view
                .context_tokens
                .saturating_add(tokens::PER_MESSAGE_OVERHEAD)
                .saturating_add(message.non_text_tokens());
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

    /// Output tokens the provider may bill for the `prediction` beyond the
    /// output budget (0 without one).
    pub fn predicted_output_tokens(&self) -> u64 {
        u64::from(raw_tokens(self.prediction.filter(|raw| is_present(Some(raw)))))
    }

    /// The output budget the client asked for, if any (`null` is none).
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.max_completion_tokens
            .or(self.max_tokens)
            .and_then(|tokens| u64::try_from(tokens).ok())
    }

    /// How many answers the client asked for (`n`, 1 by default).
    pub fn choices(&self) -> u64 {
        self.n.and_then(|n| u64::try_from(n).ok()).unwrap_or(1).max(1)
    }

    /// The shape checks OpenAI's API makes on sampling and tool parameters.
    fn check_parameters(&self) -> Result<(), GatewayError> {
        check_number("temperature", self.temperature, 0.0, 2.0)?;
        check_number("top_p", self.top_p, 0.0, 1.0)?;
        check_number("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        check_number("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        check_integer("n", self.n, 1, 128)?;
        check_integer("max_tokens", self.max_tokens, 1, i64::MAX)?;
        check_integer("max_completion_tokens", self.max_completion_tokens, 1, i64::MAX)?;
        check_stop(self.stop)?;
        check_tools("tools", self.tools, false)?;
        check_tools("functions", self.functions, true)?;
        check_tool_choice(self.tool_choice)
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

    /// Context tokens of a one-user-message request with `extra` members
    /// and `earlier` messages before the user's.
    fn context_of(earlier: &str, extra: &str) -> u32 {
        let body = format!(r#"{{"model":"auto","messages":[{earlier}{{"role":"user","content":"hi"}}]{extra}}}"#);
        parse_chat(body.as_bytes()).unwrap().prompt_view().context_tokens
    }

    #[test]
    fn names_and_refusals_count_as_prompt() {
        let payload = "abcd".repeat(1_000);
        let plain = context_of(r#"{"role":"assistant","content":"ok"},"#, "");
        for earlier in [
            format!(r#"{{"role":"assistant","content":"ok","name":"{payload}"}},"#),
            format!(r#"{{"role":"assistant","content":"ok","refusal":"{payload}"}},"#),
        ] {
            let counted = context_of(&earlier, "");
            assert!(counted >= plain + 1_000, "{counted} vs {plain}");
        }
    }

    #[test]
    fn a_prediction_is_output_the_provider_may_bill() {
        let content = "word ".repeat(2_000);
        let body = format!(
            r#"{{"model":"auto","messages":[{{"role":"user","content":"fix it"}}],"prediction":{{"type":"content","content":"{content}"}}}}"#
        );
        let request = parse_chat(body.as_bytes()).unwrap();
        assert!(
            request.predicted_output_tokens() >= 2_000,
            "{}",
            request.predicted_output_tokens()
        );
        let none =
            parse_chat(br#"{"model":"auto","messages":[{"role":"user","content":"hi"}],"prediction":null}"#).unwrap();
        assert_eq!(none.predicted_output_tokens(), 0);
    }

    #[test]
    fn assistant_tool_call_arguments_count_as_prompt() {
        let payload = "abcd".repeat(1_000);
        let plain = context_of(r#"{"role":"assistant","content":null},"#, "");
        let call = format!(
            r#"{{"role":"assistant","content":null,"tool_calls":[{{"id":"c1","type":"function","function":{{"name":"lookup","arguments":"{{\"q\":\"{payload}\"}}"}}}}]}},"#
        );
        let with_call = context_of(&call, "");
        assert!(with_call >= plain + 1_000, "{with_call} vs {plain}");
        // Raw JSON is counted: the framing adds a little, never a lot.
        assert!(with_call <= plain + 1_050, "{with_call} vs {plain}");
        let legacy = format!(
            r#"{{"role":"assistant","content":null,"function_call":{{"name":"lookup","arguments":"{payload}"}}}},"#
        );
        assert!(context_of(&legacy, "") >= plain + 1_000);
    }

    #[test]
    fn tool_results_count_as_prompt() {
        let payload = "abcd".repeat(500);
        let result = format!(r#"{{"role":"tool","tool_call_id":"c1","content":"{payload}"}},"#);
        let parts =
            format!(r#"{{"role":"tool","tool_call_id":"c1","content":[{{"type":"text","text":"{payload}"}}]}},"#);
        let none = context_of("", "");
        assert!(context_of(&result, "") >= none + 500);
        assert!(context_of(&parts, "") >= none + 500);
    }

    #[test]
    fn a_json_schema_response_format_counts_as_prompt() {
        let payload = "abcd".repeat(1_000);
        let none = context_of("", "");
        let schema = format!(
            r#","response_format":{{"type":"json_schema","json_schema":{{"name":"s","schema":{{"description":"{payload}"}}}}}}"#
        );
        assert!(context_of("", &schema) >= none + 1_000);
        assert_eq!(context_of("", r#","response_format":{"type":"json_object"}"#), none);
    }

    #[test]
    fn images_audio_and_files_cost_a_fixed_amount_each_wherever_they_are() {
        let none = context_of("", "");
        let media = r#"{"role":"user","content":[{"type":"text","text":"x"},
            {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}},
            {"type":"input_image","image_url":"https://example.com/a.png"},
            {"type":"input_audio","input_audio":{"data":"AAAA","format":"wav"}},
            {"type":"file","file":{"file_id":"f1"}}]},"#;
        let fixed = 2 * tokens::IMAGE_TOKENS + tokens::AUDIO_TOKENS + tokens::DOCUMENT_TOKENS;
        // An earlier message's text ("x") costs a token more.
        assert_eq!(context_of(media, ""), none + tokens::PER_MESSAGE_OVERHEAD + 1 + fixed);
        // In the last user message only the text is the classifier's; the
        // parts still count as context.
        let body = br#"{"model":"auto","messages":[{"role":"user","content":[{"type":"text","text":"look"},
            {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}]}"#;
        let request = parse_chat(body).unwrap();
        let view = request.prompt_view();
        assert_eq!(view.last_user_parts, vec!["look"]);
        assert_eq!(view.context_tokens, tokens::PER_MESSAGE_OVERHEAD + tokens::IMAGE_TOKENS);
        assert_eq!(view.images, 1);
    }

    #[test]
    fn tool_calls_of_any_shape_are_accepted_as_before() {
        for calls in [r#"null"#, r#"[]"#, r#"[{"id":"1"}]"#, r#""odd""#, r#"{"x":[1,2]}"#] {
            let body = format!(
                r#"{{"model":"auto","messages":[{{"role":"assistant","tool_calls":{calls},"function_call":{calls}}},{{"role":"user","content":"hi"}}]}}"#
            );
            assert!(parse_chat(body.as_bytes()).is_ok(), "{calls}");
        }
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
    fn deep_nesting_never_overflows_the_stack_and_is_refused() {
        // Fields routing ignores are skipped iteratively, then the depth is
        // checked: nothing this deep is forwarded to a provider.
        let ignored = nested(
            r#"{"model":"auto","messages":[{"role":"user","content":"x"}],"extra":"#,
            100_000,
            "}",
        );
        let refused = parse_chat(&ignored).unwrap_err();
        assert_eq!(refused.status(), 400);
        assert!(refused.to_string().contains("deeper than 64"), "{refused}");
        let shallow = nested(
            r#"{"model":"auto","messages":[{"role":"user","content":"x"}],"extra":"#,
            60,
            "}",
        );
        assert!(parse_chat(&shallow).is_ok());
        // Inside the fields routing reads, nesting is a type error.
        let read = nested(
            r#"{"model":"auto","messages":[{"role":"user","content":"#,
            100_000,
            "}]}",
        );
        assert_eq!(parse_chat(&read).unwrap_err().status(), 400);
    }

    fn refusal(body: &str) -> (String, String) {
        let error = parse_chat(body.as_bytes()).unwrap_err();
        assert_eq!(error.status(), 400, "{body}");
        let json: serde_json::Value = serde_json::from_slice(&error.to_json()).unwrap();
        (
            json["error"]["param"].as_str().unwrap_or_default().to_string(),
            json["error"]["message"].as_str().unwrap_or_default().to_string(),
        )
    }

    #[test]
    fn malformed_parameters_are_refused_naming_the_field() {
        let with = |extra: &str| format!(r#"{{"model":"auto","messages":[{{"role":"user","content":"hi"}}],{extra}}}"#);
        for (extra, param) in [
            (r#""temperature":"hot""#, "temperature"),
            (r#""temperature":2.5"#, "temperature"),
            (r#""top_p":-0.1"#, "top_p"),
            (r#""n":-5"#, "n"),
            (r#""n":0"#, "n"),
            (r#""n":1000"#, "n"),
            (r#""max_tokens":0"#, "max_tokens"),
            (r#""max_tokens":"lots""#, "max_tokens"),
            (r#""max_completion_tokens":-1"#, "max_completion_tokens"),
            (r#""stop":5"#, "stop"),
            (r#""stop":["a","b","c","d","e"]"#, "stop"),
            (r#""tools":"x""#, "tools"),
            (r#""tools":[{"type":"function"}]"#, "tools"),
            (r#""tools":[{"function":{"name":"f"}}]"#, "tools"),
            (r#""tool_choice":"sometimes""#, "tool_choice"),
            (r#""tool_choice":5"#, "tool_choice"),
            (r#""stream":"yes""#, "stream"),
            (r#""presence_penalty":3"#, "presence_penalty"),
        ] {
            let (found, message) = refusal(&with(extra));
            assert_eq!(found, param, "{extra}: {message}");
            assert!(message.contains(param), "{message}");
        }
        let (param, _) =
            refusal(r#"{"model":"auto","messages":[{"role":"user","content":"hi"},{"role":"robot","content":"x"}]}"#);
        assert_eq!(param, "messages[1].role");
        for good in [
            r#""temperature":0,"top_p":1,"n":2,"max_tokens":null,"stop":["a"],"tool_choice":"auto""#,
            r#""tools":[{"type":"function","function":{"name":"f","parameters":{}}}],"tool_choice":{"type":"function","function":{"name":"f"}}"#,
            r#""stop":"x","max_completion_tokens":5,"temperature":null"#,
        ] {
            assert!(parse_chat(with(good).as_bytes()).is_ok(), "{good}");
        }
    }

    #[test]
    fn n_and_a_null_max_tokens_read_as_asked() {
        let body = br#"{"model":"auto","n":3,"max_tokens":null,"messages":[{"role":"user","content":"hi"}]}"#;
        let request = parse_chat(body).unwrap();
        assert_eq!(request.choices(), 3);
        assert_eq!(request.max_output_tokens(), None);
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused_even_in_members_routing_skips() {
        // Found by the request_chat and request_embeddings fuzz targets: the
        // parser skipped such members unchecked and forwarded them.
        let chat = b"{\"model\":\"auto\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"user\":\"\xf8\"}";
        let embeddings = b"{\"model\":\"emb\",\"input\":\"a\",\"encoding_format\":\"\xcaase64\"}";
        for error in [parse_chat(chat).unwrap_err(), parse_embeddings(embeddings).unwrap_err()] {
            assert_eq!(error.status(), 400);
            assert!(error.to_string().contains("not UTF-8"), "{error}");
        }
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

#[cfg(test)]
mod properties {
    use super::*;
    use crate::testing::any_json;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn valid_messages() -> impl Strategy<Value = Value> {
        let message = (
            prop_oneof![Just("system"), Just("user"), Just("assistant"), Just("tool")],
            prop_oneof![
                ".*".prop_map(Value::from),
                Just(Value::Null),
                prop::collection::vec(".*".prop_map(|text| json!({"type": "text", "text": text})), 0..3)
                    .prop_map(Value::Array),
            ],
        )
            .prop_map(|(role, content)| json!({"role": role, "content": content}));
        prop::collection::vec(message, 1..4).prop_map(Value::Array)
    }

    /// A field's value: any JSON, or (when `valid` is given) a valid one.
    fn field(valid: impl Strategy<Value = Value>) -> impl Strategy<Value = (bool, Value)> {
        prop_oneof![
            valid.prop_map(|value| (true, value)),
            any_json().prop_map(|value| (false, value)),
        ]
    }

    proptest! {
        #[test]
        fn any_json_in_the_fields_clients_send_is_a_request_or_a_400(
            (messages_valid, messages) in field(valid_messages()),
            (max_tokens_valid, max_tokens) in field(prop_oneof![Just(Value::Null), (1..=u64::from(u32::MAX)).prop_map(Value::from)]),
            (tools_valid, tools) in field(prop_oneof![
                Just(Value::Null),
                "[a-z_]{1,12}".prop_map(|name| json!([{"type": "function", "function": {"name": name}}])),
            ]),
            (temperature_valid, temperature) in field(prop_oneof![Just(Value::Null), (0.0..=2.0f64).prop_map(Value::from)]),
            (n_valid, n) in field(prop_oneof![Just(Value::Null), (1..=128u64).prop_map(Value::from)]),
            (stop_valid, stop) in field(prop_oneof![
                Just(Value::Null),
                ".*".prop_map(Value::from),
                prop::collection::vec(".*".prop_map(Value::from), 0..=4).prop_map(Value::Array),
            ]),
        ) {
            let body = json!({
                "model": "auto", "messages": messages, "tools": tools, "temperature": temperature,
                "n": n, "max_tokens": max_tokens, "stop": stop,
            });
            let bytes = serde_json::to_vec(&body).unwrap();
            let all_valid = messages_valid && max_tokens_valid && tools_valid && temperature_valid && n_valid && stop_valid;
            match parse_chat(&bytes) {
                Ok(request) => {
                    let _ = request.prompt_view();
                }
                Err(error) => {
                    prop_assert!(!all_valid, "refused a valid request: {error}");
                    prop_assert_eq!(error.status(), 400);
                    let answer: Value = serde_json::from_slice(&error.to_json()).unwrap();
                    prop_assert!(answer["error"]["message"].is_string());
                    prop_assert_eq!(&answer["error"]["type"], "invalid_request_error");
                }
            }
        }
    }
}
