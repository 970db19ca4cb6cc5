"""Body-aware routing through the real Envoy: the tier and model chosen, what
the provider receives, and what the client is told."""

from __future__ import annotations

import concurrent.futures
import json

from tests.gateway import chat_body, demo_plugin_config, with_plugin

SIMPLE = "What is the capital of France?"
CODE = "Write a Python function that merges overlapping intervals, with unit tests, and explain its time complexity."
MATH = (
    "A tank holds 1200 litres. Pipe A fills it in 6 hours and pipe B drains it in 9 hours. "
    "If both run together starting from empty, how many hours until the tank is full? Show your work step by step."
)
ANALYSIS = (
    "Analyze the trade-offs between event sourcing and a conventional CRUD database for an order system. "
    "First compare consistency, then evaluate operational cost, and finally recommend one approach with a migration plan."
)


def test_a_simple_prompt_goes_to_the_cheap_model(gateway):
    response = gateway.chat(chat_body(SIMPLE))
    assert response.status_code == 200
    assert response.headers["x-signalbox-tier"] == "simple"
    assert response.headers["x-signalbox-model"] == "gpt-4o-mini"
    assert response.headers["x-signalbox-provider"] == "openai"
    assert response.json()["model"] == "gpt-4o-mini"
    assert gateway.last_request("openai").json["model"] == "gpt-4o-mini"
    assert gateway.mocks.requests("anthropic") == []


def test_code_math_and_analysis_go_to_the_strong_model(gateway):
    for prompt in (CODE, MATH, ANALYSIS):
        response = gateway.chat(chat_body(prompt), headers={"x-signalbox-explain": "1"})
        assert response.status_code == 200, response.text
        assert response.headers["x-signalbox-tier"] == "complex", (prompt, response.headers)
        assert response.headers["x-signalbox-model"] == "claude-sonnet"
        assert gateway.last_request("anthropic").json["model"] == "claude-sonnet-4-5"


def test_the_provider_gets_its_model_id_and_key_and_the_rest_of_the_body_untouched(gateway):
    body = chat_body(
        SIMPLE,
        temperature=0.25,
        top_p=0.9,
        user="u-42",
        metadata={"model": "not-this-one", "nested": [1, {"a": "b"}]},
        messages=[
            {"role": "system", "content": "Answer in one word."},
            {"role": "user", "content": [{"type": "text", "text": SIMPLE}]},
        ],
    )
    response = gateway.chat(body, headers={"authorization": "Bearer sk-demo-team", "api-key": "client-key"})
    assert response.status_code == 200
    received = gateway.last_request("openai")
    assert received.path == "/v1/chat/completions"
    assert received.header("authorization") == "Bearer sk-demo-openai"
    assert received.header("api-key") is None
    assert received.header("x-signalbox-cluster") is None, "the routing header is internal"
    assert received.json == {**body, "model": "gpt-4o-mini"}
    assert int(received.header("content-length")) == len(received.body)
    assert "sk-demo-team" not in json.dumps(received.headers) + gateway.envoy.log_text()


def test_a_chunked_request_body_is_routed_like_any_other(gateway):
    payload = json.dumps(chat_body(SIMPLE)).encode()
    response = gateway.chat(iter([payload[:10], payload[10:]]))  # requests sends a generator chunked
    assert response.status_code == 200
    assert gateway.last_request("openai").json["model"] == "gpt-4o-mini"


def test_a_named_model_routes_straight_to_its_provider(gateway):
    response = gateway.chat(chat_body(SIMPLE, model="claude-sonnet"))
    assert response.status_code == 200
    assert response.headers["x-signalbox-model"] == "claude-sonnet"
    assert "x-signalbox-tier" not in response.headers
    received = gateway.last_request("anthropic")
    assert received.json["model"] == "claude-sonnet-4-5"
    assert received.header("authorization") == "Bearer sk-demo-anthropic"


def test_the_auto_alias_works_like_auto(gateway):
    response = gateway.chat(chat_body(SIMPLE, model="signalbox/auto"))
    assert response.headers["x-signalbox-model"] == "gpt-4o-mini"


def test_explain_headers_only_when_asked(gateway):
    plain = gateway.chat(chat_body(CODE))
    assert "x-signalbox-score" not in plain.headers
    explained = gateway.chat(chat_body(CODE), headers={"x-signalbox-explain": "1"})
    score = float(explained.headers["x-signalbox-score"])
    assert 0.55 <= score <= 1.0
    assert "code=+" in explained.headers["x-signalbox-signals"]
    assert explained.headers["x-signalbox-reason"] == "score"
    assert gateway.last_request("anthropic").header("x-signalbox-explain") is None


