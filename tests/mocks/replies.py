"""What every mocked provider shares: the deterministic answer and the response envelope.

Each provider module parses its own request format into a Prompt, asks
make_reply() what to say, and renders the Reply in its own wire format. Keeping
the decision here means every format answers the same conversation with the
same text and the same token counts, so a test can assert which route a
request took and what usage the gateway should have seen.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .http11 import Request, reason_phrase

REPLY_PREFIX_CHARS = 60
TOOL_QUERY_CHARS = 20
TOKENS_PER_MESSAGE = 3
DELTA_CHARS = 3  # streamed text and tool arguments are cut into pieces this long


class ClientError(Exception):
    """A request the real provider would refuse; rendered in that provider's error shape."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Call:
    """One request as a provider handler sees it."""

    instance: str
    request: Request
    params: dict[str, str]  # named groups of the matched route pattern
    seq: int  # 1-based request number on this instance; makes ids deterministic
    prompt_cache: set[str]  # per-instance memory of cached prompt prefixes (Anthropic)
    spend_allowance: bool = False  # bill every answer's whole max_tokens, n answers (behavior)
    say: str | None = None  # the answer's text, instead of the tagged echo (behavior)
    usage: dict | None = None  # the usage object to report as it is (behavior; OpenAI chat)

    def json_body(self) -> dict:
        try:
            body = json.loads(self.request.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ClientError(400, f"request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ClientError(400, "request body must be a JSON object")
        return body


@dataclass
class Answer:
    """A provider's response before fault injection: a whole body, or a list of stream events."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None
    events: list[bytes] | None = None

    @property
    def streamed(self) -> bool:
        return self.events is not None


@dataclass
class Route:
    method: str
    pattern: Any  # compiled regex matched against the path without the query
    handle: Callable[[Call], Answer]
    error: Callable[[int, str, float | None], Answer]  # (status, message, retry_after) -> Answer


@dataclass
class Turn:
    """One message of a conversation in provider-neutral form."""

    from_user: bool
    text: str = ""  # the message's ordinary text
    tool_result: str | None = None  # text of the tool result(s) the message carries

    @property
    def all_text(self) -> str:
        return " ".join(part for part in (self.text, self.tool_result) if part)


@dataclass
class Prompt:
    """A chat request reduced to what decides the mock's answer."""

    model: str
    turns: list[Turn]  # a system prompt counts as one (non-user) turn
    tool_name: str | None = None  # first tool the request offers
    max_tokens: int | None = None

    @property
    def input_tokens(self) -> int:
        return sum(word_count(turn.all_text) + TOKENS_PER_MESSAGE for turn in self.turns)

    @property
    def last_user_text(self) -> str:
        return next((t.text for t in reversed(self.turns) if t.from_user and t.text), "")

    @property
    def tool_result(self) -> str | None:
        """The tool result content when the conversation ends with one."""
        return self.turns[-1].tool_result if self.turns else None


@dataclass
class Reply:
    text: str = ""
    tool_name: str | None = None
    tool_input: dict | None = None
    finish: str = "stop"  # "stop", "length" or "tool"
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def tool_arguments(self) -> str:
        return compact_json(self.tool_input)


def make_reply(instance: str, prompt: Prompt, say: str | None = None) -> Reply:
    """Decide the answer: the text the behavior says, a tool call, an echo of the tool result, or the tagged echo."""
    if prompt.tool_name and prompt.tool_result is None and say is None:
        tool_input = {"query": prompt.last_user_text[:TOOL_QUERY_CHARS]}
        reply = Reply(tool_name=prompt.tool_name, tool_input=tool_input, finish="tool")
        reply.output_tokens = word_count(reply.tool_arguments)
    else:
        tag = f"[{instance}/{prompt.model}] "
        if say is not None:
            text = say
        elif prompt.tool_result is not None:
            text = tag + "tool result: " + prompt.tool_result
        else:
            text = tag + prompt.last_user_text[:REPLY_PREFIX_CHARS]
        reply = Reply(text=text)
        words = text.split()
        if prompt.max_tokens is not None and len(words) > prompt.max_tokens:
            reply.text = " ".join(words[: prompt.max_tokens])
            reply.finish = "length"
        reply.output_tokens = word_count(reply.text)
    reply.input_tokens = prompt.input_tokens
    return reply


def word_count(text: str) -> int:
    return len(text.split())


def pieces(text: str, size: int = DELTA_CHARS) -> list[str]:
    """Small deltas so a gateway's stream parser sees values split across events."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def flatten_text(content: Any) -> str:
    """Text of a content value shaped as a string, a list of parts, or a {"text"}/{"json"} part."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(text for text in map(flatten_text, content) if text)
    if isinstance(content, dict):
        if isinstance(content.get("text"), str):
            return content["text"]
        if "json" in content:
            return compact_json(content["json"])
    return ""


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def json_bytes(value: Any) -> bytes:
    return compact_json(value).encode()


def json_answer(value: Any, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Answer:
    return Answer(status, [("content-type", "application/json"), *(headers or [])], body=json_bytes(value))


def sse_event(data: Any, event: str | None = None, newline: str = "\n") -> bytes:
    """One server-sent event; data that is not a str is JSON-encoded on a single line."""
    text = data if isinstance(data, str) else compact_json(data)
    lines = ([f"event: {event}"] if event else []) + [f"data: {text}"]
    return (newline.join(lines) + newline * 2).encode()


def retry_after_headers(retry_after: float | None) -> list[tuple[str, str]]:
    """Retry-After in whole seconds (the HTTP form Envoy's retry back-off understands)."""
    if retry_after is None:
        return []
    return [("retry-after", str(math.ceil(retry_after)))]


def error_kind(status: int, kinds: dict[int, str], client_default: str, server_default: str) -> str:
    """A provider's error type name for a status, falling back by status class."""
    return kinds.get(status) or (client_default if status < 500 else server_default)


def default_error_message(status: int) -> str:
    return f"{reason_phrase(status)} (injected by the mock provider)"


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ClientError(400, message)


def unit_vector(key: str, dimensions: int) -> list[float]:
    """A deterministic unit vector: equal inputs embed equally, different ones differ."""
    rng = random.Random(hashlib.sha256(key.encode()).digest())
    values = [rng.uniform(-1.0, 1.0) for _ in range(dimensions)]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [v / norm for v in values]


DEFAULT_EMBEDDING_DIMENSIONS = 1536  # text-embedding-3-small
BAG_OF_WORDS_PREFIX = "bow-"  # embedding model ids that select bag_of_words_vector
BAG_OF_WORDS_DIMENSIONS = 256
BIGRAM_WEIGHT = 0.5
# Question filler only: "not", "no", numbers and units stay, they change answers.
STOP_WORDS = frozenset(
    "a an the is are was were be been to of in on for and or what whats how do does did i me my "
    "you your please can could would will tell it its this that with by at from as into about "
    "much many there here some any just".split()
)


def content_words(text: str) -> list[str]:
    """Lowercased words and numbers without stop words, a plural "s" dropped."""
    words = re.findall(r"[a-z0-9]+(?:\.[0-9]+)?", text.lower())
    kept = [w for w in words if w not in STOP_WORDS]
    return [w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in kept]


def bag_of_words_vector(text: str, dimensions: int = BAG_OF_WORDS_DIMENSIONS) -> list[float]:
    """A crude but deterministic embedding: each content word (weight 1) and each pair of
    neighbouring content words (weight BIGRAM_WEIGHT) hashed to a signed dimension, normalised.
    Paraphrases sharing content words land close; so do questions whose words only swap
    places ("5 km to miles" / "5 miles to km"), which is the risk a semantic cache runs."""
    values = [0.0] * dimensions
    words = content_words(text)
    features = [(w, 1.0) for w in words] + [(f"{a} {b}", BIGRAM_WEIGHT) for a, b in zip(words, words[1:])]
    for feature, weight in features:
        digest = hashlib.sha256(feature.encode()).digest()
        index = int.from_bytes(digest[:4], "little") % dimensions
        values[index] += weight if digest[4] & 1 else -weight
    norm = sum(v * v for v in values) ** 0.5
    if norm == 0.0:  # nothing but stop words: fall back to an unrelated direction
        return unit_vector(text, dimensions)
    return [v / norm for v in values]


def embed(model: str, item: Any, dimensions: int | None) -> list[float]:
    """The mock embedding of one input: bag of words for `bow-` models, else a vector that
    only equal inputs share."""
    if model.startswith(BAG_OF_WORDS_PREFIX) and isinstance(item, str):
        return bag_of_words_vector(item, dimensions or BAG_OF_WORDS_DIMENSIONS)
    return unit_vector(f"{model}\0{item}", dimensions or DEFAULT_EMBEDDING_DIMENSIONS)

