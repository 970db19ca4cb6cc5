"""Observability through the real Envoy (two workers): after a known mix of
requests the Prometheus endpoint shows exactly the expected counts with the
expected labels, and the access log has one JSON line per request with the
audit fields; prompts and answers only for audited tenants, redacted."""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import pytest
import requests

from tests.gateway import REPO, chat_body, retry_policy
from tests.harness import config as envoy_config

TENANTS = {
    "team": {"quotas": [{"window": "day", "cost_usd": 100}], "show_usage": True},
    "tiny": {"quotas": [{"window": "day", "requests": 1}]},
    "slow": {"limits": {"rpm": 1}},
    "audited": {"audit_content": True},
}
KEYS = {"sk-obs-team": "team", "sk-obs-tiny": "tiny", "sk-obs-slow": "slow", "sk-obs-audit": "audited"}
SIMPLE = "What is the capital of France?"
HARD = "Prove that the square root of 2 is irrational, step by step, then write a Python function that checks it."
# Histograms reach the admin endpoint at each stats flush.
FLUSH_S = 0.5


def plugin(**observability) -> dict:
    """Cheap model on openai (backed up by anthropic), strong model on anthropic; four tenants."""
    return {
        "providers": {
            "openai": {"cluster": "openai", "api_key": "sk-provider-openai"},
            "anthropic": {"cluster": "anthropic", "api_key": "sk-provider-anthropic"},
        },
        "models": {
            "cheap": {"provider": "openai", "id": "cheap-model", "price": {"input": 1, "output": 2}},
            "backup": {"provider": "anthropic", "id": "backup-model", "price": {"input": 1, "output": 2}},
            "strong": {"provider": "anthropic", "id": "strong-model", "price": {"input": 10, "output": 30}},
        },
        "tiers": [
            {"name": "simple", "max_score": 0.4, "models": ["cheap", "backup"]},
            {"name": "complex", "models": ["strong"]},
        ],
        "resilience": {"max_attempts": 2},
        "governance": {
            "tenants": TENANTS,
            "keys": [
                {"sha256": hashlib.sha256(key.encode()).hexdigest(), "tenant": tenant, "name": f"{tenant}-key", "user": "u1"}
                for key, tenant in KEYS.items()
            ],
        },
        "observability": {"gauge_interval_ms": 200, **observability},
    }


@pytest.fixture
def observed(start_gateway, tmp_path):
    """A gateway with the shipped stats and access-log settings, logging to a file."""
    log_path = tmp_path / "access.log"

    def start(**observability):
        def tweak(config):
            assert envoy_config.set_access_log_path(config, log_path) == 1
            envoy_config.set_stats_flush_interval(config, FLUSH_S)

        gateway = start_gateway(plugin(**observability), tweak=tweak)
        gateway.access_log = log_path
        return gateway

    return start


def send(gateway, key: str, text: str, request_id: str, **extra) -> requests.Response:
    headers = {"authorization": f"Bearer {key}", "x-request-id": request_id, "connection": "close"}
    return gateway.chat(chat_body(text, **extra), headers=headers, stream=extra.get("stream", False))


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(gateway) -> dict[tuple[str, frozenset], float]:
    """`/stats/prometheus` as {(name, labels): value}, Signalbox's series only."""
    samples = {}
    for line in gateway.envoy.prometheus().splitlines():
        match = SAMPLE.match(line)
        if match and match.group(1).startswith("signalbox_"):
            labels = frozenset(LABEL.findall(match.group(2) or ""))
            samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def total(samples: dict, name: str, **labels) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (series, have), v in samples.items() if series == name and wanted <= have)


