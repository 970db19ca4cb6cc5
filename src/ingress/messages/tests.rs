use serde_json::{json, Value};

use super::*;
use crate::error::GatewayError;
use crate::ingress::testkit::{
    assert_fixture, assert_garbage_is_survived, assert_split_invariant, fixture, named_events, param_of, pretty,
    through_anthropic_adapter,
};
use crate::ingress::{Ingress, StreamEncode};

fn chat_of(body: &[u8]) -> (Value, Vec<&'static str>) {
    let translated = Request::parse(body).unwrap().to_chat_body().unwrap();
    (serde_json::from_slice(&translated.body).unwrap(), translated.dropped)
}

fn chat(body: Value) -> Value {
    chat_of(body.to_string().as_bytes()).0
}

fn minimal(extra: Value) -> Value {
    let mut body = json!({"model": "auto", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

#[test]
fn a_claude_code_request_becomes_an_equivalent_chat_body() {
    let body = fixture("messages/claude_code_request.json");
    let (chat, dropped) = chat_of(&body);
    assert_fixture(
        "messages/claude_code_request.chat.json",
        &pretty(chat.to_string().as_bytes()),
    );
    // Only the tool definition's breakpoint is lost: chat marks messages.
    assert_eq!(dropped, vec!["thinking", "is_error", "cache_control"]);
    // What the router will read from it is a valid chat request.
    let chat = chat.to_string();
    let parsed = crate::request::parse_chat(chat.as_bytes()).unwrap();
    assert!(parsed.wants_stream_usage());
}

#[test]
fn the_view_scores_the_last_instruction_and_counts_tool_results_as_context() {
    let body = fixture("messages/claude_code_request.json");
    let request = Request::parse(&body).unwrap();
    let view = request.view();
    assert_eq!(view.prompt.last_user_parts, vec!["It fails with KeyError: 'PORT'."]);
    assert_eq!(view.prompt.user_turns, 2);
    assert_eq!(view.tool_results, 2);
    assert!(view.prompt.has_tools);
    assert_eq!(view.system.len(), 2);
    assert!(view.prompt.context_tokens > 100, "{}", view.prompt.context_tokens);
    assert_eq!(request.model(), "claude-sonnet-4-5");
    assert!(request.stream());
    assert_eq!(request.max_tokens(), Some(32000));
}

#[test]
fn images_count_as_images_and_cost_tokens_without_their_base64() {
    let data = "A".repeat(40_000);
    let body = minimal(json!({"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}},
        {"type": "text", "text": "What is this?"}]}]}));
    let request_body = body.to_string();
    let request = Request::parse(request_body.as_bytes()).unwrap();
    let view = request.view();
    assert_eq!(view.prompt.images, 1);
    assert_eq!(view.prompt.last_user_parts, vec!["What is this?"]);
    assert!(view.prompt_tokens() < 2_000, "{}", view.prompt_tokens());
}

fn refusal(body: Value) -> (String, String) {
    let error = Request::parse(body.to_string().as_bytes()).unwrap_err();
    assert_eq!(error.status(), 400, "{body}");
    (param_of(&error), error.to_string())
}

