"""Coding agents through the gateway: Anthropic's Messages API (Claude Code)
and OpenAI's Responses API (Codex), driven with the official SDKs through the
real Envoy. Both are translated to chat, routed and governed like chat, sent
to OpenAI- and Anthropic-kind mocks, and answered in the client's format."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest
import requests

from tests.gateway import DEMO_KEY, REQUEST_TIMEOUT_S, add_cluster, demo_plugin_config

# model name -> (mock instance, model id the provider receives, path it is called on)
MODELS = {
    "gpt": ("openai", "gpt-4o-mini", "/v1/chat/completions"),
    "claude": ("anthropic", "claude-sonnet-4-5", "/v1/messages"),
}
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather of a city",
    "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
}


def agents_config() -> dict:
    return {
        "explain": "always",
        # Claude Code asks for its own model names: one of them routes by complexity.
        "auto_models": ["auto", "claude-sonnet-4-6"],
        "providers": {
            "openai": {"cluster": "openai", "vendor": "openai", "api_key": "sk-openai"},
            "anthropic": {"kind": "anthropic", "cluster": "anthropic", "api_key": "sk-ant"},
        },
        "models": {
            "gpt": {"provider": "openai", "id": "gpt-4o-mini"},
            "claude": {"provider": "anthropic", "id": "claude-sonnet-4-5", "fallbacks": ["gpt"]},
        },
        "tiers": [{"name": "all", "models": ["gpt"]}],
    }


@pytest.fixture
def agents(start_gateway):
    return start_gateway(agents_config())


def claude_client(gateway, key: str = "unused") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0, timeout=REQUEST_TIMEOUT_S)


def openai_client(gateway, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=REQUEST_TIMEOUT_S)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_anthropic_sdk_messages_create(agents, model):
    instance, model_id, path = MODELS[model]
    raw = claude_client(agents).messages.with_raw_response.create(
        model=model, max_tokens=100, system="Be brief.", messages=[{"role": "user", "content": "Say hello"}]
    )
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].text == f"[{instance}/{model_id}] Say hello"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert raw.headers["x-signalbox-provider"] == instance
    assert raw.headers["x-signalbox-model"] == model
    received = agents.last_request(instance)
    assert received.path == path
    assert received.json["model"] == model_id
    # The client's key never reaches the provider; the gateway's does.
    assert "unused" not in json.dumps(received.headers)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_anthropic_sdk_tool_round_trip(agents, model):
    instance, model_id, _ = MODELS[model]
    client = claude_client(agents)
    question = {"role": "user", "content": "Weather in Paris"}
    first = client.messages.create(model=model, max_tokens=100, tools=[WEATHER_TOOL], messages=[question])
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "get_weather"
    assert call.input == {"query": "Weather in Paris"}
    second = client.messages.create(
        model=model,
        max_tokens=100,
        tools=[WEATHER_TOOL],
        messages=[
            question,
            {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 21C"}]},
        ],
    )
    assert second.stop_reason == "end_turn"
    assert second.content[0].text == f"[{instance}/{model_id}] tool result: Sunny, 21C"


@pytest.mark.parametrize("model", sorted(MODELS))
def test_anthropic_sdk_stream(agents, model):
    instance, model_id, _ = MODELS[model]
    with claude_client(agents).messages.stream(
        model=model, max_tokens=100, messages=[{"role": "user", "content": "Stream me a short answer please"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
        headers = stream.response.headers
    assert text == f"[{instance}/{model_id}] Stream me a short answer please"
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["x-signalbox-provider"] == instance


def test_anthropic_sdk_streams_tool_calls(agents):
    with claude_client(agents).messages.stream(
        model="gpt", max_tokens=100, tools=[WEATHER_TOOL], messages=[{"role": "user", "content": "Weather in Oslo"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    call = next(block for block in final.content if block.type == "tool_use")
    assert call.input == {"query": "Weather in Oslo"}


def test_claude_codes_model_names_route_by_complexity(agents):
    raw = claude_client(agents).messages.with_raw_response.create(
        model="claude-sonnet-4-6", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.parse().content[0].text.startswith("[openai/gpt-4o-mini] ")
    assert raw.headers["x-signalbox-tier"] == "all"


def test_count_tokens_is_answered_by_the_gateway(agents):
    count = claude_client(agents).messages.count_tokens(
        model="claude", system="Be brief.", messages=[{"role": "user", "content": "Count the tokens of this prompt"}]
    )
    assert count.input_tokens > 0
    assert agents.mocks.requests() == []


# OpenAI itself takes a Responses request as it came; other providers get chat.
RESPONSES_PATHS = {"gpt": "/v1/responses", "claude": "/v1/messages"}


def test_openai_sdk_responses_create(agents):
    for model, (instance, model_id, _) in MODELS.items():
        response = openai_client(agents).responses.create(model=model, instructions="Be brief.", input="Say hello")
        assert response.status == "completed"
        assert response.output_text == f"[{instance}/{model_id}] Say hello"
        assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
        assert agents.last_request(instance).path == RESPONSES_PATHS[model]


def test_openai_sdk_responses_stream(agents):
    for model, (instance, model_id, _) in MODELS.items():
        stream = openai_client(agents).responses.create(model=model, input="Stream me a short answer please", stream=True)
        events = list(stream)
        text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
        assert text == f"[{instance}/{model_id}] Stream me a short answer please"
        assert events[0].type == "response.created"
        completed = events[-1]
        assert completed.type == "response.completed"
        assert completed.response.output_text == text
        assert completed.response.usage.output_tokens > 0


def test_a_malformed_messages_body_gets_anthropics_error_and_reaches_no_provider(agents):
    # max_tokens is required by the Messages API.
    response = agents.post("/v1/messages", {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError):
        claude_client(agents).messages.create(model="gpt", max_tokens=10, messages=[{"role": "robot", "content": "hi"}])
    with pytest.raises(anthropic.NotFoundError):
        claude_client(agents).messages.create(model="nope", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert agents.mocks.requests() == []


def test_provider_errors_come_back_in_the_clients_shape(agents):
    agents.mocks.set_behavior("openai", {"status": 400, "message": "bad things"})
    with pytest.raises(anthropic.BadRequestError) as raised:
        claude_client(agents).messages.create(model="gpt", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert raised.value.body["type"] == "error"
    assert raised.value.body["error"]["type"] == "invalid_request_error"


def test_an_exhausted_chain_is_an_anthropic_overloaded_or_api_error(agents):
    agents.mocks.set_behavior("openai", {"status": 503})
    response = agents.post(
        "/v1/messages", {"model": "gpt", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    )
    assert response.status_code >= 500
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] in ("overloaded_error", "api_error")


def test_messages_fail_over_from_anthropic_to_openai(agents):
    agents.mocks.set_behavior("anthropic", {"status": 500})
    raw = claude_client(agents).messages.with_raw_response.create(
        model="claude", max_tokens=50, messages=[{"role": "user", "content": "Say hello"}]
    )
    assert raw.parse().content[0].text == "[openai/gpt-4o-mini] Say hello"
    assert raw.headers["x-signalbox-provider"] == "openai"
    assert "2" in raw.headers["x-signalbox-attempts"]


def test_the_demo_governs_agents_with_virtual_keys(gateway):
    raw = claude_client(gateway, DEMO_KEY).messages.with_raw_response.create(
        model="auto", max_tokens=50, messages=[{"role": "user", "content": "Say hello"}]
    )
    assert raw.parse().content[0].text
    assert any(name.startswith("x-signalbox-") for name in raw.headers)
    # Older Anthropic clients send the key as x-api-key.
    response = requests.post(
        gateway.url + "/v1/messages",
        json={"model": "auto", "max_tokens": 50, "messages": [{"role": "user", "content": "Say hello"}]},
        headers={"x-api-key": DEMO_KEY, "anthropic-version": "2023-06-01"},
        timeout=REQUEST_TIMEOUT_S,
    )
    assert response.status_code == 200, response.text
    assert response.json()["type"] == "message"
    with pytest.raises(anthropic.AuthenticationError) as raised:
        claude_client(gateway, "sk-wrong-key").messages.create(
            model="auto", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert raised.value.body["error"]["type"] == "authentication_error"
    answer = openai_client(gateway, DEMO_KEY).responses.create(model="auto", input="Say hello")
    assert answer.output_text


def test_messages_to_an_anthropic_provider_pass_through_natively(agents):
    client = claude_client(agents)
    system = [{"type": "text", "text": "You are a careful assistant.", "cache_control": {"type": "ephemeral"}}]
    raw = client.messages.with_raw_response.create(
        model="claude",
        max_tokens=100,
        extra_body={"top_k": 5},
        system=system,
        messages=[{"role": "user", "content": "Say hello"}],
        extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"},
    )
    message = raw.parse()
    assert message.content[0].text == "[anthropic/claude-sonnet-4-5] Say hello"
    assert message.usage.output_tokens > 0
    received = agents.last_request("anthropic")
    assert received.path == "/v1/messages"
    # The client's own body, with only the model replaced: what chat cannot express survives.
    assert received.json["model"] == "claude-sonnet-4-5"
    assert received.json["top_k"] == 5
    assert received.json["system"] == system
    assert received.header("anthropic-beta") == "prompt-caching-2024-07-31"
    assert received.header("x-api-key") == "sk-ant"
    assert "unused" not in json.dumps(received.headers)
    assert raw.headers["x-signalbox-provider"] == "anthropic"
    with client.messages.stream(
        model="claude",
        max_tokens=100,
        extra_body={"top_k": 5},
        messages=[{"role": "user", "content": "Stream me a short answer please"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "[anthropic/claude-sonnet-4-5] Stream me a short answer please"
    assert final.usage.output_tokens > 0
    assert agents.last_request("anthropic").json["top_k"] == 5


def test_native_usage_is_billed(start_gateway):
    config = governed(agents_config())
    config["models"]["claude"]["price"] = {"input": 3, "output": 15}
    gateway = start_gateway(config)
    raw = claude_client(gateway, DEMO_KEY).messages.with_raw_response.create(
        model="claude", max_tokens=50, extra_body={"top_k": 5}, messages=[{"role": "user", "content": "Say hello"}]
    )
    message = raw.parse()
    assert gateway.last_request("anthropic").json["top_k"] == 5
    assert raw.headers["x-signalbox-provider"] == "anthropic"
    assert int(raw.headers["x-signalbox-output-tokens"]) == message.usage.output_tokens > 0
    assert int(raw.headers["x-signalbox-input-tokens"]) == message.usage.input_tokens > 0
    assert float(raw.headers["x-signalbox-cost-usd"]) > 0


def governed(config: dict) -> dict:
    """`config` governed as the demo is (the team tenant, usage in headers)."""
    governance = demo_plugin_config()["governance"]
    return {
        **config,
        "governance": {
            "tenants": {"team": governance["tenants"]["team"]},
            "keys": [key for key in governance["keys"] if key["tenant"] == "team"],
        },
    }


def test_responses_to_openai_pass_through_natively_and_are_billed(start_gateway):
    config = governed(agents_config())
    config["models"]["gpt"]["price"] = {"input": 0.15, "output": 0.6}
    gateway = start_gateway(config)
    raw = openai_client(gateway, DEMO_KEY).responses.with_raw_response.create(
        model="gpt", input="Say hello", reasoning={"effort": "low"}, store=False, include=["reasoning.encrypted_content"]
    )
    response = raw.parse()
    assert response.output_text == "[openai/gpt-4o-mini] Say hello"
    received = gateway.last_request("openai")
    assert received.path == "/v1/responses"
    # The client's own body, model replaced: what chat cannot express reaches OpenAI.
    assert received.json["model"] == "gpt-4o-mini"
    assert received.json["reasoning"] == {"effort": "low"}
    assert received.json["include"] == ["reasoning.encrypted_content"]
    assert received.header("authorization") == "Bearer sk-openai"
    assert raw.headers["x-signalbox-provider"] == "openai"
    assert int(raw.headers["x-signalbox-output-tokens"]) == response.usage.output_tokens > 0
    assert int(raw.headers["x-signalbox-input-tokens"]) == response.usage.input_tokens > 0
    assert float(raw.headers["x-signalbox-cost-usd"]) > 0


def test_a_stateful_responses_request_goes_only_to_openai(agents):
    # `claude` falls back to `gpt`: only that OpenAI link can load a stored response.
    response = openai_client(agents).responses.create(model="claude", input="And then?", previous_response_id="resp_1")
    assert response.output_text == "[openai/gpt-4o-mini] And then?"
    assert response.previous_response_id == "resp_1"
    assert agents.last_request("openai").json["previous_response_id"] == "resp_1"
    assert agents.mocks.requests("anthropic") == []


def test_a_stateful_responses_request_without_an_openai_link_is_refused(start_gateway):
    config = agents_config()
    config["models"]["claude"]["fallbacks"] = []
    gateway = start_gateway(config)
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client(gateway).responses.create(model="claude", input="hi", previous_response_id="resp_1")
    assert "previous_response_id" in raised.value.message
    with pytest.raises(openai.BadRequestError):
        openai_client(gateway).responses.create(model="claude", input="news?", tools=[{"type": "web_search"}])
    assert gateway.mocks.requests() == []


@pytest.mark.parametrize("stream", [False, True])
def test_responses_fail_over_from_openai_to_anthropic_and_come_back_translated(start_gateway, stream):
    config = agents_config()
    config["models"]["gpt"]["fallbacks"] = ["claude"]
    gateway = start_gateway(config)
    gateway.mocks.set_behavior("openai", {"status": 500})
    raw = openai_client(gateway).responses.with_raw_response.create(model="gpt", input="Say hello", stream=stream)
    assert raw.headers["x-signalbox-provider"] == "anthropic"
    if stream:
        events = list(raw.parse())
        assert events[-1].type == "response.completed"
        text = events[-1].response.output_text
    else:
        text = raw.parse().output_text
    assert text == "[anthropic/claude-sonnet-4-5] Say hello"
    assert gateway.last_request("openai").path == "/v1/responses"
    assert gateway.last_request("anthropic").path == "/v1/messages"


def test_a_native_responses_stream_cut_before_content_fails_over(start_gateway):
    config = agents_config()
    config["models"]["gpt"]["fallbacks"] = ["claude"]
    gateway = start_gateway(config)
    # OpenAI sends its opening events, then resets: nothing the client could use yet.
    gateway.mocks.set_behavior("openai", {"reset_after_events": 2})
    events = list(openai_client(gateway).responses.create(model="gpt", input="Say hello", stream=True))
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "[anthropic/claude-sonnet-4-5] Say hello"


def test_governed_responses_may_use_only_the_built_in_tools_their_tenant_lists(start_gateway):
    config = governed(agents_config())
    gateway = start_gateway(config)
    client = openai_client(gateway, DEMO_KEY)
    with pytest.raises(openai.PermissionDeniedError) as raised:
        client.responses.create(model="gpt", input="draw a cat", tools=[{"type": "image_generation", "model": "gpt-image-1"}])
    assert "image_generation" in raised.value.message
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="gpt", input="later", background=True)
    assert "background" in raised.value.message
    assert gateway.mocks.requests() == []
    config["governance"]["tenants"]["team"]["allowed_builtin_tools"] = ["web_search"]
    allowed = start_gateway(config)
    answer = openai_client(allowed, DEMO_KEY).responses.create(model="gpt", input="news?", tools=[{"type": "web_search"}])
    assert answer.output_text == "[openai/gpt-4o-mini] news?"


def test_a_native_error_quoting_the_provider_key_reaches_the_client_scrubbed(agents):
    agents.mocks.set_behavior("openai", {"status": 400, "message": "bad parameter for key sk-openai"})
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client(agents).responses.create(model="gpt", input="hi")
    assert "sk-openai" not in json.dumps(raised.value.body)
    assert agents.last_request("openai").path == "/v1/responses"


def test_cache_breakpoints_reach_bedrock_as_cache_points_and_leave_openai_alone(start_gateway):
    config = agents_config()
    config["providers"]["bedrock"] = {
        "kind": "bedrock", "cluster": "bedrock", "region": "us-east-1",
        "aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    }
    config["models"]["nova"] = {"provider": "bedrock", "id": "amazon.nova-pro-v1:0"}
    gateway = start_gateway(config, tweak=lambda envoy: add_cluster(envoy, "bedrock"))
    marked = {"type": "ephemeral"}
    for model in ("nova", "gpt"):
        answer = claude_client(gateway).messages.create(
            model=model,
            max_tokens=50,
            system=[{"type": "text", "text": "You are a coding agent.", "cache_control": marked}],
            messages=[{"role": "user", "content": [{"type": "text", "text": "Read the repo", "cache_control": marked}]}],
        )
        assert answer.content[0].text.endswith("Read the repo")
    sent = gateway.last_request("bedrock").json
    assert sent["system"] == [{"text": "You are a coding agent."}, {"cachePoint": {"type": "default"}}]
    assert sent["messages"][0]["content"] == [{"text": "Read the repo"}, {"cachePoint": {"type": "default"}}]
    to_openai = gateway.last_request("openai").body.decode()
    assert "cache_control" not in to_openai and "signalbox_cache_breakpoint" not in to_openai
