"""Only a provider's own failures move its shared health: clients that cancel
and requests that legitimately take long never open a circuit for everyone.
Real Envoy + mock providers, 127.0.0.1 only."""

from __future__ import annotations

import json
import socket
import struct
import time
from urllib.parse import urlparse

from tests.gateway import ADMIN_KEY, DEMO_KEY, chat_body
from tests.test_billing import wait_for

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def hpack_literal(name: str, value: str) -> bytes:
    """Literal header field without indexing, new name, no Huffman (lengths < 127)."""
    def string(text: str) -> bytes:
        data = text.encode()
        assert len(data) < 127
        return bytes([len(data)]) + data
    return b"\x00" + string(name) + string(value)


def h2_request_then_cancel(url: str, body: bytes, headers: dict[str, str], cancel_after_s: float) -> None:
    """One HTTP/2 (h2c, prior knowledge) request on stream 1, cancelled with
    RST_STREAM(CANCEL) after `cancel_after_s`, the connection kept open a little:
    what an HTTP/2 client (gRPC-style, browsers via a proxy, httpx/h2) does on a timeout."""
    parsed = urlparse(url)
    sock = socket.create_connection((parsed.hostname, parsed.port), timeout=5)
    try:
        block = b"".join(hpack_literal(name, value) for name, value in {
            ":method": "POST", ":scheme": "http", ":path": "/v1/chat/completions",
            ":authority": f"{parsed.hostname}:{parsed.port}", "content-type": "application/json",
            "content-length": str(len(body)), **headers}.items())
        sock.sendall(PREFACE + frame(4, 0, 0) + frame(1, 0x4, 1, block) + frame(0, 0x1, 1, body))
        sock.settimeout(0.05)
        deadline = time.monotonic() + cancel_after_s
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
                if not data:
                    break
                if data[3:4] == b"\x04" and data[4] & 1 == 0:  # the server's SETTINGS: acknowledge
                    sock.sendall(frame(4, 1, 0))
            except socket.timeout:
                pass
        sock.sendall(frame(3, 0, 1, struct.pack(">I", 0x8)))  # RST_STREAM(CANCEL) on stream 1
        time.sleep(0.3)
    finally:
        sock.close()


def deployment(gateway, name: str) -> dict:
    return next(d for d in gateway.view("/signalbox/health")["deployments"] if d["name"] == name)


def test_http2_clients_cancelling_their_streams_leave_the_provider_healthy(start_gateway):
    """An HTTP/2 client's RST_STREAM (details `http2.remote_reset`), like an
    HTTP/1 disconnect, marks the client gone: the attempt it cut is silent
    for health, so five cancels do not open a slow but healthy deployment."""
    gateway = start_gateway()
    gateway.mocks.set_behavior("openai", {"delay_ms": 3000})  # a slow but healthy provider
    body = json.dumps(chat_body("hi", model="gpt-4o-mini")).encode()
    for _ in range(5):
        h2_request_then_cancel(gateway.url, body, {"authorization": f"Bearer {DEMO_KEY}"}, cancel_after_s=0.3)
    # Each cancelled attempt records itself in the shared health when Envoy destroys it.
    wait_for(lambda: deployment(gateway, "gpt-4o-mini")["in_flight"] == 0)
    record = deployment(gateway, "gpt-4o-mini")
    details = [line for line in gateway.envoy.log_text().splitlines() if '"path":"/v1/chat/completions"' in line]
    assert sum(record["failures"].values()) == 0 and record["circuit"] == "closed", (
        f"client cancels blamed on the provider: circuit={record['circuit']} failures={record['failures']}; "
        f"last access log: {details[-1][:400] if details else None}"
    )


def test_long_whole_answers_get_time_per_output_token_and_do_not_open_the_circuit(start_gateway):
    """A non-streamed answer's headers come when its generation ends, so the
    router gives a request `output_token_ms` per token of its output bound on
    top of the per-try timeout (x-envoy-upstream-rq-per-try-timeout-ms): five
    answers slower than the configured per-try timeout succeed, and the
    deployment stays closed for every tenant."""
    from tests.gateway import retry_policy
    from tests.test_governance import governed

    plugin = governed({"heavy": {}, "other": {}}, {"sk-test-heavy-1": ("heavy", None), "sk-test-other-1": ("other", None)})
    plugin["resilience"] = {"max_attempts": 2, "per_try_timeout_ms": 1000}
    plugin["models"]["cheap"]["fallbacks"] = ["strong"]

    def short_tries(config):
        retry_policy(config)["per_try_timeout"] = "1s"

    gateway = start_gateway(plugin, tweak=short_tries)
    gateway.mocks.set_behavior("openai", {"delay_ms": 1500, "when_header": {"x-heavy": "1"}})
    heavy = {"authorization": "Bearer sk-test-heavy-1", "x-heavy": "1", "connection": "close"}
    for _ in range(5):
        long_answer = gateway.chat(chat_body("write a very long essay", model="cheap", max_tokens=16000), headers=heavy)
        assert long_answer.status_code == 200 and long_answer.headers.get("x-signalbox-model") == "cheap", long_answer.text
    other = gateway.chat(chat_body("hi", model="cheap"), headers={"authorization": "Bearer sk-test-other-1"})
    record = deployment(gateway, "cheap")
    served_by = other.headers.get("x-signalbox-model")
    assert record["circuit"] == "closed" and served_by == "cheap", (
        f"cheap (healthy for everyone else) is now circuit={record['circuit']} failures={record['failures']}; "
        f"another tenant's request got {other.status_code} from {served_by!r} (10x the price)"
    )
