//! Stored answers: what is kept, and that replays give back the same answer.

use serde_json::{json, Value};

use super::answer::*;
use crate::providers::TokenUsage;

fn completion(message: Value, finish_reason: &str) -> Vec<u8> {
    json!({
        "id": "chatcmpl-upstream", "object": "chat.completion", "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_1",
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
    })
    .to_string()
    .into_bytes()
}

fn text_answer(text: &str) -> Vec<u8> {
    completion(
        json!({"role": "assistant", "content": text, "refusal": null, "annotations": []}),
        "stop",
    )
}

fn tool_answer() -> Vec<u8> {
    completion(
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}},
            {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": "{}"}}
        ]}),
        "tool_calls",
    )
}

/// What a client rebuilds from a chunk stream, read independently of the
/// writer: every event's JSON, deltas joined.
#[derive(Debug, Default, PartialEq)]
struct Reassembled {
    ids: Vec<String>,
    role: Option<String>,
    text: String,
    calls: Vec<(String, String, String)>,
    finish_reason: Option<String>,
    usage: Option<Value>,
    done: bool,
}

fn reassemble(stream: &[u8]) -> Reassembled {
    let text = std::str::from_utf8(stream).expect("UTF-8");
    assert!(text.ends_with("data: [DONE]\n\n"), "ends with [DONE]");
    let mut out = Reassembled::default();
    for event in text.split_terminator("\n\n") {
        let data = event.strip_prefix("data: ").expect("every event is one data line");
        assert!(!out.done, "nothing after [DONE]");
        if data == "[DONE]" {
            out.done = true;
            continue;
        }
        let chunk: Value = serde_json::from_str(data).expect("chunk JSON");
        assert_eq!(chunk["object"], "chat.completion.chunk");
        out.ids.push(chunk["id"].as_str().unwrap_or_default().to_string());
        if let Some(usage) = chunk.get("usage").filter(|usage| !usage.is_null()) {
            out.usage = Some(usage.clone());
        }
        let Some(choice) = chunk["choices"].get(0) else {
            continue;
        };
        let delta = &choice["delta"];
        if let Some(role) = delta["role"].as_str() {
            assert!(out.role.replace(role.to_string()).is_none(), "one role chunk");
        }
        out.text.push_str(delta["content"].as_str().unwrap_or_default());
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = call["index"].as_u64().unwrap() as usize;
            if index == out.calls.len() {
                out.calls.push(Default::default());
            }
            let entry = &mut out.calls[index];
            entry.0.push_str(call["id"].as_str().unwrap_or_default());
            entry.1.push_str(call["function"]["name"].as_str().unwrap_or_default());
            entry
                .2
                .push_str(call["function"]["arguments"].as_str().unwrap_or_default());
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            out.finish_reason = Some(reason.to_string());
        }
    }
    out
}

#[test]
fn a_text_answer_replays_as_the_same_text_with_usage_when_asked() {
    let stream = replay_stream(&text_answer("Four."), "chatcmpl-fresh", 42, "small", true).unwrap();
    let replayed = reassemble(&stream);
    assert_eq!(replayed.role.as_deref(), Some("assistant"));
    assert_eq!(replayed.text, "Four.");
    assert_eq!(replayed.finish_reason.as_deref(), Some("stop"));
    assert_eq!(replayed.usage.as_ref().unwrap()["prompt_tokens"], 12);
    assert_eq!(replayed.usage.as_ref().unwrap()["completion_tokens"], 5);
    assert!(replayed.ids.iter().all(|id| id == "chatcmpl-fresh"));
    let first: Value = serde_json::from_str(
        std::str::from_utf8(&stream)
            .unwrap()
            .split("\n\n")
            .next()
            .unwrap()
            .strip_prefix("data: ")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (first["created"].as_u64(), first["model"].as_str()),
        (Some(42), Some("gpt-4o-mini-2024-07-18"))
    );
}

#[test]
fn without_include_usage_there_is_no_usage_chunk() {
    let stream = replay_stream(&text_answer("Four."), "c", 1, "small", false).unwrap();
    assert!(!String::from_utf8(stream.clone()).unwrap().contains("\"usage\""));
    assert_eq!(reassemble(&stream).text, "Four.");
}

#[test]
fn tool_calls_replay_in_order_with_their_arguments() {
    let replayed = reassemble(&replay_stream(&tool_answer(), "c", 1, "small", false).unwrap());
    assert_eq!(
        replayed.calls,
        vec![
            ("call_1".into(), "weather".into(), "{\"city\":\"Oslo\"}".into()),
            ("call_2".into(), "time".into(), "{}".into()),
        ]
    );
    assert_eq!(
        (replayed.text.as_str(), replayed.finish_reason.as_deref()),
        ("", Some("tool_calls"))
    );
}

