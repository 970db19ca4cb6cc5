"""A provider (or the load balancer in front of it) that answers an error
with headers alone, no body: the attempt fails over, an exhausted chain
still ends in one OpenAI-style error, and the VM goes on serving. Writing a
body into such an answer is refused by Envoy (NotFound), which once
panicked the VM for every later request of its worker. Real Envoy, a
bodiless upstream and the mock providers, 127.0.0.1 only."""

from __future__ import annotations

from tests.gateway import chat_body
from tests.harness.fixed_upstream import fixed_upstream, point_clusters
from tests.test_resilience import two_providers

REQUESTS = 6  # several per worker (the gateway runs two)


def no_panics(gateway) -> None:
    trapped = [line for line in gateway.envoy.log_text().splitlines() if "panicked" in line or " failed: " in line]
    assert not trapped, "\n".join(trapped[:5])


def test_a_bodiless_error_fails_over_and_the_vm_keeps_serving(start_gateway):
    with fixed_upstream(503) as port:
        gateway = start_gateway(two_providers())
        point_clusters(gateway, ["openai"], port)
        trails = []
        for _ in range(REQUESTS):
            response = gateway.chat(chat_body("hello"), headers={"connection": "close"})
            assert response.status_code == 200, response.text
            assert response.headers["x-signalbox-model"] == "backup"
            trails.append(response.headers["x-signalbox-attempts"])
        # Once its breaker opens the primary is skipped.
        assert trails[0] == "primary:503,backup:200", trails
        assert set(trails) <= {"primary:503,backup:200", "backup:200"}, trails
        no_panics(gateway)


def test_an_exhausted_chain_of_bodiless_errors_is_one_openai_error(start_gateway):
    with fixed_upstream(502) as port:
        gateway = start_gateway(two_providers())
        point_clusters(gateway, ["openai", "anthropic"], port)
        for _ in range(REQUESTS):
            response = gateway.chat(chat_body("hello"), headers={"connection": "close"})
            assert response.status_code == 503, response.text
            error = response.json()["error"]
            assert error["code"] == "providers_unavailable" and "502" in error["message"], error
            assert response.headers["content-type"] == "application/json"
            assert response.headers.get("x-request-id")
            # The routing headers the answer would have had.
            assert ":502" in response.headers["x-signalbox-attempts"], dict(response.headers)
        no_panics(gateway)


def test_a_bodiless_client_error_reaches_the_client_as_one(start_gateway):
    """A 400 is not retried: the attempt sends its error as its reply, which
    the router relays with the routing headers (chat, stream, Messages)."""
    with fixed_upstream(400) as port:
        gateway = start_gateway(two_providers())
        point_clusters(gateway, ["openai"], port)
        body = chat_body("hello", model="primary")
        for sent in (body, {**body, "stream": True}):
            response = gateway.chat(sent, headers={"connection": "close"})
            assert response.status_code == 400, response.text
            assert response.json()["error"]["type"] == "invalid_request_error"
            assert response.headers["x-signalbox-attempts"] == "primary:400"
        messages = gateway.post("/v1/messages", {"model": "primary", "max_tokens": 16,
                                                 "messages": [{"role": "user", "content": "hello"}]},
                                headers={"connection": "close"})
        assert messages.status_code == 400, messages.text
        assert messages.json()["type"] == "error", messages.text
        no_panics(gateway)
