"""Scratch red-team probes for cascade.stream_tokens (to be deleted)."""

from __future__ import annotations

import json
import socket
import threading
import time

import requests

from tests.gateway import Gateway, chat_body, gateway_config, retry_policy, DEMO_KEY
from tests.harness import config as envoy_config
from tests.test_cascade import AUTH, QUESTION, billed, cascading, streamed_text
from tests.test_governance import spend
from tests.test_observability import scrape, total


def show(label, response, t0=None):
    took = f" took={time.monotonic() - t0:.2f}s" if t0 else ""
    h = response.headers
    print(
        f"\n[{label}] status={response.status_code}{took} route={h.get('x-signalbox-route')} "
        f"attempts={h.get('x-signalbox-attempts')} cascade={h.get('x-signalbox-cascade')} model={h.get('x-signalbox-model')}"
    )


def lines(response):
    return [line for line in response.iter_lines() if line]


def test_slow_short_stream_vs_per_try_timeout(start_gateway):
    config = cascading(stream_tokens=64)
    config["resilience"] = {"max_attempts": 2, "per_try_timeout_ms": 2000}
    gateway = start_gateway(config, tweak=lambda c: retry_policy(c).update(per_try_timeout="2s"))
    gateway.mocks.set_behavior("anthropic", {"say": "Strong says Paris."})
    gateway.mocks.set_behavior("openai", {"say": "Paris is the capital city of France indeed.", "chunk_delay_ms": 400})
    t0 = time.monotonic()
    response = gateway.chat(chat_body(QUESTION, stream=True), headers=AUTH, stream=True)
    show("slow-short", response, t0)
    print("text:", repr(streamed_text(response)), f"total={time.monotonic() - t0:.2f}s")
    print("openai calls", len(gateway.mocks.requests("openai")), "anthropic calls", len(gateway.mocks.requests("anthropic")))
    print("health:", json.dumps(gateway.view("/signalbox/health"))[:1500])
    print("spend cheap:", billed(gateway, "cheap"), "strong:", billed(gateway, "strong"))

    # Same but without hold (control): slow short stream, first token early.
    gateway.mocks.clear()


def test_slow_short_stream_control_no_hold(start_gateway):
    config = cascading()
    config["resilience"] = {"max_attempts": 2, "per_try_timeout_ms": 2000}
    gateway = start_gateway(config, tweak=lambda c: retry_policy(c).update(per_try_timeout="2s"))
    gateway.mocks.set_behavior("anthropic", {"say": "Strong says Paris."})
    gateway.mocks.set_behavior("openai", {"say": "Paris is the capital city of France indeed.", "chunk_delay_ms": 400})
    t0 = time.monotonic()
    response = gateway.chat(chat_body(QUESTION, stream=True), headers=AUTH, stream=True)
    show("control", response, t0)
    print("text:", repr(streamed_text(response)), f"total={time.monotonic() - t0:.2f}s")


def test_reset_mid_hold_and_tools_and_usage(start_gateway):
    gateway = start_gateway(cascading(stream_tokens=20))
    gateway.mocks.set_behavior("anthropic", {"say": "Paris is the capital of France."})
    long_good = "Paris has been the capital of France since the tenth century and sits on the Seine river in the north."
    gateway.mocks.set_behavior("openai", {"say": long_good, "reset_after_events": 3})
    response = gateway.chat(chat_body(QUESTION, stream=True), headers=AUTH, stream=True)
    show("reset-mid-hold", response)
    print("text:", repr(streamed_text(response)))
    print("spend cheap:", billed(gateway, "cheap"), "strong:", billed(gateway, "strong"))

    # include_usage on an escalated stream
    gateway.mocks.set_behavior("openai", {"say": "I'm sorry, but I can't help with that request today at all."})
    response = gateway.chat(
        chat_body(QUESTION, stream=True, stream_options={"include_usage": True}), headers=AUTH, stream=True
    )
    show("usage-escalated", response)
    ls = lines(response)
    usage_chunks = [l for l in ls if b'"usage":{' in l]
    print("usage chunks:", usage_chunks[-2:], "n_lines", len(ls), "last", ls[-1:])
    print("spend cheap:", billed(gateway, "cheap"), "strong:", billed(gateway, "strong"))

    # tools
    tools = [{"type": "function", "function": {"name": "get_capital", "parameters": {"type": "object", "properties": {"country": {"type": "string"}}}}}]
    gateway.mocks.set_behavior("openai", None)
    gateway.mocks.clear()
    response = gateway.chat(chat_body(QUESTION, stream=True, tools=tools, tool_choice="required"), headers=AUTH, stream=True)
    show("tools", response)
    ls = lines(response)
    print("tool lines:", len(ls), ls[:2])
    print("anthropic calls", len(gateway.mocks.requests("anthropic")))
    time.sleep(1)
    samples = scrape(gateway)
    print("assessments:", {k: v for k, v in samples.items() if k[0] == "signalbox_cascade_assessments_total"})


