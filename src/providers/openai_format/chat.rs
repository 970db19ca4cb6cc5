//! The OpenAI chat request as the translating adapters (Anthropic, Gemini,
//! Bedrock) need it, read once into a [`Conversation`]: system and developer
//! text hoisted out, alternating user/assistant [`Turn`]s of typed blocks
//! (consecutive same-role messages merged, tool results as user turns
//! linked to the calls they answer), and a list of the optional OpenAI
//! parameters the client set, so each adapter can report what it drops.
//!
//! The types live here; [`parse`] reads a body into them, from the serde
//! types in [`schema`]. Strings borrow from the request body unless they
//! contain escapes.

mod parse;
mod schema;

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::error::GatewayError;

use crate::providers::wire::sigv4::hex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Speaker {
    User,
    Assistant,
}

#[derive(Debug)]
pub(crate) struct Turn<'a> {
    pub speaker: Speaker,
    pub blocks: Vec<Block<'a>>,
}

#[derive(Debug)]
pub(crate) enum Block<'a> {
    Text(Cow<'a, str>),
    Image(Image<'a>),
    ToolCall(ToolCall<'a>),
    ToolResult(ToolResult<'a>),
    /// A prompt-cache breakpoint after the blocks before it (a translated
    /// request's `cache_control`): Anthropic marks the block before it,
    /// Bedrock writes a `cachePoint` where the model takes one, the others
    /// skip it.
    CachePoint,
}

/// A prompt-cache breakpoint as Anthropic writes it: `{"type": "ephemeral"}`.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheBreakpoint {
    #[serde(rename = "type")]
    kind: &'static str,
}

pub(crate) const EPHEMERAL: CacheBreakpoint = CacheBreakpoint { kind: "ephemeral" };

#[derive(Debug)]
pub(crate) struct ToolCall<'a> {
    pub id: Cow<'a, str>,
    pub name: Cow<'a, str>,
    /// Always a JSON object.
    pub arguments: Box<RawValue>,
}

#[derive(Debug)]
pub(crate) struct ToolResult<'a> {
    /// The id of the call this answers.
    pub id: Cow<'a, str>,
    /// The called function's name (Gemini pairs results by name).
    pub name: Cow<'a, str>,
    pub content: Cow<'a, str>,
}

/// An `image_url` part: a `data:` URL or a link.
#[derive(Debug)]
pub(crate) struct Image<'a> {
    url: Cow<'a, str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ImageSource<'s> {
    Base64 { media_type: &'s str, data: &'s str },
    Url(&'s str),
}

impl Image<'_> {
    /// Where the image is. Only base64 `data:` URLs and http(s) links are
    /// images a provider can take.
    pub(crate) fn source(&self) -> Result<ImageSource<'_>, GatewayError> {
        let url = self.url.trim();
        if let Some(rest) = url.strip_prefix("data:") {
            let (header, data) = rest.split_once(',').unwrap_or((rest, ""));
            let media_type = header.split(';').next().unwrap_or_default().trim();
            let is_base64 = header.split(';').skip(1).any(|parameter| parameter.trim() == "base64");
            if !is_base64 || media_type.is_empty() || data.is_empty() {
                return Err(GatewayError::invalid_param(
                    "messages",
                    "An image `data:` URL must be base64 with a media type (`data:image/png;base64,...`).",
                ));
            }
            return Ok(ImageSource::Base64 { media_type, data });
        }
        let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
        if lower.starts_with("https://") || lower.starts_with("http://") {
            return Ok(ImageSource::Url(url));
        }
        Err(GatewayError::invalid_param(
            "messages",
            "An image URL must be an http(s) link or a base64 `data:` URL.",
        ))
    }
}

#[derive(Debug)]
pub(crate) struct Tool<'a> {
    pub name: Cow<'a, str>,
    pub description: Option<Cow<'a, str>>,
    /// JSON Schema of the arguments, as the client wrote it.
    pub parameters: Option<&'a RawValue>,
}

