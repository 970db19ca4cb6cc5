"""Google Gemini generateContent / streamGenerateContent (Gemini API and Vertex AI paths).

Streaming comes in Google's two framings: with ?alt=sse, server-sent events
separated by CRLF CRLF; without it, one pretty-printed JSON array whose
elements arrive over time ("[{...}" then ",\\r\\n{...}" then "]").
Both camelCase and snake_case request field names are accepted, as the real API does.
"""

from __future__ import annotations

import json
import re

from .replies import (
    Answer,
    Call,
    Prompt,
    Reply,
    Route,
    Turn,
    compact_json,
    error_kind,
    json_answer,
    make_reply,
    pieces,
    require,
    retry_after_headers,
    sse_event,
    unit_vector,
)

_FINISH_REASONS = {"stop": "STOP", "length": "MAX_TOKENS", "tool": "STOP"}
_ERROR_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error(status: int, message: str, retry_after: float | None = None) -> Answer:
    body = {
        "code": status,
        "message": message,
        "status": error_kind(status, _ERROR_STATUSES, "INVALID_ARGUMENT", "INTERNAL"),
    }
    if retry_after is not None:
        body["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after:g}s"}]
    return json_answer({"error": body}, status, retry_after_headers(retry_after))


def _field(obj: dict, camel: str, snake: str):
    return obj.get(camel, obj.get(snake))


def _turn(content: dict, from_user: bool) -> Turn:
    parts = content.get("parts") or []
    require(isinstance(parts, list) and all(isinstance(p, dict) for p in parts), "parts must be an array of objects")
    text = " ".join(p["text"] for p in parts if isinstance(p.get("text"), str) and p["text"])
    results = [_field(p, "functionResponse", "function_response") for p in parts]
    results = " ".join(compact_json(r.get("response")) for r in results if isinstance(r, dict))
    return Turn(from_user, text, results or None)


def _prompt(call: Call, body: dict) -> Prompt:
    contents = body.get("contents")
    require(
        isinstance(contents, list) and contents and all(isinstance(c, dict) for c in contents),
        "contents is not specified",
    )
    system = _field(body, "systemInstruction", "system_instruction")
    turns = [_turn(system, from_user=False)] if isinstance(system, dict) else []
    turns += [_turn(c, from_user=c.get("role", "user") == "user") for c in contents]
    declarations = []
    for tool in body.get("tools") or []:
        declarations += _field(tool, "functionDeclarations", "function_declarations") or []
    config = _field(body, "generationConfig", "generation_config") or {}
    return Prompt(
        model=call.params["model"],
        turns=turns,
        tool_name=declarations[0].get("name") if declarations else None,
        max_tokens=_field(config, "maxOutputTokens", "max_output_tokens"),
    )


def _usage(reply: Reply, complete: bool) -> dict:
    """Usage metadata; chunks before the last carry only the prompt side, as Gemini's do."""
    usage = {"promptTokenCount": reply.input_tokens}
    if complete:
        usage["candidatesTokenCount"] = reply.output_tokens
    usage["totalTokenCount"] = reply.input_tokens + (reply.output_tokens if complete else 0)
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": reply.input_tokens}]
    return usage


def _response(call: Call, reply: Reply, parts: list[dict], last: bool) -> dict:
    candidate = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if last:
        candidate["finishReason"] = _FINISH_REASONS[reply.finish]
    return {
        "candidates": [candidate],
        "usageMetadata": _usage(reply, complete=last),
        "modelVersion": call.params["model"],
        "responseId": f"mock{call.seq}",
    }


def generate(call: Call) -> Answer:
    reply = make_reply(call.instance, _prompt(call, call.json_body()), call.say)
    if reply.tool_name:  # Gemini sends a function call whole, never as argument deltas
        whole = [{"functionCall": {"name": reply.tool_name, "args": reply.tool_input}}]
        part_lists = [whole]
    else:
        whole = [{"text": reply.text}]
        part_lists = [[{"text": piece}] for piece in pieces(reply.text)]
    if call.params["method"] == "generateContent":
        return json_answer(_response(call, reply, whole, last=True))

    responses = [_response(call, reply, parts, i == len(part_lists) - 1) for i, parts in enumerate(part_lists)]
    if call.request.query.get("alt") == "sse":
        events = [sse_event(r, newline="\r\n") for r in responses]
        return Answer(headers=[("content-type", "text/event-stream")], events=events)
    texts = [json.dumps(r, indent=2, ensure_ascii=False) for r in responses]
    events = [("[" if i == 0 else ",\r\n") + text + "\n" for i, text in enumerate(texts)] + ["]"]
    return Answer(headers=[("content-type", "application/json; charset=UTF-8")], events=[e.encode() for e in events])


_DEFAULT_EMBEDDING_DIMENSIONS = 768


def batch_embed(call: Call) -> Answer:
    """batchEmbedContents: one vector per request; the API reports no usage."""
    requests = call.json_body().get("requests")
    require(isinstance(requests, list) and requests, "'requests' must be a non-empty array")
    embeddings = []
    for request in requests:
        parts = (request.get("content") or {}).get("parts") or []
        text = "".join(part.get("text", "") for part in parts)
        dimensions = request.get("outputDimensionality") or _DEFAULT_EMBEDDING_DIMENSIONS
        embeddings.append({"values": unit_vector(f"{call.params['model']}\0{text}", dimensions)})
    return json_answer({"embeddings": embeddings})


ROUTES = [
    Route(
        "POST",
        re.compile(r".*/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)"),
        generate,
        error,
    ),
    Route("POST", re.compile(r".*/models/(?P<model>[^/:]+):batchEmbedContents"), batch_embed, error),
]
