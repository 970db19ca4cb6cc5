"""OpenAI Responses API: POST {prefix}/responses, whole JSON or its SSE event stream.

Stateless by default, as the mock keeps nothing; `previous_response_id` is
accepted (the real service would load that response's context) and echoed
back, so tests can see a stateful request reached OpenAI as sent.
"""

from __future__ import annotations

import re
import time

from .openai import UNBOUNDED_OUTPUT_TOKENS, error
from .replies import Answer, Call, Prompt, Reply, Route, Turn, flatten_text, json_answer, make_reply, pieces, require, sse_event


def _prompt(body: dict, model: str) -> Prompt:
    raw = body.get("input")
    require(isinstance(raw, (str, list)) and raw not in ("", []), "'input' must be a non-empty string or array")
    turns = [Turn(from_user=False, text=body["instructions"])] if isinstance(body.get("instructions"), str) else []
    for item in [{"role": "user", "content": raw}] if isinstance(raw, str) else raw:
        require(isinstance(item, dict), "'input' items must be objects")
        if item.get("type") == "function_call_output":
            turns.append(Turn(from_user=False, tool_result=flatten_text(item.get("output"))))
        elif item.get("type", "message") == "message":
            turns.append(Turn(from_user=item.get("role") == "user", text=flatten_text(item.get("content"))))
    tools = [tool for tool in body.get("tools") or [] if tool.get("type") == "function"]
    return Prompt(model, turns, tool_name=tools[0].get("name") if tools else None, max_tokens=body.get("max_output_tokens"))


def _usage(reply: Reply) -> dict:
    return {
        "input_tokens": reply.input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": reply.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": reply.input_tokens + reply.output_tokens,
    }


def _output(call: Call, reply: Reply) -> dict:
    if reply.tool_name:
        return {
            "type": "function_call",
            "id": f"fc_mock{call.seq}",
            "call_id": f"call_mock{call.seq}",
            "name": reply.tool_name,
            "arguments": reply.tool_arguments,
            "status": "completed",
        }
    return {
        "type": "message",
        "id": f"msg_mock{call.seq}",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": reply.text, "annotations": []}],
    }


def responses(call: Call) -> Answer:
    body = call.json_body()
    model = body.get("model")
    require(isinstance(model, str) and model != "", "you must provide a model parameter")
    reply = make_reply(call.instance, _prompt(body, model), call.say)
    if call.spend_allowance:
        reply.output_tokens = body.get("max_output_tokens") or UNBOUNDED_OUTPUT_TOKENS
    incomplete = reply.finish == "length"
    response = {
        "id": f"resp_mock{call.seq}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "incomplete" if incomplete else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "model": model,
        "previous_response_id": body.get("previous_response_id"),
        "output": [_output(call, reply)],
        "usage": _usage(reply),
    }
    if not body.get("stream"):
        return json_answer(response)
    opening = {**response, "status": "in_progress", "output": [], "usage": None}
    item = _output(call, reply)
    events = [
        sse_event({"type": "response.created", "sequence_number": 0, "response": opening}, "response.created"),
        sse_event(
            {"type": "response.output_item.added", "output_index": 0, "item": {**item, "status": "in_progress"}},
            "response.output_item.added",
        ),
    ]
    if reply.tool_name:
        deltas = [("response.function_call_arguments.delta", piece) for piece in pieces(reply.tool_arguments)]
    else:
        deltas = [("response.output_text.delta", piece) for piece in pieces(reply.text)]
    for kind, piece in deltas:
        events.append(sse_event({"type": kind, "item_id": item["id"], "output_index": 0, "delta": piece}, kind))
    events.append(sse_event({"type": "response.output_item.done", "output_index": 0, "item": item}, "response.output_item.done"))
    final = "response.incomplete" if incomplete else "response.completed"
    events.append(sse_event({"type": final, "response": response}, final))
    return Answer(headers=[("content-type", "text/event-stream; charset=utf-8")], events=events)


ROUTES = [Route("POST", re.compile(r".*/responses"), responses, error)]