/// A tool's parameter schema as providers require one: the client's, or an
/// empty object schema for a function without parameters.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum Schema<'a> {
    Given(&'a RawValue),
    Empty {
        #[serde(rename = "type")]
        kind: &'static str,
        properties: NoProperties,
    },
}

#[derive(Debug, Serialize)]
pub(crate) struct NoProperties {}

impl<'a> Tool<'a> {
    pub(crate) fn schema(&self) -> Schema<'a> {
        match self.parameters {
            Some(schema) => Schema::Given(schema),
            None => Schema::Empty {
                kind: "object",
                properties: NoProperties {},
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ToolChoice<'a> {
    Auto,
    None,
    Required,
    Function(Cow<'a, str>),
}

#[derive(Debug)]
pub(crate) enum ResponseFormat<'a> {
    Text,
    JsonObject,
    JsonSchema { schema: Option<&'a RawValue> },
}

#[derive(Debug)]
pub(crate) struct Conversation<'a> {
    pub system: Vec<Cow<'a, str>>,
    /// A breakpoint after the system prompt.
    pub system_cached: bool,
    pub turns: Vec<Turn<'a>>,
    pub tools: Vec<Tool<'a>>,
    pub tool_choice: Option<ToolChoice<'a>>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub stop: Vec<Cow<'a, str>>,
    pub response_format: Option<ResponseFormat<'a>>,
    pub parallel_tool_calls: Option<bool>,
    pub user: Option<Cow<'a, str>>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    /// Optional OpenAI parameters the client set to a value that matters.
    set: Vec<&'static str>,
}

/// Tool-call arguments as a JSON object. Models sometimes emit arguments
/// that are not one; those travel wrapped (`{"arguments": "<text>"}`)
/// rather than failing the whole conversation when it is replayed.
pub(crate) fn arguments_object(text: Option<&str>) -> Result<Box<RawValue>, GatewayError> {
    let text = text.unwrap_or_default().trim();
    let object = match serde_json::from_str::<Box<RawValue>>(text) {
        Ok(raw) if raw.get().starts_with('{') => return Ok(raw),
        _ if text.is_empty() => "{}".to_string(),
        _ => serde_json::json!({ "arguments": text }).to_string(),
    };
    RawValue::from_string(object).map_err(|err| GatewayError::Internal {
        message: format!("Tool-call arguments could not be rewritten: {err}"),
    })
}

/// Tool call ids Anthropic and Bedrock accept: 1 to 64 of `[A-Za-z0-9_-]`.
/// Other ids (from other providers, or clients) map to a stable stand-in, so
/// a call and its result still match.
pub(crate) fn portable_tool_id(id: &str) -> Cow<'_, str> {
    let portable =
        !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if portable {
        Cow::Borrowed(id)
    } else {
        let digest = hex(&Sha256::digest(id.as_bytes()));
        Cow::Owned(format!("call_{}", digest.get(..32).unwrap_or(&digest)))
    }
}

impl<'a> Conversation<'a> {
    /// Appends blocks, merging with the previous turn when it is the same
    /// speaker's: providers require turns to alternate.
    fn push(&mut self, speaker: Speaker, blocks: Vec<Block<'a>>) {
        if blocks.is_empty() {
            return;
        }
        match self.turns.last_mut() {
            Some(last) if last.speaker == speaker => last.blocks.extend(blocks),
            _ => self.turns.push(Turn { speaker, blocks }),
        }
    }

    /// The parameters the client set that a provider supporting `supported`
    /// cannot express (they are dropped and reported, not sent).
    pub(crate) fn unsupported(&self, supported: &[&str]) -> Vec<&'static str> {
        self.set
            .iter()
            .copied()
            .filter(|name| !supported.contains(name))
            .collect()
    }