def eventually(read, check, timeout: float = 10.0):
    """`read()` once `check(result)` holds (gauges and histograms lag by a flush)."""
    deadline = time.monotonic() + timeout
    while True:
        result = read()
        if check(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def access_lines(gateway, count: int) -> list[dict]:
    """The access log once it holds `count` lines (Envoy flushes it every second)."""
    def read():
        path: Path = gateway.access_log
        return path.read_text().splitlines() if path.exists() else []

    lines = eventually(read, lambda lines: len(lines) >= count)
    return [json.loads(line) for line in lines]


def run_known_mix(gateway) -> dict:
    """3 simple, 2 complex, 1 failover, 1 over quota, 1 over rate, 1 bad key; returns the responses by id."""
    responses = {}
    for index in range(3):
        responses[f"simple-{index}"] = send(gateway, "sk-obs-team", SIMPLE, f"simple-{index}")
    for index in range(2):
        responses[f"hard-{index}"] = send(gateway, "sk-obs-team", HARD, f"hard-{index}")
    gateway.mocks.set_script("openai", [{"status": 503}])
    responses["failover"] = send(gateway, "sk-obs-team", SIMPLE, "failover")
    responses["tiny-ok"] = send(gateway, "sk-obs-tiny", SIMPLE, "tiny-ok")
    responses["tiny-over"] = send(gateway, "sk-obs-tiny", SIMPLE, "tiny-over")
    responses["slow-ok"] = send(gateway, "sk-obs-slow", SIMPLE, "slow-ok")
    responses["slow-over"] = send(gateway, "sk-obs-slow", SIMPLE, "slow-over")
    responses["bad-key"] = send(gateway, "sk-obs-wrong", SIMPLE, "bad-key")
    statuses = {name: response.status_code for name, response in responses.items()}
    assert statuses == {
        **{f"simple-{i}": 200 for i in range(3)},
        "hard-0": 200,
        "hard-1": 200,
        "failover": 200,
        "tiny-ok": 200,
        "tiny-over": 429,
        "slow-ok": 200,
        "slow-over": 429,
        "bad-key": 401,
    }
    return responses


def test_prometheus_shows_exact_counts_with_labels(observed):
    gateway = observed()
    responses = run_known_mix(gateway)
    # Histograms show at a stats flush: wait for one after the last (refused) request was logged too.
    samples = eventually(
        lambda: scrape(gateway),
        lambda s: total(s, "signalbox_request_duration_ms_count") >= 8
        and total(s, "signalbox_filter_duration_us_count", phase="route") >= 11,
    )

    requests_total = "signalbox_requests_total"
    cheap = {"provider": "openai", "model": "cheap"}
    backup = {"provider": "anthropic", "model": "backup"}
    strong = {"provider": "anthropic", "model": "strong"}
    ok_primary = {"route": "primary", "outcome": "ok"}
    assert value(samples, requests_total, tenant="team", tier="simple", **cheap, **ok_primary) == 3
    assert value(samples, requests_total, tenant="team", tier="complex", **strong, **ok_primary) == 2
    assert value(samples, requests_total, tenant="team", tier="simple", **backup, route="fallback", outcome="ok") == 1
    assert value(samples, requests_total, tenant="tiny", tier="simple", **cheap, **ok_primary) == 1
    none = {"tier": "none", "provider": "none", "model": "none", "route": "none"}
    assert value(samples, requests_total, tenant="tiny", **none, outcome="quota_exceeded") == 1
    assert value(samples, requests_total, tenant="slow", **none, outcome="rate_limited") == 1
    assert value(samples, requests_total, tenant="none", **none, outcome="unauthorized") == 1
    assert total(samples, requests_total) == 11

    assert value(samples, "signalbox_failovers_total", **cheap, result="overloaded") == 1
    assert total(samples, "signalbox_failovers_total") == 1
    attempts = "signalbox_attempts_total"
    assert value(samples, attempts, deployment="cheap", **cheap, result="ok") == 5
    assert value(samples, attempts, deployment="cheap", **cheap, result="overloaded") == 1
    assert value(samples, attempts, deployment="backup", **backup, result="ok") == 1
    assert value(samples, attempts, deployment="strong", **strong, result="ok") == 2

    assert value(samples, "signalbox_rejections_total", tenant="tiny", reason="day_requests") == 1
    assert value(samples, "signalbox_rejections_total", tenant="slow", reason="tenant_rate") == 1

    # Tokens and cost add up to what the team's responses reported.
    team = [r for name, r in responses.items() if name.startswith(("simple", "hard", "failover"))]
    usage_sum = lambda field: sum(r.json()["usage"][field] for r in team)  # noqa: E731
    input_tokens = total(samples, "signalbox_tokens_total", tenant="team", kind="input")
    cached_tokens = total(samples, "signalbox_tokens_total", tenant="team", kind="cached_input")
    assert input_tokens + cached_tokens == usage_sum("prompt_tokens")
    assert total(samples, "signalbox_tokens_total", tenant="team", kind="output") == usage_sum("completion_tokens")
    cost_micros = sum(round(float(r.headers["x-signalbox-cost-usd"]) * 1e6) for r in team)
    assert total(samples, "signalbox_cost_micro_usd_total", tenant="team") == cost_micros

    # Latency histograms: one observation per served request or successful attempt.
    assert value(samples, "signalbox_request_duration_ms_count", **cheap) == 5
    assert value(samples, "signalbox_request_duration_ms_count", **backup) == 1
    assert value(samples, "signalbox_first_token_ms_count", **strong) == 2
    assert value(samples, "signalbox_upstream_duration_ms_count", **cheap) == 5
    # The filter's own time: every request is routed (or refused) once.
    assert value(samples, "signalbox_filter_duration_us_count", phase="route") == 11
    assert value(samples, "signalbox_filter_duration_us_count", phase="prepare") == 9

    # Gauges from shared state: the day quota holds the ledger's cost.
    gauges = eventually(
        lambda: scrape(gateway),
        lambda s: value(s, "signalbox_quota_used", tenant="team", window="day", resource="cost_micro_usd") == cost_micros,
    )
    assert value(gauges, "signalbox_quota_used", tenant="team", window="day", resource="cost_micro_usd") == cost_micros
    assert value(gauges, "signalbox_quota_limit", tenant="team", window="day", resource="cost_micro_usd") == 100_000_000
    assert value(gauges, "signalbox_quota_used", tenant="tiny", window="day", resource="requests") == 1
    assert value(gauges, "signalbox_deployment_circuit_state", deployment="strong", **strong) == 0
    assert value(gauges, "signalbox_deployment_in_flight", deployment="strong", **strong) == 0
    assert 0 < value(gauges, "signalbox_deployment_health_percent", deployment="strong", **strong) <= 100
    assert total(gauges, "signalbox_config_loads_total", result="ok") >= 2

    # Every label was extracted by the shipped stats_tags (none left in a name).
    assert "=.=" not in gateway.envoy.prometheus()


def test_the_access_log_has_one_json_line_per_request_with_the_audit_fields(observed):
    gateway = observed()
    run_known_mix(gateway)
    lines = access_lines(gateway, 11)
    assert len(lines) == 11
    by_id = {line["request_id"]: line for line in lines}
    assert set(by_id) == {
        "simple-0", "simple-1", "simple-2", "hard-0", "hard-1", "failover",
        "tiny-ok", "tiny-over", "slow-ok", "slow-over", "bad-key",
    }

    simple = by_id["simple-0"]
    assert simple["status"] == 200
    assert {k: simple[k] for k in ("endpoint", "tenant", "user", "key", "model_requested", "tier", "reason")} == {
        "endpoint": "chat.completions", "tenant": "team", "user": "u1", "key": "team-key",
        "model_requested": "auto", "tier": "simple", "reason": "score",
    }
    assert {k: simple[k] for k in ("model", "provider", "deployment", "route", "attempts", "outcome")} == {
        "model": "cheap", "provider": "openai", "deployment": "cheap",
        "route": "primary", "attempts": "cheap:200", "outcome": "ok",
    }
    assert 0 <= float(simple["score"]) < 0.4
    assert simple["signals"]
    for field in ("input_tokens", "cached_tokens", "output_tokens", "ttft_ms", "duration_ms", "routing_us"):
        assert simple[field].isdigit(), field
    assert float(simple["cost_usd"]) > 0
    assert simple["prompt"] is None and simple["answer"] is None

    failover = by_id["failover"]
    assert (failover["route"], failover["attempts"], failover["model"], failover["outcome"]) == (
        "fallback", "cheap:503,backup:200", "backup", "ok")
    assert by_id["hard-0"]["tier"] == "complex"
    assert (by_id["tiny-over"]["status"], by_id["tiny-over"]["outcome"], by_id["tiny-over"]["tenant"]) == (
        429, "quota_exceeded", "tiny")
    assert by_id["tiny-over"]["model"] is None
    assert by_id["slow-over"]["outcome"] == "rate_limited"
    bad = by_id["bad-key"]
    assert (bad["status"], bad["outcome"], bad["tenant"], bad["key"]) == (401, "unauthorized", None, None)

    # Neither virtual keys nor provider keys reach the log.
    text = gateway.access_log.read_text()
    for secret in (*KEYS, "sk-obs-wrong", "sk-provider-openai", "sk-provider-anthropic"):
        assert secret not in text


def answer_text(response: requests.Response, stream: bool) -> str:
    if not stream:
        return response.json()["choices"][0]["message"]["content"]
    events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith(b"data: {")]
    return "".join(event["choices"][0]["delta"].get("content") or "" for event in events if event["choices"])


