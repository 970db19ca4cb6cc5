//! OpenAI embeddings, for adapters that translate them: the request read
//! into its inputs and options, and the answer written back in OpenAI's
//! shape (float arrays, or base64 little-endian float32 when the client asks,
//! as OpenAI's SDKs do by default).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::error::GatewayError;
use crate::request::Text;

use super::usage::TokenUsage;

#[derive(Debug)]
pub(crate) struct EmbeddingsRequest<'a> {
    pub inputs: Vec<Cow<'a, str>>,
    pub dimensions: Option<u64>,
    pub base64: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Input<'a> {
    One(#[serde(borrow)] Text<'a>),
    Many(#[serde(borrow)] Vec<Text<'a>>),
    /// Token ids (one input or several): only OpenAI-family providers take them.
    Tokens(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    input: Input<'a>,
    #[serde(default)]
    dimensions: Option<u64>,
    #[serde(default, borrow)]
    encoding_format: Option<Text<'a>>,
}

impl<'a> EmbeddingsRequest<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<EmbeddingsRequest<'a>, GatewayError> {
        let wire: Wire<'a> = serde_json::from_slice(body)
            .map_err(|err| GatewayError::invalid(format!("Invalid request body: {err}")))?;
        let inputs: Vec<Cow<'a, str>> = match wire.input {
            Input::One(text) => vec![text.0],
            Input::Many(texts) => texts.into_iter().map(|text| text.0).collect(),
            Input::Tokens(_) => {
                return Err(GatewayError::invalid_param(
                    "input",
                    "This model's provider embeds text only, not token ids.",
                ))
            }
        };
        if inputs.is_empty() || inputs.iter().any(|input| input.is_empty()) {
            return Err(GatewayError::invalid_param("input", "`input` must be non-empty text."));
        }
        let base64 = match wire.encoding_format.as_ref().map(Text::as_str) {
            None | Some("float") => false,
            Some("base64") => true,
            Some(other) => {
                return Err(GatewayError::invalid_param(
                    "encoding_format",
                    format!("Unknown encoding_format `{other}`."),
                ))
            }
        };
        Ok(EmbeddingsRequest {
            inputs,
            dimensions: wire.dimensions,
            base64,
        })
    }

    /// Estimated tokens of the inputs, for providers that report none.
    pub(crate) fn estimated_tokens(&self) -> u64 {
        self.inputs
            .iter()
            .map(|input| u64::from(crate::tokens::estimate(input)))
            .sum()
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let symbol = |index: u32| char::from(ALPHABET[(index & 63) as usize]);
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let byte = |index: usize| group.get(index).copied().unwrap_or(0);
        let padded = [byte(0), byte(1), byte(2)];
        let bits = u32::from(padded[0]) << 16 | u32::from(padded[1]) << 8 | u32::from(padded[2]);
        out.push(symbol(bits >> 18));
        out.push(symbol(bits >> 12));
        out.push(if group.len() > 1 { symbol(bits >> 6) } else { '=' });
        out.push(if group.len() > 2 { symbol(bits) } else { '=' });
    }
    out
}

#[derive(Serialize)]
#[serde(untagged)]
enum Vector<'a> {
    Floats(&'a [f32]),
    Base64(String),
}

#[derive(Serialize)]
struct EmbeddingJson<'a> {
    object: &'static str,
    index: usize,
    embedding: Vector<'a>,
}

#[derive(Serialize)]
struct UsageJson {
    prompt_tokens: u64,
    total_tokens: u64,
}

#[derive(Serialize)]
struct ListJson<'a> {
    object: &'static str,
    data: Vec<EmbeddingJson<'a>>,
    model: &'a str,
    usage: UsageJson,
}

/// OpenAI's embeddings answer.
pub(crate) fn response_json(vectors: &[Vec<f32>], model: &str, usage: TokenUsage, as_base64: bool) -> Vec<u8> {
    let data = vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| EmbeddingJson {
            object: "embedding",
            index,
            embedding: if as_base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|value| value.to_le_bytes()).collect();
                Vector::Base64(base64(&bytes))
            } else {
                Vector::Floats(vector)
            },
        })
        .collect();
    serde_json::to_vec(&ListJson {
        object: "list",
        data,
        model,
        usage: UsageJson {
            prompt_tokens: usage.prompt_total(),
            total_tokens: usage.prompt_total(),
        },
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn inputs_are_one_text_or_many() {
        let one = EmbeddingsRequest::parse(br#"{"model":"m","input":"hi"}"#).unwrap();
        assert_eq!(one.inputs, vec!["hi"]);
        let many =
            EmbeddingsRequest::parse(br#"{"model":"m","input":["a","b"],"dimensions":8,"encoding_format":"base64"}"#)
                .unwrap();
        assert_eq!((many.inputs.len(), many.dimensions, many.base64), (2, Some(8), true));
        for bad in [
            r#"{"input":[1,2]}"#,
            r#"{"input":[[1]]}"#,
            r#"{"input":""}"#,
            r#"{"input":[]}"#,
            r#"{"input":"x","encoding_format":"hex"}"#,
        ] {
            assert_eq!(
                EmbeddingsRequest::parse(bad.as_bytes()).unwrap_err().status(),
                400,
                "{bad}"
            );
        }
    }

    #[test]
    fn vectors_are_written_as_floats_or_base64_float32() {
        let vectors = vec![vec![1.0f32, -0.5]];
        let usage = TokenUsage {
            input: 3,
            ..TokenUsage::default()
        };
        let floats: serde_json::Value = serde_json::from_slice(&response_json(&vectors, "m", usage, false)).unwrap();
        assert_eq!(
            floats,
            serde_json::json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [1.0, -0.5]}],
                "model": "m", "usage": {"prompt_tokens": 3, "total_tokens": 3}})
        );
        let encoded: serde_json::Value = serde_json::from_slice(&response_json(&vectors, "m", usage, true)).unwrap();
        // 1.0f32 = 00 00 80 3f, -0.5f32 = 00 00 00 bf (little-endian).
        assert_eq!(
            encoded["data"][0]["embedding"],
            base64(&[0, 0, 0x80, 0x3f, 0, 0, 0, 0xbf])
        );
    }
}
