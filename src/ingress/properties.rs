//! Property tests: any JSON in the fields clients send is a request or a
//! 400 naming a field, never a panic; and every chat body a request
//! translates into is one the gateway's own chat parser accepts, so a
//! translated request is routed like any chat request.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::{messages, responses};
use crate::error::GatewayError;
use crate::request::parse_chat;
use crate::testing::any_json;

/// A field's value: mostly a valid one, else any JSON.
fn field(valid: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
    prop_oneof![4 => valid, 1 => any_json()]
}

fn anthropic_leaf_block() -> impl Strategy<Value = Value> {
    prop_oneof![
        ".*".prop_map(|text| json!({"type": "text", "text": text, "cache_control": {"type": "ephemeral"}})),
        Just(json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}})),
        Just(
            json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}})
        ),
        Just(json!({"type": "thinking", "thinking": "hm", "signature": "s"})),
        Just(json!({"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}})),
        any_json(),
    ]
}

fn anthropic_block() -> impl Strategy<Value = Value> {
    prop_oneof![
        anthropic_leaf_block(),
        prop::collection::vec(anthropic_leaf_block(), 0..3).prop_map(
            |content| json!({"type": "tool_result", "tool_use_id": "t1", "content": content, "is_error": true})
        ),
    ]
}

fn anthropic_message() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("user"), Just("assistant")],
        prop_oneof![
            ".*".prop_map(Value::from),
            prop::collection::vec(anthropic_block(), 0..4).prop_map(Value::Array)
        ],
    )
        .prop_map(|(role, content)| json!({"role": role, "content": content}))
}

fn responses_item() -> impl Strategy<Value = Value> {
    prop_oneof![
        ".*".prop_map(|text| json!({"role": "user", "content": [{"type": "input_text", "text": text}]})),
        ".*".prop_map(
            |text| json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]})
        ),
        Just(json!({"role": "developer", "content": "be brief"})),
        Just(json!({"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"})),
        Just(json!({"type": "function_call_output", "call_id": "c1", "output": "done"})),
        Just(json!({"type": "reasoning", "summary": []})),
        any_json(),
    ]
}

/// A refusal is a 400 naming what is wrong.
fn check_refusal(error: &GatewayError) -> Result<(), TestCaseError> {
    prop_assert_eq!(error.status(), 400);
    prop_assert!(!error.to_string().is_empty());
    Ok(())
}

/// A translation is a chat body the gateway's chat parser accepts.
fn check_chat(translated: Result<super::Translated, GatewayError>) -> Result<(), TestCaseError> {
    match translated {
        Ok(translated) => {
            let parsed = parse_chat(&translated.body);
            prop_assert!(
                parsed.is_ok(),
                "{:?}: {}",
                parsed.err(),
                String::from_utf8_lossy(&translated.body)
            );
        }
        Err(error) => check_refusal(&error)?,
    }
    Ok(())
}

proptest! {
    #[test]
    fn any_messages_body_is_a_request_or_a_400_and_translates_to_valid_chat(
        messages in field(prop::collection::vec(anthropic_message(), 0..4).prop_map(Value::Array)),
        system in field(".*".prop_map(Value::from)),
        max_tokens in field((1..100_000u64).prop_map(Value::from)),
        tools in field(Just(json!([{"name": "f", "input_schema": {"type": "object"}}]))),
        tool_choice in field(Just(json!({"type": "any", "disable_parallel_tool_use": true}))),
        stop_sequences in field(prop::collection::vec(".*", 0..6).prop_map(|stops| json!(stops))),
        temperature in field((0.0..=1.0f64).prop_map(Value::from)),
    ) {
        let body = json!({"model": "auto", "messages": messages, "system": system, "max_tokens": max_tokens,
            "tools": tools, "tool_choice": tool_choice, "stop_sequences": stop_sequences, "temperature": temperature});
        let bytes = serde_json::to_vec(&body).unwrap();
        match messages::Request::parse(&bytes) {
            Ok(request) => {
                let _ = request.view();
                check_chat(request.to_chat_body())?;
            }
            Err(error) => check_refusal(&error)?,
        }
        if let Err(error) = messages::count_tokens(&bytes) {
            check_refusal(&error)?;
        }
    }

    #[test]
    fn any_responses_body_is_a_request_or_a_400_and_translates_to_valid_chat(
        input in field(prop_oneof![
            ".*".prop_map(Value::from),
            prop::collection::vec(responses_item(), 0..5).prop_map(Value::Array),
        ]),
        instructions in field(".*".prop_map(Value::from)),
        tools in field(Just(json!([{"type": "function", "name": "f", "parameters": {"type": "object"}}]))),
        tool_choice in field(Just(json!({"type": "function", "name": "f"}))),
        text in field(Just(json!({"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}}))),
        max_output_tokens in field((1..100_000u64).prop_map(Value::from)),
    ) {
        let body = json!({"model": "auto", "input": input, "instructions": instructions, "tools": tools,
            "tool_choice": tool_choice, "text": text, "max_output_tokens": max_output_tokens});
        let bytes = serde_json::to_vec(&body).unwrap();
        match responses::Request::parse(&bytes) {
            Ok(request) => {
                let _ = request.view();
                check_chat(request.to_chat_body())?;
            }
            Err(error) => check_refusal(&error)?,
        }
    }
}
