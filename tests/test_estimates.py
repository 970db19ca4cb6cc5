"""The prompt estimate a reservation is made of does not err low for inputs of
one- or two-byte tokens: one request cannot spend past a money cap. Real Envoy +
mock providers (which count a word, or a token id, a token), 127.0.0.1 only."""

from __future__ import annotations

import time

from tests.gateway import chat_body
from tests.test_governance import governed, spend

KEY = "sk-estimates-1"
AUTH = {"authorization": f"Bearer {KEY}", "connection": "close"}


def settled_cost(gateway) -> float:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        quota = spend(gateway)["team"]["quotas"][0]
        if quota["reserved"]["requests"] == 0 and quota["used"]["requests"] > 0:
            return quota["used"]["cost_usd"]
        time.sleep(0.1)
    raise AssertionError("never settled")


def capped(start_gateway, cap_usd: float):
    return start_gateway(governed({"team": {"quotas": [{"window": "day", "cost_usd": cap_usd}]}}, {KEY: ("team", "ann")}))


def test_one_letter_words_are_estimated_a_token_each(start_gateway):
    """20,000 one-letter words are 20,000 tokens ($0.02 at $1/M), not a quarter of
    their 40,000 bytes: under a $0.0105 cap the request is refused before any
    provider sees it; under $0.025 it is served and billed within the cap."""
    body = chat_body(" ".join(["a"] * 20_000), model="cheap", max_tokens=1)
    refused = capped(start_gateway, 0.0105)
    response = refused.chat(body, headers=AUTH)
    assert response.status_code == 429 and response.json()["error"]["code"] == "insufficient_quota", response.text
    assert refused.mocks.requests("openai") == []
    served = capped(start_gateway, 0.025)
    response = served.chat(body, headers=AUTH)
    assert response.status_code == 200, response.text
    assert 0.02 <= settled_cost(served) <= 0.025


def test_token_id_input_to_embeddings_is_not_estimated_low(start_gateway):
    """20,000 token ids (`[0,0,...]`, two bytes each) cost $0.02 at $1/M: a $0.015
    cap refuses the request rather than let it spend past the cap."""
    gateway = capped(start_gateway, 0.015)
    response = gateway.post("/v1/embeddings", {"model": "cheap", "input": [0] * 20_000}, headers=AUTH)
    assert response.status_code == 429 and response.json()["error"]["code"] == "insufficient_quota", response.text
    assert gateway.mocks.requests("openai") == []