def test_explain_can_be_switched_off(start_gateway):
    gateway = start_gateway(with_plugin(demo_plugin_config(), explain="never"))
    response = gateway.chat(chat_body(CODE), headers={"x-signalbox-explain": "1"})
    assert response.status_code == 200
    assert "x-signalbox-score" not in response.headers and "x-signalbox-signals" not in response.headers


def test_client_steering_headers_are_ignored_unless_trusted(gateway, start_gateway):
    steering = {"x-signalbox-tier": "complex", "x-signalbox-model": "gpt-4o", "x-signalbox-cluster": "anthropic"}
    response = gateway.chat(chat_body(SIMPLE), headers=steering)
    assert response.headers["x-signalbox-model"] == "gpt-4o-mini"
    received = gateway.last_request("openai")
    assert not [name for name, _ in received.headers if name.startswith("x-signalbox-")]

    trusting = start_gateway(with_plugin(demo_plugin_config(), trust_client_headers=True))
    response = trusting.chat(chat_body(SIMPLE), headers={"x-signalbox-tier": "complex", "x-signalbox-explain": "1"})
    assert response.headers["x-signalbox-tier"] == "complex"
    assert response.headers["x-signalbox-reason"] == "client-header"


def test_a_rule_forces_a_tier(gateway):
    response = gateway.chat(chat_body("hi! quick one: is this contract ok?"), headers={"x-signalbox-explain": "1"})
    assert response.headers["x-signalbox-tier"] == "complex"
    assert response.headers["x-signalbox-reason"] == "rule:legal-review"


def test_header_and_system_prompt_rules(start_gateway):
    plugin = demo_plugin_config()
    plugin["rules"] = [
        {"name": "vip", "when": {"headers": {"x-team": "^research$"}}, "then": {"model": "gpt-4o"}},
        {"name": "coder-bot", "when": {"system": "(?i)you are a coding assistant"}, "then": {"tier": "complex"}},
    ]
    gateway = start_gateway(plugin)
    vip = gateway.chat(chat_body(SIMPLE), headers={"x-team": "research", "x-signalbox-explain": "1"})
    assert vip.headers["x-signalbox-model"] == "gpt-4o"
    assert vip.headers["x-signalbox-reason"] == "rule:vip"
    system = chat_body(SIMPLE, messages=[{"role": "system", "content": "You are a coding assistant."}, {"role": "user", "content": SIMPLE}])
    assert gateway.chat(system).headers["x-signalbox-tier"] == "complex"
    assert gateway.chat(chat_body(SIMPLE), headers={"x-team": "sales"}).headers["x-signalbox-tier"] == "simple"


def test_a_prompt_too_long_for_the_cheap_model_moves_to_one_that_fits(start_gateway):
    plugin = demo_plugin_config()
    plugin["models"]["gpt-4o-mini"]["context_window"] = 1000
    gateway = start_gateway(plugin)
    long_but_simple = "Translate to French: " + "hello " * 1500
    response = gateway.chat(chat_body(long_but_simple), headers={"x-signalbox-explain": "1"})
    assert response.status_code == 200
    assert response.headers["x-signalbox-model"] != "gpt-4o-mini"


def test_streaming_responses_pass_through_intact(gateway):
    response = gateway.chat(chat_body(SIMPLE, stream=True), stream=True)
    assert response.status_code == 200
    assert response.headers["x-signalbox-model"] == "gpt-4o-mini"
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line for line in response.iter_lines() if line.startswith(b"data: ")]
    assert events[-1] == b"data: [DONE]"
    text = "".join(
        chunk["choices"][0]["delta"].get("content") or ""
        for chunk in (json.loads(event[6:]) for event in events[:-1])
        if chunk["choices"]
    )
    assert text == f"[openai/gpt-4o-mini] {SIMPLE}"


def test_the_models_endpoint_lists_aliases_and_models(gateway):
    import requests

    listing = requests.get(gateway.url + "/v1/models", timeout=10).json()
    ids = {model["id"] for model in listing["data"]}
    assert {"auto", "signalbox/auto", "gpt-4o-mini", "claude-sonnet"} <= ids


def test_paths_signalbox_does_not_own_are_left_to_the_route_table(gateway):
    import requests

    response = requests.get(gateway.url + "/healthz", timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_url"


def test_every_worker_routes_concurrent_requests(gateway):
    prompts = [SIMPLE, CODE] * 40

    def send(prompt):
        response = gateway.chat(chat_body(prompt))
        return response.status_code, response.headers.get("x-signalbox-tier")

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(send, prompts))
    assert results.count((200, "simple")) == 40
    assert results.count((200, "complex")) == 40
