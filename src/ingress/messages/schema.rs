//! The Messages request body as Anthropic documents it, read with serde:
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
    #[serde(default)]
    pub(super) max_tokens: Option<i64>,
    #[serde(borrow)]
    pub(super) messages: Vec<WireMessage<'a>>,
    #[serde(default, borrow)]
    pub(super) system: Option<TextOr<'a, WireBlock<'a>>>,
    #[serde(default, borrow)]
    pub(super) tools: Option<Vec<WireTool<'a>>>,
    #[serde(default, borrow)]
    pub(super) tool_choice: Option<WireToolChoice<'a>>,
    #[serde(default, borrow)]
    pub(super) stop_sequences: Option<Vec<Text<'a>>>,
    #[serde(default)]
    pub(super) temperature: Option<f64>,
    #[serde(default)]
    pub(super) top_p: Option<f64>,
    #[serde(default)]
    pub(super) top_k: Option<i64>,
    #[serde(default)]
    pub(super) stream: Option<bool>,
    #[serde(default, borrow)]
    pub(super) metadata: Option<WireMetadata<'a>>,
    #[serde(default, borrow)]
    pub(super) output_config: Option<WireOutputConfig<'a>>,
    #[serde(default, borrow)]
    pub(super) thinking: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) cache_control: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) service_tier: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) container: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) context_management: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) mcp_servers: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) inference_geo: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) speed: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub(super) struct WireMessage<'a> {
    #[serde(borrow)]
    pub(super) role: Text<'a>,
    #[serde(borrow)]
    pub(super) content: TextOr<'a, WireBlock<'a>>,
}

/// Every content block type's fields, flat: the `type` says which apply.
#[derive(Deserialize)]
pub(super) struct WireBlock<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Text<'a>,
    #[serde(default, borrow)]
    pub(super) text: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) source: Option<WireSource<'a>>,
    #[serde(default, borrow)]
    pub(super) id: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) name: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) input: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) tool_use_id: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) content: Option<TextOr<'a, WireBlock<'a>>>,
    #[serde(default)]
    pub(super) is_error: Option<bool>,
    #[serde(default, borrow)]
    pub(super) title: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) cache_control: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) citations: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub(super) struct WireSource<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Text<'a>,
    #[serde(default, borrow)]
    pub(super) media_type: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) data: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) url: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) content: Option<TextOr<'a, WireBlock<'a>>>,
}

#[derive(Deserialize)]
pub(super) struct WireTool<'a> {
    #[serde(rename = "type", default, borrow)]
    pub(super) kind: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) name: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) description: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) input_schema: Option<&'a RawValue>,
    #[serde(default)]
    pub(super) strict: Option<bool>,
    #[serde(default, borrow)]
    pub(super) cache_control: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub(super) struct WireToolChoice<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Text<'a>,
    #[serde(default, borrow)]
    pub(super) name: Option<Text<'a>>,
    #[serde(default)]
    pub(super) disable_parallel_tool_use: Option<bool>,
}

#[derive(Deserialize)]
pub(super) struct WireMetadata<'a> {
    #[serde(default, borrow)]
    pub(super) user_id: Option<Text<'a>>,
}

#[derive(Deserialize)]
pub(super) struct WireOutputConfig<'a> {
    #[serde(default, borrow)]
    pub(super) format: Option<WireOutputFormat<'a>>,
    #[serde(default, borrow)]
    pub(super) effort: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub(super) struct WireOutputFormat<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Text<'a>,
    #[serde(default, borrow)]
    pub(super) schema: Option<&'a RawValue>,
}
