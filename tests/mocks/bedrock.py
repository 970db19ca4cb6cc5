"""AWS Bedrock Runtime Converse and ConverseStream, with the binary event-stream codec.

An application/vnd.amazon.eventstream message is:
    total length (u32 BE) | headers length (u32 BE) | prelude CRC32 (u32 BE, of the first 8 bytes)
    | headers | payload | message CRC32 (u32 BE, of every byte before it)
and each header is: name length (u8) | name | value type (u8) | value. Bedrock uses only
string headers (type 7: u16 BE length + UTF-8), but the decoder reads every type.
"""

from __future__ import annotations

import re
import string
import struct
import zlib
from dataclasses import dataclass
from urllib.parse import unquote

from .replies import (
    Answer,
    Call,
    Prompt,
    Reply,
    Route,
    Turn,
    error_kind,
    flatten_text,
    json_answer,
    json_bytes,
    make_reply,
    pieces,
    require,
    retry_after_headers,
)

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool": "tool_use"}
_ERROR_TYPES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
_LATENCY_MS = 42  # reported in metrics; the mock does not measure itself
# Header value types.
_TRUE, _FALSE, _BYTES, _STRING, _UUID = 0, 1, 6, 7, 9
_INT_FORMATS = {2: ">b", 3: ">h", 4: ">i", 5: ">q", 8: ">q"}  # byte, short, int, long, timestamp (ms)


# --- event-stream codec -------------------------------------------------------------


