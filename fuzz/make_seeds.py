"""Writes the committed seed corpus (fuzz/seeds/<target>/) from the repo's own
mock providers (tests/mocks) and request bodies: python3 fuzz/make_seeds.py

Each seed carries the prefix its target reads (fuzz/src/lib.rs: a flags byte,
a cut count and cut bytes, then target-specific bytes), so the fuzzer starts
from real provider answers, streams and errors instead of from nothing.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import re
import struct
import subprocess
import sys
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"

STREAM, USAGE, EMBEDDINGS, MISTRAL, AZURE, HEADERS, FRAMED, BYTEWISE = (1 << bit for bit in range(8))
STATUS_INDEX = {200: 0, 400: 4, 401: 5, 404: 7, 429: 11, 500: 12, 503: 13, 529: 15}
KIND_INDEX = {"openai": 0, "azure": 1, "anthropic": 2, "gemini": 3, "bedrock": 4}
CUTS = bytes([2, 40, 200])  # three cut points, as fractions of 255

CHAT = [
    {"model": "auto", "messages": [{"role": "user", "content": "What is the capital of France?"}]},
    {
        "model": "auto",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "Write a Python function that merges overlapping intervals."},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"x\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
            {"role": "user", "content": [{"type": "text", "text": "and prove it"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]},
        ],
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
        "response_format": {"type": "json_object"},
        "stream": True,
        "stream_options": {"include_usage": False},
        "max_tokens": 100,
        "max_completion_tokens": 50,
        "temperature": 0.2,
        "stop": ["\n\n"],
        "n": 1,
    },
    {"model": "a\\u0075to", "messages": [{"role": "developer", "content": "line\nbreak"}, {"role": "user", "content": "é 日本"}], "extra": [[[{}]]]},
]
EMBEDDING_REQUESTS = [
    {"model": "emb", "input": "hello world"},
    {"model": "emb", "input": ["a", "b"], "encoding_format": "base64", "dimensions": 8},
    {"model": "emb", "input": [[1, 2, 3]]},
]
PROMPTS = [
    "Hi there!",
    "Translate 'good morning' to Spanish.",
    "Prove that the square root of 2 is irrational, step by step, using $\\sqrt{2} = p/q$.",
    "```rust\nfn main() { println!(\"hi\"); }\n```\nWhy does this fail to compile? First explain, then fix it, finally add tests.",
    "Analyze the trade-offs between the two designs and recommend one. You must answer in JSON with exactly three keys.",
    "日本語で自己紹介してください。",
    "Summarize this log:\n" + "ERROR at line 12: NullPointerException in com.example.Main\n" * 150 + "What is the root cause?",
]


def write(target: str, name: str, data: bytes) -> None:
    folder = SEEDS / target
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(data).hexdigest()[:10]
    (folder / f"{name}-{digest}").write_bytes(data)


def compact(value) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class Mock:
    """The repo's mock providers on an OS-picked 127.0.0.1 port."""

    def __enter__(self) -> "Mock":
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.mocks", "--listen", "seeds=0"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()
        port = re.search(r"127\.0\.0\.1:(\d+)", line)
        if not port:
            self.process.kill()
            raise RuntimeError(f"mock did not start: {line!r}")
        self.base = f"http://127.0.0.1:{port.group(1)}"
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)

    def post(self, path: str, body, fault: dict | None = None) -> tuple[int, dict[str, str], bytes]:
        headers = {"content-type": "application/json"}
        if fault:
            headers["x-mock-fault"] = json.dumps(fault)
        request = urllib.request.Request(self.base + path, data=compact(body), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()


def header_line(headers: dict[str, str]) -> bytes:
    keep = ("retry-after", "x-amzn-errortype", "anthropic-ratelimit-requests-reset", "x-ratelimit-reset-requests")
    return ";".join(f"{k.lower()}:{v}" for k, v in headers.items() if k.lower() in keep).encode() + b"\n"


def records_of(stream: bytes) -> bytes:
    """An AWS event stream as fuzz/src/lib.rs frame_records() records."""
    records = b""
    while len(stream) >= 16:
        total, headers_len = struct.unpack(">II", stream[:8])
        headers = stream[12 : 12 + headers_len]
        payload = stream[12 + headers_len : total - 4]
        records += bytes([headers_len]) + struct.pack("<H", len(payload)) + headers + payload
        stream = stream[total:]
    return records


PROVIDER_REQUESTS = {
    "openai": ("/v1/chat/completions", lambda stream: {**CHAT[0], "model": "gpt-4o", "stream": stream, "stream_options": {"include_usage": True}} if stream else {**CHAT[0], "model": "gpt-4o"}),
    "anthropic": ("/v1/messages", lambda stream: {"model": "claude", "max_tokens": 64, "stream": stream, "messages": [{"role": "user", "content": "Hi, use the tool"}], "tools": [{"name": "lookup", "input_schema": {"type": "object"}}]}),
    "gemini": (None, lambda stream: {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}),
    "bedrock": (None, lambda stream: {"messages": [{"role": "user", "content": [{"text": "Hi"}]}]}),
}


def provider_path(provider: str, stream: bool) -> str:
    if provider == "gemini":
        return "/v1beta/models/gemini:streamGenerateContent?alt=sse" if stream else "/v1beta/models/gemini:generateContent"
    if provider == "bedrock":
        return "/model/claude/converse-stream" if stream else "/model/claude/converse"
    return PROVIDER_REQUESTS[provider][0]


def main() -> None:
    for body in CHAT + [{"model": "", "messages": []}, {"model": "auto", "messages": [{"role": "wizard"}]}]:
        write("request_chat", "chat", compact(body))
        for selector, kind in enumerate(KIND_INDEX):
            for flags in (0, STREAM, STREAM | MISTRAL, STREAM | USAGE):
                write("build_request", f"{kind}", bytes([flags, 0, selector]) + compact(body))
        for key in range(8):
            write("json_splice", "chat", bytes([key, key]) + compact(body))
    for body in EMBEDDING_REQUESTS:
        write("request_embeddings", "embeddings", compact(body))
        for selector, kind in enumerate(KIND_INDEX):
            write("build_request", f"{kind}-embeddings", bytes([EMBEDDINGS, 0, selector]) + compact(body))
    write("json_splice", "escaped-keys", b"\x00\x01" + rb'{"mod\u0065l" : "x", "a\"b":[1,{"c":"]}"}], "model":null }')
    for context, prompt in enumerate(PROMPTS):
        write("classify", "prompt", bytes([context * 37 % 256]) + prompt.encode())

    with Mock() as mock:
        for provider in PROVIDER_REQUESTS:
            for stream in (False, True):
                faults = [None, {"status": 429, "retry_after": 2}, {"status": 500}, {"status": 400, "message": "bad"}]
                for fault in faults if not stream else [None]:
                    status, headers, body = mock.post(provider_path(provider, stream), PROVIDER_REQUESTS[provider][1](stream), fault)
                    label = f"{status}" if not stream else "stream"
                    if not stream:
                        selector = STATUS_INDEX.get(status, 0)
                        write(f"response_{provider}", label, bytes([0, 0, selector]) + body)
                        write(f"response_{provider}", f"{label}-headers", bytes([HEADERS, 0, selector]) + header_line(headers) + body)
                        continue
                    write(f"stream_{provider}", "stream", bytes([STREAM, len(CUTS)]) + CUTS + body)
                    write(f"stream_{provider}", "stream-usage", bytes([STREAM | USAGE | BYTEWISE, 1, 128]) + body)
                    if provider == "bedrock":
                        records = records_of(body)
                        write("stream_bedrock", "framed", bytes([STREAM | FRAMED, len(CUTS)]) + CUTS + records)
                        write("eventstream", "raw", bytes([0, len(CUTS)]) + CUTS + body)
                        write("eventstream", "framed", bytes([FRAMED, len(CUTS)]) + CUTS + records)
                    else:
                        write("sse_framer", provider, bytes([64, len(CUTS)]) + CUTS + body)
        # OpenAI's Responses API, read natively: `[flags][cuts][status byte] body`.
        responses = {"model": "gpt-4o-mini", "instructions": "be brief", "input": "Hi there!"}
        for stream in (False, True):
            for fault in (None, {"status": 404}, {"status": 429, "retry_after": 1}):
                status, _, body = mock.post("/v1/responses", {**responses, "stream": stream}, fault)
                label = f"{'stream' if stream else 'whole'}-{status}"
                selector = STATUS_INDEX.get(status, 0)
                write("responses_native", label, bytes([BYTEWISE, len(CUTS)]) + CUTS + bytes([selector]) + body)
        embeddings = {
            "openai": ("/v1/embeddings", EMBEDDING_REQUESTS[1]),
            "gemini": ("/v1beta/models/emb:batchEmbedContents", {"requests": [{"content": {"parts": [{"text": "a"}]}}, {"content": {"parts": [{"text": "b"}]}}]}),
        }
        for provider, (path, body) in embeddings.items():
            for fault in (None, {"status": 429, "retry_after": 1}):
                status, _, answer = mock.post(path, body, fault)
                selector = KIND_INDEX[provider] | (STATUS_INDEX.get(status, 0) << 4)
                write("response_embeddings", provider, bytes([EMBEDDINGS, 0, selector]) + compact(EMBEDDING_REQUESTS[1]) + b"\0" + answer)
    for target in sorted(path.name for path in SEEDS.iterdir()):
        print(f"{target}: {len(list((SEEDS / target).iterdir()))} seeds")


if __name__ == "__main__":
    main()
