"""Shadow evaluation through the real Envoy: a tenant's sampled whole answer
from the cheap tier is also asked of the reference model in the background,
after the client has its answer; the two are compared and the results show
in the metrics and the log; the reference calls are billed on the tenant's
`shadow:<model>` ledger line, within a per-minute budget; streams are not
sampled. With a judge model, the judge scores the two answers (its calls
billed on `shadow-judge:<model>`, two budget calls a sample), and the rules
stand in, counted, when it gives no score. With the fleet ledger, shadow
calls are charged there."""

from __future__ import annotations

import json
import time

import pytest

from tests.gateway import add_cluster, chat_body
from tests.test_fleet import fleet_spend, replicas, wait_for
from tests.test_governance import governed, spend
from tests.test_observability import eventually, scrape, total

KEY = "sk-shadow-team"
AUTH = {"authorization": f"Bearer {KEY}"}
QUESTION = "How many legs does a spider have?"


def shadowed(**shadow) -> dict:
    """Cheap (openai mock) below strong (anthropic mock, the reference)."""
    return governed({"team": {"shadow": {"reference": "strong", "share": 1.0, **shadow}}}, {KEY: ("team", "ann")})


def reference_calls(gateway, count: int, timeout: float = 10.0) -> list:
    deadline = time.monotonic() + timeout
    while len(gateway.mocks.requests("anthropic")) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return gateway.mocks.requests("anthropic")


def test_sampled_answers_are_compared_with_the_reference_in_the_background(start_gateway):
    gateway = start_gateway(shadowed(max_per_minute=2))
    gateway.mocks.set_behavior("anthropic", {"say": "A spider has 8 legs."})
    for said in ["Spiders have 8 legs.", "Spiders have 6 legs."]:
        gateway.mocks.set_behavior("openai", {"say": said})
        response = gateway.chat(chat_body(QUESTION), headers=AUTH)
        assert response.status_code == 200, response.text
        assert response.headers["x-signalbox-model"] == "cheap"
        assert response.json()["choices"][0]["message"]["content"] == said
    calls = reference_calls(gateway, 2)
    assert len(calls) == 2
    assert calls[0].header("user-agent") == "signalbox-shadow"
    assert QUESTION in calls[0].body.decode()

    # The budget (2 a minute) is spent: a third answer is not compared.
    gateway.chat(chat_body(QUESTION), headers=AUTH)
    time.sleep(1)
    assert len(gateway.mocks.requests("anthropic")) == 2

    samples = eventually(
        lambda: scrape(gateway),
        lambda samples: total(samples, "signalbox_shadow_total") >= 2,
    )
    assert total(samples, "signalbox_shadow_total", tier="simple", result="agree") == 1
    assert total(samples, "signalbox_shadow_total", tier="simple", result="disagree") == 1
    assert total(samples, "signalbox_shadow_agreement_milli_total", tier="simple") == 1000
    ledger = spend(gateway)["team"]["ledger"]
    assert ledger["shadow:strong"]["requests"] == 2 and ledger["shadow:strong"]["cost_usd"] > 0, ledger
    assert "strong" not in ledger, "shadow calls are not the tenant's own requests"
    assert ledger["cheap"]["requests"] == 3
    log = gateway.envoy.log_text()
    assert '"reference":"strong"' in log and '"result":"agree"' in log and '"result":"disagree"' in log


def test_streams_and_answers_from_the_reference_tier_are_not_sampled(start_gateway):
    gateway = start_gateway(shadowed())
    streamed = gateway.chat(chat_body(QUESTION, stream=True), headers=AUTH, stream=True)
    assert streamed.status_code == 200
    streamed.content  # read to the end
    strong = gateway.chat(
        chat_body("Prove that the square root of 2 is irrational, step by step, then write a Python function that checks it."),
        headers=AUTH,
    )
    assert strong.status_code == 200 and strong.headers["x-signalbox-model"] == "strong"
    time.sleep(1)
    assert len(gateway.mocks.requests("anthropic")) == 1, "only the strong request itself"
    assert total(scrape(gateway), "signalbox_shadow_total") == 0


# The judge model's own mock listener and Envoy cluster, so it can say a
# score while the reference says an answer.
JUDGE = "judge"


@pytest.fixture
def start_judged(start_gateway, mocks):
    """start(**shadow): shadowed() with a judge model, "grader" (OpenAI format), on the JUDGE mock."""
    mocks.start([JUDGE])

    def start(**shadow):
        config = shadowed(judge="grader", **shadow)
        config["providers"]["judging"] = {"cluster": JUDGE, "api_key": "sk-provider-judge"}
        config["models"]["grader"] = {"provider": "judging", "id": "grader-model", "price": {"input": 1, "output": 1}}
        return start_gateway(config, tweak=lambda envoy: add_cluster(envoy, JUDGE))

    return start


def shadow_lines(gateway, count: int) -> list[dict]:
    """The gateway's `shadow {...}` log lines once it has logged `count`."""
    def read():
        return [json.loads(line.split("shadow ", 1)[1]) for line in gateway.envoy.log_text().splitlines() if " shadow {" in line]
    return eventually(read, lambda lines: len(lines) >= count)


