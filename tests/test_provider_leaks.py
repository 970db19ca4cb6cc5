"""Nothing of the gateway's provider accounts reaches a client: keys in error
text, account and quota headers. Real Envoy + mock providers, 127.0.0.1 only."""

from __future__ import annotations

import json

from tests.gateway import chat_body
from tests.harness.fixed_upstream import fixed_upstream, point_clusters
from tests.test_governance import governed

KEY = "sk-test-keys-1"
AUTH = {"authorization": f"Bearer {KEY}", "connection": "close"}
PROVIDER_KEY = "sk-provider-openai"  # governed()'s OpenAI key
MAX_MESSAGE_CHARS = 1000  # src/providers/failure.rs


def test_a_provider_key_straddling_the_message_limit_is_scrubbed(start_gateway):
    """The provider's message is scrubbed of the gateway's keys before it is
    cut to the message limit, so no prefix of a key reaches the client."""
    gateway = start_gateway(governed({"team": {}}, {KEY: ("team", None)}))
    leaked = 12
    message = "x" * (MAX_MESSAGE_CHARS - leaked) + PROVIDER_KEY  # e.g. a long echo of the request headers
    gateway.mocks.set_behavior("openai", {"status": 400, "message": message})
    response = gateway.chat(chat_body("hi", model="cheap"), headers=AUTH)
    assert response.status_code == 400, response.text
    shown = response.json()["error"]["message"]
    assert PROVIDER_KEY[:leaked] not in shown, f"client sees the key's prefix: ...{shown[-40:]!r}"


def test_only_allowlisted_provider_response_headers_reach_clients(start_gateway):
    """Provider response headers are relayed from an allowlist (status,
    content headers, date, retry-after): the gateway's organization and
    project ids, cookies and the shared key's org-wide rate-limit counters
    (which would let one tenant watch the others' traffic) stay behind."""
    answer = json.dumps({"id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                                      "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}).encode()
    headers = (("content-type", "application/json"), ("openai-organization", "org-gateway-account"),
               ("openai-project", "proj_gateway"), ("x-ratelimit-remaining-tokens", "149984"),
               ("set-cookie", "__cf_bm=gateway-session"))
    with fixed_upstream(200, headers, answer) as port:
        gateway = start_gateway(tweak=lambda config: None)
        # Re-point the demo's openai cluster at the header-sending upstream.
        point_clusters(gateway, ["openai"], port)
        response = gateway.chat(chat_body("hi"), headers={"authorization": "Bearer sk-demo-tiny", "connection": "close"})
        assert response.status_code == 200, response.text
        leaked = {name: response.headers[name] for name in
                  ("openai-organization", "openai-project", "x-ratelimit-remaining-tokens", "set-cookie")
                  if name in response.headers}
        assert not leaked, f"provider account headers relayed to a tenant: {leaked}"