def encode_event(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message with string headers."""
    encoded = b""
    for name, value in headers.items():
        name_bytes, value_bytes = name.encode(), value.encode()
        encoded += struct.pack(">B", len(name_bytes)) + name_bytes
        encoded += struct.pack(">BH", _STRING, len(value_bytes)) + value_bytes
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


@dataclass
class EventMessage:
    headers: dict[str, object]
    payload: bytes


def decode_event_stream(data: bytes) -> list[EventMessage]:
    """Decode a complete event stream, checking both CRCs; raise ValueError on any defect."""
    messages, offset = [], 0
    while offset < len(data):
        if len(data) - offset < 16:
            raise ValueError(f"truncated message at offset {offset}")
        total, headers_length, prelude_crc = struct.unpack_from(">III", data, offset)
        if zlib.crc32(data[offset : offset + 8]) != prelude_crc:
            raise ValueError(f"prelude CRC mismatch at offset {offset}")
        if total < 16 + headers_length or offset + total > len(data):
            raise ValueError(f"bad or truncated length {total} at offset {offset}")
        (message_crc,) = struct.unpack_from(">I", data, offset + total - 4)
        if zlib.crc32(data[offset : offset + total - 4]) != message_crc:
            raise ValueError(f"message CRC mismatch at offset {offset}")
        headers_start = offset + 12
        headers = _decode_headers(data[headers_start : headers_start + headers_length])
        payload = data[headers_start + headers_length : offset + total - 4]
        messages.append(EventMessage(headers, payload))
        offset += total
    return messages


def _decode_headers(raw: bytes) -> dict[str, object]:
    headers, i = {}, 0
    while i < len(raw):
        name_length = raw[i]
        name = raw[i + 1 : i + 1 + name_length].decode()
        kind = raw[i + 1 + name_length]
        i += 2 + name_length
        if kind in (_TRUE, _FALSE):
            value = kind == _TRUE
        elif kind in _INT_FORMATS:
            (value,) = struct.unpack_from(_INT_FORMATS[kind], raw, i)
            i += struct.calcsize(_INT_FORMATS[kind])
        elif kind == _UUID:
            value, i = raw[i : i + 16], i + 16
        elif kind in (_BYTES, _STRING):
            (length,) = struct.unpack_from(">H", raw, i)
            value = raw[i + 2 : i + 2 + length]
            value = value.decode() if kind == _STRING else value
            i += 2 + length
        else:
            raise ValueError(f"unknown header value type {kind} for {name!r}")
        headers[name] = value
    return headers


# --- Converse -----------------------------------------------------------------------


def error(status: int, message: str, retry_after: float | None = None) -> Answer:
    kind = error_kind(status, _ERROR_TYPES, "ValidationException", "InternalServerException")
    headers = [("x-amzn-errortype", f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/")]
    return json_answer({"message": message}, status, headers + retry_after_headers(retry_after))


def _turn(message: dict) -> Turn:
    content = message.get("content")
    require(
        isinstance(content, list) and all(isinstance(b, dict) for b in content), "content must be an array of blocks"
    )
    text = " ".join(b["text"] for b in content if isinstance(b.get("text"), str) and b["text"])
    results = " ".join(
        flatten_text(b["toolResult"].get("content")) for b in content if isinstance(b.get("toolResult"), dict)
    )
    return Turn(message.get("role") == "user", text, results or None)


def _prompt(call: Call, body: dict) -> Prompt:
    messages = body.get("messages")
    require(
        isinstance(messages, list) and messages and all(isinstance(m, dict) for m in messages),
        "1 validation error detected: Value at 'messages' failed to satisfy constraint: Member must not be null",
    )
    system = body.get("system")
    turns = [_turn({"role": "system", "content": system})] if system else []
    turns += [_turn(m) for m in messages]
    tools = [
        t["toolSpec"] for t in (body.get("toolConfig") or {}).get("tools", []) if isinstance(t.get("toolSpec"), dict)
    ]
    return Prompt(
        model=unquote(call.params["model"]),
        turns=turns,
        tool_name=tools[0].get("name") if tools else None,
        max_tokens=(body.get("inferenceConfig") or {}).get("maxTokens"),
    )


def _usage(reply: Reply) -> dict:
    return {
        "inputTokens": reply.input_tokens,
        "outputTokens": reply.output_tokens,
        "totalTokens": reply.input_tokens + reply.output_tokens,
    }


def converse(call: Call) -> Answer:
    reply = make_reply(call.instance, _prompt(call, call.json_body()), call.say)
    tool_use_id = f"tooluse_mock{call.seq}"
    if call.params.get("stream"):
        return Answer(
            headers=[("content-type", "application/vnd.amazon.eventstream")], events=_stream_events(reply, tool_use_id)
        )
    if reply.tool_name:
        block = {"toolUse": {"toolUseId": tool_use_id, "name": reply.tool_name, "input": reply.tool_input}}
    else:
        block = {"text": reply.text}
    return json_answer(
        {
            "output": {"message": {"role": "assistant", "content": [block]}},
            "stopReason": _STOP_REASONS[reply.finish],
            "usage": _usage(reply),
            "metrics": {"latencyMs": _LATENCY_MS},
        }
    )


def _stream_events(reply: Reply, tool_use_id: str) -> list[bytes]:
    payloads = [("messageStart", {"role": "assistant"})]
    if reply.tool_name:
        start = {"toolUse": {"toolUseId": tool_use_id, "name": reply.tool_name}}
        payloads.append(("contentBlockStart", {"contentBlockIndex": 0, "start": start}))
        deltas = [{"toolUse": {"input": piece}} for piece in pieces(reply.tool_arguments)]
    else:
        deltas = [{"text": piece} for piece in pieces(reply.text)]
    payloads += [("contentBlockDelta", {"contentBlockIndex": 0, "delta": delta}) for delta in deltas]
    payloads += [
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("messageStop", {"stopReason": _STOP_REASONS[reply.finish]}),
        ("metadata", {"usage": _usage(reply), "metrics": {"latencyMs": _LATENCY_MS}}),
    ]
    return [_event(name, payload, i) for i, (name, payload) in enumerate(payloads)]


def _event(event_type: str, payload: dict, index: int) -> bytes:
    # AWS pads payloads with a "p" field of varying length so sizes do not leak content.
    padding = string.ascii_letters[: 8 + index % 20]
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_event(headers, json_bytes({**payload, "p": padding}))


ROUTES = [Route("POST", re.compile(r".*/model/(?P<model>[^/]+)/converse(?P<stream>-stream)?"), converse, error)]
