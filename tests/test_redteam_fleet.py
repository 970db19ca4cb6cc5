"""Red-team findings on the fleet-wide canary rollouts and feedback, kept as
regression tests: lost answers from a hung Redis, records Redis forgot, a
finished rollout."""

from __future__ import annotations

import time

import pytest
import requests

from tests.test_canary import AUTH as AUTH_HEADERS, MIN_REQUESTS, T0, canary_view, rollout, until_canary_attempts
from tests.test_feedback import AUTH as RATING_AUTH, PATH as FEEDBACK_PATH, answered, feedback_config, rate
from tests.test_fleet import replicas, wait_for
from tests.test_observability import scrape, total

def unavailable(gateway, op: str) -> int:
    return total(scrape(gateway), "signalbox_store_calls_total", op=op, result="unavailable")


def test_a_rollout_turn_that_timed_out_in_a_hung_redis_is_not_counted_twice(envoy, mocks, fleet_store):
    # Mostly canary traffic, and every request at T0: no window ends, so
    # the canary's attempts only add up and can be checked against the mock.
    (gateway,) = replicas(envoy, mocks, fleet_store, rollout(steps=[0.9, 1.0]), count=1)
    until_canary_attempts(gateway, T0, 2)
    sent = len(mocks.requests("anthropic"))
    assert wait_for(lambda: canary_view(gateway)["canary"]["attempts"] == sent), canary_view(gateway)

    fleet_store.pause_redis()
    try:
        until_canary_attempts(gateway, T0, 1)
        before = unavailable(gateway, "rollout")
        # A turn carrying the new attempts is sent, reaches webdis and Redis's
        # socket, and times out in Envoy: its tally is put back.
        assert wait_for(lambda: unavailable(gateway, "rollout") >= before + 2)
    finally:
        fleet_store.resume_redis()
    sent = len(mocks.requests("anthropic"))
    assert sent < MIN_REQUESTS * 4
    time.sleep(4)  # Redis runs the queued proposal; later turns add the put-back tally again
    view = canary_view(gateway)
    assert view["canary"]["attempts"] == sent, f"the canary had {sent} attempts, the fleet's record counts {view}"


def test_a_rating_that_times_out_while_redis_hangs_is_not_lost(envoy, mocks, fleet_store):
    first, second = replicas(envoy, mocks, fleet_store, feedback_config())
    prompt = answered(first, "What is the capital of France?")
    with fleet_store.admin() as admin:
        assert wait_for(lambda: admin.command("EXISTS", f"sb:{{team}}:fb:{prompt}") == 1), "remembered in Redis"

    fleet_store.pause_redis()
    try:
        # The other replica cannot know the answer: 503 (the fleet store did not answer in time).
        timed_out = rate(second, {"request_id": prompt, "rating": 1})
    finally:
        fleet_store.resume_redis()
    assert timed_out.status_code != 200
    # The client retries until the gateway settles it one way or the other.
    settled = wait_for(lambda: (reply := rate(second, {"request_id": prompt, "rating": 1})).status_code in (200, 409) and [reply])
    assert settled, "a retry settles"
    (retried,) = settled
    total_counted = lambda: sum(total(scrape(gateway), "signalbox_feedback_total") for gateway in (first, second))
    # After a 409 the first call counted in Redis; second's root counts it when it settles that call on its tick.
    wait_for(lambda: total_counted() >= 1)
    time.sleep(1)  # a second count would land by now
    counted = total_counted()
    assert counted == 1, f"first try {timed_out.status_code}, retry {retried.status_code}; counted {counted} times"


def test_a_rating_whose_client_left_while_redis_hung_is_counted_once(envoy, mocks, fleet_store):
    first, second = replicas(envoy, mocks, fleet_store, feedback_config())
    prompt = answered(first, "What is the capital of France?")
    with fleet_store.admin() as admin:
        assert wait_for(lambda: admin.command("EXISTS", f"sb:{{team}}:fb:{prompt}") == 1), "remembered in Redis"

    fleet_store.pause_redis()
    try:
        # The client gives up long before the store's timeout; its call is out.
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.post(
                second.url + FEEDBACK_PATH,
                json={"request_id": prompt, "rating": 1},
                headers=RATING_AUTH,
                timeout=0.1,
            )
        time.sleep(0.2)
    finally:
        fleet_store.resume_redis()
    # Redis runs the call once it is back; the replica that sent it settles it.
    counted = lambda: sum(total(scrape(gateway), "signalbox_feedback_total") for gateway in (first, second))
    assert wait_for(lambda: counted() == 1), f"counted {counted()} times"
    assert rate(first, {"request_id": prompt, "rating": 1}).status_code == 409
    time.sleep(0.5)
    assert counted() == 1


