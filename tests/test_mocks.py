"""Self-tests of the mock providers, driven directly over HTTP (no Envoy)."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.mocks import MockProviders, decode_event_stream, encode_event

REPO_ROOT = Path(__file__).resolve().parent.parent
CHAT = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the capital of France today?"},
    ],
}
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


# --- helpers ------------------------------------------------------------------------


def post(mocks, name: str, path: str, body: dict, **kwargs) -> requests.Response:
    return requests.post(mocks.url(name) + path, json=body, timeout=10, **kwargs)


def sse_data(text: str, separator: str = "\n\n") -> list[str]:
    """The data fields of a complete SSE body, checking the framing on the way."""
    assert text.endswith(separator), "stream must end with a complete event"
    events = text[: -len(separator)].split(separator)
    data = []
    for event in events:
        fields = event.split(separator[: len(separator) // 2])
        data_lines = [f[len("data: ") :] for f in fields if f.startswith("data: ")]
        assert len(data_lines) == 1, event
        data.append(data_lines[0])
    return data


def anthropic_events(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip("\n").split("\n\n"):
        name_line, data_line = block.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        data = json.loads(data_line[len("data: ") :])
        assert data["type"] == name_line[len("event: ") :]
        events.append((data["type"], data))
    return events


def raw_exchange(port: int, request: bytes, timeout: float = 10) -> tuple[bytes, int, BaseException | None]:
    """Send raw bytes; return (everything received, number of recv() calls with data, error ending the read)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        received, reads = b"", 0
        try:
            while chunk := sock.recv(65536):
                received += chunk
                reads += 1
        except OSError as exc:
            return received, reads, exc
    return received, reads, None


def raw_request(path: str, body: dict, extra_headers: str = "") -> bytes:
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: mock\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n{extra_headers}\r\n"
    )
    return head.encode() + payload


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """Read one Content-Length response from a kept-alive connection: (head, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head, body


def dechunk(raw: bytes) -> tuple[bytes, bytes]:
    """Split a raw chunked HTTP response into (head, decoded body)."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    body = b""
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        body, rest = body + rest[:size], rest[size + 2 :]
    return head, body


def openai_stream_text(body: str) -> str:
    chunks = [json.loads(d) for d in sse_data(body) if d != "[DONE]"]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


# --- OpenAI ---------------------------------------------------------------------------


def test_openai_completion_is_deterministic_and_counts_tokens(mocks):
    response = post(mocks, "openai", "/v1/chat/completions", CHAT)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    completion = response.json()
    assert completion["object"] == "chat.completion"
    choice = completion["choices"][0]
    assert choice["message"]["content"] == "[openai/gpt-4o] What is the capital of France today?"
    assert choice["finish_reason"] == "stop"
    # (2 + 3) + (7 + 3) prompt words+overhead; the reply has 8 words.
    assert completion["usage"] == {"prompt_tokens": 15, "completion_tokens": 8, "total_tokens": 23}


def test_openai_stream_framing_with_usage_chunk(mocks):
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    response = post(mocks, "openai", "/chat/completions", body)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["transfer-encoding"] == "chunked"
    data = sse_data(response.text)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 23
    deltas = [c["choices"][0]["delta"].get("content") for c in chunks[1:-2]]
    assert all(0 < len(d) <= 3 for d in deltas) and len(deltas) > 5
    assert openai_stream_text(response.text) == "[openai/gpt-4o] What is the capital of France today?"


def test_openai_stream_without_usage_option_has_no_usage(mocks):
    response = post(mocks, "openai", "/v1/chat/completions", {**CHAT, "stream": True})
    chunks = [json.loads(d) for d in sse_data(response.text)[:-1]]
    assert all("usage" not in c and c["choices"] for c in chunks)


