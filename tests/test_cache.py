"""The exact response cache through the real Envoy: a repeated request (member
order and whitespace aside) is answered from shared data, whole or replayed as
a stream, in the client's format, without calling a provider or spending;
tenants never share entries; hot sampling, `cache-control` and personal data
bypass it; entries expire; metrics and the access log say what happened."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from tests.gateway import chat_body
from tests.harness import config as envoy_config
from tests.mocks.replies import bag_of_words_vector
from tests.test_observability import access_lines, answer_text, eventually, scrape, total, value

KEYS = {"sk-cache-team": "team", "sk-cache-lab": "lab"}
QUESTION = "What is the boiling point of water at sea level?"


def cached(ttl_seconds: int = 300, **extra) -> dict:
    return {
        "providers": {
            "openai": {"cluster": "openai", "vendor": "openai", "api_key": "sk-provider-openai"},
            "anthropic": {"kind": "anthropic", "cluster": "anthropic", "api_key": "sk-provider-anthropic"},
        },
        "models": {
            "cheap": {"provider": "openai", "id": "cheap-model", "price": {"input": 1, "output": 2}},
            "claude": {"provider": "anthropic", "id": "claude-sonnet-4-5", "price": {"input": 3, "output": 15}},
        },
        "tiers": [{"name": "simple", "models": ["cheap"]}],
        "cache": {"enabled": True, "ttl_seconds": ttl_seconds},
        "governance": {
            "tenants": {"team": {}, "lab": {}},
            "keys": [
                {"sha256": hashlib.sha256(key.encode()).hexdigest(), "tenant": tenant, "name": f"{tenant}-key"}
                for key, tenant in KEYS.items()
            ],
        },
        **extra,
    }


@pytest.fixture
def start_cached(start_gateway, tmp_path):
    log_path = tmp_path / "access.log"

    def start(plugin: dict):
        def tweak(config):
            envoy_config.set_access_log_path(config, log_path)
            envoy_config.set_stats_flush_interval(config, 0.5)

        gateway = start_gateway(plugin, tweak=tweak)
        gateway.access_log = log_path
        gateway.key = "sk-cache-team"
        return gateway

    return start


def ask(gateway, body, key: str = "sk-cache-team", request_id: str | None = None, **headers):
    headers = {"authorization": f"Bearer {key}", **headers}
    if request_id:
        headers["x-request-id"] = request_id
    stream = isinstance(body, dict) and body.get("stream", False)
    return gateway.chat(body, headers=headers, stream=stream)


def test_a_repeated_request_is_answered_from_the_cache_whole_and_streamed(start_cached, mocks):
    gateway = start_cached(cached())
    first = ask(gateway, chat_body(QUESTION, temperature=0))
    assert first.status_code == 200 and first.headers["x-signalbox-cache"] == "miss"
    # The same request with members reordered and other whitespace is the same entry.
    same = json.dumps({"temperature": 0.0, "messages": [{"content": QUESTION, "role": "user"}], "model": "auto"}, indent=2)
    again = ask(gateway, same)
    assert again.status_code == 200, again.text
    assert again.headers["x-signalbox-cache"] == "hit"
    assert again.headers["x-signalbox-model"] == "cheap"
    assert again.json()["choices"][0]["message"] == first.json()["choices"][0]["message"]
    assert again.json()["id"] != first.json()["id"]
    streamed = ask(gateway, chat_body(QUESTION, temperature=0, stream=True, stream_options={"include_usage": True}))
    assert streamed.headers["x-signalbox-cache"] == "hit"
    assert streamed.headers["content-type"].startswith("text/event-stream")
    lines = [line for line in streamed.iter_lines() if line.startswith(b"data: ")]
    assert lines[-1] == b"data: [DONE]"
    events = [json.loads(line[6:]) for line in lines[:-1]]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text == first.json()["choices"][0]["message"]["content"]
    assert events[-1]["usage"]["completion_tokens"] == first.json()["usage"]["completion_tokens"]
    assert len(mocks.requests("openai")) == 1


def test_an_anthropic_client_gets_a_hit_in_its_own_format(start_cached, mocks):
    gateway = start_cached(cached())
    body = {"model": "cheap", "max_tokens": 64, "temperature": 0, "messages": [{"role": "user", "content": QUESTION}]}
    headers = {"x-api-key": "sk-cache-team"}
    first = gateway.post("/v1/messages", body, headers=headers)
    assert first.status_code == 200 and first.headers["x-signalbox-cache"] == "miss"
    again = gateway.post("/v1/messages", body, headers=headers)
    assert again.headers["x-signalbox-cache"] == "hit"
    assert again.json()["type"] == "message" and again.json()["content"] == first.json()["content"]
    streamed = gateway.post("/v1/messages", {**body, "stream": True}, headers=headers, stream=True)
    assert streamed.headers["x-signalbox-cache"] == "hit"
    events = [json.loads(line[6:]) for line in streamed.iter_lines() if line.startswith(b"data: {")]
    text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    assert text == first.json()["content"][0]["text"]
    assert events[-1]["type"] == "message_stop"
    assert len(mocks.requests("openai")) == 1


def test_a_messages_request_anthropic_reads_as_sent_is_never_answered_from_the_cache(start_cached, mocks):
    """Sent natively, a Messages request reaches Anthropic as the client wrote it,
    with fields and `anthropic-*` headers its chat form has no place for (here a
    structured-output format): a chat request with the same messages must not
    answer it."""
    gateway = start_cached(cached())
    chat = chat_body(QUESTION, model="claude", max_completion_tokens=50, temperature=0)
    assert ask(gateway, chat).headers["x-signalbox-cache"] == "miss"
    assert ask(gateway, chat).headers["x-signalbox-cache"] == "hit"
    schema = {"type": "object", "properties": {"celsius": {"type": "number"}}, "required": ["celsius"]}
    body = {"model": "claude", "max_tokens": 50, "temperature": 0,
            "output_format": {"type": "json_schema", "schema": schema},
            "messages": [{"role": "user", "content": QUESTION}]}
    headers = {"x-api-key": "sk-cache-team", "anthropic-beta": "structured-outputs-2025-11-13"}
    for _ in range(2):
        native = gateway.post("/v1/messages", body, headers=headers)
        assert native.status_code == 200, native.text
        assert native.headers["x-signalbox-cache"] == "bypass"
    assert len(mocks.requests("anthropic")) == 3


def test_tenants_never_share_an_entry(start_cached, mocks):
    gateway = start_cached(cached())
    assert ask(gateway, chat_body(QUESTION, temperature=0)).headers["x-signalbox-cache"] == "miss"
    assert ask(gateway, chat_body(QUESTION, temperature=0), key="sk-cache-lab").headers["x-signalbox-cache"] == "miss"
    assert ask(gateway, chat_body(QUESTION, temperature=0), key="sk-cache-lab").headers["x-signalbox-cache"] == "hit"
    assert len(mocks.requests("openai")) == 2


def test_hot_sampling_cache_control_and_personal_data_bypass_the_cache(start_cached, mocks):
    plugin = cached(guardrails={"pii": {"email": "mask"}})
    gateway = start_cached(plugin)
    for _ in range(2):
        assert ask(gateway, chat_body(QUESTION, temperature=0.7)).headers["x-signalbox-cache"] == "bypass"
        assert ask(gateway, chat_body(QUESTION)).headers["x-signalbox-cache"] == "bypass"  # no temperature: 1.0
        mail = chat_body(f"Write to jane@example.com: {QUESTION}", temperature=0)
        assert ask(gateway, mail).headers["x-signalbox-cache"] == "bypass"
    assert len(mocks.requests("openai")) == 6
    # no-cache skips the lookup but keeps the answer; no-store skips both.
    cold = chat_body("Name three noble gases.", temperature=0)
    assert ask(gateway, cold, **{"cache-control": "no-store"}).headers["x-signalbox-cache"] == "bypass"
    assert ask(gateway, cold, **{"cache-control": "no-cache"}).headers["x-signalbox-cache"] == "bypass"
    assert ask(gateway, cold).headers["x-signalbox-cache"] == "hit"
    assert ask(gateway, cold, **{"cache-control": "no-cache"}).headers["x-signalbox-cache"] == "bypass"
    assert len(mocks.requests("openai")) == 9


def test_an_entry_expires_after_its_ttl(start_cached, mocks):
    gateway = start_cached(cached(ttl_seconds=1))
    body = chat_body(QUESTION, temperature=0)
    assert ask(gateway, body).headers["x-signalbox-cache"] == "miss"
    assert ask(gateway, body).headers["x-signalbox-cache"] == "hit"
    time.sleep(1.2)
    assert ask(gateway, body).headers["x-signalbox-cache"] == "stale"
    assert ask(gateway, body).headers["x-signalbox-cache"] == "hit"
    assert len(mocks.requests("openai")) == 2


def test_a_hit_costs_nothing_and_is_counted_with_its_saving(start_cached):
    gateway = start_cached(cached())
    body = chat_body(QUESTION, temperature=0)
    assert ask(gateway, body, request_id="first").status_code == 200
    assert ask(gateway, body, request_id="second").headers["x-signalbox-cache"] == "hit"
    by_id = {line["request_id"]: line for line in access_lines(gateway, 2)}
    assert by_id["first"]["cache"] == "miss" and by_id["first"]["cost_usd"] not in (None, "0.000000")
    assert by_id["second"]["cache"] == "hit" and by_id["second"]["route"] is None
    assert by_id["second"]["cost_usd"] is None

    def read():
        return scrape(gateway)

    samples = eventually(read, lambda s: total(s, "signalbox_cache_requests_total") >= 2 and total(s, "signalbox_cache_bytes") > 0)
    assert value(samples, "signalbox_cache_requests_total", tenant="team", result="hit") == 1
    assert value(samples, "signalbox_cache_requests_total", tenant="team", result="miss") == 1
    assert total(samples, "signalbox_cache_saved_micro_usd_total", tenant="team", model="cheap") > 0
    assert total(samples, "signalbox_requests_total", tenant="team", route="cache", outcome="ok") == 1
    cost = total(samples, "signalbox_cost_micro_usd_total", tenant="team")
    assert 0 < cost == total(samples, "signalbox_cache_saved_micro_usd_total", tenant="team")
    assert value(samples, "signalbox_cache_entries") == 1


def test_a_fallback_answer_is_not_kept_for_the_model_that_failed(start_cached, mocks):
    plugin = cached()
    plugin["models"]["cheap"]["fallbacks"] = ["claude"]
    gateway = start_cached(plugin)
    body = chat_body(QUESTION, model="cheap", temperature=0)
    mocks.set_behavior("openai", {"status": 500})
    served = ask(gateway, body)
    assert served.status_code == 200 and served.headers["x-signalbox-model"] == "claude"
    mocks.reset_behavior("openai")
    # cheap is back: it answers, not the cached fallback.
    again = ask(gateway, body)
    assert again.headers["x-signalbox-cache"] == "miss" and again.headers["x-signalbox-model"] == "cheap"
    assert ask(gateway, body).headers["x-signalbox-cache"] == "hit"


@pytest.mark.parametrize("stream", [False, True])
def test_an_audited_tenant_s_hit_logs_the_answer_it_sent(start_cached, stream):
    plugin = cached()
    plugin["governance"]["tenants"]["team"] = {"audit_content": True}
    gateway = start_cached(plugin)
    body = chat_body(QUESTION, temperature=0)
    assert ask(gateway, body, request_id="first").status_code == 200
    hit = ask(gateway, {**body, "stream": stream}, request_id="second")
    assert hit.headers["x-signalbox-cache"] == "hit"
    by_id = {line["request_id"]: line for line in access_lines(gateway, 2)}
    assert by_id["first"]["answer"]
    assert by_id["second"]["prompt"] == by_id["first"]["prompt"]
    assert by_id["second"]["answer"] == by_id["first"]["answer"]


def test_an_audited_tenant_s_anthropic_hit_logs_the_answer_it_sent(start_cached):
    plugin = cached()
    plugin["governance"]["tenants"]["team"] = {"audit_content": True}
    gateway = start_cached(plugin)
    body = {"model": "cheap", "max_tokens": 64, "temperature": 0, "messages": [{"role": "user", "content": QUESTION}]}
    for request_id, stream in [("first", False), ("whole", False), ("streamed", True)]:
        headers = {"x-api-key": "sk-cache-team", "x-request-id": request_id}
        gateway.post("/v1/messages", {**body, "stream": stream}, headers=headers, stream=stream).content
    by_id = {line["request_id"]: line for line in access_lines(gateway, 3)}
    assert by_id["first"]["answer"]
    assert by_id["whole"]["answer"] == by_id["streamed"]["answer"] == by_id["first"]["answer"]


@pytest.mark.parametrize("provider,model", [("openai", "cheap"), ("anthropic", "claude")])
def test_a_streamed_answer_is_kept_and_answers_whole_and_streamed_repeats(start_cached, mocks, provider, model):
    gateway = start_cached(cached())
    mocks.set_behavior(provider, {"split": "random"})
    body = chat_body(QUESTION, model=model, temperature=0, stream=True)
    first = ask(gateway, body)
    assert first.headers["x-signalbox-cache"] == "miss"
    streamed_text = answer_text(first, True)
    assert streamed_text
    again = ask(gateway, body)
    assert again.headers["x-signalbox-cache"] == "hit"
    assert answer_text(again, True) == streamed_text
    whole = ask(gateway, {**body, "stream": False})
    assert whole.headers["x-signalbox-cache"] == "hit"
    assert whole.json()["choices"][0]["message"]["content"] == streamed_text
    assert whole.json()["usage"]["completion_tokens"] > 0  # the provider's report, kept with the entry
    assert len(mocks.requests(provider)) == 1


# ---- semantic cache ----

PAIRS = Path(__file__).resolve().parent / "data" / "paraphrases.jsonl"


def semantic(threshold: float) -> dict:
    plugin = cached()
    plugin["models"]["embed"] = {"provider": "openai", "id": "bow-embed"}
    plugin["cache"]["semantic"] = {"enabled": True, "model": "embed", "threshold": threshold}
    return plugin


def asked(text: str, context: str = "You answer briefly.") -> dict:
    return {"model": "auto", "temperature": 0, "messages": [
        {"role": "system", "content": context}, {"role": "user", "content": text}]}


def chat_calls(mocks) -> list:
    return [r for r in mocks.requests("openai") if r.path.endswith("/chat/completions")]


def test_a_near_duplicate_is_answered_from_the_cache_within_its_tenant_and_conversation(start_cached, mocks):
    gateway = start_cached(semantic(0.8))
    first = ask(gateway, asked("What is the capital city of France?"))
    assert first.headers["x-signalbox-cache"] == "miss"
    near = ask(gateway, asked("Capital city of France, what is it?"))
    assert near.headers["x-signalbox-cache"] == "hit", near.headers
    assert float(near.headers["x-signalbox-cache-similarity"]) >= 0.8
    assert near.json()["choices"][0]["message"] == first.json()["choices"][0]["message"]
    assert len(chat_calls(mocks)) == 1
    embedded = [r.json["input"] for r in mocks.requests("openai") if r.path.endswith("/embeddings")]
    assert embedded == ["What is the capital city of France?", "Capital city of France, what is it?"]
    # Another tenant, or another conversation, never gets it.
    assert ask(gateway, asked("Capital city of France, what is it?"), key="sk-cache-lab").headers["x-signalbox-cache"] == "miss"
    other = asked("Capital city of France, what is it?", context="You answer in French.")
    assert ask(gateway, other).headers["x-signalbox-cache"] == "miss"
    assert len(chat_calls(mocks)) == 3


def test_an_embedding_that_fails_is_a_miss_not_an_error(start_cached, mocks):
    gateway = start_cached(semantic(0.8))
    mocks.set_behavior("openai", {"status": 500, "when_header": {"user-agent": "signalbox-semantic-cache"}})
    response = ask(gateway, asked("What is the capital city of Spain?"))
    assert response.status_code == 200 and response.headers["x-signalbox-cache"] == "miss"


def test_the_false_hit_rate_on_labelled_paraphrases_is_what_the_embedder_predicts(start_cached, mocks):
    threshold = 0.85
    gateway = start_cached(semantic(threshold))
    pairs = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]
    counts = {True: [0, 0], False: [0, 0]}  # same → [hits, pairs]
    for number, pair in enumerate(pairs):
        cosine = sum(x * y for x, y in zip(bag_of_words_vector(pair["a"]), bag_of_words_vector(pair["b"])))
        context = f"Pair {number}: answer briefly."  # one conversation per pair: no pair can match another
        assert ask(gateway, asked(pair["a"], context)).headers["x-signalbox-cache"] == "miss"
        hit = ask(gateway, asked(pair["b"], context)).headers["x-signalbox-cache"] == "hit"
        if abs(cosine - threshold) > 0.02:  # quantisation moves a cosine by at most 0.01
            assert hit == (cosine >= threshold), (pair, cosine)
        counts[pair["same"]][0] += hit
        counts[pair["same"]][1] += 1
    false_hits, different = counts[False]
    true_hits, same = counts[True]
    print(f"\nthreshold {threshold}: false hits {false_hits}/{different}, true hits {true_hits}/{same}")
    assert different >= 20 and same >= 20


def test_the_openai_client_reads_a_streamed_hit(start_cached):
    import openai

    gateway = start_cached(cached())
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-cache-team", max_retries=0, timeout=15)
    messages = [{"role": "user", "content": QUESTION}]
    first = client.chat.completions.create(model="auto", messages=messages, temperature=0)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=messages, temperature=0, stream=True, stream_options={"include_usage": True})
    assert raw.headers["x-signalbox-cache"] == "hit"
    chunks = list(raw.parse())
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == first.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == first.usage.completion_tokens
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "stop"
