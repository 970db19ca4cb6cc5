"""Spend governance through the real Envoy (two workers): virtual keys,
tenant policy, rate limits, quotas and budgets that concurrent and streamed
requests cannot overshoot, lazy day/month resets, soft alerts (once, with a
webhook), downgrade routing, and the cost ledger."""

from __future__ import annotations

import concurrent.futures
import datetime
import hashlib
import json

import pytest
import requests

from tests.gateway import add_cluster, chat_body, demo_plugin_config

CLOCK = "x-test-now"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def epoch_ms(*parts) -> int:
    return int(datetime.datetime(*parts, tzinfo=datetime.timezone.utc).timestamp() * 1000)


def governed(tenants: dict, keys: dict[str, tuple[str, str | None]], **extra) -> dict:
    """Two providers (cheap on openai, strong on anthropic) with `tenants` and keys {key: (tenant, user)}."""
    return {
        "explain": "always",
        "providers": {
            "openai": {"cluster": "openai", "api_key": "sk-provider-openai"},
            "anthropic": {"cluster": "anthropic", "api_key": "sk-provider-anthropic"},
        },
        "models": {
            "cheap": {"provider": "openai", "id": "cheap-model", "price": {"input": 1, "output": 2}},
            "strong": {"provider": "anthropic", "id": "strong-model", "price": {"input": 10, "output": 30}},
        },
        "tiers": [
            {"name": "simple", "max_score": 0.4, "models": ["cheap"]},
            {"name": "complex", "models": ["strong"]},
        ],
        "resilience": {"max_attempts": 1},
        "governance": {
            "tenants": tenants,
            "keys": [
                {"sha256": digest(key), "tenant": tenant, "user": user, "name": key.replace("sk-", "name-"), **({"disabled": True} if tenant == "off" else {})}
                for key, (tenant, user) in keys.items()
            ],
            "test_clock_header": CLOCK,
            **extra,
        },
    }


HARD = "Prove that the square root of 2 is irrational, step by step, then write a Python function that checks it."


def send_many(gateway, bodies: list[dict], key: str, workers: int = 16, headers: dict | None = None):
    def send(body):
        response = gateway.chat(body, headers={"authorization": f"Bearer {key}", "connection": "close", **(headers or {})},
                                stream=body.get("stream", False))
        if body.get("stream") and response.status_code == 200:
            lines = [line for line in response.iter_lines() if line.startswith(b"data: {")]
            usage = [json.loads(line[6:])["usage"] for line in lines if b'"usage":{' in line]
            return response.status_code, usage[-1] if usage else None, response
        usage = response.json().get("usage") if response.status_code == 200 else None
        return response.status_code, usage, response

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(send, bodies))


def spend(gateway) -> dict:
    report = gateway.view("/signalbox/spend")
    return {tenant["tenant"]: tenant for tenant in report["tenants"]}


def test_keys_are_checked_and_never_forwarded(start_gateway):
    gateway = start_gateway(governed({"team": {}, "off": {}}, {"sk-good-key-1": ("team", "ann"), "sk-disabled-1": ("off", None)}))
    body = chat_body("hello")
    assert gateway.chat(body, headers={"authorization": "Bearer sk-good-key-1"}).status_code == 200
    assert gateway.chat(body, headers={"x-api-key": "sk-good-key-1"}).status_code == 200
    refusals = {
        "unknown": {"authorization": "Bearer sk-not-a-key-at-all"},
        "disabled": {"authorization": "Bearer sk-disabled-1"},
        "missing": {},
        "malformed": {"authorization": "Basic c2stZ29vZC1rZXktMQ=="},
        "too short": {"authorization": "Bearer x"},
    }
    for name, headers in refusals.items():
        response = gateway.chat(body, headers=headers)
        assert response.status_code == 401, name
        assert response.json()["error"]["code"] == "invalid_api_key", name
    forwarded = json.dumps([request.headers for request in gateway.mocks.requests()])
    assert "sk-good-key-1" not in forwarded and "sk-good-key-1" not in gateway.envoy.log_text()
    assert gateway.mocks.requests("openai")[-1].header("authorization") == "Bearer sk-provider-openai"


def test_a_tenant_policy_limits_models_tiers_and_output(start_gateway):
    tenants = {"interns": {"allowed_tiers": ["simple"], "max_tokens_per_request": 64}}
    gateway = start_gateway(governed(tenants, {"sk-intern-key": ("interns", None)}))
    auth = {"authorization": "Bearer sk-intern-key"}
    hard = gateway.chat(chat_body(HARD), headers=auth)
    assert hard.status_code == 200 and hard.headers["x-signalbox-model"] == "cheap"
    assert gateway.last_request("openai").json["max_tokens"] == 64, "the cap is sent to the provider"
    assert gateway.chat(chat_body("hi", model="strong"), headers=auth).status_code == 403
    assert gateway.chat(chat_body("hi", max_tokens=500), headers=auth).status_code == 400


