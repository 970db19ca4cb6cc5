//! The Responses request body as OpenAI documents it, read with serde:
//! every field the translation reads or reports as dropped, strings
//! borrowed from the body.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::request::Text;

use super::super::wire::TextOr;

#[derive(Deserialize)]
pub(super) struct WireRequest<'a> {
    #[serde(borrow)]
    pub(super) model: Text<'a>,
    #[serde(default, borrow)]
    pub(super) input: Option<TextOr<'a, WireItem<'a>>>,
    #[serde(default, borrow)]
    pub(super) instructions: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) tools: Option<Vec<WireTool<'a>>>,
    #[serde(default, borrow)]
    pub(super) tool_choice: Option<&'a RawValue>,
    #[serde(default)]
    pub(super) parallel_tool_calls: Option<bool>,
    #[serde(default, borrow)]
    pub(super) text: Option<WireTextConfig<'a>>,
    #[serde(default)]
    pub(super) max_output_tokens: Option<i64>,
    #[serde(default)]
    pub(super) temperature: Option<f64>,
    #[serde(default)]
    pub(super) top_p: Option<f64>,
    #[serde(default)]
    pub(super) stream: Option<bool>,
    #[serde(default)]
    pub(super) store: Option<bool>,
    #[serde(default)]
    pub(super) background: Option<bool>,
    #[serde(default, borrow)]
    pub(super) previous_response_id: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) conversation: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) prompt: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) user: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) safety_identifier: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) reasoning: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) include: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) truncation: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) service_tier: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) prompt_cache_key: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) metadata: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) top_logprobs: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) max_tool_calls: Option<&'a RawValue>,
}

/// Every input item type's fields, flat: the `type` says which apply.
#[derive(Deserialize)]
pub(super) struct WireItem<'a> {
    #[serde(rename = "type", default, borrow)]
    pub(super) kind: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) role: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) content: Option<TextOr<'a, WirePart<'a>>>,
    #[serde(default, borrow)]
    pub(super) call_id: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) name: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) arguments: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) output: Option<TextOr<'a, WirePart<'a>>>,
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
    pub(super) image_url: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) detail: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) file_id: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) file_data: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) filename: Option<Text<'a>>,
}

#[derive(Deserialize)]
pub(super) struct WireTool<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Text<'a>,
    #[serde(default, borrow)]
    pub(super) name: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) description: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) parameters: Option<&'a RawValue>,
    #[serde(default)]
    pub(super) strict: Option<bool>,
}

#[derive(Deserialize)]
pub(super) struct WireTextConfig<'a> {
    #[serde(default, borrow)]
    pub(super) format: Option<WireFormat<'a>>,
    #[serde(default, borrow)]
    pub(super) verbosity: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub(super) struct WireFormat<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Text<'a>,
    #[serde(default, borrow)]
    pub(super) name: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) description: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) schema: Option<&'a RawValue>,
    #[serde(default)]
    pub(super) strict: Option<bool>,
}

#[derive(Deserialize)]
pub(super) struct WireNamedTool<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Text<'a>,
    #[serde(default, borrow)]
    pub(super) name: Option<Text<'a>>,
}
