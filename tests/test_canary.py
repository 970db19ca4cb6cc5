"""Canary rollouts through the real Envoy (two workers sharing one record):
a healthy canary climbs its steps window by window to 100%, one whose
provider fails is rolled back to zero as soon as it has enough attempts to
judge; every move shows in /signalbox/health and the metrics. With the
fleet store, two Envoys share one rollout through Redis. Windows run on
the test clock (a header only the test-clock module honours)."""

from __future__ import annotations

import pytest

from tests.test_fleet import replicas, wait_for
from tests.test_governance import CLOCK, governed
from tests.test_observability import eventually, scrape, total

KEY = "sk-canary-team"
AUTH = {"authorization": f"Bearer {KEY}"}
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, in ms
WINDOW_S = 60
MIN_REQUESTS = 4
# Bounds the requests one step may take (10% of traffic needs ~40 for 4).
MAX_REQUESTS_PER_STEP = 300


def rollout(**settings) -> dict:
    """One tier: `cheap` (openai mock) and the canary `fresh` (anthropic mock)."""
    config = governed({"team": {}}, {KEY: ("team", "ann")})
    config["models"]["fresh"] = {"provider": "anthropic", "id": "fresh-model", "price": {"input": 1, "output": 2}}
    config["tiers"] = [
        {
            "name": "simple",
            "models": ["cheap", "fresh"],
            "canary": {
                "model": "fresh",
                "steps": [0.1, 0.5, 1.0],
                "window_s": WINDOW_S,
                "min_requests": MIN_REQUESTS,
                # The mocks' latency moves with the machine's load: no test
                # here is about a latency breach, so none may trip one.
                "max_latency_ratio": 1000.0,
                **settings,
            },
        }
    ]
    config["resilience"] = {"max_attempts": 2}
    return config