def test_rate_limits_answer_429_with_openai_headers_and_roll_over(start_gateway):
    tenants = {"team": {"limits": {"rpm": 3}}}
    gateway = start_gateway(governed(tenants, {"sk-team-key-1": ("team", None)}))
    now = epoch_ms(2026, 11, 24, 12, 0, 0)
    auth = {"authorization": "Bearer sk-team-key-1"}
    statuses = []
    for second in range(4):
        response = gateway.chat(chat_body("hi"), headers={**auth, CLOCK: str(now + second * 1000)})
        statuses.append(response.status_code)
        if response.status_code == 200:
            assert response.headers["x-ratelimit-limit-requests"] == "3"
            assert response.headers["x-ratelimit-remaining-requests"] == str(2 - second)
    assert statuses == [200, 200, 200, 429]
    refused = gateway.chat(chat_body("hi"), headers={**auth, CLOCK: str(now + 5_000)})
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 120
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    # Two minutes later the window has slid past all of them.
    assert gateway.chat(chat_body("hi"), headers={**auth, CLOCK: str(now + 125_000)}).status_code == 200


def test_daily_and_monthly_quotas_reset_lazily_at_utc_boundaries(start_gateway):
    tenants = {"team": {"quotas": [{"window": "day", "requests": 2}, {"window": "month", "requests": 5}]}}
    gateway = start_gateway(governed(tenants, {"sk-team-key-1": ("team", None)}))

    def status_at(*when):
        return gateway.chat(chat_body("hi"), headers={"authorization": "Bearer sk-team-key-1", CLOCK: str(epoch_ms(*when))}).status_code

    assert [status_at(2026, 11, 29, 23, 59, second) for second in (50, 51, 52)] == [200, 200, 429]
    refused = gateway.chat(chat_body("hi"), headers={"authorization": "Bearer sk-team-key-1", CLOCK: str(epoch_ms(2026, 11, 29, 23, 59, 53))})
    assert refused.json()["error"]["code"] == "insufficient_quota"
    assert "daily" in refused.json()["error"]["message"]
    assert int(refused.headers["retry-after"]) <= 7, "resets at midnight UTC"
    assert [status_at(2026, 11, 30, 0, 0, second) for second in (1, 2, 3)] == [200, 200, 429]
    assert status_at(2026, 11, 30, 9, 0, 0) == 429, "the month's five are used"
    assert status_at(2026, 12, 1, 0, 0, 1) == 200, "a new month"


@pytest.mark.parametrize("cap", ["tokens", "cost_usd"])
def test_concurrent_bursts_never_exceed_the_cap(start_gateway, cap):
    quota = {"window": "day", "tokens": 3_000} if cap == "tokens" else {"window": "day", "cost_usd": 0.003}
    tenants = {"team": {"max_tokens_per_request": 40, "quotas": [quota]}}
    gateway = start_gateway(governed(tenants, {"sk-team-key-1": ("team", None)}))
    bodies = []
    for index in range(200):
        text = "please count these words for me " * (1 + index % 4)
        body = chat_body(text, stream=index % 2 == 0)
        if body["stream"]:
            body["stream_options"] = {"include_usage": True}
        bodies.append(body)
    results = send_many(gateway, bodies, "sk-team-key-1", workers=24)
    admitted = [usage for status, usage, _ in results if status == 200]
    refused = [response for status, _, response in results if status == 429]
    assert admitted and refused and len(admitted) + len(refused) == 200
    assert {response.json()["error"]["code"] for response in refused} == {"insufficient_quota"}
    assert all(usage is not None for usage in admitted)
    prices = {"input": 1, "output": 2}  # cheap model, micro-USD per token
    if cap == "tokens":
        spent = sum(usage["total_tokens"] for usage in admitted)
        assert spent <= 3_000, spent
    else:
        spent = sum(usage["prompt_tokens"] * prices["input"] + usage["completion_tokens"] * prices["output"] for usage in admitted)
        assert spent <= 3_000, spent
    report = spend(gateway)["team"]["quotas"][0]
    assert report["reserved"]["requests"] == 0, "every reservation settled"
    assert report["used"]["requests"] == len(admitted)


