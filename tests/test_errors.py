"""Bad input through the real Envoy: every request gets one clean OpenAI-style
error with the right status, and the next good request is still served (a
panic would poison the worker's Wasm VM and fail every later request)."""

from __future__ import annotations

import json
import random
import socket

import pytest

from tests.gateway import chat_body, demo_plugin_config

GOOD = chat_body("hello there")


def assert_openai_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


def assert_still_serving(gateway, times: int = 4):
    """Good requests still work on every worker (requests spread over new connections)."""
    for _ in range(times):
        response = gateway.chat(GOOD, headers={"connection": "close"})
        assert response.status_code == 200, response.text


MALFORMED = {
    "empty": b"",
    "garbage": b"\x00\x01 this is not json \xff",
    "truncated": json.dumps(GOOD).encode()[:-7],
    "array": b"[1, 2, 3]",
    "null": b"null",
    "missing-messages": b'{"model": "auto"}',
    "empty-messages": b'{"model": "auto", "messages": []}',
    "messages-wrong-type": b'{"model": "auto", "messages": "hello"}',
    "model-wrong-type": b'{"model": 42, "messages": [{"role": "user", "content": "x"}]}',
    "content-wrong-type": b'{"model": "auto", "messages": [{"role": "user", "content": 7}]}',
    "unknown-role": b'{"model": "auto", "messages": [{"role": "wizard", "content": "x"}]}',
    "non-utf8-string": b'{"model": "auto", "messages": [{"role": "user", "content": "\xc3\x28\xff"}]}',
    "duplicate-model": b'{"model": "auto", "model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}',
    "deep-in-messages": b'{"model": "auto", "messages": [{"role": "user", "content": ' + b"[" * 50_000 + b"]" * 50_000 + b"}]}",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_bodies_get_a_400(gateway, name):
    assert_openai_error(gateway.chat(MALFORMED[name], headers={"content-type": "application/json"}), 400)
    assert gateway.mocks.requests() == []
    assert_still_serving(gateway, times=2)


def test_nesting_deeper_than_64_anywhere_is_refused_and_not_forwarded(gateway):
    shallow = json.dumps(GOOD)[:-1] + ', "extra": ' + "[" * 60 + "]" * 60 + "}"
    response = gateway.chat(shallow)
    assert response.status_code == 200
    assert gateway.last_request("openai").body.endswith(b"]" * 60 + b"}")
    gateway.mocks.clear()
    # Deeper than serde's recursion limit (128), in a field routing never reads.
    nested = json.dumps(GOOD)[:-1] + ', "extra": ' + "[" * 600 + "]" * 600 + "}"
    error = assert_openai_error(gateway.chat(nested), 400)
    assert "deeper than 64" in error["message"]
    assert gateway.mocks.requests() == []


def test_random_garbage_never_breaks_the_gateway(gateway):
    generator = random.Random(7)
    for _ in range(40):
        size = generator.choice([1, 10, 100, 5000])
        body = bytes(generator.randrange(256) for _ in range(size))
        response = gateway.chat(body)
        assert_openai_error(response, 400)
    assert_still_serving(gateway)


def test_an_unknown_model_is_a_404(gateway):
    error = assert_openai_error(gateway.chat(chat_body("hi", model="gpt-17")), 404, "model_not_found")
    assert "gpt-17" in error["message"]
    assert error["param"] == "model"


def test_a_request_no_model_can_hold_is_rejected(gateway):
    too_long = chat_body("hi", max_tokens=5_000_000)
    assert_openai_error(gateway.chat(too_long), 400, "context_length_exceeded")
    named = chat_body("hi", model="gpt-4o-mini", max_tokens=500_000)
    assert_openai_error(gateway.chat(named), 400, "context_length_exceeded")
    assert gateway.mocks.requests() == []


def test_a_body_over_the_limit_is_a_413_whether_its_length_is_declared_or_not(start_gateway):
    plugin = demo_plugin_config()
    plugin["max_body_bytes"] = 64 * 1024
    gateway = start_gateway(plugin)
    huge = json.dumps(chat_body("x" * 100_000)).encode()
    assert_openai_error(gateway.chat(huge), 413, "request_too_large")
    chunks = iter([huge[i : i + 8192] for i in range(0, len(huge), 8192)])
    assert_openai_error(gateway.chat(chunks), 413, "request_too_large")
    assert gateway.mocks.requests() == []
    assert_still_serving(gateway)


def test_a_large_body_under_the_default_limit_is_routed(gateway):
    # ~600 KB, ~150k tokens: more than the cheap model's window, within the large ones'.
    body = chat_body("Summarize this log:\n" + "line of log output with some words\n" * 17_000)
    response = gateway.chat(body)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["x-signalbox-provider"] == "anthropic"
    assert len(gateway.last_request("anthropic").body) > 600_000


def test_a_five_megabyte_body_gets_the_filters_413_not_envoys(gateway):
    body = json.dumps(chat_body("y" * (5 * 1024 * 1024))).encode()
    assert_openai_error(gateway.chat(body), 413, "request_too_large")
    assert_still_serving(gateway)


def test_wrong_methods_and_missing_bodies(gateway):
    import requests

    get = requests.get(gateway.url + "/v1/chat/completions", timeout=10)
    assert_openai_error(get, 405, "method_not_allowed")
    assert get.headers["allow"] == "POST"
    assert_openai_error(gateway.chat(b""), 400)


def test_a_client_that_disconnects_mid_body_leaves_the_gateway_healthy(gateway):
    port = gateway.envoy.listener_port()
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
            connection.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                b"content-length: 1000\r\n\r\n" + b'{"model": "auto", "mess'
            )
    assert_still_serving(gateway)
    assert "panicked" not in gateway.envoy.log_text()


def test_non_utf8_header_values_do_not_break_rules(start_gateway):
    plugin = demo_plugin_config()
    plugin["rules"] = [{"name": "team", "when": {"headers": {"x-team": "^research$"}}, "then": {"tier": "complex"}}]
    gateway = start_gateway(plugin)
    port = gateway.envoy.listener_port()
    body = json.dumps(GOOD).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-team: \xff\xfe\r\n"
        b"authorization: Bearer sk-demo-team\r\n"
        b"x-signalbox-explain: \xc3\x28\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert b"x-signalbox-tier: simple" in reply
    assert_still_serving(gateway)
