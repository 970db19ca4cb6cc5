use serde_json::{json, Value};

use super::*;
use crate::error::GatewayError;
use crate::ingress::testkit::{
    assert_fixture, assert_garbage_is_survived, assert_split_invariant, encode_pieces, fixture, named_events, param_of,
    pretty, through_anthropic_adapter,
};
use crate::ingress::{Ingress, StreamEncode};

fn translated(body: &Value) -> (Value, Vec<&'static str>) {
    let text = body.to_string();
    let translated = Request::parse(text.as_bytes()).unwrap().to_chat_body().unwrap();
    (serde_json::from_slice(&translated.body).unwrap(), translated.dropped)
}

fn minimal(extra: Value) -> Value {
    let mut body = json!({"model": "auto", "input": "hi"});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

#[test]
fn a_codex_request_becomes_an_equivalent_chat_body() {
    let body = fixture("responses/codex_request.json");
    let translated = Request::parse(&body).unwrap().to_chat_body().unwrap();
    assert_fixture("responses/codex_request.chat.json", &pretty(&translated.body));
    assert_eq!(translated.dropped, vec!["reasoning", "include", "prompt_cache_key"]);
    let parsed = crate::request::parse_chat(&translated.body).unwrap();
    assert!(parsed.wants_stream_usage());
}

#[test]
fn the_view_scores_the_last_user_message_and_reads_every_system_text() {
    let body = fixture("responses/codex_request.json");
    let request = Request::parse(&body).unwrap();
    let view = request.view();
    assert_eq!(
        view.prompt.last_user_parts,
        vec!["Why does main.py crash on startup? Fix it."]
    );
    assert_eq!(view.prompt.user_turns, 2);
    assert_eq!(view.tool_results, 1);
    assert!(view.prompt.has_tools);
    assert_eq!(view.system.len(), 2);
    assert!(view.system[0].starts_with("You are Codex"));
    assert_eq!(request.model(), "gpt-5-codex");
    assert!(request.stream());
}

/// Codex, routed to Claude: the chat body goes through Signalbox's own
/// Anthropic adapter with nothing further lost.
#[test]
fn a_codex_request_can_be_served_by_an_anthropic_model() {
    let body = fixture("responses/codex_request.json");
    let chat = Request::parse(&body).unwrap().to_chat_body().unwrap().body;
    let (messages, dropped) = through_anthropic_adapter(&chat);
    assert!(dropped.is_empty(), "{dropped:?}");
    assert_eq!(messages["messages"][1]["content"][0]["type"], "tool_use");
    assert_eq!(
        messages["messages"][1]["content"][0]["input"]["command"],
        json!(["cat", "main.py"])
    );
    assert_eq!(messages["messages"][2]["content"][0]["type"], "tool_result");
    assert_eq!(
        messages["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
}

fn refusal(body: Value) -> (String, String) {
    let error = Request::parse(body.to_string().as_bytes()).unwrap_err();
    assert_eq!(error.status(), 400, "{body}");
    (param_of(&error), error.to_string())
}

#[test]
fn malformed_requests_are_refused_naming_the_field() {
    for (body, param) in [
        (json!({"model": "auto"}), "input"),
        (minimal(json!({"model": ""})), "model"),
        (minimal(json!({"input": 5})), "input"),
        (
            minimal(json!({"input": [{"role": "robot", "content": "x"}]})),
            "input[0].role",
        ),
        (minimal(json!({"input": [{"role": "user"}]})), "input[0].content"),
        (
            minimal(json!({"input": [{"role": "user", "content": [{"type": "input_text"}]}]})),
            "input[0].content[0].text",
        ),
        (
            minimal(json!({"input": [{"role": "user", "content": [{"type": "input_image"}]}]})),
            "input[0].content[0].image_url",
        ),
        (
            minimal(json!({"input": [{"type": "function_call", "name": "f"}]})),
            "input[0].call_id",
        ),
        (
            minimal(json!({"input": [{"type": "function_call_output", "call_id": "c"}]})),
            "input[0].output",
        ),
        (minimal(json!({"max_output_tokens": 0})), "max_output_tokens"),
        (minimal(json!({"temperature": 3})), "temperature"),
        (minimal(json!({"tools": [{"type": "function"}]})), "tools[0].name"),
        (
            minimal(json!({"tools": [{"type": "function", "name": ""}]})),
            "tools[0].name",
        ),
        (minimal(json!({"tool_choice": "sometimes"})), "tool_choice"),
        (
            minimal(json!({"tool_choice": {"type": "function"}})),
            "tool_choice.name",
        ),
        (
            minimal(json!({"text": {"format": {"type": "yaml"}}})),
            "text.format.type",
        ),
        (
            minimal(json!({"text": {"format": {"type": "json_schema", "schema": {}}}})),
            "text.format.name",
        ),
        (minimal(json!({"stream": 1})), "stream"),
    ] {
        let (found, message) = refusal(body.clone());
        assert_eq!(found, param, "{body}: {message}");
        assert!(message.contains(param), "{message}");
    }
}

#[test]
fn what_needs_openais_own_state_or_tools_is_refused_for_other_providers() {
    for (extra, param) in [
        (json!({"previous_response_id": "resp_1"}), "previous_response_id"),
        (json!({"conversation": "conv_1"}), "conversation"),
        (json!({"tools": [{"type": "web_search"}]}), "tools[0].type"),
        (
            json!({"input": [{"type": "item_reference", "id": "msg_1"}]}),
            "input[0].type",
        ),
        (
            json!({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]}),
            "input[0].content[0].file_id",
        ),
        (
            json!({"tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "web_search_preview"}}),
            "tool_choice",
        ),
    ] {
        let body = minimal(extra).to_string();
        let request = Request::parse(body.as_bytes()).expect("OpenAI itself can take it");
        let error = request.to_chat_body().unwrap_err();
        assert_eq!(param_of(&error), param, "{body}");
        assert!(error.to_string().contains("OpenAI's own Responses API"), "{error}");
    }
    // A background response is fetched past the gateway: refused for every provider.
    let background = minimal(json!({"background": true})).to_string();
    let error = Request::parse(background.as_bytes()).unwrap_err();
    assert_eq!(param_of(&error), "background");
    // Without `input`, a stateful request still parses (for OpenAI).
    assert!(Request::parse(br#"{"model":"m","previous_response_id":"resp_1"}"#).is_ok());
}

#[test]
fn formats_sampling_and_a_plain_string_input_map_to_chat() {
    let (body, dropped) = translated(&minimal(
        json!({"max_output_tokens": 50, "temperature": 0.3, "top_p": 0.5,
        "user": "u-1", "store": true, "metadata": {"k": "v"},
        "text": {"verbosity": "low", "format": {"type": "json_schema", "name": "answer", "strict": true, "schema": {"type": "object"}}}}),
    ));
    assert_eq!(
        body,
        json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 50,
            "temperature": 0.3, "top_p": 0.5, "user": "u-1",
            "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": true}}})
    );
    assert_eq!(dropped, vec!["store", "text.verbosity", "metadata"]);
    let (body, _) = translated(&minimal(json!({"text": {"format": {"type": "json_object"}}})));
    assert_eq!(body["response_format"], json!({"type": "json_object"}));
}

#[test]
fn function_outputs_become_tool_messages_and_their_images_a_user_message() {
    let (body, _) = translated(&minimal(json!({"input": [
        {"role": "user", "content": [{"type": "input_text", "text": "Look"}, {"type": "input_image", "image_url": "https://x/a.png", "detail": "high"}]},
        {"type": "function_call", "call_id": "c1", "name": "shot", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "clock", "arguments": ""},
        {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "taken"},
            {"type": "input_image", "image_url": "data:image/png;base64,iVBOR"}]},
        {"type": "function_call_output", "call_id": "c2", "output": "noon"},
        {"role": "user", "content": [{"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"}]}
    ]})));
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "Look"},
                {"type": "image_url", "image_url": {"url": "https://x/a.png", "detail": "high"}}]},
            {"role": "assistant", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "shot", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "clock", "arguments": ""}}]},
            {"role": "tool", "content": "taken", "tool_call_id": "c1"},
            {"role": "tool", "content": "noon", "tool_call_id": "c2"},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}]},
            {"role": "user", "content": [{"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"}}]}
        ])
    );
}

