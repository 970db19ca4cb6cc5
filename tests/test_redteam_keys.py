"""Red-team reproductions (credentials): each test FAILS on the current code and
names the defect it shows. Real Envoy + mock providers, 127.0.0.1 only."""

from __future__ import annotations

from tests.gateway import chat_body
from tests.test_governance import governed

KEY = "sk-redteam-keys-1"
AUTH = {"authorization": f"Bearer {KEY}", "connection": "close"}
PROVIDER_KEY = "sk-provider-openai"  # governed()'s OpenAI key
MAX_MESSAGE_CHARS = 1000  # src/providers/failure.rs


def test_a_provider_key_cut_by_the_message_limit_escapes_the_scrubber(start_gateway):
    """Defect: ErrorContext::scrub truncates the provider's message to 1000
    characters BEFORE replacing the gateway's key, so a key straddling the
    cut is no longer an exact match and its prefix reaches the client."""
    gateway = start_gateway(governed({"team": {}}, {KEY: ("team", None)}))
    leaked = 12
    message = "x" * (MAX_MESSAGE_CHARS - leaked) + PROVIDER_KEY  # e.g. a long echo of the request headers
    gateway.mocks.set_behavior("openai", {"status": 400, "message": message})
    response = gateway.chat(chat_body("hi", model="cheap"), headers=AUTH)
    assert response.status_code == 400, response.text
    shown = response.json()["error"]["message"]
    assert PROVIDER_KEY[:leaked] not in shown, f"client sees the key's prefix: ...{shown[-40:]!r}"
