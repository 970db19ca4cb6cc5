"""One OpenAI-compatible API in front of every provider, through the real
Envoy: OpenAI, Azure OpenAI, Anthropic, Gemini and Bedrock mocks speaking
their own wire formats; non-streamed and streamed answers, tool calls, usage,
errors, cross-provider failover, embeddings, and the official OpenAI client."""

from __future__ import annotations

import json

import openai
import pytest

from tests.gateway import add_cluster, chat_body

PROVIDERS = ("openai", "azure", "anthropic", "gemini", "bedrock")
# model name -> (mock instance, model id the provider receives, path it is called on)
MODELS = {
    "gpt": ("openai", "gpt-4o-mini", "/v1/chat/completions"),
    "azure-gpt": ("azure", "gpt4o-deployment", "/openai/deployments/gpt4o-deployment/chat/completions?api-version=2024-10-21"),
    "claude": ("anthropic", "claude-sonnet-4-5", "/v1/messages"),
    "gemini": ("gemini", "gemini-2.5-flash", "/v1beta/models/gemini-2.5-flash:generateContent"),
    "nova": ("bedrock", "amazon.nova-pro-v1:0", "/model/amazon.nova-pro-v1%3A0/converse"),
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    },
}


def matrix_config() -> dict:
    return {
        "explain": "always",
        "providers": {
            "openai": {"cluster": "openai", "api_key": "sk-openai"},
            "azure": {"kind": "azure", "cluster": "azure", "api_key": "az-key", "api_version": "2024-10-21"},
            "anthropic": {"kind": "anthropic", "cluster": "anthropic", "api_key": "sk-ant"},
            "gemini": {"kind": "gemini", "cluster": "gemini", "api_key": "gm-key"},
            "bedrock": {"kind": "bedrock", "cluster": "bedrock", "region": "us-east-1",
                        "aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"},
        },
        "models": {
            "gpt": {"provider": "openai", "id": "gpt-4o-mini"},
            "azure-gpt": {"provider": "azure", "id": "gpt4o-deployment"},
            "claude": {"provider": "anthropic", "id": "claude-sonnet-4-5", "fallbacks": ["gemini"]},
            "gemini": {"provider": "gemini", "id": "gemini-2.5-flash"},
            "nova": {"provider": "bedrock", "id": "amazon.nova-pro-v1:0", "fallbacks": ["gpt"]},
            "embed-small": {"provider": "openai", "id": "text-embedding-3-small"},
            "gemini-embed": {"provider": "gemini", "id": "gemini-embedding-001"},
        },
        "tiers": [{"name": "all", "models": ["gpt"]}],
    }


def with_all_clusters(config: dict) -> None:
    for name in ("azure", "gemini", "bedrock"):
        add_cluster(config, name)


@pytest.fixture
def matrix(mocks, start_gateway):
    mocks.start(["azure"])
    return start_gateway(matrix_config(), tweak=with_all_clusters)


def stream_events(response) -> list[dict]:
    lines = [line for line in response.iter_lines() if line.startswith(b"data: ")]
    assert lines and lines[-1] == b"data: [DONE]", lines[-3:]
    return [json.loads(line[6:]) for line in lines[:-1]]


