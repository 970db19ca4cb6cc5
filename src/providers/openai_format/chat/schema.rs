//! The OpenAI chat request as the translating adapters read it, with
//! serde: what they translate, and the optional parameters they report as
//! dropped. Strings borrow from the body.

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::request::{Role, Text};

#[derive(Deserialize)]
pub(super) struct WireRequest<'a> {
    #[serde(borrow)]
    pub(super) messages: Vec<WireMessage<'a>>,
    #[serde(default, borrow)]
    pub(super) tools: Option<Vec<WireTool<'a>>>,
    #[serde(default, borrow)]
    pub(super) tool_choice: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) functions: Option<Vec<WireFunction<'a>>>,
    #[serde(default, borrow)]
    pub(super) function_call: Option<&'a RawValue>,
    #[serde(default)]
    pub(super) max_tokens: Option<u64>,
    #[serde(default)]
    pub(super) max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub(super) temperature: Option<f64>,
    #[serde(default)]
    pub(super) top_p: Option<f64>,
    #[serde(default, borrow)]
    pub(super) stop: Option<Stop<'a>>,
    #[serde(default, borrow)]
    pub(super) response_format: Option<WireResponseFormat<'a>>,
    #[serde(default)]
    pub(super) parallel_tool_calls: Option<bool>,
    #[serde(default, borrow)]
    pub(super) user: Option<Text<'a>>,
    #[serde(default)]
    pub(super) seed: Option<i64>,
    #[serde(default)]
    pub(super) presence_penalty: Option<f64>,
    #[serde(default)]
    pub(super) frequency_penalty: Option<f64>,
    #[serde(default)]
    pub(super) n: Option<u64>,
    #[serde(default)]
    pub(super) logprobs: Option<bool>,
    #[serde(default)]
    pub(super) top_logprobs: Option<u64>,
    #[serde(default)]
    pub(super) store: Option<bool>,
    #[serde(default, borrow)]
    pub(super) logit_bias: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) reasoning_effort: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) service_tier: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) metadata: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) modalities: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) audio: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) prediction: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) web_search_options: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) verbosity: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Stop<'a> {
    One(#[serde(borrow)] Text<'a>),
    Many(#[serde(borrow)] Vec<Text<'a>>),
}

#[derive(Deserialize)]
pub(super) struct WireResponseFormat<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Text<'a>,
    #[serde(default, borrow)]
    pub(super) json_schema: Option<WireJsonSchema<'a>>,
}

#[derive(Deserialize)]
pub(super) struct WireJsonSchema<'a> {
    #[serde(default, borrow)]
    pub(super) schema: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub(super) struct WireMessage<'a> {
    pub(super) role: Role,
    #[serde(default, borrow)]
    pub(super) content: Option<WireContent<'a>>,
    #[serde(default, borrow)]
    pub(super) name: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) tool_calls: Option<Vec<WireToolCall<'a>>>,
    #[serde(default, borrow)]
    pub(super) tool_call_id: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) function_call: Option<WireFunctionCall<'a>>,
    /// The gateway's own prompt-cache breakpoint, written when it
    /// translates a request that marked one (`null` asks for none).
    #[serde(default, rename = "signalbox_cache_breakpoint")]
    pub(super) cache_breakpoint: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum WireContent<'a> {
    Text(#[serde(borrow)] Text<'a>),
    Parts(#[serde(borrow)] Vec<WirePart<'a>>),
}

#[derive(Deserialize)]
pub(super) struct WirePart<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Text<'a>,
    #[serde(default, borrow)]
    pub(super) text: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) refusal: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) image_url: Option<WireImageUrl<'a>>,
}

#[derive(Deserialize)]
pub(super) struct WireImageUrl<'a> {
    #[serde(borrow)]
    pub(super) url: Text<'a>,
}

#[derive(Deserialize)]
pub(super) struct WireToolCall<'a> {
    #[serde(borrow)]
    pub(super) id: Text<'a>,
    #[serde(borrow)]
    pub(super) function: WireFunctionCall<'a>,
}

#[derive(Deserialize)]
pub(super) struct WireFunctionCall<'a> {
    #[serde(borrow)]
    pub(super) name: Text<'a>,
    #[serde(default, borrow)]
    pub(super) arguments: Option<Text<'a>>,
}

#[derive(Deserialize)]
pub(super) struct WireTool<'a> {
    #[serde(rename = "type", default, borrow)]
    pub(super) kind: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) function: Option<WireFunction<'a>>,
}

#[derive(Deserialize)]
pub(super) struct WireFunction<'a> {
    #[serde(borrow)]
    pub(super) name: Text<'a>,
    #[serde(default, borrow)]
    pub(super) description: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) parameters: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub(super) struct WireNamedChoice<'a> {
    #[serde(default, borrow)]
    pub(super) name: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) function: Option<WireNamed<'a>>,
}

#[derive(Deserialize)]
pub(super) struct WireNamed<'a> {
    #[serde(borrow)]
    pub(super) name: Text<'a>,
}