    /// Whether any assistant turn called a tool (some providers then insist
    /// the tools are declared).
    pub(crate) fn has_tool_calls(&self) -> bool {
        self.turns
            .iter()
            .flat_map(|turn| &turn.blocks)
            .any(|block| matches!(block, Block::ToolCall(_) | Block::ToolResult(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Conversation<'_> {
        Conversation::parse(body.as_bytes()).unwrap()
    }

    fn texts(turn: &Turn<'_>) -> Vec<String> {
        turn.blocks
            .iter()
            .map(|block| match block {
                Block::Text(text) => format!("text:{text}"),
                Block::Image(image) => format!("image:{:?}", image.source().unwrap()),
                Block::ToolCall(call) => format!("call:{}:{}:{}", call.id, call.name, call.arguments.get()),
                Block::ToolResult(result) => format!("result:{}:{}:{}", result.id, result.name, result.content),
                Block::CachePoint => "cache".to_string(),
            })
            .collect()
    }

    #[test]
    fn the_gateways_cache_breakpoints_end_their_messages_blocks() {
        let conversation = parse(
            r#"{"model":"m","messages":[
                {"role":"system","content":"rules","signalbox_cache_breakpoint":true},
                {"role":"user","content":[{"type":"text","text":"a"}],"signalbox_cache_breakpoint":true},
                {"role":"assistant","content":"b","signalbox_cache_breakpoint":null},
                {"role":"user","content":[{"type":"text","text":"c","cache_control":{"type":"ephemeral"}}]}]}"#,
        );
        assert!(conversation.system_cached);
        assert_eq!(texts(&conversation.turns[0]), ["text:a", "cache"]);
        assert_eq!(texts(&conversation.turns[1]), ["text:b"], "null asks for nothing");
        assert_eq!(
            texts(&conversation.turns[2]),
            ["text:c"],
            "a chat client's own marker is not read"
        );
    }

    #[test]
    fn system_and_developer_messages_are_hoisted_out_of_the_turns() {
        let conversation = parse(
            r#"{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"},
                {"role":"developer","content":[{"type":"text","text":"use French"}]}]}"#,
        );
        assert_eq!(conversation.system, vec!["be brief", "use French"]);
        assert_eq!(conversation.turns.len(), 1);
    }

    #[test]
    fn consecutive_same_role_messages_merge_into_one_turn() {
        let conversation = parse(
            r#"{"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"},
                {"role":"assistant","content":""},{"role":"assistant","content":"c"}]}"#,
        );
        assert_eq!(conversation.turns.len(), 2);
        assert_eq!(texts(&conversation.turns[0]), vec!["text:a", "text:b"]);
        assert_eq!(texts(&conversation.turns[1]), vec!["text:c"]);
    }

    #[test]
    fn tool_results_become_one_user_turn_linked_to_their_calls() {
        let conversation = parse(
            r#"{"messages":[{"role":"user","content":"weather?"},
                {"role":"assistant","content":null,"tool_calls":[
                    {"id":"call_1","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Paris\"}"}},
                    {"id":"call_2","type":"function","function":{"name":"time","arguments":""}}]},
                {"role":"tool","tool_call_id":"call_1","content":"sunny"},
                {"role":"tool","tool_call_id":"call_2","content":[{"type":"text","text":"noon"}]}]}"#,
        );
        assert_eq!(conversation.turns.len(), 3);
        assert_eq!(
            texts(&conversation.turns[1]),
            vec![r#"call:call_1:weather:{"city":"Paris"}"#, "call:call_2:time:{}"]
        );
        assert_eq!(
            texts(&conversation.turns[2]),
            vec!["result:call_1:weather:sunny", "result:call_2:time:noon"]
        );
        assert!(conversation.has_tool_calls());
    }

    #[test]
    fn a_tool_result_for_an_unknown_call_is_rejected() {
        let err =
            Conversation::parse(br#"{"messages":[{"role":"tool","tool_call_id":"x","content":"1"}]}"#).unwrap_err();
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn arguments_that_are_not_an_object_travel_wrapped() {
        let conversation = parse(
            r#"{"messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"[1"}}]}]}"#,
        );
        assert_eq!(texts(&conversation.turns[0]), vec![r#"call:c:f:{"arguments":"[1"}"#]);
    }

    #[test]
    fn legacy_functions_are_read_as_tools() {
        let conversation = parse(
            r#"{"functions":[{"name":"f","parameters":{"type":"object"}}],"function_call":{"name":"f"},
               "messages":[{"role":"user","content":"go"},
                {"role":"assistant","function_call":{"name":"f","arguments":"{}"}},
                {"role":"function","name":"f","content":"done"}]}"#,
        );
        assert_eq!(conversation.tools[0].name, "f");
        assert_eq!(conversation.tool_choice, Some(ToolChoice::Function("f".into())));
        assert_eq!(texts(&conversation.turns[1]), vec!["call:call_legacy_0:f:{}"]);
        assert_eq!(texts(&conversation.turns[2]), vec!["result:call_legacy_0:f:done"]);
    }

    #[test]
    fn images_are_data_urls_or_links() {
        let conversation = parse(
            r#"{"messages":[{"role":"user","content":[{"type":"text","text":"look"},
                {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}},
                {"type":"image_url","image_url":{"url":"https://example.com/cat.jpg","detail":"high"}}]}]}"#,
        );
        assert_eq!(
            texts(&conversation.turns[0]),
            vec![
                "text:look",
                r#"image:Base64 { media_type: "image/png", data: "iVBORw0KGgo=" }"#,
                r#"image:Url("https://example.com/cat.jpg")"#
            ]
        );
        for bad in [
            "data:image/png,abc",
            "data:;base64,abc",
            "ftp://x/y.png",
            "data:image/png;base64,",
        ] {
            assert!(Image { url: bad.into() }.source().is_err(), "{bad}");
        }
    }

    #[test]
    fn audio_parts_are_rejected_not_silently_dropped() {
        let body = r#"{"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"x","format":"wav"}}]}]}"#;
        assert_eq!(Conversation::parse(body.as_bytes()).unwrap_err().status(), 400);
    }

    #[test]
    fn tool_choice_reads_modes_and_named_functions() {
        let choice = |json: &str| {
            let body = format!(r#"{{"messages":[],"tool_choice":{json}}}"#);
            Conversation::parse(body.as_bytes())
                .map(|c| format!("{:?}", c.tool_choice.unwrap()))
                .map_err(|e| e.status())
        };
        assert_eq!(choice(r#""auto""#), Ok("Auto".into()));
        assert_eq!(choice(r#""none""#), Ok("None".into()));
        assert_eq!(choice(r#""required""#), Ok("Required".into()));
        assert_eq!(
            choice(r#"{"type":"function","function":{"name":"f"}}"#),
            Ok(r#"Function("f")"#.into())
        );
        assert_eq!(choice(r#""sometimes""#), Err(400));
        assert_eq!(choice(r#"{"type":"function"}"#), Err(400));
    }

    #[test]
    fn only_parameters_that_change_something_count_as_set() {
        let conversation = parse(
            r#"{"messages":[],"n":1,"logprobs":false,"presence_penalty":0,"seed":7,"user":"u",
               "parallel_tool_calls":true,"response_format":{"type":"json_object"},"reasoning_effort":"low","stop":"END"}"#,
        );
        assert_eq!(
            conversation.unsupported(&["user"]),
            vec!["seed", "response_format", "reasoning_effort"]
        );
        assert_eq!(conversation.stop, vec!["END"]);
    }

    #[test]
    fn portable_ids_keep_valid_ids_and_map_others_stably() {
        assert_eq!(portable_tool_id("toolu_01AbC-x"), "toolu_01AbC-x");
        let mapped = portable_tool_id("call/with spaces+signature==");
        assert!(mapped.starts_with("call_") && mapped.len() == 37);
        assert_eq!(mapped, portable_tool_id("call/with spaces+signature=="));
        assert_ne!(portable_tool_id(&"a".repeat(65)), "a".repeat(65));
    }
}