PII = "I am jane.doe@example.com, card 4111 1111 1111 1111. What is the capital of France?"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_audited_tenants_log_redacted_prompts_and_answers(observed, stream):
    gateway = observed(audit_max_chars=60)
    # The mock's answer echoes the prompt, so the answer carries the same PII.
    response = send(gateway, "sk-obs-audit", PII, "audited", stream=stream)
    assert response.status_code == 200
    assert "jane.doe@example.com" in answer_text(response, stream)  # the client still gets the real answer
    send(gateway, "sk-obs-team", PII, "not-audited")
    by_id = {line["request_id"]: line for line in access_lines(gateway, 2)}
    audited = by_id["audited"]
    assert audited["prompt"] == "I am [EMAIL], card [CARD]. What is the capital of France?"
    assert audited["answer"].startswith("[openai/cheap-model] I am [EMAIL], card [CARD].")
    assert len(audited["answer"]) <= 61
    assert by_id["not-audited"]["prompt"] is None and by_id["not-audited"]["answer"] is None
    text = gateway.access_log.read_text()
    assert "jane.doe" not in text and "4111" not in text


def test_metrics_and_access_log_fields_can_be_switched_off(observed):
    gateway = observed(metrics=False, access_log=False)
    assert send(gateway, "sk-obs-team", SIMPLE, "quiet").status_code == 200
    line = access_lines(gateway, 1)[0]
    assert line["status"] == 200
    assert line["tenant"] is None and line["model"] is None
    time.sleep(FLUSH_S * 2)
    names = {name for name, _ in scrape(gateway)}
    assert names <= {"signalbox_config_loads_total"}