def test_a_retry_at_the_serving_replica_while_redis_hangs_is_not_a_second_count(envoy, mocks, fleet_store):
    first, second = replicas(envoy, mocks, fleet_store, feedback_config())
    prompt = answered(first, "What is the capital of France?")
    with fleet_store.admin() as admin:
        assert wait_for(lambda: admin.command("EXISTS", f"sb:{{team}}:fb:{prompt}") == 1), "remembered in Redis"

    fleet_store.pause_redis()
    try:
        # Both calls time out and run once Redis is back; the first one counts there.
        assert rate(second, {"request_id": prompt, "rating": 1}).status_code == 503
        retried = rate(first, {"request_id": prompt, "rating": 1})
    finally:
        fleet_store.resume_redis()
    assert retried.status_code == 503, "Redis has the answer: it decides, not the serving replica's copy"
    counted = lambda: sum(total(scrape(gateway), "signalbox_feedback_total") for gateway in (first, second))
    assert wait_for(lambda: counted() == 1), f"counted {counted()} times"
    time.sleep(1)
    assert counted() == 1


def test_an_answer_rated_at_another_replica_is_not_counted_again_once_redis_forgets_it(envoy, mocks, fleet_store):
    first, second = replicas(envoy, mocks, fleet_store, feedback_config())
    prompt = answered(first, "What is the capital of France?")
    key = f"sb:{{team}}:fb:{prompt}"
    with fleet_store.admin() as admin:
        assert wait_for(lambda: admin.command("EXISTS", key) == 1), "remembered in Redis"
    assert rate(second, {"request_id": prompt, "rating": 1}).status_code == 200
    # keep_s runs out (or a flush, or a restart that lost the AOF's last second).
    with fleet_store.admin() as admin:
        admin.command("PEXPIRE", key, 1)
    time.sleep(0.2)
    again = rate(first, {"request_id": prompt, "rating": 0})
    counted = sum(total(scrape(gateway), "signalbox_feedback_total") for gateway in (first, second))
    assert (again.status_code, counted) != (200, 2), "rated once at the second replica, then again at the first"


def test_a_finished_rollout_is_only_read_not_stored_again_every_turn(envoy, mocks, fleet_store):
    (gateway,) = replicas(envoy, mocks, fleet_store, rollout(), count=1)
    mocks.set_behavior("anthropic", {"status": 500})
    until_canary_attempts(gateway, T0, MIN_REQUESTS)
    assert wait_for(lambda: canary_view(gateway)["state"] == "rolled_back"), canary_view(gateway)
    mocks.clear()
    key = "sb:rollout:{simple:fresh}"
    with fleet_store.admin() as admin:
        time.sleep(1.5)
        before = int(admin.command("HGET", key, "v"))
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # baseline traffic only: nothing can change the record
            gateway.chat({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}, headers=AUTH_HEADERS)
        time.sleep(1.5)
        after = int(admin.command("HGET", key, "v"))
    assert after == before, f"the unchanged record was stored {after - before} more times"


def test_a_rollback_stored_while_its_reply_was_lost_is_still_logged_and_counted(envoy, mocks, fleet_store):
    (gateway,) = replicas(envoy, mocks, fleet_store, rollout(steps=[0.9, 1.0]), count=1)
    mocks.set_behavior("anthropic", {"status": 500})
    until_canary_attempts(gateway, T0, MIN_REQUESTS - 1)
    assert wait_for(lambda: canary_view(gateway)["canary"]["attempts"] == MIN_REQUESTS - 1), canary_view(gateway)

    fleet_store.pause_redis()
    try:
        until_canary_attempts(gateway, T0, 1)  # the attempt that breaches, counted in the tally
        before = unavailable(gateway, "rollout")
        assert wait_for(lambda: unavailable(gateway, "rollout") >= before + 2)
    finally:
        fleet_store.resume_redis()
    assert wait_for(lambda: canary_view(gateway)["state"] == "rolled_back"), canary_view(gateway)
    time.sleep(2)
    moves = total(scrape(gateway), "signalbox_canary_moves_total", result="rolled_back")
    logged = "rolled_back" in gateway.envoy.log_text()
    assert (moves, logged) == (1, True), "the fleet's record rolled back; no replica logged or counted it"
