"""Cascade through the real Envoy: the cheap tier's whole answers are
assessed, and a weak one (cut at its limit, a refusal, broken JSON where JSON
was asked for) is replaced by the strong tier's answer: the client sees one
answer and headers that say what happened, both calls are billed, and
metrics count the escalations per tier and reason. A good answer, and a
stream, come back from the cheap model as they did before."""

from __future__ import annotations

import json

import pytest

from tests.gateway import chat_body
from tests.test_governance import governed, spend
from tests.test_observability import eventually, scrape, total

KEY = "sk-cascade-team"
AUTH = {"authorization": f"Bearer {KEY}"}
QUESTION = "What is the capital of France?"


def cascading(**cascade) -> dict:
    """Cheap (openai mock) in a cascading tier, strong (anthropic mock) above it."""
    config = governed({"team": {}}, {KEY: ("team", "ann")})
    config["resilience"] = {"max_attempts": 2}
    config["tiers"][0]["cascade"] = cascade
    return config


@pytest.fixture
def gateway(start_gateway):
    return start_gateway(cascading())


def ask(gateway, **extra):
    gateway.mocks.clear()
    response = gateway.chat(chat_body(QUESTION, **extra), headers=AUTH)
    return response, len(gateway.mocks.requests("openai")), len(gateway.mocks.requests("anthropic"))


def billed(gateway, model: str) -> dict:
    return spend(gateway)["team"]["ledger"].get(model, {})


WEAK_ANSWERS = {
    # Cut at the request's limit: 200 words against max_tokens 40.
    "truncated": ({"say": "Paris " * 200}, {"max_tokens": 40}),
    "refusal": ({"say": "I'm sorry, but I can't help with that."}, {}),
    "invalid_json": ({"say": 'Sure! Here it is: {"capital": "Paris"'}, {"response_format": {"type": "json_object"}}),
}


def test_weak_cheap_answers_are_replaced_by_the_strong_tiers_and_both_are_billed(gateway):
    for count, (reason, (behavior, extra)) in enumerate(WEAK_ANSWERS.items(), start=1):
        gateway.mocks.set_behavior("openai", behavior)
        gateway.mocks.set_behavior("anthropic", {"say": '{"capital": "Paris"}'})
        response, cheap_calls, strong_calls = ask(gateway, **extra)
        assert response.status_code == 200, (reason, response.text)
        assert (cheap_calls, strong_calls) == (1, 1), reason
        assert response.headers["x-signalbox-route"] == "cascade"
        assert response.headers["x-signalbox-attempts"] == "cheap:weak,strong:200"
        assert reason in response.headers["x-signalbox-cascade"].split(",")
        assert response.headers["x-signalbox-model"] == "strong"
        answer = response.json()
        assert answer["object"] == "chat.completion"
        assert json.loads(answer["choices"][0]["message"]["content"]) == {"capital": "Paris"}
        # Both calls consumed tokens at their providers, and both are billed.
        cheap, strong = billed(gateway, "cheap"), billed(gateway, "strong")
        assert cheap["requests"] == count and cheap["output_tokens"] > 0, cheap
        assert strong["requests"] == count and strong["output_tokens"] > 0, strong

    samples = eventually(
        lambda: scrape(gateway),
        lambda samples: total(samples, "signalbox_cascade_assessments_total", result="escalated") >= 3,
    )
    assert total(samples, "signalbox_cascade_assessments_total", tier="simple", model="cheap", result="escalated") == 3
    for reason in WEAK_ANSWERS:
        assert total(samples, "signalbox_cascade_escalations_total", tier="simple", reason=reason) == 1, reason
    assert total(samples, "signalbox_requests_total", route="cascade") == 3


def test_a_good_answer_and_a_stream_come_back_from_the_cheap_model(gateway):
    response, cheap_calls, strong_calls = ask(gateway)
    assert response.status_code == 200, response.text
    assert (cheap_calls, strong_calls) == (1, 0)
    assert response.headers["x-signalbox-route"] == "primary"
    assert "x-signalbox-cascade" not in response.headers
    assert response.json()["choices"][0]["message"]["content"].startswith("[openai/cheap-model]")

    # Streams are not assessed: the cheap model's stream is the client's as it comes.
    gateway.mocks.set_behavior("openai", {"say": "I'm sorry, but I can't help with that."})
    gateway.mocks.clear()
    streamed = gateway.chat(chat_body(QUESTION, stream=True), headers=AUTH, stream=True)
    assert streamed.status_code == 200
    text = "".join(
        json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
        for line in streamed.iter_lines()
        if line.startswith(b"data: {") and b'"choices":[{' in line
    )
    assert text == "I'm sorry, but I can't help with that."
    assert streamed.headers["x-signalbox-route"] == "primary"
    assert len(gateway.mocks.requests("anthropic")) == 0

    samples = eventually(
        lambda: scrape(gateway),
        lambda samples: total(samples, "signalbox_cascade_assessments_total") >= 1,
    )
    assert total(samples, "signalbox_cascade_assessments_total", tier="simple", result="accepted") == 1
    assert total(samples, "signalbox_cascade_assessments_total", result="escalated") == 0