def test_many_escalations_health_and_metrics(start_gateway):
    gateway = start_gateway(cascading(stream_tokens=6))
    gateway.mocks.set_behavior("anthropic", {"say": "Paris is the capital of France."})
    gateway.mocks.set_behavior("openai", {"say": "I'm sorry, but I can't help with that request today."})
    statuses = []
    for _ in range(12):
        r = gateway.chat(chat_body(QUESTION, stream=True), headers=AUTH, stream=True)
        statuses.append((r.status_code, r.headers.get("x-signalbox-attempts"), streamed_text(r)[:20]))
    print("\nstatuses:", statuses)
    print("health:", json.dumps(gateway.view("/signalbox/health"))[:2500])
    print("spend cheap:", billed(gateway, "cheap"), "strong:", billed(gateway, "strong"))
    time.sleep(1)
    samples = scrape(gateway)
    for name in ("signalbox_cascade_assessments_total", "signalbox_cascade_escalations_total"):
        print(name, {tuple(sorted(k[1])): v for k, v in samples.items() if k[0] == name})
    print("requests_total route:", {tuple(sorted(k[1])): v for k, v in samples.items() if k[0] == "signalbox_requests_total"})
    print("ejections/outlier:", [l for l in gateway.envoy.prometheus().splitlines() if "outlier" in l and "openai" in l and not l.startswith("#")][:5])


def test_messages_client(start_gateway):
    gateway = start_gateway(cascading(stream_tokens=6))
    gateway.mocks.set_behavior("anthropic", {"say": "Paris is the capital of France."})
    gateway.mocks.set_behavior("openai", {"say": "I'm sorry, but I can't help with that request today."})
    body = {"model": "auto", "max_tokens": 200, "stream": True, "messages": [{"role": "user", "content": QUESTION}]}
    r = gateway.post("/v1/messages", body, headers=AUTH, stream=True)
    show("messages-cheap-openai", r)
    ls = lines(r)
    print("lines:", ls[:3], "...", ls[-2:], "sorry" in b"".join(ls).decode())

    # cheap on anthropic (native), strong on openai
    config = cascading(stream_tokens=6)
    config["models"]["cheap"]["provider"] = "anthropic"
    config["models"]["strong"]["provider"] = "openai"
    gateway2 = start_gateway(config)
    gateway2.mocks.clear()
    gateway2.mocks.set_behavior("anthropic", {"say": "I'm sorry, but I can't help with that request today."})
    gateway2.mocks.set_behavior("openai", {"say": "Paris is the capital of France."})
    r = gateway2.post("/v1/messages", body, headers=AUTH, stream=True)
    show("messages-cheap-native", r)
    text = "".join(l.decode() for l in lines(r))
    print("has sorry:", "sorry" in text, "openai calls:", len(gateway2.mocks.requests("openai")))
    # chat client, cheap anthropic translated
    r = gateway2.chat(chat_body(QUESTION, stream=True), headers=AUTH, stream=True)
    show("chat-cheap-anthropic-translated", r)
    print("text:", repr(streamed_text(r)))


def _reasoning_server(port_holder, events):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port_holder.append(srv.getsockname()[1])

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    def handle(conn):
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        while len(rest) < length:
            rest += conn.recv(65536)
        events.append(rest)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")

        def chunk(delta, finish=None):
            return ("data: " + json.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "cheap-model",
                                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n").encode()

        conn.sendall(chunk({"role": "assistant", "content": ""}))
        for word in ("Let me think about the capital of France carefully step by step now. " * 3).split():
            conn.sendall(chunk({"reasoning_content": word + " "}))
        for word in "Paris is the capital of France.".split():
            conn.sendall(chunk({"content": word + " "}))
        conn.sendall(chunk({}, "stop"))
        conn.sendall(b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"cheap-model","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":40,"total_tokens":45}}\n\n')
        conn.sendall(b"data: [DONE]\n\n")
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv


def test_reasoning_stream(mocks, envoy):
    port, seen = [], []
    srv = _reasoning_server(port, seen)
    try:
        config = gateway_config(mocks, cascading(stream_tokens=8))
        envoy_config.point_cluster(config, "openai", port[0])
        gateway = Gateway(envoy(config), mocks, DEMO_KEY)
        mocks.set_behavior("anthropic", {"say": "Strong: Paris."})
        r = gateway.chat(chat_body(QUESTION, stream=True), headers=AUTH, stream=True)
        show("reasoning", r)
        print("text:", repr(streamed_text(r)), "cheap calls:", len(seen), "anthropic calls", len(mocks.requests("anthropic")))
        # non-stream control: same provider would be whole-answer; skip
    finally:
        srv.close()
