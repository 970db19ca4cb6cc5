"""Faults and hostile input through the real Envoy (two workers): no provider
ever receives another provider's credential or an untranslated body; trial
slots and in-flight counts are leases that always come back; only a
provider's own failures move its shared health; malformed requests are the
client's 400 and never forwarded; the operator views are closed to strangers;
embeddings obey the tenant's policy."""

from __future__ import annotations

import copy
import json
import time

import pytest
import requests

from tests.gateway import ADMIN_KEY, DEMO_KEY, chat_body, demo_plugin_config, with_plugin
from tests.test_billing import wait_for

TINY_KEY = "sk-demo-tiny"


def anthropic_native() -> dict:
    """The demo configuration with Anthropic reached through its own Messages API."""
    plugin = copy.deepcopy(demo_plugin_config())
    plugin["providers"]["anthropic"]["kind"] = "anthropic"
    return plugin


def demo_with(**resilience) -> dict:
    """The demo configuration with a quicker breaker (and any other resilience settings)."""
    plugin = demo_plugin_config()
    breaker = {"consecutive_failures": 2, "open_ms": 1000, "half_open_trials": 1}
    return with_plugin(plugin, resilience={**plugin["resilience"], "breaker": breaker, **resilience})


def deployment(gateway, name: str) -> dict:
    report = gateway.view("/signalbox/health")
    return next(entry for entry in report["deployments"] if entry["name"] == name)


def error_of(response: requests.Response) -> dict:
    return response.json()["error"]


# Request shapes the Anthropic adapter cannot express (OpenAI takes them).
ANTHROPIC_CANNOT = {
    "input_audio": {
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "what is said here?"},
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
            ]}
        ]
    },
    "grammar": {"response_format": {"type": "grammar", "grammar": "root ::= \"yes\""}},
    "web_search": {"tools": [{"type": "web_search"}]},
}


@pytest.mark.parametrize("shape", sorted(ANTHROPIC_CANNOT))
def test_a_link_that_cannot_be_prepared_is_never_sent_anything(start_gateway, shape):
    gateway = start_gateway(anthropic_native())
    gateway.mocks.set_behavior("openai", {"status": 500})
    body = {**chat_body("hello there", model="gpt-4o"), **ANTHROPIC_CANNOT[shape]}
    response = gateway.chat(body)
    assert response.status_code >= 500, response.text
    assert error_of(response)["code"] == "providers_unavailable"
    assert gateway.mocks.requests("anthropic") == [], "claude-sonnet cannot take this request"
    sent = gateway.last_request("openai")
    assert sent.header("authorization") == "Bearer sk-demo-openai"


def test_a_model_whose_provider_cannot_take_the_request_falls_back_to_one_that_can(start_gateway):
    gateway = start_gateway(anthropic_native())
    body = {**chat_body("search the web for me", model="claude-sonnet"), **ANTHROPIC_CANNOT["web_search"]}
    response = gateway.chat(body)
    assert response.status_code == 200, response.text
    assert response.headers["x-signalbox-model"] == "gpt-4o"
    assert gateway.mocks.requests("anthropic") == []


def test_when_no_provider_can_take_the_request_the_client_gets_a_400_naming_why(start_gateway):
    plugin = anthropic_native()
    plugin["models"] = {
        "claude-haiku": plugin["models"]["claude-haiku"],
        "claude-sonnet": {**plugin["models"]["claude-sonnet"], "fallbacks": []},
    }
    plugin["tiers"] = [
        {"name": "simple", "max_score": 0.5, "models": ["claude-haiku"]},
        {"name": "complex", "models": ["claude-sonnet"]},
    ]
    gateway = start_gateway(plugin)
    response = gateway.chat({**chat_body("search"), **ANTHROPIC_CANNOT["web_search"]})
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["param"] == "tools" and "web_search" in error["message"]
    assert gateway.mocks.requests() == []


def test_a_trial_slot_claimed_for_a_link_never_tried_comes_back(start_gateway):
    gateway = start_gateway(demo_with())
    gateway.mocks.set_behavior("openai", {"status": 500})
    for _ in range(2):
        assert gateway.chat(chat_body("hi", model="gpt-4o")).headers["x-signalbox-model"] == "claude-sonnet"
    assert deployment(gateway, "gpt-4o")["circuit"] == "open"
    gateway.mocks.reset_behavior("openai")
    time.sleep(1.3)  # the open period is over: gpt-4o needs a trial
    # claude-sonnet's chain lists gpt-4o behind it and claims its trial slot,
    # but claude-sonnet answers: the slot must come back.
    served = gateway.chat(chat_body("hi", model="claude-sonnet"))
    assert served.headers["x-signalbox-model"] == "claude-sonnet"
    assert deployment(gateway, "gpt-4o")["availability"] == "needs_trial"
    trial = gateway.chat(chat_body("hi", model="gpt-4o"))
    assert trial.headers["x-signalbox-model"] == "gpt-4o"
    assert deployment(gateway, "gpt-4o")["circuit"] == "closed"