def test_a_judge_model_scores_the_agreement_instead_of_the_rules(start_judged):
    # With a judge a sample takes two calls: 3 a minute is one sample.
    gateway = start_judged(max_per_minute=3)
    gateway.mocks.set_behavior("anthropic", {"say": "A spider has 8 legs."})
    gateway.mocks.set_behavior("openai", {"say": "Spiders have 6 legs."})
    gateway.mocks.set_behavior(JUDGE, {"say": "8"})
    for _ in range(2):
        assert gateway.chat(chat_body(QUESTION), headers=AUTH).status_code == 200

    judge_call = gateway.mocks.wait_for_requests(JUDGE, 1, timeout=10)[0]
    assert judge_call.header("user-agent") == "signalbox-shadow-judge"
    asked = judge_call.json
    assert asked["model"] == "grader-model" and asked["temperature"] == 0 and asked["max_tokens"] <= 16
    assert "Reply with only the number" in asked["messages"][0]["content"]
    quoted = asked["messages"][1]["content"]
    assert QUESTION in quoted and "A spider has 8 legs." in quoted and "Spiders have 6 legs." in quoted
    assert quoted.index("A spider has 8 legs.") < quoted.index("Spiders have 6 legs."), "A is the reference"

    [line] = shadow_lines(gateway, 1)
    # The rules would say 0 (6 legs is not 8); the judge's 8 of 10 stands.
    assert (line["judge"], line["agreement"], line["result"]) == ("model", 0.8, "agree"), line
    samples = eventually(lambda: scrape(gateway), lambda samples: total(samples, "signalbox_shadow_total") >= 1)
    assert total(samples, "signalbox_shadow_total", tier="simple", result="agree") == 1
    assert total(samples, "signalbox_shadow_agreement_milli_total", tier="simple") == 800
    assert total(samples, "signalbox_shadow_judge_failures_total") == 0
    ledger = spend(gateway)["team"]["ledger"]
    assert ledger["shadow:strong"]["requests"] == 1, ledger
    assert ledger["shadow-judge:grader"]["requests"] == 1 and ledger["shadow-judge:grader"]["cost_usd"] > 0, ledger
    assert "grader" not in ledger
    # The second answer was past the budget: neither asked of the reference nor judged.
    assert len(gateway.mocks.requests("anthropic")) == 1 and len(gateway.mocks.requests(JUDGE)) == 1


def test_a_judge_without_a_score_leaves_the_rules_agreement_and_is_counted(start_judged):
    gateway = start_judged(max_per_minute=4)
    gateway.mocks.set_behavior("anthropic", {"say": "A spider has 8 legs."})
    gateway.mocks.set_behavior("openai", {"say": "Spiders have 8 legs."})
    for judge_behavior, reason in [({"say": "They agree completely."}, "no_score"), ({"status": 500}, "no_answer")]:
        gateway.mocks.set_behavior(JUDGE, judge_behavior)
        before = len(gateway.mocks.requests(JUDGE))
        assert gateway.chat(chat_body(QUESTION), headers=AUTH).status_code == 200
        gateway.mocks.wait_for_requests(JUDGE, before + 1, timeout=10)
        samples = eventually(
            lambda: scrape(gateway),
            lambda samples: total(samples, "signalbox_shadow_judge_failures_total", reason=reason) >= 1,
        )
        assert total(samples, "signalbox_shadow_judge_failures_total", model="grader", reason=reason) == 1, reason

    lines = shadow_lines(gateway, 2)
    assert [(line["judge"], line["agreement"], line["result"]) for line in lines] == [("rules", 1.0, "agree")] * 2, lines
    samples = scrape(gateway)
    assert total(samples, "signalbox_shadow_total", tier="simple", result="agree") == 2
    assert total(samples, "signalbox_shadow_agreement_milli_total", tier="simple") == 2000
    ledger = spend(gateway)["team"]["ledger"]
    assert ledger["shadow-judge:grader"]["requests"] == 1, "the reply without a score is billed, the failed call is not"


def test_with_the_fleet_ledger_shadow_calls_are_charged_there_on_their_own_line(envoy, mocks, fleet_store):
    first, second = replicas(envoy, mocks, fleet_store, shadowed())
    mocks.set_behavior("anthropic", {"say": "A spider has 8 legs."})
    mocks.set_behavior("openai", {"say": "Spiders have 8 legs."})
    for gateway in (first, second):
        response = gateway.chat(chat_body(QUESTION), headers=AUTH)
        assert response.status_code == 200, response.text
    assert len(reference_calls(first, 2)) == 2

    def charged():
        ledger = fleet_spend(second)["team"]["ledger"]
        # Each replica settles its own request and its shadow call separately, in either order.
        settled = ledger.get("shadow:strong", {}).get("requests") == 2 and ledger.get("cheap", {}).get("requests") == 2
        return ledger if settled else None

    ledger = wait_for(charged)
    assert ledger, fleet_spend(second)["team"]
    assert ledger["shadow:strong"]["cost_usd"] > 0
    assert "strong" not in ledger, "shadow calls are not the tenant's own requests"
    assert fleet_spend(first)["team"]["source"] == "fleet"
