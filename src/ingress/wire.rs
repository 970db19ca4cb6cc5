//! Reading pieces both ingress formats share: a value that is a string or a
//! list (Anthropic's `system` and `content`, the Responses API's `input`
//! and `content`), and the body checks every request gets (UTF-8, serde
//! errors naming the field, a bounded nesting depth).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use crate::error::GatewayError;
use crate::request::{check_depth, deserialize_body, Text};

/// A JSON string, or an array of `T`. Read without buffering, so the items
/// may borrow from the body (serde's untagged enums cannot hold a
/// `RawValue`).
#[derive(Debug)]
pub(crate) enum TextOr<'a, T> {
    Text(Text<'a>),
    List(Vec<T>),
}

impl<'de: 'a, 'a, T: Deserialize<'de>> Deserialize<'de> for TextOr<'a, T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextOrVisitor<'a, T>(PhantomData<(&'a (), T)>);
        impl<'de: 'a, 'a, T: Deserialize<'de>> Visitor<'de> for TextOrVisitor<'a, T> {
            type Value = TextOr<'a, T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array")
            }
            fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
                Ok(TextOr::Text(Text(value.into())))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(TextOr::Text(Text(value.to_owned().into())))
            }
            fn visit_string<E: de::Error>(self, value: String) -> Result<Self::Value, E> {
                Ok(TextOr::Text(Text(value.into())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(64));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(TextOr::List(items))
            }
        }
        deserializer.deserialize_any(TextOrVisitor(PhantomData))
    }
}

/// Deserializes a request body of an ingress format with the checks chat
/// requests get: UTF-8, a 400 naming the field on a type error, and the
/// nesting limit.
pub(crate) fn parse_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, GatewayError> {
    let request = deserialize_body(body)?;
    check_depth(body)?;
    Ok(request)
}

/// A 400 for `param`, whose message names it.
pub(crate) fn invalid(param: impl Into<String>, problem: &str) -> GatewayError {
    let param = param.into();
    let message = format!("`{param}`: {problem}");
    GatewayError::invalid_param(param, message)
}

/// A string field the format requires.
pub(crate) fn required<'a>(text: Option<Text<'a>>, param: &str) -> Result<Cow<'a, str>, GatewayError> {
    text.map(|text| text.0).ok_or_else(|| invalid(param, "is required."))
}

/// A function tool's name: required, and not empty.
pub(crate) fn required_name<'a>(text: Option<Text<'a>>, param: &str) -> Result<Cow<'a, str>, GatewayError> {
    let name = required(text, param)?;
    if name.is_empty() {
        return Err(invalid(param, "must not be empty."));
    }
    Ok(name)
}

/// The requested model: a name, `auto` or a configured one, never empty.
pub(crate) fn check_model(model: &Text<'_>) -> Result<(), GatewayError> {
    if model.as_str().is_empty() {
        return Err(invalid("model", "must be a non-empty string."));
    }
    Ok(())
}

/// An optional output budget, at least one token (a budget beyond `u64`,
/// which no model has, reads as none).
pub(crate) fn output_budget(param: &str, tokens: Option<i64>) -> Result<Option<u64>, GatewayError> {
    match tokens {
        Some(tokens) if tokens < 1 => Err(invalid(param, "must be at least 1.")),
        tokens => Ok(tokens.and_then(|tokens| u64::try_from(tokens).ok())),
    }
}

/// Reports `name` among the features chat cannot express, once.
pub(crate) fn drop_once(dropped: &mut Vec<&'static str>, name: &'static str) {
    if !dropped.contains(&name) {
        dropped.push(name);
    }
}

/// Reports, once each and in order, the named features the client set.
pub(crate) fn drop_present(dropped: &mut Vec<&'static str>, features: impl IntoIterator<Item = (&'static str, bool)>) {
    for (name, present) in features {
        if present {
            drop_once(dropped, name);
        }
    }
}

/// Checks an optional number against an inclusive range.
pub(crate) fn check_range(param: &'static str, value: Option<f64>, low: f64, high: f64) -> Result<(), GatewayError> {
    match value {
        Some(number) if !(low..=high).contains(&number) => {
            Err(invalid(param, &format!("must be a number between {low} and {high}.")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    struct Holder<'a> {
        #[serde(borrow)]
        value: TextOr<'a, u8>,
    }

    #[test]
    fn a_string_or_a_list_is_read_and_anything_else_is_a_400_naming_the_field() {
        let holder: Holder<'_> = parse_body(br#"{"value":"hi"}"#).unwrap();
        assert!(matches!(holder.value, TextOr::Text(text) if text.as_str() == "hi"));
        let holder: Holder<'_> = parse_body(br#"{"value":[1,2]}"#).unwrap();
        assert!(matches!(holder.value, TextOr::List(items) if items == vec![1, 2]));
        let error = parse_body::<Holder<'_>>(br#"{"value":7}"#).unwrap_err();
        assert_eq!(error.status(), 400);
        assert!(error.to_string().contains("value"), "{error}");
    }
}