#[test]
fn malformed_requests_are_refused_naming_the_field() {
    let message = |content: Value| json!({"messages": [{"role": "user", "content": content}]});
    for (body, param) in [
        (
            json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}),
            "max_tokens",
        ),
        (minimal(json!({"max_tokens": 0})), "max_tokens"),
        (minimal(json!({"max_tokens": "lots"})), "max_tokens"),
        (minimal(json!({"model": ""})), "model"),
        (minimal(json!({"messages": []})), "messages"),
        (
            minimal(json!({"messages": [{"role": "system", "content": "x"}]})),
            "messages[0].role",
        ),
        (minimal(json!({"messages": [{"role": "user"}]})), "messages[0]"),
        (minimal(json!({"temperature": 1.5})), "temperature"),
        (minimal(json!({"top_p": -1})), "top_p"),
        (minimal(json!({"top_k": -1})), "top_k"),
        (minimal(json!({"system": [{"type": "image"}]})), "system[0].type"),
        (
            minimal(message(json!([{"type": "text"}]))),
            "messages[0].content[0].text",
        ),
        (
            minimal(message(
                json!([{"type": "image", "source": {"type": "base64", "data": "x"}}]),
            )),
            "messages[0].content[0].source.media_type",
        ),
        (
            minimal(message(json!([{"type": "image", "source": {"type": "ftp"}}]))),
            "messages[0].content[0].source.type",
        ),
        (
            minimal(message(
                json!([{"type": "tool_use", "id": "t", "name": "f", "input": {}}]),
            )),
            "messages[0].content[0]",
        ),
        (
            minimal(message(json!([{"type": "tool_result"}]))),
            "messages[0].content[0].tool_use_id",
        ),
        (
            minimal(
                json!({"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": [1]}]}]}),
            ),
            "messages[0].content[0].input",
        ),
        (minimal(json!({"tools": [{"name": "f"}]})), "tools[0].input_schema"),
        (
            minimal(json!({"tools": [{"name": "", "input_schema": {}}]})),
            "tools[0].name",
        ),
        (
            minimal(json!({"tool_choice": {"type": "sometimes"}})),
            "tool_choice.type",
        ),
        (minimal(json!({"tool_choice": {"type": "tool"}})), "tool_choice.name"),
        (
            minimal(json!({"output_config": {"format": {"type": "xml"}}})),
            "output_config.format.type",
        ),
        (minimal(json!({"stream": "yes"})), "stream"),
    ] {
        let (found, message) = refusal(body.clone());
        assert_eq!(found, param, "{body}: {message}");
        assert!(message.contains(param), "{message}");
    }
    for garbage in [
        &b"not json"[..],
        b"[]",
        b"{\"model\":\"a\",\"model\":\"b\"}",
        b"{\"max_tokens\":\xff}",
    ] {
        assert_eq!(Request::parse(garbage).unwrap_err().status(), 400);
    }
}

#[test]
fn what_only_anthropic_can_run_is_refused_for_other_providers_naming_the_field() {
    for (extra, param) in [
        (
            json!({"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]}),
            "tools[0].type",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "file_1"}}]}]}),
            "messages[0].content[0].source",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}]}]}),
            "messages[0].content[0].source",
        ),
        (
            json!({"messages": [{"role": "assistant", "content": [{"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}]}]}),
            "messages[0].content[0].type",
        ),
    ] {
        let body = minimal(extra).to_string();
        let request = Request::parse(body.as_bytes()).expect("Anthropic itself can take it");
        let error = request.to_chat_body().unwrap_err();
        assert_eq!(param_of(&error), param, "{body}");
        assert!(error.to_string().contains("Anthropic model"), "{error}");
    }
}

#[test]
fn a_request_left_empty_by_what_chat_drops_is_a_400() {
    let body = minimal(
        json!({"messages": [{"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"}]}]}),
    );
    let body = body.to_string();
    let error = Request::parse(body.as_bytes()).unwrap().to_chat_body().unwrap_err();
    assert_eq!(param_of(&error), "messages");
    let body = br#"{"model":"m","input":[]}"#;
    let error = crate::ingress::responses::Request::parse(body)
        .unwrap()
        .to_chat_body()
        .unwrap_err();
    assert_eq!(param_of(&error), "input");
}

#[test]
fn images_and_documents_become_chat_parts() {
    let body = chat(minimal(json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "Compare these."},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}, "title": "spec.pdf", "citations": {"enabled": true}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain notes"}},
        {"type": "document", "source": {"type": "content", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}}
    ]}]})));
    assert_eq!(
        body["messages"][0]["content"],
        json!([{"type": "text", "text": "Compare these."},
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            {"type": "file", "file": {"filename": "spec.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}},
            {"type": "text", "text": "plain notes"},
            {"type": "text", "text": "a\nb"}])
    );
}

#[test]
fn tool_results_become_tool_messages_and_their_images_join_the_user_turn() {
    let body = chat(minimal(json!({"messages": [
        {"role": "user", "content": "Take a screenshot"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "screenshot", "input": {}},
                                          {"type": "tool_use", "id": "toolu_2", "name": "clock", "input": {"tz": "UTC"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                {"type": "text", "text": "captured"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}]},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "12:00"},
            {"type": "text", "text": "What do you see?"}]}
    ]})));
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": "Take a screenshot"},
            {"role": "assistant", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "screenshot", "arguments": "{}"}},
                {"id": "toolu_2", "type": "function", "function": {"name": "clock", "arguments": "{\"tz\":\"UTC\"}"}}]},
            {"role": "tool", "content": "captured", "tool_call_id": "toolu_1"},
            {"role": "tool", "content": "12:00", "tool_call_id": "toolu_2"},
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                {"type": "text", "text": "What do you see?"}]}
        ])
    );
}

