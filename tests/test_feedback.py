"""Feedback through the real Envoy: every answer carries its x-request-id; a
rating posted with that id and the same tenant's key is counted once, by
the tier, model and prompt kind that produced the answer, and shows in the
metrics; other tenants, unknown ids, repeats and malformed ratings get
clear errors. With the fleet store, two Envoys count a rating once
whichever of them gets it, also across a Redis outage."""

from __future__ import annotations

import requests

from tests.gateway import chat_body
from tests.test_fleet import replicas, wait_for
from tests.test_governance import governed
from tests.test_observability import eventually, scrape, total

KEY = "sk-feedback-team"
OTHER_KEY = "sk-feedback-other"
AUTH = {"authorization": f"Bearer {KEY}"}
OTHER = {"authorization": f"Bearer {OTHER_KEY}"}
PATH = "/signalbox/feedback"


def feedback_config() -> dict:
    config = governed({"team": {}, "other": {}}, {KEY: ("team", "ann"), OTHER_KEY: ("other", None)})
    config["feedback"] = {}
    return config


def answered(gateway, text: str) -> str:
    response = gateway.chat(chat_body(text), headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.headers["x-signalbox-model"] == "cheap"
    return response.headers["x-request-id"]


def rate(gateway, body, headers=AUTH):
    return gateway.post(PATH, body, headers)


def test_a_rating_counts_once_for_its_tenants_answer_and_shows_in_metrics(start_gateway):
    gateway = start_gateway(feedback_config())
    good = answered(gateway, "What is the capital of France?")
    bad = answered(gateway, "Name a prime number between 10 and 20.")
    assert good != bad

    counted = rate(gateway, {"request_id": good, "rating": 1, "success": True})
    assert counted.status_code == 200, counted.text
    assert counted.json() == {"counted": True, "model": "cheap"}
    again = rate(gateway, {"request_id": good, "rating": 0})
    assert (again.status_code, again.json()["error"]["code"]) == (409, "already_rated")

    # Another tenant cannot rate (or learn of) this tenant's answer.
    foreign = rate(gateway, {"request_id": bad, "rating": 0}, OTHER)
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (404, "request_not_found")
    assert rate(gateway, {"request_id": bad, "rating": 0.2}).status_code == 200

    unknown = rate(gateway, {"request_id": "never-answered", "rating": 1})
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "request_not_found")
    for malformed in [{"request_id": good, "rating": 7}, {"rating": 1}, "not json", {"request_id": good, "rating": 1, "stars": 5}]:
        refused = rate(gateway, malformed)
        assert refused.status_code == 400, (malformed, refused.text)
        assert refused.json()["error"]["type"] == "invalid_request_error"
    assert rate(gateway, {"request_id": good, "rating": 1}, {}).status_code == 401
    assert requests.get(gateway.url + PATH, headers=AUTH, timeout=10).status_code == 405

    samples = eventually(
        lambda: scrape(gateway),
        lambda samples: total(samples, "signalbox_feedback_total") >= 2,
    )
    assert total(samples, "signalbox_feedback_total", tier="simple", model="cheap", result="positive") == 1
    assert total(samples, "signalbox_feedback_total", tier="simple", model="cheap", result="negative") == 1
    assert total(samples, "signalbox_feedback_rating_milli_total", tier="simple", model="cheap") == 1200
    log = gateway.envoy.log_text()
    assert f'"request_id":"{good}"' in log and '"rating":1' in log and '"success":true' in log


def test_with_the_fleet_store_a_rating_counts_once_whichever_replica_gets_it(envoy, mocks, fleet_store):
    first, second = replicas(envoy, mocks, fleet_store, feedback_config())
    # Rated at once where it was answered (Redis may not have it yet), then elsewhere.
    prompt = answered(first, "What is the capital of France?")
    assert rate(first, {"request_id": prompt, "rating": 1}).status_code == 200
    again = rate(second, {"request_id": prompt, "rating": 0})
    assert (again.status_code, again.json()["error"]["code"]) == (409, "already_rated")

    # Answered by one replica, rated at the other once the answer reached Redis.
    later = answered(first, "Name a prime number between 10 and 20.")
    counted = wait_for(lambda: (reply := rate(second, {"request_id": later, "rating": 0.25})).status_code == 200 and reply)
    assert counted and counted.json() == {"counted": True, "model": "cheap"}
    assert rate(first, {"request_id": later, "rating": 1}).status_code == 409
    assert rate(second, {"request_id": later, "rating": 0}, OTHER).status_code == 404, "another tenant's answer"
    assert rate(second, {"request_id": "never-answered", "rating": 1}).status_code == 404

    counted_on = [
        total(scrape(gateway), "signalbox_feedback_total", tier="simple", model="cheap") for gateway in (first, second)
    ]
    assert counted_on == [1, 1], counted_on
    assert total(scrape(second), "signalbox_store_calls_total", op="remember", result="stored") == 0
    # Counted when first's root reads webdis's reply, which can come after second already found the answer in Redis.
    assert wait_for(lambda: total(scrape(first), "signalbox_store_calls_total", op="remember", result="stored") >= 1)


def test_while_redis_is_down_the_replica_that_answered_counts_and_redis_learns_it_later(envoy, mocks, fleet_store):
    first, second = replicas(envoy, mocks, fleet_store, feedback_config())
    fleet_store.stop_redis()
    prompt = answered(first, "What is the capital of France?")
    assert rate(first, {"request_id": prompt, "rating": 1}).status_code == 200, "its own record decides"
    unknown_here = rate(second, {"request_id": prompt, "rating": 1})
    assert unknown_here.status_code == 503, "only Redis could know: retry"
    assert unknown_here.json()["error"]["code"] == "ledger_unavailable"
    assert total(scrape(first), "signalbox_store_calls_total", op="rate", result="unavailable") >= 1
    fleet_store.start_redis()
    # The answer reaches Redis with its rating: the other replica refuses a second one.
    assert wait_for(lambda: rate(second, {"request_id": prompt, "rating": 0}).status_code == 409)