def ask(gateway, now_ms: int):
    response = gateway.chat(
        {"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
        headers={**AUTH, CLOCK: str(now_ms)},
    )
    assert response.status_code == 200, response.text
    return response


def until_canary_attempts(gateway, now_ms: int, attempts: int) -> int:
    """Sends requests at `now_ms` until the canary's provider saw `attempts` more; returns how many were sent."""
    seen = len(gateway.mocks.requests("anthropic"))
    for sent in range(1, MAX_REQUESTS_PER_STEP + 1):
        ask(gateway, now_ms)
        if len(gateway.mocks.requests("anthropic")) >= seen + attempts:
            return sent
    pytest.fail(f"the canary got fewer than {attempts} attempts in {MAX_REQUESTS_PER_STEP} requests")


def canary_view(gateway) -> dict:
    (canary,) = gateway.view("/signalbox/health")["canaries"]
    return canary


def test_a_healthy_canary_climbs_each_step_after_a_clean_window_to_100_percent(start_gateway):
    gateway = start_gateway(rollout())
    assert canary_view(gateway)["share"] == 0.1
    now = T0
    sent = until_canary_attempts(gateway, now, MIN_REQUESTS)
    assert sent > MIN_REQUESTS, "at 10% most requests go to the baseline"
    view = canary_view(gateway)
    assert (view["state"], view["step"], view["share"]) == ("observing", 0, 0.1)
    assert view["canary"]["attempts"] >= MIN_REQUESTS and view["window_started_ms"] == T0

    for step, share in [(1, 0.5), (2, 1.0)]:
        now += WINDOW_S * 1000
        ask(gateway, now)  # the first observation after the window ends moves it
        view = canary_view(gateway)
        assert (view["state"], view["step"], view["share"]) == ("observing", step, share), view
        until_canary_attempts(gateway, now, MIN_REQUESTS)

    # At 100% every request goes to the canary first.
    before = len(gateway.mocks.requests("openai"))
    for _ in range(5):
        assert ask(gateway, now).headers["x-signalbox-model"] == "fresh"
    assert len(gateway.mocks.requests("openai")) == before
    now += WINDOW_S * 1000
    ask(gateway, now)
    view = canary_view(gateway)
    assert (view["state"], view["share"], view["moves"]) == ("promoted", 1.0, 3), view

    samples = eventually(
        lambda: scrape(gateway),
        lambda samples: total(samples, "signalbox_canary_moves_total", result="promoted") == 1,
    )
    assert total(samples, "signalbox_canary_moves_total", tier="simple", model="fresh", result="advanced") == 2
    assert total(samples, "signalbox_canary_moves_total", result="rolled_back") == 0
    assert total(samples, "signalbox_canary_share_percent", tier="simple", model="fresh") == 100


def test_a_failing_canary_rolls_back_to_zero_and_the_baseline_takes_everything(start_gateway):
    gateway = start_gateway(rollout())
    gateway.mocks.set_behavior("anthropic", {"status": 500})
    # The canary's failures fail over to the baseline: clients still get answers.
    until_canary_attempts(gateway, T0, MIN_REQUESTS)
    view = canary_view(gateway)
    assert (view["state"], view["breach"], view["share"]) == ("rolled_back", "error_rate", 0.0), view

    gateway.mocks.clear()
    for _ in range(40):
        assert ask(gateway, T0 + 1_000).headers["x-signalbox-model"] == "cheap"
    assert gateway.mocks.requests("anthropic") == [], "a rolled-back canary gets no first attempts"
    # Later windows do not bring it back.
    ask(gateway, T0 + 10 * WINDOW_S * 1000)
    assert canary_view(gateway)["share"] == 0.0

    samples = eventually(
        lambda: scrape(gateway),
        lambda samples: total(samples, "signalbox_canary_moves_total", result="rolled_back") == 1,
    )
    assert total(samples, "signalbox_canary_share_percent", tier="simple", model="fresh") == 0
    assert total(samples, "signalbox_canary_moves_total", result="advanced") == 0


def test_requests_that_name_the_canary_or_fail_by_the_clients_fault_do_not_move_it(start_gateway):
    gateway = start_gateway(rollout())
    # The canary refuses the tier's requests as malformed: the client's fault.
    gateway.mocks.set_behavior("anthropic", {"status": 400, "message": "bad request"})
    for _ in range(MAX_REQUESTS_PER_STEP):
        if len(gateway.mocks.requests("anthropic")) >= MIN_REQUESTS:
            break
        response = gateway.chat(
            {"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
            headers={**AUTH, CLOCK: str(T0)},
        )
        assert response.status_code in (200, 400), response.text
    assert len(gateway.mocks.requests("anthropic")) >= MIN_REQUESTS
    # Clients name the canary and it fails them: not the tier's traffic.
    gateway.mocks.set_behavior("anthropic", {"status": 500})
    seen = len(gateway.mocks.requests("anthropic"))
    for _ in range(MIN_REQUESTS):
        named = gateway.chat(
            {"model": "fresh", "messages": [{"role": "user", "content": "hi"}]},
            headers={**AUTH, CLOCK: str(T0)},
        )
        assert named.status_code >= 500, named.text
    assert len(gateway.mocks.requests("anthropic")) >= seen + MIN_REQUESTS
    view = canary_view(gateway)
    assert (view["state"], view["share"]) == ("observing", 0.1), view
    assert view["canary"]["attempts"] == 0, "neither named requests nor client errors count"


def canary_attempts(gateway) -> int:
    return canary_view(gateway)["canary"]["attempts"]


def test_two_replicas_share_one_rollout_through_the_fleet_store(envoy, mocks, fleet_store):
    first, second = replicas(envoy, mocks, fleet_store, rollout())
    half = MIN_REQUESTS // 2
    # Each replica alone sees too few canary attempts to judge; together enough.
    until_canary_attempts(first, T0, half)
    until_canary_attempts(second, T0, half)
    for gateway in (first, second):
        assert wait_for(lambda: canary_attempts(gateway) >= MIN_REQUESTS), canary_view(gateway)
        assert canary_view(gateway)["step"] == 0
    # The window ends on the second replica's clock: the fleet's record moves once.
    ask(second, T0 + WINDOW_S * 1000)
    for gateway in (first, second):
        view = wait_for(lambda: (view := canary_view(gateway))["step"] == 1 and view)
        assert view and (view["state"], view["share"], view["moves"]) == ("observing", 0.5, 1), canary_view(gateway)
    moves = [
        total(scrape(gateway), "signalbox_canary_moves_total", tier="simple", model="fresh", result="advanced")
        for gateway in (first, second)
    ]
    assert sorted(moves) == [0, 1], "one replica made the move and logged it"
    assert all(
        eventually(
            lambda: scrape(gateway),
            lambda samples: total(samples, "signalbox_canary_share_percent", tier="simple", model="fresh") == 50,
        )
        for gateway in (first, second)
    )


def test_a_rollback_seen_by_one_replica_stops_the_canary_on_the_other(envoy, mocks, fleet_store):
    first, second = replicas(envoy, mocks, fleet_store, rollout())
    mocks.set_behavior("anthropic", {"status": 500})
    until_canary_attempts(first, T0, MIN_REQUESTS)
    view = wait_for(lambda: (view := canary_view(second))["state"] == "rolled_back" and view)
    assert view and (view["breach"], view["share"]) == ("error_rate", 0.0), canary_view(second)
    mocks.clear()
    for _ in range(40):
        assert ask(second, T0 + 1_000).headers["x-signalbox-model"] == "cheap"
    assert mocks.requests("anthropic") == [], "the other replica routes by the fleet's record"


def test_while_redis_is_down_a_rollout_holds_still_and_catches_up_when_it_returns(envoy, mocks, fleet_store):
    first, second = replicas(envoy, mocks, fleet_store, rollout())
    fleet_store.stop_redis()
    mocks.set_behavior("anthropic", {"status": 500})
    until_canary_attempts(first, T0, MIN_REQUESTS)
    assert wait_for(
        lambda: total(scrape(first), "signalbox_store_calls_total", op="rollout", result="unavailable") >= 2
    )
    view = canary_view(first)
    assert (view["state"], view["share"]) == ("observing", 0.1), "no move without the fleet's record"
    fleet_store.start_redis()
    # The failures counted meanwhile were kept, and judged once Redis is back.
    for gateway in (first, second):
        view = wait_for(lambda: (view := canary_view(gateway))["state"] == "rolled_back" and view)
        assert view and view["breach"] == "error_rate", canary_view(gateway)