def test_openai_tool_call_whole_and_streamed(mocks):
    body = {**CHAT, "tools": [TOOL]}
    message = post(mocks, "openai", "/v1/chat/completions", body).json()["choices"][0]
    call = message["message"]["tool_calls"][0]
    assert message["finish_reason"] == "tool_calls" and message["message"]["content"] is None
    assert call["type"] == "function" and call["function"]["name"] == "lookup"
    assert json.loads(call["function"]["arguments"]) == {"query": "What is the capital "}

    stream = post(mocks, "openai", "/v1/chat/completions", {**body, "stream": True})
    chunks = [json.loads(d) for d in sse_data(stream.text)[:-1]]
    first = chunks[0]["choices"][0]["delta"]["tool_calls"][0]
    assert first["function"]["name"] == "lookup" and first["id"].startswith("call_")
    arguments = "".join(c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in chunks[1:-1])
    assert json.loads(arguments) == {"query": "What is the capital "}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_openai_tool_result_is_echoed(mocks):
    messages = CHAT["messages"] + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "Paris, sunny"},
    ]
    reply = post(mocks, "openai", "/v1/chat/completions", {**CHAT, "messages": messages, "tools": [TOOL]}).json()
    assert reply["choices"][0]["message"]["content"] == "[openai/gpt-4o] tool result: Paris, sunny"


def test_azure_deployment_path_names_the_model(mocks):
    path = "/openai/deployments/prod-gpt/chat/completions?api-version=2024-10-21"
    reply = post(mocks, "openai", path, {"messages": CHAT["messages"]}).json()
    assert reply["model"] == "prod-gpt"
    assert reply["choices"][0]["message"]["content"].startswith("[openai/prod-gpt] ")


def test_max_tokens_truncates_with_length_finish(mocks):
    reply = post(mocks, "openai", "/v1/chat/completions", {**CHAT, "max_tokens": 3}).json()
    assert reply["choices"][0]["message"]["content"] == "[openai/gpt-4o] What is"
    assert reply["choices"][0]["finish_reason"] == "length" and reply["usage"]["completion_tokens"] == 3


def test_embeddings_and_models(mocks):
    reply = post(
        mocks, "openai", "/v1/embeddings", {"model": "e3", "input": ["one two", "three"], "dimensions": 4}
    ).json()
    assert [d["index"] for d in reply["data"]] == [0, 1] and len(reply["data"][0]["embedding"]) == 4
    assert reply["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    encoded = post(
        mocks,
        "openai",
        "/v1/embeddings",
        {"model": "e3", "input": "one two", "dimensions": 4, "encoding_format": "base64"},
    ).json()
    floats = struct.unpack("<4f", base64.b64decode(encoded["data"][0]["embedding"]))
    assert floats == pytest.approx(reply["data"][0]["embedding"], rel=1e-6)
    models = requests.get(mocks.url("openai") + "/v1/models", timeout=5).json()
    assert models["object"] == "list" and {m["object"] for m in models["data"]} == {"model"}


def test_bag_of_words_embeddings_put_shared_words_close(mocks):
    def embed(texts, model="bow-mini"):
        reply = post(mocks, "openai", "/v1/embeddings", {"model": model, "input": texts}).json()
        return [d["embedding"] for d in reply["data"]]

    def cosine(a, b):
        return sum(x * y for x, y in zip(a, b))

    same, paraphrase, reordered, unrelated = embed(
        ["How many miles is 5 km?", "how MANY miles is 5 km", "How many km is 5 miles?", "Capital of Peru?"]
    )
    assert len(same) == 256 and cosine(same, same) == pytest.approx(1.0)
    assert cosine(same, paraphrase) == pytest.approx(1.0), "case, punctuation and stop words do not count"
    assert 0.8 < cosine(same, reordered) < 0.95, "same words in another order: close, the documented risk"
    assert abs(cosine(same, unrelated)) < 0.3
    # Other model ids keep the vectors only equal texts share.
    first, second = embed(["How many miles is 5 km?", "how MANY miles is 5 km"], model="e3")
    assert len(first) == 1536 and abs(cosine(first, second)) < 0.2


def test_the_paraphrase_set_is_well_formed():
    path = REPO_ROOT / "tests/data/paraphrases.jsonl"
    pairs = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(pairs) >= 40 and all(set(p) == {"a", "b", "same"} for p in pairs)
    assert {p["same"] for p in pairs} == {True, False}


# --- Anthropic ------------------------------------------------------------------------

CLAUDE = {
    "model": "claude-sonnet-4",
    "max_tokens": 256,
    "system": "Be brief.",
    "messages": [{"role": "user", "content": [{"type": "text", "text": "What is the capital of France today?"}]}],
}