def test_only_the_listed_access_log_fields_are_written(observed):
    gateway = observed(access_log_fields=["tier", "model", "cost_usd", "output_tokens", "prompt"])
    # The audited tenant's prompt is kept because `prompt` is listed; its answer is not.
    response = send(gateway, "sk-obs-audit", SIMPLE, "picked", stream=True)
    assert response.status_code == 200 and b"[DONE]" in response.content
    line = access_lines(gateway, 1)[0]
    assert (line["tier"], line["model"]) == ("simple", "cheap")
    assert float(line["cost_usd"]) > 0 and line["output_tokens"].isdigit()
    assert line["prompt"]
    for field in ("tenant", "provider", "route", "input_tokens", "duration_ms", "answer"):
        assert line[field] is None, field


def test_attempts_that_got_no_answer_are_logged_and_counted(start_gateway, tmp_path):
    """Attempts that time out record themselves when Envoy destroys them (no response
    to record at): the access log and the metrics still show each of them."""
    log_path = tmp_path / "access.log"
    config = plugin()
    config["resilience"]["per_try_timeout_ms"] = 1000

    def tweak(envoy):
        assert envoy_config.set_access_log_path(envoy, log_path) == 1
        envoy_config.set_stats_flush_interval(envoy, FLUSH_S)
        retry_policy(envoy)["per_try_timeout"] = "1s"

    gateway = start_gateway(config, tweak=tweak)
    gateway.access_log = log_path
    gateway.mocks.set_behavior("openai", {"hang": True})
    gateway.mocks.set_behavior("anthropic", {"hang": True})
    response = send(gateway, "sk-obs-team", SIMPLE, "all-hang")
    assert response.status_code == 503, response.text
    [line] = access_lines(gateway, 1)
    assert (line["attempts"], line["route"], line["outcome"]) == ("cheap:none,backup:none", "fallback", "unavailable")
    samples = eventually(lambda: scrape(gateway), lambda s: total(s, "signalbox_attempts_total") >= 2)
    for deployment, provider in (("cheap", "openai"), ("backup", "anthropic")):
        labels = {"deployment": deployment, "provider": provider, "model": deployment}
        assert value(samples, "signalbox_attempts_total", **labels, result="timeout") == 1, samples
    assert value(samples, "signalbox_requests_total", tenant="team", tier="simple", provider="anthropic",
                 model="backup", route="fallback", outcome="unavailable") == 1


# The custom tags the tracing snippet of docs/observability.md adds to each request's span:
# OpenTelemetry's GenAI attributes, then Signalbox's own under `signalbox.`.
GEN_AI_TAGS = {
    "gen_ai.operation.name": "operation",
    "gen_ai.request.model": "model_requested",
    "gen_ai.response.model": "response_model",
    "gen_ai.provider.name": "provider_name",
    "gen_ai.usage.input_tokens": "input_tokens",
    "gen_ai.usage.output_tokens": "output_tokens",
}
SPAN_TAGS = ("tenant", "key", "tier", "score", "reason")