def test_clients_that_give_up_early_do_not_open_a_providers_circuit(start_gateway):
    gateway = start_gateway(demo_with())
    gateway.mocks.set_behavior("openai", {"delay_ms": 2000})
    for _ in range(6):
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.post(
                gateway.url + "/v1/chat/completions",
                json=chat_body("hi", model="gpt-4o"),
                headers={"authorization": f"Bearer {DEMO_KEY}"},
                timeout=0.3,
            )
    # Every abandoned attempt has ended (and recorded what it showed) once none is in flight.
    wait_for(lambda: deployment(gateway, "gpt-4o")["in_flight"] == 0)
    health = deployment(gateway, "gpt-4o")
    assert health["circuit"] == "closed"
    assert health["failures"]["unreachable"] == 0 and health["failures"]["timeout"] == 0
    assert health["in_flight"] == 0
    gateway.mocks.reset_behavior("openai")
    assert gateway.chat(chat_body("hi", model="gpt-4o")).headers["x-signalbox-model"] == "gpt-4o"


def test_a_400_that_mentions_a_key_is_the_clients_error_not_an_auth_failure(start_gateway):
    gateway = start_gateway(demo_with())
    gateway.mocks.set_behavior("openai", {"status": 400, "message": "invalid api key in your tool arguments"})
    for _ in range(5):
        response = gateway.chat(chat_body("hi", model="gpt-4o"))
        assert response.status_code == 400, response.text
        assert "invalid api key" in error_of(response)["message"]
    health = deployment(gateway, "gpt-4o")
    assert health["circuit"] == "closed"
    assert health["failures"]["auth"] == 0
    assert gateway.mocks.requests("anthropic") == [], "a client error is not retried elsewhere"


DEEP = "[" * 10_000 + "1" + "]" * 10_000


@pytest.mark.parametrize(
    ("body", "headers", "param"),
    [
        ('{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"tools":"x"}', {}, "tools"),
        ('{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}', {}, "temperature"),
        ('{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"n":-5}', {}, "n"),
        ('{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"extra":' + DEEP + "}", {}, None),
        ('{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}', {"content-encoding": "gzip"}, "content-encoding"),
        ('{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}', {"content-type": "text/plain"}, "content-type"),
    ],
    ids=["tools-not-a-list", "temperature-not-a-number", "negative-n", "nested-10000-deep", "gzip", "text-plain"],
)
def test_malformed_requests_are_refused_and_never_forwarded(gateway, body, headers, param):
    response = gateway.chat(body, headers=headers)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert gateway.mocks.requests() == []


def test_the_operator_views_need_a_key_and_a_tenant_sees_only_itself(gateway):
    for path in ("/signalbox/health", "/signalbox/spend"):
        for headers in ({}, {"authorization": "Bearer sk-not-a-real-key"}):
            response = requests.get(gateway.url + path, headers=headers, timeout=10)
            assert response.status_code == 401, (path, headers)
            assert "tenants" not in response.text and "deployments" not in response.text
    tenant = requests.get(
        gateway.url + "/signalbox/health", headers={"authorization": f"Bearer {DEMO_KEY}"}, timeout=10
    )
    assert tenant.status_code == 403
    own = gateway.view("/signalbox/spend", key=TINY_KEY)
    assert [entry["tenant"] for entry in own["tenants"]] == ["tiny"]
    everyone = gateway.view("/signalbox/spend", key=ADMIN_KEY)
    assert sorted(entry["tenant"] for entry in everyone["tenants"]) == ["team", "tiny"]


def test_embeddings_obey_the_same_model_policy_as_chat(gateway):
    refused_chat = gateway.chat(chat_body("hi", model="gpt-4o"), headers={"authorization": f"Bearer {TINY_KEY}"})
    assert refused_chat.status_code == 403
    refused = gateway.post(
        "/v1/embeddings",
        {"model": "gpt-4o", "input": "hello"},
        headers={"authorization": f"Bearer {TINY_KEY}"},
    )
    assert refused.status_code == 403, refused.text
    assert error_of(refused)["code"] == "model_not_allowed"
    assert gateway.mocks.requests() == []
    spend = gateway.view("/signalbox/spend", key=TINY_KEY)["tenants"][0]
    assert spend["ledger"] == {}


def test_embeddings_skip_providers_that_offer_none(start_gateway):
    plugin = anthropic_native()
    plugin["models"]["gpt-4o"]["fallbacks"] = ["claude-sonnet"]
    gateway = start_gateway(plugin)
    gateway.mocks.set_behavior("openai", {"status": 500})
    response = gateway.post("/v1/embeddings", {"model": "gpt-4o", "input": "hello"})
    assert response.status_code >= 500
    assert gateway.mocks.requests("anthropic") == [], "Anthropic has no embeddings: never a fallback for them"
    assert json.loads(response.text)["error"]["code"] == "providers_unavailable"