def test_anthropic_message_and_error_shape(mocks):
    message = post(mocks, "anthropic", "/v1/messages", CLAUDE).json()
    assert message["type"] == "message" and message["stop_reason"] == "end_turn"
    assert message["content"] == [
        {"type": "text", "text": "[anthropic/claude-sonnet-4] What is the capital of France today?"}
    ]
    assert message["usage"] == {
        "input_tokens": 15,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 8,
    }
    bad = post(mocks, "anthropic", "/v1/messages", {"model": "claude", "messages": CLAUDE["messages"]})
    assert bad.status_code == 400
    assert bad.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
    }


def test_anthropic_stream_event_sequence(mocks):
    response = post(mocks, "anthropic", "/v1/messages", {**CLAUDE, "stream": True})
    events = anthropic_events(response.text)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert events[0][1]["message"]["usage"]["input_tokens"] == 15
    text = "".join(data["delta"]["text"] for name, data in events if name == "content_block_delta")
    assert text == "[anthropic/claude-sonnet-4] What is the capital of France today?"
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "end_turn" and delta["usage"]["output_tokens"] == 8


def test_anthropic_tool_use_stream_and_tool_result(mocks):
    tools = [{"name": "lookup", "input_schema": {"type": "object"}}]
    events = anthropic_events(post(mocks, "anthropic", "/v1/messages", {**CLAUDE, "tools": tools, "stream": True}).text)
    start = events[1][1]["content_block"]
    assert start["type"] == "tool_use" and start["name"] == "lookup" and start["input"] == {}
    partial = "".join(d["delta"]["partial_json"] for n, d in events if n == "content_block_delta")
    assert json.loads(partial) == {"query": "What is the capital "}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"

    follow_up = CLAUDE["messages"] + [
        {"role": "assistant", "content": [{"type": "tool_use", "id": start["id"], "name": "lookup", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": start["id"], "content": "Paris"}]},
    ]
    reply = post(mocks, "anthropic", "/v1/messages", {**CLAUDE, "tools": tools, "messages": follow_up}).json()
    assert reply["content"][0]["text"] == "[anthropic/claude-sonnet-4] tool result: Paris"


def test_anthropic_prompt_cache_usage(mocks):
    body = {
        **CLAUDE,
        "system": [{"type": "text", "text": "A long cached system prompt.", "cache_control": {"type": "ephemeral"}}],
    }
    first = post(mocks, "anthropic", "/v1/messages", body).json()["usage"]
    second = post(mocks, "anthropic", "/v1/messages", body).json()["usage"]
    assert (first["cache_creation_input_tokens"], first["cache_read_input_tokens"]) == (8, 0)
    assert (second["cache_creation_input_tokens"], second["cache_read_input_tokens"]) == (0, 8)
    assert first["input_tokens"] == second["input_tokens"] == 10


def test_anthropic_prompt_cache_reads_the_earlier_turns_prefix_per_key(mocks):
    def turn(texts: list[str]) -> dict:
        messages = []
        for index, text in enumerate(texts):
            block = {"type": "text", "text": text}
            if index == len(texts) - 1:
                block["cache_control"] = {"type": "ephemeral"}  # as Claude Code marks the newest turn
            messages.append({"role": "user" if index % 2 == 0 else "assistant", "content": [block]})
        return {**CLAUDE, "messages": messages}

    def usage(texts: list[str], key: str) -> tuple[int, int]:
        reply = post(mocks, "anthropic", "/v1/messages", turn(texts), headers={"x-api-key": key}).json()["usage"]
        return reply["cache_read_input_tokens"], reply["cache_creation_input_tokens"]

    first_read, first_written = usage(["one two three"], "k1")
    assert first_read == 0 and first_written > 0
    read, written = usage(["one two three", "four", "five six"], "k1")
    assert read == first_written, "the second turn reads the first turn's prefix"
    assert written > 0, "and writes its own new blocks"
    assert usage(["one two three", "four", "five six"], "k2")[0] == 0, "another key has its own cache"


# --- Gemini ---------------------------------------------------------------------------

GEMINI = {
    "systemInstruction": {"parts": [{"text": "Be brief."}]},
    "contents": [{"role": "user", "parts": [{"text": "What is the capital of France today?"}]}],
}
GEMINI_TEXT = "[gemini/gemini-2.0-flash] What is the capital of France today?"


def test_gemini_generate_content(mocks):
    reply = post(mocks, "gemini", "/v1beta/models/gemini-2.0-flash:generateContent", GEMINI).json()
    candidate = reply["candidates"][0]
    assert candidate["content"] == {"parts": [{"text": GEMINI_TEXT}], "role": "model"}
    assert candidate["finishReason"] == "STOP"
    assert reply["usageMetadata"]["promptTokenCount"] == 15
    assert reply["usageMetadata"]["candidatesTokenCount"] == 8 and reply["usageMetadata"]["totalTokenCount"] == 23


def test_gemini_sse_and_json_array_streams(mocks):
    path = "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    sse = post(mocks, "gemini", path + "?alt=sse", GEMINI)
    assert sse.headers["content-type"] == "text/event-stream"
    chunks = [json.loads(d) for d in sse_data(sse.text, "\r\n\r\n")]
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == GEMINI_TEXT
    assert "finishReason" not in chunks[0]["candidates"][0] and chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] == 8

    array = post(mocks, "gemini", path, GEMINI)
    assert array.text.startswith("[{") and array.text.endswith("]")
    assert [c["candidates"][0]["content"] for c in array.json()] == [c["candidates"][0]["content"] for c in chunks]


def test_gemini_function_call_and_response(mocks):
    tools = [{"functionDeclarations": [{"name": "lookup", "parameters": {"type": "object"}}]}]
    path = "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    chunks = [json.loads(d) for d in sse_data(post(mocks, "gemini", path, {**GEMINI, "tools": tools}).text, "\r\n\r\n")]
    assert len(chunks) == 1
    assert chunks[0]["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "lookup", "args": {"query": "What is the capital "}}}
    ]

    contents = GEMINI["contents"] + [
        {"role": "model", "parts": [{"functionCall": {"name": "lookup", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "lookup", "response": {"city": "Paris"}}}]},
    ]
    reply = post(mocks, "gemini", "/v1beta/models/g:generateContent", {**GEMINI, "tools": tools, "contents": contents})
    assert reply.json()["candidates"][0]["content"]["parts"][0]["text"] == '[gemini/g] tool result: {"city":"Paris"}'


# --- Bedrock --------------------------------------------------------------------------

BEDROCK = {
    "system": [{"text": "Be brief."}],
    "messages": [{"role": "user", "content": [{"text": "What is the capital of France today?"}]}],
}
MODEL_PATH = "/model/anthropic.claude-3-haiku-20240307-v1%3A0"


def test_eventstream_codec_matches_reference_vector_and_checks_crcs():
    # Reference frame from AWS event-stream documentation examples: payload {"foo": "bar"}, no headers.
    expected = bytes([0, 0, 0, 30, 0, 0, 0, 0, 186, 242, 246, 138]) + b'{"foo": "bar"}' + bytes([174, 114, 88, 228])
    assert encode_event({}, b'{"foo": "bar"}') == expected
    frame = encode_event({":event-type": "x"}, b"{}")
    [message] = decode_event_stream(frame)
    assert message.headers == {":event-type": "x"} and message.payload == b"{}"
    corrupted = frame[:-5] + bytes([frame[-5] ^ 1]) + frame[-4:]
    with pytest.raises(ValueError, match="message CRC"):
        decode_event_stream(corrupted)
    with pytest.raises(ValueError):
        decode_event_stream(frame[:-1])


def test_bedrock_converse(mocks):
    reply = post(mocks, "bedrock", MODEL_PATH + "/converse", BEDROCK).json()
    assert reply["output"]["message"] == {
        "role": "assistant",
        "content": [{"text": "[bedrock/anthropic.claude-3-haiku-20240307-v1:0] What is the capital of France today?"}],
    }
    assert reply["stopReason"] == "end_turn"
    assert reply["usage"] == {"inputTokens": 15, "outputTokens": 8, "totalTokens": 23}


def test_bedrock_converse_stream_frames(mocks):
    response = post(mocks, "bedrock", MODEL_PATH + "/converse-stream", BEDROCK)
    assert response.headers["content-type"] == "application/vnd.amazon.eventstream"
    messages = decode_event_stream(response.content)
    types = [m.headers[":event-type"] for m in messages]
    assert types[0] == "messageStart" and types[-3:] == ["contentBlockStop", "messageStop", "metadata"]
    assert set(types[1:-3]) == {"contentBlockDelta"}
    assert all(
        m.headers[":message-type"] == "event" and m.headers[":content-type"] == "application/json" for m in messages
    )
    payloads = [json.loads(m.payload) for m in messages]
    text = "".join(p["delta"]["text"] for p in payloads[1:-3])
    assert text == "[bedrock/anthropic.claude-3-haiku-20240307-v1:0] What is the capital of France today?"
    assert payloads[-2]["stopReason"] == "end_turn"
    assert payloads[-1]["usage"] == {"inputTokens": 15, "outputTokens": 8, "totalTokens": 23}
    assert "latencyMs" in payloads[-1]["metrics"]


def test_bedrock_tool_use_stream_and_result(mocks):
    body = {**BEDROCK, "toolConfig": {"tools": [{"toolSpec": {"name": "lookup", "inputSchema": {"json": {}}}}]}}
    payloads = {}
    for m in decode_event_stream(post(mocks, "bedrock", MODEL_PATH + "/converse-stream", body).content):
        payloads.setdefault(m.headers[":event-type"], []).append(json.loads(m.payload))
    start = payloads["contentBlockStart"][0]["start"]["toolUse"]
    assert start["name"] == "lookup"
    arguments = "".join(p["delta"]["toolUse"]["input"] for p in payloads["contentBlockDelta"])
    assert json.loads(arguments) == {"query": "What is the capital "}
    assert payloads["messageStop"][0]["stopReason"] == "tool_use"

    messages = BEDROCK["messages"] + [
        {
            "role": "assistant",
            "content": [{"toolUse": {"toolUseId": start["toolUseId"], "name": "lookup", "input": {}}}],
        },
        {
            "role": "user",
            "content": [{"toolResult": {"toolUseId": start["toolUseId"], "content": [{"text": "Paris"}]}}],
        },
    ]
    reply = post(mocks, "bedrock", "/model/m/converse", {**body, "messages": messages}).json()
    assert reply["output"]["message"]["content"][0]["text"] == "[bedrock/m] tool result: Paris"


# --- HTTP layer -----------------------------------------------------------------------


def test_chunked_request_body_and_keep_alive(mocks):
    payload = json.dumps(CHAT).encode()
    parts = [payload[:10], payload[10:25], payload[25:]]
    chunked = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\nx-trailer: 1\r\n\r\n"
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\n\r\n"
    with socket.create_connection(("127.0.0.1", mocks.ports["openai"]), timeout=5) as sock:
        for _ in range(2):  # the same connection serves a second request
            sock.sendall(head + chunked)
            status, body = read_response(sock)
            assert status.startswith(b"HTTP/1.1 200 OK\r\n") and b"[openai/gpt-4o]" in body
    recorded = mocks.requests("openai")
    assert len(recorded) == 2 and recorded[0].body == payload and recorded[0].json == CHAT
    assert recorded[0].header("transfer-encoding") == "chunked"


def test_malformed_request_gets_400(mocks):
    received, _, _ = raw_exchange(mocks.ports["openai"], b"NONSENSE\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 400 ")


def test_unknown_path_is_404(mocks):
    response = requests.get(mocks.url("openai") + "/v2/nothing", timeout=5)
    assert response.status_code == 404 and "no route" in response.json()["error"]["message"]


def test_hundreds_of_concurrent_connections(mocks):
    request = raw_request("/v1/chat/completions", CHAT)
    socks = [socket.create_connection(("127.0.0.1", mocks.ports["openai"]), timeout=10) for _ in range(300)]
    try:
        for sock in socks:
            sock.sendall(request)
        for sock in socks:
            response = b""
            while chunk := sock.recv(65536):
                response += chunk
            assert response.startswith(b"HTTP/1.1 200 OK") and b"[openai/gpt-4o]" in response
    finally:
        for sock in socks:
            sock.close()


# --- faults ---------------------------------------------------------------------------

ERROR_SHAPES = [
    ("openai", "/v1/chat/completions", CHAT, lambda b: b["error"]["type"] == "requests"),
    ("anthropic", "/v1/messages", CLAUDE, lambda b: b["error"]["type"] == "rate_limit_error" and b["type"] == "error"),
    (
        "gemini",
        "/v1beta/models/g:generateContent",
        GEMINI,
        lambda b: b["error"]["status"] == "RESOURCE_EXHAUSTED" and b["error"]["details"][0]["retryDelay"] == "2s",
    ),
    ("bedrock", "/model/m/converse", BEDROCK, lambda b: set(b) == {"message"}),
]


@pytest.mark.parametrize("name,path,body,shape_ok", ERROR_SHAPES, ids=[s[0] for s in ERROR_SHAPES])
def test_429_uses_provider_error_shape_and_retry_after(mocks, name, path, body, shape_ok):
    mocks.set_behavior(name, {"status": 429, "retry_after": 2})
    response = post(mocks, name, path, body)
    assert response.status_code == 429 and response.headers["retry-after"] == "2"
    assert shape_ok(response.json())
    if name == "bedrock":
        assert response.headers["x-amzn-errortype"].startswith("ThrottlingException:")


def test_script_then_default_then_reset(mocks):
    mocks.set_behavior("anthropic", {"status": 529})
    mocks.set_script("anthropic", [{"status": 500}, {"status": 503, "message": "try later"}, None])
    statuses = [post(mocks, "anthropic", "/v1/messages", CLAUDE) for _ in range(4)]
    assert [r.status_code for r in statuses] == [500, 503, 200, 529]
    assert statuses[1].json()["error"] == {"type": "api_error", "message": "try later"}
    assert statuses[3].json()["error"]["type"] == "overloaded_error"
    mocks.reset_behavior()
    assert post(mocks, "anthropic", "/v1/messages", CLAUDE).status_code == 200


def test_hang_times_out_client_and_is_recorded(mocks):
    mocks.set_behavior("openai", {"hang": True})
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(mocks.url("openai") + "/v1/chat/completions", json=CHAT, timeout=0.5)
    assert time.monotonic() - started < 3
    assert mocks.wait_for_requests("openai", 1)[0].json == CHAT


def test_reset_is_a_connection_error(mocks):
    mocks.set_behavior("openai", {"reset": True})
    with pytest.raises(requests.exceptions.ConnectionError):
        post(mocks, "openai", "/v1/chat/completions", CHAT)
    received, _, error = raw_exchange(mocks.ports["openai"], raw_request("/v1/chat/completions", CHAT))
    assert received == b"" and isinstance(error, ConnectionResetError)


def test_reset_after_events_delivers_exactly_k_events(mocks):
    mocks.set_behavior("openai", {"reset_after_events": 3})
    request = raw_request("/v1/chat/completions", {**CHAT, "stream": True})
    received, _, error = raw_exchange(mocks.ports["openai"], request)
    assert isinstance(error, ConnectionResetError)
    head, body = dechunk(received)
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert body.count(b"data: ") == 3 and body.endswith(b"\n\n") and not received.endswith(b"0\r\n\r\n")


def test_delays(mocks):
    mocks.set_behavior("openai", {"delay_ms": 300})
    started = time.monotonic()
    post(mocks, "openai", "/v1/chat/completions", CHAT)
    assert time.monotonic() - started >= 0.3

    mocks.set_behavior("openai", {"first_token_delay_ms": 400, "chunk_delay_ms": 20})
    started = time.monotonic()
    with requests.post(
        mocks.url("openai") + "/v1/chat/completions", json={**CHAT, "stream": True}, stream=True, timeout=10
    ) as response:
        headers_at = time.monotonic() - started  # headers are not held back by the token delays
        text = response.content.decode()
    total = time.monotonic() - started
    events = len(sse_data(text))
    assert headers_at < 0.3 and total >= 0.4 + 0.02 * (events - 1)


@pytest.mark.parametrize("split", ["every-byte", "random", 7])
def test_split_streams_reassemble_identically(mocks, split):
    path, body = "/model/m/converse-stream", {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}
    _, normal = dechunk(raw_exchange(mocks.ports["bedrock"], raw_request(path, body))[0])
    mocks.set_behavior("bedrock", {"split": split})
    raw, reads, _ = raw_exchange(mocks.ports["bedrock"], raw_request(path, body))
    _, cut = dechunk(raw)
    assert cut == normal  # event payloads carry no per-request values
    assert len(decode_event_stream(cut)) == len(decode_event_stream(normal))
    assert reads > len(decode_event_stream(normal)), "pieces should arrive in separate reads"


def test_fault_header_is_one_off_and_validated(mocks):
    fault = {"x-mock-fault": json.dumps({"status": 500})}
    assert (
        post(mocks, "gemini", "/v1beta/models/g:generateContent", GEMINI, headers=fault).json()["error"]["status"]
        == "INTERNAL"
    )
    assert post(mocks, "gemini", "/v1beta/models/g:generateContent", GEMINI).status_code == 200
    bad = post(mocks, "gemini", "/v1beta/models/g:generateContent", GEMINI, headers={"x-mock-fault": '{"stauts": 1}'})
    assert bad.status_code == 400 and "stauts" in bad.json()["error"]["message"]
    with pytest.raises(ValueError, match="unknown behavior keys"):
        mocks.set_behavior("gemini", {"hang": True, "dealy_ms": 5})


# --- recording and control endpoints --------------------------------------------------


def test_a_behavior_can_target_requests_by_header(mocks):
    mocks.set_behavior("openai", {"status": 401, "when_header": {"authorization": "Bearer sk-bad"}})
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    bad = post(mocks, "openai", "/v1/chat/completions", chat, headers={"authorization": "Bearer sk-bad"})
    good = post(mocks, "openai", "/v1/chat/completions", chat, headers={"authorization": "Bearer sk-good"})
    assert (bad.status_code, good.status_code) == (401, 200)
    with pytest.raises(ValueError):
        mocks.set_behavior("openai", {"status": 401, "when_header": ["authorization"]})


def test_recording_and_http_control_endpoints(mocks):
    base = mocks.url("openai")
    post(mocks, "openai", "/v1/chat/completions?trace=1", CHAT, headers={"Authorization": "Bearer k"})
    [recorded] = requests.get(base + "/__mock/requests", timeout=5).json()
    assert recorded["instance"] == "openai" and recorded["method"] == "POST"
    assert recorded["path"] == "/v1/chat/completions?trace=1"
    assert ["authorization", "Bearer k"] in recorded["headers"]
    assert recorded["json"] == CHAT and json.loads(base64.b64decode(recorded["body_base64"])) == CHAT
    assert mocks.requests("openai")[0].header("Authorization") == "Bearer k"

    assert requests.delete(base + "/__mock/requests", timeout=5).json() == {"cleared": 1}
    assert mocks.requests("openai") == []

    spec = {"default": {"status": 503}, "script": [None]}
    assert requests.post(base + "/__mock/behavior", json=spec, timeout=5).json() == {**spec, "script": [{}]}
    assert [post(mocks, "openai", "/v1/chat/completions", CHAT).status_code for _ in range(2)] == [200, 503]
    assert requests.delete(base + "/__mock/behavior", timeout=5).json() == {"default": {}, "script": []}
    assert post(mocks, "openai", "/v1/chat/completions", CHAT).status_code == 200
    rejected = requests.post(base + "/__mock/behavior", json={"split": 0}, timeout=5)
    assert rejected.status_code == 400
    assert requests.get(base + "/__mock/health", timeout=5).json() == {"name": "openai", "port": mocks.ports["openai"]}
    assert len(mocks.requests("openai")) == 3  # control calls are not recorded


def test_stop_is_fast_with_hanging_connections():
    providers = MockProviders()
    port = providers.start(["slow"])["slow"]
    providers.set_behavior("slow", {"hang": True})
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    for client in clients:
        client.sendall(raw_request("/v1/chat/completions", CHAT))
    providers.wait_for_requests("slow", 5)
    started = time.monotonic()
    providers.stop()
    assert time.monotonic() - started < 3
    assert not any(t.name == "mock-providers" for t in threading.enumerate())
    for client in clients:
        client.settimeout(2)
        assert client.recv(10) == b""
        client.close()


def test_standalone_cli_serves_until_sigterm():
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.mocks", "--listen", "alpha=0", "--listen", "beta"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        lines = [process.stdout.readline().strip() for _ in range(2)]
        assert [line.split()[1] for line in lines] == ["alpha", "beta"]
        url = lines[0].rsplit(" ", 1)[1]
        reply = requests.post(url + "/v1/messages", json=CLAUDE, timeout=5).json()
        assert reply["content"][0]["text"].startswith("[alpha/claude-sonnet-4] ")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        process.kill()
        process.wait()