#[test]
fn a_chat_completion_becomes_a_response_object() {
    let response = response_from_chat(&fixture("chat/completion_tools.json")).unwrap();
    assert_fixture("responses/completion_tools.expected.json", &pretty(&response));
    let response: Value = serde_json::from_slice(&response).unwrap();
    assert_eq!(response["status"], "completed");
    assert_eq!(response["output"][2]["arguments"], "ls -la");
    assert_eq!(
        response["usage"],
        json!({"input_tokens": 1830, "input_tokens_details": {"cached_tokens": 1536}, "output_tokens": 41,
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 1871})
    );
}

#[test]
fn a_cut_short_or_refused_answer_is_incomplete() {
    let answer = |finish: &str| -> Value {
        let body = format!(
            r#"{{"id":"chatcmpl-1","created":5,"model":"m","choices":[{{"index":0,"message":{{"role":"assistant","content":"Partial"}},"finish_reason":"{finish}"}}]}}"#
        );
        serde_json::from_slice(&response_from_chat(body.as_bytes()).unwrap()).unwrap()
    };
    let cut = answer("length");
    assert_eq!(cut["status"], "incomplete");
    assert_eq!(cut["incomplete_details"], json!({"reason": "max_output_tokens"}));
    assert_eq!(cut["output"][0]["status"], "incomplete");
    assert_eq!(
        answer("content_filter")["incomplete_details"]["reason"],
        "content_filter"
    );
    let done = answer("stop");
    assert_eq!(done["id"], "resp_1");
    assert_eq!(done["output"][0]["id"], "msg_1");
    assert_eq!(
        done["output"][0]["content"][0],
        json!({"type": "output_text", "text": "Partial", "annotations": [], "logprobs": []})
    );
}