def add_zipkin_tracing(config: dict) -> None:
    """Zipkin spans (JSON, flushed one at a time) to a cluster named zipkin, tagged with SPAN_TAGS."""
    for hcm in envoy_config.walk_dicts(config):
        if hcm.get("@type", "").endswith("HttpConnectionManager"):
            hcm["tracing"] = {
                "random_sampling": {"value": 100},
                "custom_tags": [
                    {"tag": tag, "value": f"%FILTER_STATE(wasm.signalbox.{field}:PLAIN)%"}
                    for tag, field in [*GEN_AI_TAGS.items(), *((f"signalbox.{field}", field) for field in SPAN_TAGS)]
                ],
                "provider": {"name": "envoy.tracers.zipkin", "typed_config": {
                    "@type": "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig",
                    "collector_cluster": "zipkin",
                    "collector_endpoint": "/api/v2/spans",
                    "collector_endpoint_version": "HTTP_JSON",
                }},
            }
    envoy_config.clusters(config).append({"name": "zipkin", "type": "STATIC", "connect_timeout": "1s"})
    config["layered_runtime"] = {"layers": [{"name": "static", "static_layer": {
        "tracing.zipkin.min_flush_spans": 1, "tracing.zipkin.flush_interval_ms": 100}}]}


def test_spans_carry_the_routing_decision_as_tags(start_gateway, mocks):
    mocks.start(("zipkin",))  # records what the tracer posts (and answers 404, which Envoy ignores)
    gateway = start_gateway(plugin(), tweak=add_zipkin_tracing)
    # No x-request-id of our own: Envoy's sampling needs the UUID it generates.
    # sk-obs-tiny's day quota is one request: its second is refused after the key was read.
    sent = (("sk-obs-team", HARD, 200), ("sk-obs-wrong", SIMPLE, 401), ("sk-obs-tiny", SIMPLE, 200),
            ("sk-obs-tiny", SIMPLE, 429))
    for key, text, status in sent:
        assert gateway.chat(chat_body(text), headers={"authorization": f"Bearer {key}"}).status_code == status

    def spans():
        return [span["tags"] for posted in mocks.requests("zipkin") if isinstance(posted.json, list)
                for span in posted.json]

    def by_status():
        found = {}
        for tags in spans():
            found.setdefault(tags.get("http.status_code"), []).append(tags)
        return found

    found = eventually(by_status, lambda found: len(found.get("200", [])) == 2 and {"401", "429"} <= found.keys())
    [served] = [tags for tags in found["200"] if tags.get("signalbox.tier") == "complex"]
    assert served["signalbox.tenant"] == "team"
    assert served["signalbox.key"] == "team-key"
    assert served["gen_ai.operation.name"] == "chat"
    assert served["gen_ai.request.model"] == "auto"
    # Written when the answer completed, before the span ended.
    assert served["gen_ai.response.model"] == "strong-model"
    assert served["gen_ai.provider.name"] == "openai"  # the anthropic mock cluster speaks OpenAI's API here
    assert int(served["gen_ai.usage.input_tokens"]) > 0 and int(served["gen_ai.usage.output_tokens"]) > 0
    assert served["signalbox.tier"] == "complex"
    assert 0.4 <= float(served["signalbox.score"]) <= 1
    assert served["signalbox.reason"] == "score"
    assert served["upstream_cluster"] == "anthropic"
    # Refused at the key: nothing known, and the key a client sent is never a tag.
    [unknown] = found["401"]
    assert not any(unknown.get(f"signalbox.{field}") for field in SPAN_TAGS), unknown
    # Only the operation (the endpoint's) is known.
    assert unknown["gen_ai.operation.name"] == "chat"
    assert not any(unknown.get(tag) for tag in GEN_AI_TAGS if tag != "gen_ai.operation.name"), unknown
    assert "sk-obs-wrong" not in json.dumps(unknown)
    # Refused over quota: who it was, by the key's name only; no decision was applied.
    [over_quota] = found["429"]
    assert (over_quota["signalbox.tenant"], over_quota["signalbox.key"]) == ("tiny", "tiny-key"), over_quota
    assert "sk-obs-tiny" not in json.dumps(over_quota)


def test_every_audit_field_is_in_each_shipped_access_log():
    """The fields the filter writes (contract::ACCESS_LOG_FIELDS) and the shipped configs' access logs agree."""
    source = (REPO / "src/contract.rs").read_text()
    declared = re.search(r"^access_log_fields! \{(.*?)^\}", source, re.S | re.M)
    fields = set(re.findall(r'"([a-z_]+)"', declared.group(1)))
    for name in ("demo.yaml", "live.yaml", "production.yaml"):
        logged = set(re.findall(r"wasm\.signalbox\.([a-z_]+):PLAIN", (REPO / "envoy" / name).read_text()))
        assert logged == fields, (name, sorted(fields ^ logged))