def test_the_soft_alert_fires_once_and_reaches_the_webhook(mocks, start_gateway):
    mocks.start(["alerts"])
    tenants = {"team": {"quotas": [{"window": "month", "requests": 10}], "alert_at": 0.5}}
    config = governed(tenants, {"sk-team-key-1": ("team", None)}, alerts={"cluster": "alerts", "path": "/hooks/signalbox"})
    gateway = start_gateway(config, tweak=lambda envoy: add_cluster(envoy, "alerts"))
    results = send_many(gateway, [chat_body("hi")] * 9, "sk-team-key-1", workers=6)
    assert [status for status, _, _ in results] == [200] * 9
    # The webhook is a call the crossing settlement dispatches: it may arrive after every answer.
    mocks.wait_for_requests("alerts", 1)
    alerts = [request for request in mocks.requests("alerts") if request.path == "/hooks/signalbox"]
    assert len(alerts) == 1
    assert alerts[0].json["tenant"] == "team" and alerts[0].json["window"] == "monthly"
    assert alerts[0].json["share"] >= 0.5
    assert gateway.envoy.log_text().count("soft alert") == 1
    assert spend(gateway)["team"]["quotas"][0]["alerted"] is True


def test_past_the_soft_threshold_requests_are_downgraded(start_gateway):
    tenants = {"team": {"quotas": [{"window": "day", "requests": 20}], "alert_at": 0.2, "downgrade_tier": "simple"}}
    gateway = start_gateway(governed(tenants, {"sk-team-key-1": ("team", None)}))
    auth = {"authorization": "Bearer sk-team-key-1"}
    assert gateway.chat(chat_body(HARD), headers=auth).headers["x-signalbox-tier"] == "complex"
    for _ in range(4):
        gateway.chat(chat_body("hi"), headers=auth)
    after = gateway.chat(chat_body(HARD), headers=auth)
    assert after.headers["x-signalbox-tier"] == "simple"
    assert after.headers["x-signalbox-model"] == "cheap"
    assert after.headers["x-signalbox-reason"].endswith(";downgraded")



def test_a_named_model_is_held_to_max_tier_and_the_downgrade_tier(start_gateway):
    """A tenant's tier caps hold for a model named in the request as for
    `auto`: a model above `max_tier` is refused (403 model_not_allowed), and
    past the soft threshold a model above `downgrade_tier` is served by that
    tier, the decision saying so."""
    tenants = {
        "team": {"quotas": [{"window": "day", "requests": 20}], "alert_at": 0.1, "downgrade_tier": "simple"},
        "capped": {"max_tier": "simple"},
    }
    keys = {"sk-team-key-1": ("team", None), "sk-capped-key-1": ("capped", None)}
    gateway = start_gateway(governed(tenants, keys))
    auth = {"authorization": "Bearer sk-team-key-1"}
    for _ in range(3):
        gateway.chat(chat_body("hi"), headers=auth)  # past 10% of the quota: downgraded from now on
    downgraded = gateway.chat(chat_body("hi", model="strong"), headers=auth)
    capped = gateway.chat(chat_body("hi", model="strong"), headers={"authorization": "Bearer sk-capped-key-1"})
    served = {"downgraded": (downgraded.status_code, downgraded.headers.get("x-signalbox-model")),
              "max_tier simple": (capped.status_code, capped.headers.get("x-signalbox-model"))}
    assert all(model != "strong" for _, model in served.values()), f"strong model served: {served}"
    assert downgraded.status_code == 200 and downgraded.headers["x-signalbox-model"] == "cheap"
    assert downgraded.headers["x-signalbox-tier"] == "simple"
    assert downgraded.headers["x-signalbox-reason"] == "explicit;downgraded"
    assert capped.status_code == 403
    error = capped.json()["error"]
    assert error["code"] == "model_not_allowed" and error["type"] == "permission_error"
    assert "simple" in error["message"]


def test_cost_and_tokens_are_reported_and_ledgered(start_gateway):
    tenants = {"team": {"show_usage": True}, "quiet": {}}
    gateway = start_gateway(governed(tenants, {"sk-team-key-1": ("team", "ann"), "sk-quiet-key-1": ("quiet", None)}))
    response = gateway.chat(chat_body("tell me something nice"), headers={"authorization": "Bearer sk-team-key-1"})
    usage = response.json()["usage"]
    expected = (usage["prompt_tokens"] * 1 + usage["completion_tokens"] * 2) / 1e6
    assert float(response.headers["x-signalbox-cost-usd"]) == pytest.approx(expected)
    assert response.headers["x-signalbox-output-tokens"] == str(usage["completion_tokens"])
    quiet = gateway.chat(chat_body("hi"), headers={"authorization": "Bearer sk-quiet-key-1"})
    assert "x-signalbox-cost-usd" not in quiet.headers
    ledger = spend(gateway)["team"]["ledger"]["cheap"]
    assert ledger["requests"] == 1 and ledger["cost_usd"] == pytest.approx(expected)


def test_the_demo_has_governance_on(gateway):
    assert gateway.chat(chat_body("hi"), headers={"authorization": "Bearer sk-wrong"}).status_code == 401
    statuses = [gateway.chat(chat_body("hi"), headers={"authorization": "Bearer sk-demo-tiny"}).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    assert "governance" in demo_plugin_config()
