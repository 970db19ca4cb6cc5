"""Anthropic Messages API: POST {prefix}/v1/messages, whole JSON or SSE stream.

Prompt caching is modelled so cache usage fields carry real numbers, as the
service does it: each block marked with cache_control ends a prefix that is
"written" to a cache of this instance and API key; a later request "reads" the
longest cached prefix its own blocks start with (looking back at most 20 blocks
from its last breakpoint) and writes the rest up to that breakpoint. A
conversation that grows turn by turn therefore reads what the previous turn
wrote, but only on the instance and key that saw it. No minimum length,
unlike the real service.
"""

from __future__ import annotations

import hashlib
import re

from .replies import (
    TOKENS_PER_MESSAGE,
    Answer,
    Call,
    Prompt,
    Reply,
    Route,
    Turn,
    compact_json,
    error_kind,
    flatten_text,
    json_answer,
    make_reply,
    pieces,
    require,
    retry_after_headers,
    sse_event,
    word_count,
)

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool": "tool_use"}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error(status: int, message: str, retry_after: float | None = None) -> Answer:
    kind = error_kind(status, _ERROR_TYPES, "invalid_request_error", "api_error")
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return json_answer(body, status, retry_after_headers(retry_after))


def _blocks(content) -> list[dict]:
    """Content as a list of blocks: a bare string is one text block."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    require(
        isinstance(content, list) and all(isinstance(b, dict) for b in content),
        "content must be a string or an array of blocks",
    )
    return content


def _texts(blocks: list[dict], block_type: str, field: str) -> str:
    return " ".join(filter(None, (flatten_text(b.get(field)) for b in blocks if b.get("type") == block_type)))


def _parse(body: dict) -> tuple[Prompt, list[tuple[int, bool, dict]]]:
    """The prompt, plus each block as (tokens, marked for caching, block) for the cache model."""
    model = body.get("model")
    require(isinstance(model, str) and model != "", "model: Field required")
    require(isinstance(body.get("max_tokens"), int), "max_tokens: Field required")
    messages = body.get("messages")
    require(
        isinstance(messages, list) and messages and all(isinstance(m, dict) for m in messages),
        "messages: Field required",
    )

    conversation = [(False, _blocks(body["system"]))] if body.get("system") else []
    conversation += [(m.get("role") == "user", _blocks(m.get("content", ""))) for m in messages]
    turns, cache_units = [], []
    for from_user, blocks in conversation:
        results = _texts(blocks, "tool_result", "content")
        turns.append(Turn(from_user, _texts(blocks, "text", "text"), results or None))
        for index, block in enumerate(blocks):
            text = block.get("text") if block.get("type") == "text" else flatten_text(block.get("content"))
            tokens = word_count(text or "") + (TOKENS_PER_MESSAGE if index == 0 else 0)
            cache_units.append((tokens, "cache_control" in block, block))
    tools = body.get("tools") or []
    prompt = Prompt(model, turns, tool_name=tools[0].get("name") if tools else None, max_tokens=body["max_tokens"])
    return prompt, cache_units


# How many blocks before a breakpoint the service checks for an earlier cached prefix.
CACHE_LOOKBACK_BLOCKS = 20


def _cache_usage(call: Call, model: str, units: list[tuple[int, bool, dict]]) -> tuple[int, int]:
    """(cache_read_input_tokens, cache_creation_input_tokens) for this request."""
    marked = [i for i, (_, is_marked, _) in enumerate(units) if is_marked]
    if not marked:
        return 0, 0
    key = call.request.header("x-api-key") or ""
    digests, running = [], hashlib.sha256(compact_json([model, key]).encode())
    for _, _, block in units[: marked[-1] + 1]:
        # The marker is not content: a block cached once marked matches it unmarked.
        running.update(compact_json({k: v for k, v in block.items() if k != "cache_control"}).encode())
        digests.append(running.copy().hexdigest())
    end = marked[-1]
    hit = next(
        (i for i in range(end, max(-1, end - CACHE_LOOKBACK_BLOCKS), -1) if digests[i] in call.prompt_cache),
        None,
    )
    read = sum(t for t, _, _ in units[: hit + 1]) if hit is not None else 0
    for i in marked:
        call.prompt_cache.add(digests[i])
    total = sum(t for t, _, _ in units[: end + 1])
    return read, total - read


def messages(call: Call) -> Answer:
    body = call.json_body()
    prompt, cache_units = _parse(body)
    reply = make_reply(call.instance, prompt, call.say)
    cache_read, cache_creation = _cache_usage(call, prompt.model, cache_units)
    usage = {
        "input_tokens": reply.input_tokens - cache_read - cache_creation,
        "cache_creation_input_tokens": cache_creation,
        "cache_read_input_tokens": cache_read,
        "output_tokens": reply.output_tokens,
    }
    message = {
        "id": f"msg_mock{call.seq}",
        "type": "message",
        "role": "assistant",
        "model": prompt.model,
        "content": [_content_block(call, reply, complete=True)],
        "stop_reason": _STOP_REASONS[reply.finish],
        "stop_sequence": None,
        "usage": usage,
    }
    if not body.get("stream"):
        return json_answer(message)
    return Answer(
        headers=[("content-type", "text/event-stream; charset=utf-8")], events=_stream_events(call, reply, message)
    )


def _content_block(call: Call, reply: Reply, complete: bool) -> dict:
    """The reply's content block; the streamed opening form starts empty."""
    if reply.tool_name:
        return {
            "type": "tool_use",
            "id": f"toolu_mock{call.seq}",
            "name": reply.tool_name,
            "input": reply.tool_input if complete else {},
        }
    return {"type": "text", "text": reply.text if complete else ""}


def _stream_events(call: Call, reply: Reply, message: dict) -> list[bytes]:
    def event(name: str, **fields) -> bytes:
        return sse_event({"type": name, **fields}, event=name)

    opening = {**message, "content": [], "stop_reason": None, "usage": {**message["usage"], "output_tokens": 1}}
    if reply.tool_name:
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces(reply.tool_arguments)]
    else:
        deltas = [{"type": "text_delta", "text": p} for p in pieces(reply.text)]
    return [
        event("message_start", message=opening),
        event("content_block_start", index=0, content_block=_content_block(call, reply, complete=False)),
        event("ping"),
        *(event("content_block_delta", index=0, delta=delta) for delta in deltas),
        event("content_block_stop", index=0),
        event(
            "message_delta",
            delta={"stop_reason": message["stop_reason"], "stop_sequence": None},
            usage={"output_tokens": reply.output_tokens},
        ),
        event("message_stop"),
    ]


ROUTES = [Route("POST", re.compile(r".*/v1/messages"), messages, error)]