def streamed_text(events: list[dict]) -> str:
    return "".join(event["choices"][0]["delta"].get("content") or "" for event in events if event["choices"])


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_provider_answers_in_openai_format(matrix, model):
    instance, model_id, path = MODELS[model]
    response = matrix.chat(chat_body("Name three rivers in Europe", model=model, max_tokens=50))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"] == f"[{instance}/{model_id}] Name three rivers in Europe"
    assert answer["choices"][0]["finish_reason"] == "stop"
    usage = answer["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    received = matrix.last_request(instance)
    assert received.path == path
    assert response.headers["x-signalbox-provider"] == instance


def test_each_provider_gets_its_own_credentials(matrix):
    for model in MODELS:
        assert matrix.chat(chat_body("hi", model=model), headers={"authorization": "Bearer client"}).status_code == 200
    assert matrix.last_request("openai").header("authorization") == "Bearer sk-openai"
    assert matrix.last_request("azure").header("api-key") == "az-key"
    assert matrix.last_request("anthropic").header("x-api-key") == "sk-ant"
    assert matrix.last_request("anthropic").header("anthropic-version") == "2023-06-01"
    assert matrix.last_request("gemini").header("x-goog-api-key") == "gm-key"
    bedrock = matrix.last_request("bedrock")
    assert bedrock.header("authorization").startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert bedrock.header("x-amz-date")
    for instance in ("openai", "azure", "anthropic", "gemini", "bedrock"):
        assert "Bearer client" not in json.dumps(matrix.last_request(instance).headers)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_provider_streams_openai_chunks(matrix, model):
    instance, model_id, _ = MODELS[model]
    body = chat_body("Stream me a short answer please", model=model, stream=True)
    response = matrix.chat(body, stream=True)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = stream_events(response)
    assert all(event["object"] == "chat.completion.chunk" for event in events)
    assert streamed_text(events) == f"[{instance}/{model_id}] Stream me a short answer please"
    finishes = [event["choices"][0]["finish_reason"] for event in events if event["choices"]]
    assert finishes[-1] == "stop"
    assert not [event for event in events if event.get("usage")], "no usage chunk unless asked for"


@pytest.mark.parametrize("model", sorted(MODELS))
def test_streamed_usage_is_reported_when_asked(matrix, model):
    body = chat_body("Count the tokens", model=model, stream=True, stream_options={"include_usage": True})
    events = stream_events(matrix.chat(body, stream=True))
    usage = [event["usage"] for event in events if event.get("usage")]
    assert len(usage) == 1 and usage[0]["prompt_tokens"] > 0 and usage[0]["completion_tokens"] > 0


def test_streams_survive_awkward_split_points(matrix):
    for instance, model in (("anthropic", "claude"), ("gemini", "gemini"), ("bedrock", "nova"), ("openai", "gpt")):
        matrix.mocks.set_behavior(instance, {"split": "every-byte"})
        events = stream_events(matrix.chat(chat_body("split me", model=model, stream=True), stream=True))
        assert streamed_text(events).endswith("split me"), instance


@pytest.mark.parametrize("model", ["gpt", "claude", "gemini", "nova", "azure-gpt"])
def test_tool_calls_survive_the_round_trip(matrix, model):
    question = chat_body("What's the weather in Paris?", model=model, tools=[WEATHER_TOOL])
    first = matrix.chat(question).json()
    choice = first["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"query": "What's the weather i"}
    follow_up = chat_body("", model=model, tools=[WEATHER_TOOL])
    follow_up["messages"] = [
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21 C"},
    ]
    answer = matrix.chat(follow_up).json()
    assert "sunny, 21 C" in answer["choices"][0]["message"]["content"]


@pytest.mark.parametrize("model", ["gpt", "claude", "gemini", "nova"])
def test_streamed_tool_calls_arrive_as_openai_deltas(matrix, model):
    events = stream_events(matrix.chat(chat_body("Weather in Rome?", model=model, tools=[WEATHER_TOOL], stream=True), stream=True))
    deltas = [tc for event in events if event["choices"] for tc in event["choices"][0]["delta"].get("tool_calls") or []]
    assert deltas and deltas[0]["function"]["name"] == "get_weather"
    arguments = "".join(delta["function"].get("arguments") or "" for delta in deltas)
    assert json.loads(arguments) == {"query": "Weather in Rome?"}
    assert [event["choices"][0]["finish_reason"] for event in events if event["choices"]][-1] == "tool_calls"


@pytest.mark.parametrize("model", ["claude", "gemini", "nova", "azure-gpt"])
def test_provider_errors_come_back_as_openai_errors(matrix, model):
    instance = MODELS[model][0]
    matrix.mocks.set_behavior(instance, {"status": 400, "message": "temperature is out of range"})
    response = matrix.chat(chat_body("hi", model=model))
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code"}
    assert "temperature is out of range" in error["message"]


def test_a_rejected_gateway_key_is_a_502_that_never_shows_the_key(matrix):
    matrix.mocks.set_behavior("anthropic", {"status": 401, "message": "invalid x-api-key sk-ant"})
    matrix.mocks.set_behavior("gemini", {"status": 401})
    response = matrix.chat(chat_body("hi", model="claude"))
    assert response.status_code == 503
    assert "sk-ant" not in response.text


def test_a_fallback_chain_crosses_providers_streaming_or_not(matrix):
    matrix.mocks.set_behavior("anthropic", {"status": 529})
    plain = matrix.chat(chat_body("hello", model="claude"))
    assert plain.status_code == 200
    assert plain.headers["x-signalbox-attempts"] == "claude:529,gemini:200"
    assert plain.json()["choices"][0]["message"]["content"].startswith("[gemini/gemini-2.5-flash]")
    streamed = matrix.chat(chat_body("hello", model="claude", stream=True), stream=True)
    assert streamed.headers["x-signalbox-model"] == "gemini"
    assert streamed_text(stream_events(streamed)).startswith("[gemini/gemini-2.5-flash]")


def test_an_overloaded_error_inside_a_stream_fails_over_before_the_first_token(matrix):
    # Bedrock throttles inside its event stream: the held 200 becomes a retry.
    matrix.mocks.set_behavior("bedrock", {"reset_after_events": 0})
    streamed = matrix.chat(chat_body("hello", model="nova", stream=True), stream=True)
    assert streamed.status_code == 200
    assert streamed.headers["x-signalbox-model"] == "gpt"
    assert streamed_text(stream_events(streamed)).startswith("[openai/gpt-4o-mini]")


def test_embeddings_route_to_openai_compatible_and_translated_providers(matrix):
    for model, instance in (("embed-small", "openai"), ("gemini-embed", "gemini")):
        response = matrix.post("/v1/embeddings", {"model": model, "input": ["first text", "second text"]})
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["object"] == "list"
        assert [item["index"] for item in answer["data"]] == [0, 1]
        assert len(answer["data"][0]["embedding"]) > 10
        assert answer["usage"]["prompt_tokens"] > 0
        assert response.headers["x-signalbox-provider"] == instance
    assert matrix.last_request("gemini").path.endswith(":batchEmbedContents")


def test_the_official_openai_client_just_works(matrix):
    client = openai.OpenAI(base_url=matrix.url + "/v1", api_key="unused", max_retries=0, timeout=15)
    for model in MODELS:
        instance, model_id, _ = MODELS[model]
        completion = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Say hello"}])
        assert completion.choices[0].message.content == f"[{instance}/{model_id}] Say hello"
        assert completion.usage.total_tokens > 0
        stream = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Say hello"}], stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
        assert text == f"[{instance}/{model_id}] Say hello"
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    embedding = client.embeddings.create(model="embed-small", input="hello")
    assert len(embedding.data[0].embedding) > 10
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