def test_a_lenient_threshold_keeps_a_hedging_answer(start_gateway):
    hedging = {"say": "I'm not sure, and it's hard to say, but it might be Paris."}
    lenient = start_gateway(cascading(threshold=0.3))
    lenient.mocks.set_behavior("openai", hedging)
    response, _, strong_calls = ask(lenient)
    assert (response.status_code, strong_calls) == (200, 0)
    assert response.headers["x-signalbox-route"] == "primary"


def test_when_the_escalation_link_fails_the_client_gets_an_error_naming_both_attempts(gateway):
    gateway.mocks.set_behavior("openai", {"say": "I'm sorry, but I can't help with that."})
    gateway.mocks.set_behavior("anthropic", {"status": 500})
    response, cheap_calls, strong_calls = ask(gateway)
    assert (cheap_calls, strong_calls) == (1, 1)
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert "cheap:weak" in error["message"] and "strong:500" in error["message"], error
    # The weak answer was generated and is billed; the failed call is not.
    assert billed(gateway, "cheap")["requests"] == 1
    assert billed(gateway, "strong").get("requests", 0) == 0


def test_an_escalation_skips_the_tiers_other_keys_and_ends_with_the_chain(start_gateway):
    config = cascading()
    config["providers"]["openai"] = {
        "cluster": "openai",
        "api_keys": [{"name": "k1", "key": "sk-provider-1"}, {"name": "k2", "key": "sk-provider-2"}],
    }
    config["resilience"] = {"max_attempts": 3}
    gateway = start_gateway(config)
    gateway.mocks.set_behavior("openai", {"say": "I'm sorry, but I can't help with that."})
    response, cheap_calls, strong_calls = ask(gateway)
    assert response.status_code == 200, response.text
    assert (cheap_calls, strong_calls) == (1, 1), "the tier's second key is not asked again"
    first, second = response.headers["x-signalbox-attempts"].split(",")
    assert first.endswith(":weak") and first.startswith("cheap@") and second == "strong:200"

    # The strong link fails after the escalation: Envoy still has a retry
    # (the chain had three links) but the chain is over. The client gets
    # the error at once, not after a per-try timeout.
    gateway.mocks.set_behavior("anthropic", {"status": 500})
    gateway.mocks.clear()
    response = gateway.chat(chat_body(QUESTION), headers=AUTH)  # a 15 s bound: a hang fails here
    assert response.status_code == 503, response.text
    assert response.headers["x-signalbox-attempts"].endswith(",strong:500")
    assert len(gateway.mocks.requests("anthropic")) == 1


def streamed_text(response) -> str:
    return "".join(
        json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
        for line in response.iter_lines()
        if line.startswith(b"data: {") and b'"choices":[{' in line
    )


def test_a_cascade_holding_a_streams_first_tokens_escalates_a_weak_start(start_gateway):
    gateway = start_gateway(cascading(stream_tokens=16))
    gateway.mocks.set_behavior("anthropic", {"say": "Paris is the capital of France."})
    gateway.mocks.set_behavior("openai", {"say": "I'm sorry, but I can't help with that request today."})
    response = gateway.chat(chat_body(QUESTION, stream=True), headers=AUTH, stream=True)
    assert response.status_code == 200
    assert response.headers["x-signalbox-route"] == "cascade"
    assert response.headers["x-signalbox-attempts"] == "cheap:weak,strong:200"
    assert "refusal" in response.headers["x-signalbox-cascade"].split(",")
    assert streamed_text(response) == "Paris is the capital of France.", "none of the weak start reached the client"
    assert billed(gateway, "cheap")["requests"] == 1, "the weak start was generated: it is billed"
    assert billed(gateway, "strong")["requests"] == 1
    # However the stream's bytes are cut, the same start gets the same verdict.
    for _ in range(4):
        again = gateway.chat(chat_body(QUESTION, stream=True), headers=AUTH, stream=True)
        assert again.headers["x-signalbox-route"] == "cascade"
        assert streamed_text(again) == "Paris is the capital of France."

    # A good start is released once the held tokens pass the check.
    good = "Paris has been the capital of France since the tenth century, on the Seine."
    gateway.mocks.set_behavior("openai", {"say": good})
    gateway.mocks.clear()
    response = gateway.chat(chat_body(QUESTION, stream=True), headers=AUTH, stream=True)
    assert response.status_code == 200
    assert response.headers["x-signalbox-route"] == "primary"
    assert streamed_text(response) == good
    assert gateway.mocks.requests("anthropic") == []
