"""Provider trouble through the real Envoy (two workers): failover on 429,
5xx, hangs and resets; the circuit breaker and its trial requests; recovery;
weighted, canary, sticky and latency selection; multi-key balancing; active
probes; health shared by every worker."""

from __future__ import annotations

import concurrent.futures
import json
import time

import pytest
import requests

from tests.gateway import chat_body, retry_policy

# Attempts give up after this long without response headers (route and filter agree).
PER_TRY_TIMEOUT_S = 1
# Concurrent clients in the failover bursts.
SEND_WORKERS = 8


def two_providers(**resilience) -> dict:
    """`primary` on the openai mock, `backup` on the anthropic mock, one tier."""
    return {
        "explain": "always",
        "providers": {
            "openai": {"cluster": "openai", "api_key": "sk-primary"},
            "anthropic": {"cluster": "anthropic", "api_key": "sk-backup"},
        },
        "models": {
            "primary": {"provider": "openai", "id": "primary-model"},
            "backup": {"provider": "anthropic", "id": "backup-model"},
        },
        "tiers": [{"name": "all", "models": ["primary", "backup"]}],
        "resilience": {
            "max_attempts": 2,
            "per_try_timeout_ms": PER_TRY_TIMEOUT_S * 1000,
            "breaker": {"consecutive_failures": 3, "open_ms": 2000, "half_open_trials": 1},
            **resilience,
        },
    }


def short_tries(config: dict) -> None:
    retry_policy(config)["per_try_timeout"] = f"{PER_TRY_TIMEOUT_S}s"


@pytest.fixture
def failover(start_gateway):
    return start_gateway(two_providers(), tweak=short_tries)


def send_many(gateway, count: int, body: dict | None = None, workers: int = 8, headers: dict | None = None):
    """`count` requests over fresh connections (spread over Envoy's workers)."""
    body = body or chat_body("hello there")

    def send(_):
        response = gateway.chat(body, headers={"connection": "close", **(headers or {})})
        return response.status_code, response.headers.get("x-signalbox-model"), response.headers.get("x-signalbox-route")

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(send, range(count)))


def health(gateway) -> dict:
    report = gateway.view("/signalbox/health")
    return {deployment["name"]: deployment for deployment in report["deployments"]}