#[test]
fn long_text_is_cut_at_character_boundaries_and_joins_back() {
    let text = "Grüße, 世界! 🦀 ".repeat(1_000);
    let stream = replay_stream(&text_answer(&text), "c", 1, "small", false).unwrap();
    let events = std::str::from_utf8(&stream).unwrap().matches("data: ").count();
    assert!(events > 4, "the text went out in several pieces");
    assert_eq!(reassemble(&stream).text, text);
}

#[test]
fn a_whole_replay_changes_only_the_id_and_creation_time() {
    let stored = text_answer("Four.");
    let replayed = replay_whole(&stored, "chatcmpl-fresh", 42);
    let (mut before, after): (Value, Value) = (
        serde_json::from_slice(&stored).unwrap(),
        serde_json::from_slice(&replayed).unwrap(),
    );
    before["id"] = json!("chatcmpl-fresh");
    before["created"] = json!(42);
    assert_eq!(after, before);
    let stored_text = String::from_utf8(stored).unwrap();
    let replayed_text = String::from_utf8(replayed).unwrap();
    assert_eq!(
        replayed_text
            .replace("chatcmpl-fresh", "chatcmpl-upstream")
            .replace(":42,", ":1700000000,"),
        stored_text
    );
}

#[test]
fn only_finished_replayable_answers_are_read() {
    let read = |body: Vec<u8>| read_answer(&body).map(|_| ());
    assert_eq!(read(text_answer("ok")), Ok(()));
    assert_eq!(read(tool_answer()), Ok(()));
    let unfinished = [
        completion(json!({"role": "assistant", "content": "cut"}), "length"),
        completion(json!({"role": "assistant", "content": ""}), "content_filter"),
    ];
    for body in unfinished {
        assert_eq!(read(body), Err(AnswerProblem::Unfinished));
    }
    // An answer that says nothing is a failure the adapters report as `stop`
    // (Gemini's MALFORMED_FUNCTION_CALL or no candidates, Bedrock's
    // malformed outputs): replayed, it would fail every repeat for the TTL.
    for empty in [json!(""), json!(null)] {
        let body = completion(json!({"role": "assistant", "content": empty}), "stop");
        assert_eq!(read(body), Err(AnswerProblem::Unfinished), "{empty}");
    }
    let mut two_choices: Value = serde_json::from_slice(&text_answer("a")).unwrap();
    let choice = two_choices["choices"][0].clone();
    two_choices["choices"].as_array_mut().unwrap().push(choice);
    let mut chunk: Value = serde_json::from_slice(&text_answer("a")).unwrap();
    chunk["object"] = json!("chat.completion.chunk");
    let mut with_logprobs: Value = serde_json::from_slice(&text_answer("a")).unwrap();
    with_logprobs["choices"][0]["logprobs"] = json!({"content": [{"token": "a", "logprob": -0.1}]});
    let unreplayable = [
        two_choices.to_string().into_bytes(),
        chunk.to_string().into_bytes(),
        with_logprobs.to_string().into_bytes(),
        completion(json!({"role": "assistant", "content": null, "refusal": "No."}), "stop"),
        completion(
            json!({"role": "assistant", "content": "a", "audio": {"id": "x"}}),
            "stop",
        ),
        completion(
            json!({"role": "assistant", "content": "a", "reasoning_content": "hmm"}),
            "stop",
        ),
        completion(
            json!({"role": "assistant", "content": [{"type": "text", "text": "a"}]}),
            "stop",
        ),
        br#"{"error":{"message":"overloaded"}}"#.to_vec(),
        b"not json".to_vec(),
        b"{\"choices\":[".to_vec(),
    ];
    for body in unreplayable {
        let shown = String::from_utf8_lossy(&body).into_owned();
        assert_eq!(read(body), Err(AnswerProblem::Unreplayable), "{shown}");
    }
}

#[test]
fn the_answer_keeps_its_usage() {
    let answer = read_answer(&text_answer("ok")).unwrap();
    assert_eq!(
        answer.usage,
        Some(TokenUsage {
            input: 12,
            output: 5,
            ..TokenUsage::default()
        })
    );
    assert_eq!(replay_stream(b"{}", "c", 1, "m", true), None, "unreadable: a miss");
}