fn encoder() -> StreamEncoder {
    StreamEncoder::new("auto", 1_700_000_000)
}

#[test]
fn chat_streams_become_responses_events_the_same_at_every_split_point() {
    for name in ["text_stream", "tool_stream", "error_stream"] {
        let stream = fixture(&format!("chat/{name}.sse"));
        let out = assert_split_invariant(encoder, &stream);
        assert_fixture(&format!("responses/{name}.expected.sse"), &out);
        for (position, (name, data)) in named_events(&out).iter().enumerate() {
            assert_eq!(data["type"], name.as_str());
            assert_eq!(data["sequence_number"], position as u64);
        }
    }
}

#[test]
fn a_text_stream_has_the_responses_event_sequence() {
    let events = named_events(&encode_pieces(&encoder, &[&fixture("chat/text_stream.sse")]));
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    assert_eq!(events[0].1["response"]["status"], "in_progress");
    assert_eq!(events[6].1["text"], "Hello, wörld 🌍!\nLine two.");
    let completed = &events[9].1["response"];
    assert_eq!(completed["status"], "completed");
    assert_eq!(
        completed["output"][0]["content"][0]["text"],
        "Hello, wörld 🌍!\nLine two."
    );
    assert_eq!(completed["usage"]["input_tokens"], 35);
    assert_eq!(completed["usage"]["input_tokens_details"]["cached_tokens"], 10);
}

#[test]
fn streamed_tool_calls_become_function_call_items() {
    let events = named_events(&encode_pieces(&encoder, &[&fixture("chat/tool_stream.sse")]));
    let done: Vec<&Value> = events
        .iter()
        .filter(|(name, _)| name == "response.output_item.done")
        .map(|(_, data)| &data["item"])
        .collect();
    assert_eq!(
        done,
        vec![
            &json!({"type": "function_call", "id": "fc_BcD7kR2_0", "call_id": "call_Kx3", "name": "Read",
                "arguments": "{\"file_path\": \"/srv/app/main.py\"}", "status": "completed"}),
            &json!({"type": "function_call", "id": "fc_BcD7kR2_1", "call_id": "call_Zq9", "name": "Bash",
                "arguments": "{\"command\": \"ls -la\"}", "status": "completed"})
        ]
    );
    let completed = &events.last().unwrap().1["response"];
    assert_eq!(completed["output"].as_array().unwrap().len(), 2);
}

#[test]
fn an_error_mid_stream_fails_the_response() {
    let events = named_events(&encode_pieces(&encoder, &[&fixture("chat/error_stream.sse")]));
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "response.failed");
    assert_eq!(data["response"]["status"], "failed");
    assert_eq!(data["response"]["error"]["code"], "server_error");
    assert!(data["response"]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("overloaded"));
}

#[test]
fn a_cut_or_garbled_stream_fails_the_response_and_never_panics() {
    let stream = fixture("chat/tool_stream.sse");
    assert_garbage_is_survived(encoder, &stream, |text| {
        ["response.completed", "response.incomplete", "response.failed"]
            .iter()
            .any(|end| text.contains(&format!("event: {end}\n")))
    });
}

#[test]
fn an_answer_too_large_to_keep_fails_instead_of_growing() {
    let mut encoder = encoder();
    let mut out = Vec::new();
    let piece = "x".repeat(1 << 19);
    for _ in 0..17 {
        let chunk = format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{piece}\"}}}}]}}\n\n");
        encoder.push(chunk.as_bytes(), &mut out);
        out.clear();
    }
    encoder.finish(&mut out);
    assert!(out.is_empty(), "nothing after the failure");
}

#[test]
fn responses_errors_are_openai_shaped() {
    let error = GatewayError::UnknownModel { model: "gpt-9".into() };
    assert_eq!(Ingress::Responses.error_body(&error), error.to_json());
    let body = br#"{"error":{"message":"m","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"}}"#;
    assert_eq!(Ingress::Responses.error_from_chat(429, body), body.to_vec());
}