@pytest.mark.parametrize(
    "fault",
    [{"status": 429, "retry_after": 30}, {"status": 500}, {"status": 503}, {"reset": True}, {"hang": True}],
    ids=["429", "500", "503", "reset", "hang"],
)
def test_every_request_survives_a_failing_primary(failover, fault):
    failover.mocks.set_behavior("openai", fault)
    count = 40 if fault.get("hang") else 200
    started = time.monotonic()
    results = send_many(failover, count, workers=SEND_WORKERS)
    elapsed_ms = (time.monotonic() - started) * 1000
    assert [status for status, _, _ in results] == [200] * count
    assert {model for _, model, _ in results} == {"backup"}
    backup_requests = failover.mocks.requests("anthropic")
    assert len(backup_requests) == count
    assert {request.json["model"] for request in backup_requests} == {"backup-model"}
    assert {request.header("authorization") for request in backup_requests} == {"Bearer sk-backup"}
    # After the first failures the primary is skipped instead of retried per
    # request. It sees what was planned before the breaker opened: the requests
    # in flight (one per sender) plus those planned after one of the first
    # consecutive_failures - 1 failures finished (fewer finished failures
    # cannot open it); then at most one trial per open period.
    breaker = two_providers()["resilience"]["breaker"]
    before_open = SEND_WORKERS + breaker["consecutive_failures"] - 1
    trials = (elapsed_ms // breaker["open_ms"] + 1) * breaker["half_open_trials"]
    assert len(failover.mocks.requests("openai")) <= before_open + trials


def test_the_route_header_says_primary_or_fallback_and_explain_shows_the_chain(failover):
    healthy = failover.chat(chat_body("hello"))
    assert healthy.headers["x-signalbox-route"] == "primary"
    assert healthy.headers["x-signalbox-attempts"] == "primary:200"
    failover.mocks.set_script("openai", [{"status": 503}])
    fallback = failover.chat(chat_body("hello"))
    assert fallback.status_code == 200
    assert fallback.headers["x-signalbox-route"] == "fallback-1"
    assert fallback.headers["x-signalbox-attempts"] == "primary:503,backup:200"
    assert fallback.headers["x-signalbox-model"] == "backup"
    assert fallback.headers["x-signalbox-provider"] == "anthropic"


def test_each_attempt_is_rewritten_for_its_own_provider(failover):
    failover.mocks.set_script("openai", [{"status": 500}])
    body = chat_body("hello", temperature=0.3, metadata={"k": "v"})
    assert failover.chat(body, headers={"authorization": "Bearer client-secret"}).status_code == 200
    first, = failover.mocks.requests("openai")
    second, = failover.mocks.requests("anthropic")
    assert (first.json["model"], first.header("authorization")) == ("primary-model", "Bearer sk-primary")
    assert (second.json["model"], second.header("authorization")) == ("backup-model", "Bearer sk-backup")
    assert second.json == {**body, "model": "backup-model"}
    assert "client-secret" not in json.dumps([first.headers, second.headers])


def test_the_breaker_opens_and_lets_only_trials_through_until_recovery(failover):
    failover.mocks.set_behavior("openai", {"status": 500})
    send_many(failover, 30)
    assert health(failover)["primary"]["circuit"] in ("open", "half_open")
    failover.mocks.clear("openai")
    # While open (2 s, doubling on each failed trial), only single trials reach it.
    started = time.monotonic()
    while time.monotonic() - started < 3:
        assert {status for status, _, _ in send_many(failover, 10)} == {200}
    trials = failover.mocks.requests("openai")
    assert 1 <= len(trials) <= 2, len(trials)
    # Recovery: the next trial succeeds, the circuit closes, traffic returns.
    failover.mocks.reset_behavior("openai")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and health(failover)["primary"]["circuit"] != "closed":
        send_many(failover, 4)
        time.sleep(0.2)
    assert health(failover)["primary"]["circuit"] == "closed"
    assert {model for _, model, _ in send_many(failover, 20)} == {"primary"}


def test_breaker_state_is_shared_by_every_worker(failover):
    failover.mocks.set_behavior("openai", {"status": 503})
    send_many(failover, 20, workers=4)
    # Each report is answered by whichever worker takes the new connection.
    reports = [health(failover)["primary"] for _ in range(8)]
    assert {report["circuit"] for report in reports} == {"open"}
    assert len({report["requests"] for report in reports}) == 1
    failover.mocks.clear("openai")
    results = send_many(failover, 40)
    assert {model for _, model, _ in results} == {"backup"}
    assert failover.mocks.requests("openai") == []


def test_a_429_with_retry_after_cools_the_deployment_down(failover):
    failover.mocks.set_script("openai", [{"status": 429, "retry_after": 2}])
    assert failover.chat(chat_body("hi")).headers["x-signalbox-model"] == "backup"
    assert health(failover)["primary"]["availability"] == "cooling_down"
    assert {model for _, model, _ in send_many(failover, 10)} == {"backup"}
    time.sleep(2.2)
    assert failover.chat(chat_body("hi")).headers["x-signalbox-model"] == "primary"


def test_when_every_provider_fails_the_client_gets_one_clear_error(failover):
    failover.mocks.set_behavior("openai", {"status": 429, "retry_after": 7})
    failover.mocks.set_behavior("anthropic", {"status": 429, "retry_after": 9})
    limited = failover.chat(chat_body("hi"))
    assert limited.status_code == 429
    error = limited.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert "primary:429" in error["message"] and "backup:429" in error["message"]
    assert 1 <= int(limited.headers["retry-after"]) <= 9

    failover.mocks.set_behavior("openai", {"reset": True})
    failover.mocks.set_behavior("anthropic", {"status": 500})
    broken = failover.chat(chat_body("hi"))
    assert broken.status_code == 503
    assert broken.json()["error"]["code"] == "providers_unavailable"


def test_a_provider_that_hangs_costs_one_per_try_timeout_not_a_hang(failover):
    failover.mocks.set_behavior("openai", {"hang": True})
    started = time.monotonic()
    response = failover.chat(chat_body("hi"))
    elapsed = time.monotonic() - started
    assert response.status_code == 200 and response.headers["x-signalbox-model"] == "backup"
    assert elapsed < PER_TRY_TIMEOUT_S + 3


def test_client_errors_are_not_retried(failover):
    failover.mocks.set_behavior("openai", {"status": 400, "message": "bad parameter"})
    response = failover.chat(chat_body("hi"))
    assert response.status_code == 400
    assert failover.mocks.requests("anthropic") == []
    assert health(failover)["primary"]["circuit"] == "closed"


def test_streams_fail_over_before_the_first_byte(failover):
    failover.mocks.set_script("openai", [{"status": 429}, {"first_token_delay_ms": 3000}])
    for _ in range(2):
        response = failover.chat(chat_body("hi", stream=True), stream=True)
        assert response.status_code == 200
        assert response.headers["x-signalbox-model"] == "backup"
        lines = [line for line in response.iter_lines() if line.startswith(b"data: ")]
        assert lines[-1] == b"data: [DONE]"
        chunks = [json.loads(line[6:]) for line in lines[:-1]]
        text = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks if chunk["choices"])
        assert text == "[anthropic/backup-model] hi"


