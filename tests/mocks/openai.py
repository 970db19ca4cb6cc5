"""OpenAI Chat Completions, Embeddings and Models, plus Azure OpenAI deployment paths.

Any path prefix is accepted (/v1/chat/completions, /chat/completions, ...).
Azure's /openai/deployments/{deployment}/... takes the model from the path.
"""

from __future__ import annotations

import base64
import re
import struct
import time

from .replies import (
    Answer,
    Call,
    Prompt,
    Reply,
    Route,
    Turn,
    embed,
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

_FINISH_REASONS = {"stop": "stop", "length": "length", "tool": "tool_calls"}
_LISTED_MODELS = ("gpt-4o", "gpt-4o-mini", "text-embedding-3-small")
_AZURE_PREFIX = r"(?:.*/openai/deployments/(?P<deployment>[^/]+)|.*)"


def error(status: int, message: str, retry_after: float | None = None) -> Answer:
    kind = error_kind(status, {429: "requests"}, "invalid_request_error", "server_error")
    code = "rate_limit_exceeded" if status == 429 else None
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return json_answer(body, status, retry_after_headers(retry_after))


def _model(call: Call, body: dict) -> str:
    model = call.params.get("deployment") or body.get("model")
    require(isinstance(model, str) and model != "", "you must provide a model parameter")
    return model


def _prompt(body: dict, model: str) -> Prompt:
    messages = body.get("messages")
    require(
        isinstance(messages, list) and messages and all(isinstance(m, dict) for m in messages),
        "'messages' must be a non-empty array of objects",
    )
    turns = []
    for message in messages:
        text = flatten_text(message.get("content"))
        if message.get("role") == "tool":
            turns.append(Turn(from_user=False, tool_result=text))
        else:
            turns.append(Turn(from_user=message.get("role") == "user", text=text))
    tools = body.get("tools") or []
    return Prompt(
        model=model,
        turns=turns,
        tool_name=tools[0].get("function", {}).get("name") if tools else None,
        max_tokens=body.get("max_completion_tokens") or body.get("max_tokens"),
    )


def _usage(reply: Reply) -> dict:
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.input_tokens + reply.output_tokens,
    }


# Output tokens a provider spending its whole allowance bills per answer
# when the request sets no max_tokens.
UNBOUNDED_OUTPUT_TOKENS = 4096


def chat_completions(call: Call) -> Answer:
    body = call.json_body()
    model = _model(call, body)
    prompt = _prompt(body, model)
    reply = make_reply(call.instance, prompt, call.say)
    if call.spend_allowance:
        answers = body.get("n") if isinstance(body.get("n"), int) and body.get("n") > 0 else 1
        reply.output_tokens = (prompt.max_tokens or UNBOUNDED_OUTPUT_TOKENS) * answers
    envelope = {
        "id": f"chatcmpl-mock{call.seq}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
    }
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = _stream_events(call, reply, envelope, include_usage)
        return Answer(headers=[("content-type", "text/event-stream; charset=utf-8")], events=events)

    message = {"role": "assistant", "content": reply.text, "refusal": None}
    if reply.tool_name:
        message["content"] = None
        message["tool_calls"] = [_tool_call(call, reply, reply.tool_arguments)]
    completion = {
        **envelope,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": _FINISH_REASONS[reply.finish]}],
        "usage": _usage(reply) if call.usage is None else call.usage,
        "system_fingerprint": "fp_mock",
    }
    return json_answer(completion)


def _tool_call(call: Call, reply: Reply, arguments: str) -> dict:
    return {
        "id": f"call_mock{call.seq}",
        "type": "function",
        "function": {"name": reply.tool_name, "arguments": arguments},
    }


def _stream_events(call: Call, reply: Reply, envelope: dict, include_usage: bool) -> list[bytes]:
    def chunk(choices: list, usage: dict | None = None) -> bytes:
        data = {**envelope, "object": "chat.completion.chunk", "system_fingerprint": "fp_mock", "choices": choices}
        if include_usage:  # OpenAI puts "usage": null on every chunk but the last one
            data["usage"] = usage
        return sse_event(data)

    def choice(delta: dict, finish_reason: str | None = None) -> list:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]

    if reply.tool_name:
        opening = {"role": "assistant", "content": None, "tool_calls": [{"index": 0, **_tool_call(call, reply, "")}]}
        deltas = [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in pieces(reply.tool_arguments)]
    else:
        opening = {"role": "assistant", "content": "", "refusal": None}
        deltas = [{"content": piece} for piece in pieces(reply.text)]
    events = [chunk(choice(opening))]
    events += [chunk(choice(delta)) for delta in deltas]
    events.append(chunk(choice({}, _FINISH_REASONS[reply.finish])))
    if include_usage:
        events.append(chunk([], _usage(reply) if call.usage is None else call.usage))
    events.append(sse_event("[DONE]"))
    return events


def embeddings(call: Call) -> Answer:
    body = call.json_body()
    model = _model(call, body)
    raw = body.get("input")
    require(isinstance(raw, (str, list)) and raw not in ("", []), "'input' must be a non-empty string or array")
    # A list of ints is one tokenized input; any other list holds one input per element.
    inputs = [raw] if isinstance(raw, str) or all(isinstance(x, int) for x in raw) else raw
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, item in enumerate(inputs):
        vector = embed(model, item, body.get("dimensions"))
        if as_base64:
            vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = sum(word_count(item) if isinstance(item, str) else len(item) for item in inputs)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return json_answer({"object": "list", "data": data, "model": model, "usage": usage})


def list_models(call: Call) -> Answer:
    models = [
        {"id": name, "object": "model", "created": 1700000000, "owned_by": call.instance} for name in _LISTED_MODELS
    ]
    return json_answer({"object": "list", "data": models})


ROUTES = [
    Route("POST", re.compile(_AZURE_PREFIX + r"/chat/completions"), chat_completions, error),
    Route("POST", re.compile(_AZURE_PREFIX + r"/embeddings"), embeddings, error),
    Route("GET", re.compile(r".*/models"), list_models, error),
]