#[test]
fn tool_choice_and_parallel_calls_map_to_chats() {
    let tools = json!([{"name": "f", "input_schema": {"type": "object"}}]);
    let choice = |choice: Value| {
        let body = chat(minimal(json!({"tools": tools, "tool_choice": choice})));
        (body["tool_choice"].clone(), body["parallel_tool_calls"].clone())
    };
    assert_eq!(choice(json!({"type": "auto"})), (json!("auto"), Value::Null));
    assert_eq!(choice(json!({"type": "any"})), (json!("required"), Value::Null));
    assert_eq!(choice(json!({"type": "none"})), (json!("none"), Value::Null));
    assert_eq!(
        choice(json!({"type": "tool", "name": "f", "disable_parallel_tool_use": true})),
        (json!({"type": "function", "function": {"name": "f"}}), json!(false))
    );
    // Without tools, chat takes neither.
    let body = chat(minimal(
        json!({"tool_choice": {"type": "auto", "disable_parallel_tool_use": true}}),
    ));
    assert!(body.get("tool_choice").is_none() && body.get("parallel_tool_calls").is_none());
}

#[test]
fn sampling_stops_structured_output_and_what_chat_lacks() {
    let (body, dropped) = chat_of(
        minimal(json!({"stop_sequences": ["a", "b", "c", "d", "e"], "top_k": 40, "temperature": 0.2, "top_p": 0.9,
            "service_tier": "auto", "output_config": {"effort": "high", "format": {"type": "json_schema", "schema": {"type": "object"}}}}))
        .to_string()
        .as_bytes(),
    );
    assert_eq!(body["stop"], json!(["a", "b", "c", "d"]));
    assert_eq!(body["max_completion_tokens"], 100);
    assert_eq!(
        (body["temperature"].clone(), body["top_p"].clone()),
        (json!(0.2), json!(0.9))
    );
    assert_eq!(
        body["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "output", "schema": {"type": "object"}, "strict": true}})
    );
    assert!(body.get("stream").is_none() && body.get("stream_options").is_none());
    assert_eq!(
        dropped,
        vec!["top_k", "service_tier", "stop_sequences", "output_config.effort"]
    );
}

/// Messages → chat → Signalbox's own Anthropic adapter gives back the
/// client's request, less what chat cannot carry.
#[test]
fn a_messages_request_survives_the_round_trip_through_chat_and_the_anthropic_adapter() {
    let original = fixture("messages/claude_code_request.json");
    let chat = Request::parse(&original).unwrap().to_chat_body().unwrap().body;
    let (back, dropped) = through_anthropic_adapter(&chat);
    assert!(dropped.is_empty(), "{dropped:?}");
    let original: Value = serde_json::from_slice(&original).unwrap();
    assert_eq!(back["model"], original["model"]);
    assert_eq!(back["max_tokens"], original["max_tokens"]);
    assert_eq!(back["stream"], true);
    assert_eq!(back["metadata"], original["metadata"]);
    assert_eq!(back["tool_choice"], original["tool_choice"]);
    let system = format!(
        "{}\n\n{}",
        original["system"][0]["text"].as_str().unwrap(),
        original["system"][1]["text"].as_str().unwrap()
    );
    // The system prompt's breakpoint survives (after the joined text).
    assert_eq!(
        back["system"],
        json!([{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}])
    );
    for (tool, original) in back["tools"]
        .as_array()
        .unwrap()
        .iter()
        .zip(original["tools"].as_array().unwrap())
    {
        for key in ["name", "description", "input_schema"] {
            assert_eq!(tool[key], original[key]);
        }
    }
    // Messages: the same turns and blocks, without thinking and is_error,
    // tool results as text, and each message's cache breakpoint after its
    // last block (chat marks messages, not blocks).
    assert_eq!(
        back["messages"],
        json!([
            {"role": "user", "content": [
                {"type": "text", "text": original["messages"][0]["content"][0]["text"]},
                {"type": "text", "text": "Why does main.py crash on startup? Fix it."}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me look at main.py."},
                {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "Read", "input": {"file_path": "/srv/app/main.py"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9",
                 "content": original["messages"][2]["content"][0]["content"][0]["text"]},
                {"type": "text", "text": "It fails with KeyError: 'PORT'.", "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "Bash", "input": {"command": "env | grep PORT"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "content": "Exit code 1"}]}
        ])
    );
}

#[test]
fn a_chat_completion_becomes_an_anthropic_message() {
    let message = response_from_chat(&fixture("chat/completion_tools.json")).unwrap();
    assert_fixture("messages/completion_tools.expected.json", &pretty(&message));
    let message: Value = serde_json::from_slice(&message).unwrap();
    // Arguments that are not a JSON object are wrapped, not lost.
    assert_eq!(message["content"][2]["input"], json!({"arguments": "ls -la"}));
    assert_eq!(message["usage"]["input_tokens"], 294);
    assert_eq!(message["usage"]["cache_read_input_tokens"], 1536);
}

#[test]
fn finish_reasons_become_stop_reasons_and_refusals_become_text() {
    for (finish, stop) in [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        ("", "end_turn"),
    ] {
        let body = format!(
            r#"{{"id":"x","model":"m","choices":[{{"index":0,"message":{{"role":"assistant","content":null,"refusal":"I can't help with that."}},"finish_reason":"{finish}"}}]}}"#
        );
        let message: Value = serde_json::from_slice(&response_from_chat(body.as_bytes()).unwrap()).unwrap();
        assert_eq!(message["stop_reason"], stop);
        assert_eq!(
            message["content"],
            json!([{"type": "text", "text": "I can't help with that."}])
        );
        assert_eq!(message["id"], "msg_x");
        assert_eq!(message["usage"]["output_tokens"], 0);
    }
    assert!(response_from_chat(b"{\"error\":{\"message\":\"x\"}}").is_err());
}

fn encoder() -> StreamEncoder {
    StreamEncoder::new("auto")
}

#[test]
fn chat_streams_become_anthropic_events_the_same_at_every_split_point() {
    for name in ["text_stream", "tool_stream", "error_stream"] {
        let stream = fixture(&format!("chat/{name}.sse"));
        let out = assert_split_invariant(encoder, &stream);
        assert_fixture(&format!("messages/{name}.expected.sse"), &out);
    }
}

#[test]
fn a_text_stream_has_anthropics_event_sequence_and_usage() {
    let out = assert_split_invariant(encoder, &fixture("chat/text_stream.sse"));
    let events = named_events(&out);
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str());
    }
    assert_eq!(events[0].1["message"]["id"], "msg_01XFDUDYJgAACzvnptvVoYEL");
    assert_eq!(events[0].1["message"]["model"], "claude-haiku-4-5");
    let text: String = events
        .iter()
        .filter_map(|(_, data)| data["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "Hello, wörld 🌍!\nLine two.");
    assert_eq!(events[5].1["delta"]["stop_reason"], "end_turn");
    assert_eq!(
        events[5].1["usage"],
        json!({"input_tokens": 25, "output_tokens": 15, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 10})
    );
}

#[test]
fn parallel_tool_calls_become_one_tool_use_block_each() {
    let events = named_events(&assert_split_invariant(encoder, &fixture("chat/tool_stream.sse")));
    let starts: Vec<&Value> = events
        .iter()
        .filter(|(name, _)| name == "content_block_start")
        .map(|(_, data)| data)
        .collect();
    assert_eq!(starts[0]["index"], 0);
    assert_eq!(
        starts[0]["content_block"],
        json!({"type": "tool_use", "id": "call_Kx3", "name": "Read", "input": {}})
    );
    assert_eq!(starts[1]["index"], 1);
    let arguments = |index: u64| -> String {
        events
            .iter()
            .filter(|(_, data)| data["index"] == index && data["delta"]["type"] == "input_json_delta")
            .map(|(_, data)| data["delta"]["partial_json"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(arguments(0), r#"{"file_path": "/srv/app/main.py"}"#);
    assert_eq!(arguments(1), r#"{"command": "ls -la"}"#);
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(delta["usage"]["cache_read_input_tokens"], 1536);
}

#[test]
fn an_error_mid_stream_becomes_an_anthropic_error_event() {
    let events = named_events(&assert_split_invariant(encoder, &fixture("chat/error_stream.sse")));
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "error");
    assert_eq!(data["type"], "error");
    assert_eq!(data["error"]["type"], "overloaded_error");
    assert!(events.iter().all(|(name, _)| name != "message_stop"));
}

#[test]
fn a_cut_or_garbled_stream_ends_with_an_error_and_never_panics() {
    let stream = fixture("chat/tool_stream.sse");
    let cut = &stream[..stream.len() / 2];
    let events = named_events(&crate::ingress::testkit::encode_pieces(&encoder, &[cut]));
    assert_eq!(events.last().unwrap().0, "error");
    assert_garbage_is_survived(encoder, &stream, |text| {
        text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n") || text.contains("event: error\n")
    });
}

#[test]
fn interleaved_tool_calls_are_an_error_not_a_corrupted_call() {
    let chunk = |index: u32, id: Option<&str>, args: &str| {
        let id = id.map_or(String::new(), |id| {
            format!(r#""id":"{id}","function":{{"name":"f","arguments":"{args}"}},"#)
        });
        let function = if id.is_empty() {
            format!(r#""function":{{"arguments":"{args}"}},"#)
        } else {
            String::new()
        };
        format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"tool_calls\":[{{{id}{function}\"index\":{index}}}]}}}}]}}\n\n")
    };
    let stream = [chunk(0, Some("a"), ""), chunk(1, Some("b"), ""), chunk(0, None, "1")].concat();
    let mut encoder = encoder();
    let mut out = Vec::new();
    encoder.push(stream.as_bytes(), &mut out);
    let events = named_events(&out);
    assert_eq!(events.last().unwrap().0, "error");
    assert!(events.last().unwrap().1["error"]["message"]
        .as_str()
        .unwrap()
        .contains("interleaved"));
}

#[test]
fn gateway_and_provider_errors_take_anthropics_shape_and_types() {
    let cases = [
        (GatewayError::invalid_param("messages", "bad"), "invalid_request_error"),
        (
            GatewayError::Unauthorized { reason: "unknown key" },
            "authentication_error",
        ),
        (GatewayError::Forbidden { message: "no".into() }, "permission_error"),
        (GatewayError::UnknownModel { model: "x".into() }, "not_found_error"),
        (GatewayError::BodyTooLarge { limit: 10 }, "request_too_large"),
        (
            GatewayError::RateLimited {
                message: "slow".into(),
                retry_after_secs: None,
                headers: Vec::new(),
            },
            "rate_limit_error",
        ),
        (
            GatewayError::QuotaExceeded {
                message: "spent".into(),
                retry_after_secs: 60,
            },
            "rate_limit_error",
        ),
        (
            GatewayError::ProvidersUnavailable {
                attempts: String::new(),
                rate_limited: false,
                retry_after_secs: None,
            },
            "overloaded_error",
        ),
        (GatewayError::Internal { message: "host".into() }, "api_error"),
    ];
    for (error, kind) in cases {
        let body: Value = serde_json::from_slice(&Ingress::Messages.error_body(&error)).unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], kind, "{error:?}");
        assert_eq!(body["error"]["message"], error.to_string());
    }
    for (status, code, kind) in [
        (429, "rate_limit_exceeded", "rate_limit_error"),
        (503, "provider_overloaded", "overloaded_error"),
        (504, "provider_timeout", "timeout_error"),
        (502, "provider_auth_failed", "api_error"),
        (400, "context_length_exceeded", "invalid_request_error"),
        (404, "whatever", "not_found_error"),
    ] {
        let openai = format!(r#"{{"error":{{"message":"m","type":"t","param":null,"code":"{code}"}}}}"#);
        let body: Value =
            serde_json::from_slice(&Ingress::Messages.error_from_chat(status, openai.as_bytes())).unwrap();
        assert_eq!(body["error"]["type"], kind, "{status} {code}");
        assert_eq!(body["error"]["message"], "m");
    }
    let body: Value = serde_json::from_slice(&error_from_chat(500, b"<html>oops</html>")).unwrap();
    assert_eq!(body["error"]["type"], "api_error");
}

#[test]
fn count_tokens_estimates_locally_without_max_tokens() {
    let body = br#"{"model":"claude-sonnet-4-5","system":"Be brief.","messages":[{"role":"user","content":"Hello there, how are you today?"}]}"#;
    let answer: Value = serde_json::from_slice(&count_tokens(body).unwrap()).unwrap();
    let tokens = answer["input_tokens"].as_u64().unwrap();
    assert!((8..40).contains(&tokens), "{tokens}");
    assert_eq!(
        count_tokens(br#"{"model":"m","messages":[]}"#).unwrap_err().status(),
        400
    );
}

#[test]
fn native_pass_through_keeps_the_clients_version_and_betas() {
    let client: HeaderMap = [
        ("anthropic-version", "2026-10-21"),
        ("anthropic-beta", "interleaved-thinking-2025-05-14"),
        ("x-api-key", "sk-secret"),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        native_headers(&client, "2023-06-01"),
        vec![
            ("anthropic-version".to_string(), "2026-10-21".to_string()),
            (
                "anthropic-beta".to_string(),
                "interleaved-thinking-2025-05-14".to_string()
            )
        ]
    );
    assert_eq!(
        native_headers(&HeaderMap::default(), "2023-06-01"),
        vec![("anthropic-version".to_string(), "2023-06-01".to_string())]
    );
}