def test_weighted_split_lands_near_its_shares(start_gateway):
    plugin = two_providers()
    plugin["tiers"] = [{"name": "all", "models": ["primary", "backup"], "strategy": "weighted", "weights": {"primary": 70, "backup": 30}}]
    gateway = start_gateway(plugin)
    results = send_many(gateway, 400)
    primary = sum(1 for _, model, _ in results if model == "primary")
    assert 240 <= primary <= 320, primary  # 70% of 400 = 280, ±4.6 standard deviations


def test_sticky_assignment_keeps_a_user_on_one_model(start_gateway):
    plugin = two_providers()
    plugin["tiers"] = [{"name": "all", "models": ["primary", "backup"], "strategy": "weighted",
                        "weights": {"primary": 50, "backup": 50}, "sticky_header": "x-user-id"}]
    gateway = start_gateway(plugin)
    per_user = {}
    for user in range(12):
        models = {model for _, model, _ in send_many(gateway, 6, headers={"x-user-id": f"user-{user}"})}
        assert len(models) == 1, (user, models)
        per_user[user] = models.pop()
    assert set(per_user.values()) == {"primary", "backup"}


def test_a_canary_takes_a_small_share(start_gateway):
    plugin = two_providers()
    plugin["tiers"] = [{"name": "all", "models": ["primary", "backup"], "canary": {"model": "backup", "share": 0.1}}]
    gateway = start_gateway(plugin)
    results = send_many(gateway, 600)
    canary = sum(1 for _, model, _ in results if model == "backup")
    assert 30 <= canary <= 90, canary  # 10% of 600 = 60, ±4 standard deviations


def test_the_latency_strategy_moves_traffic_off_a_slowed_provider(start_gateway):
    plugin = two_providers()
    plugin["tiers"] = [{"name": "all", "models": ["primary", "backup"], "strategy": "latency"}]
    gateway = start_gateway(plugin)
    send_many(gateway, 20, workers=2)
    gateway.mocks.set_behavior("openai", {"delay_ms": 400})
    gateway.mocks.set_behavior("anthropic", {"delay_ms": 20})
    send_many(gateway, 30, workers=2)
    later = send_many(gateway, 40, workers=2)
    assert sum(1 for _, model, _ in later if model == "backup") >= 36


def test_keys_are_balanced_and_a_rejected_key_is_rotated_away_from(start_gateway):
    plugin = two_providers()
    plugin["providers"]["openai"] = {"cluster": "openai", "api_keys": [
        {"name": "one", "key": "sk-one"}, {"name": "two", "key": "sk-two"}]}
    plugin["tiers"] = [{"name": "all", "models": ["primary"]}]
    gateway = start_gateway(plugin)
    send_many(gateway, 100)
    used = [request.header("authorization") for request in gateway.mocks.requests("openai")]
    assert 25 <= used.count("Bearer sk-one") <= 75, used.count("Bearer sk-one")
    gateway.mocks.clear()
    gateway.mocks.set_behavior("openai", {"status": 401, "when_header": {"authorization": "Bearer sk-one"}})
    results = send_many(gateway, 60)
    assert [status for status, _, _ in results] == [200] * 60
    states = health(gateway)
    assert states["primary@one"]["circuit"] == "open"
    assert states["primary@two"]["circuit"] == "closed"
    assert states["primary@one"]["failures"]["auth"] >= 3


def test_probes_notice_an_outage_and_a_recovery_without_traffic(start_gateway):
    gateway = start_gateway(two_providers(probes={"interval_ms": 1000, "timeout_ms": 500}))
    gateway.mocks.set_behavior("openai", {"status": 503})
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline and health(gateway)["primary"]["circuit"] != "open":
        time.sleep(0.3)
    assert health(gateway)["primary"]["circuit"] == "open"
    probes = [r for r in gateway.mocks.requests("openai") if r.header("user-agent") == "signalbox-probe"]
    assert probes and probes[0].json["max_tokens"] == 1
    gateway.mocks.reset_behavior("openai")
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline and health(gateway)["primary"]["circuit"] != "closed":
        time.sleep(0.3)
    assert health(gateway)["primary"]["circuit"] == "closed"


def test_probes_run_once_per_process_not_once_per_worker(start_gateway):
    gateway = start_gateway(two_providers(probes={"interval_ms": 1000}), concurrency=3)
    time.sleep(4.5)
    probes = [r for r in gateway.mocks.requests("anthropic") if r.header("user-agent") == "signalbox-probe"]
    # ~4 ticks in 4.5 s; with one prober per VM (main thread + 3 workers) it would be ~16.
    assert 2 <= len(probes) <= 6, len(probes)


def test_the_overall_deadline_bounds_a_request(start_gateway):
    gateway = start_gateway(two_providers(deadline_ms=1500), tweak=short_tries)
    gateway.mocks.set_behavior("openai", {"hang": True})
    gateway.mocks.set_behavior("anthropic", {"hang": True})
    started = time.monotonic()
    response = gateway.chat(chat_body("hi"))
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "providers_unavailable"
    assert 1.3 <= elapsed < 2.5, elapsed
