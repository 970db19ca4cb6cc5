"""One named mock provider listener: routing, recording, fault injection, control endpoints.

Every instance answers every provider format, chosen by request path, so a
test names instances after the role they play ("openai", "openai-backup", ...).

Control endpoints (not recorded, never faulted):
  GET /__mock/health        {"name", "port"}
  GET /__mock/requests      recorded requests (RecordedRequest.to_dict())
  DELETE /__mock/requests   forget them (and the Anthropic prompt cache)
  GET /__mock/behavior      {"default": {...}, "script": [...]}
  POST /__mock/behavior     a behavior (becomes the default) or {"default": b, "script": [b, null, ...]}
  DELETE /__mock/behavior   back to normal answers
A request header x-mock-fault: <behavior JSON> overrides default and script for that request only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

from . import anthropic, bedrock, gemini, openai, openai_responses
from .behaviors import SPLIT_GAP_S, Behavior, BehaviorBook, applies_to, cut, validate
from .http11 import MAX_HEAD_BYTES, BadRequest, Request, ResponseWriter, read_request, reset_connection
from .replies import Answer, Call, ClientError, Route, default_error_message, json_answer

ROUTES: list[Route] = [*openai.ROUTES, *openai_responses.ROUTES, *anthropic.ROUTES, *gemini.ROUTES, *bedrock.ROUTES]
CONTROL_PREFIX = "/__mock/"
FAULT_HEADER = "x-mock-fault"
HANG_LIMIT_S = 120.0
# Pause between the last streamed byte and an injected RST, so the peer has read the events.
RESET_GRACE_S = 0.02


@dataclass
class RecordedRequest:
    instance: str
    method: str
    path: str  # including the query string
    headers: list[list[str]]  # [name, value] pairs, names lowercased, in arrival order
    body: bytes
    json: Any  # the parsed body, or None when it is not JSON
    time: float  # arrival, seconds since the epoch

    def header(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        return next((value for key, value in self.headers if key == name), default)

    def to_dict(self) -> dict:
        """JSON-safe form served by GET /__mock/requests."""
        return {
            "instance": self.instance,
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "body": self.body.decode("utf-8", "replace"),
            "body_base64": base64.b64encode(self.body).decode(),
            "json": self.json,
            "time": self.time,
        }


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def _find_route(method: str, path: str) -> tuple[Route | None, dict[str, str]]:
    for route in ROUTES:
        match = route.pattern.fullmatch(path)
        if match and route.method == method:
            return route, {k: v for k, v in match.groupdict().items() if v is not None}
    return None, {}


class ProviderInstance:
    """A listener on 127.0.0.1; its state is safe to read and change from other threads."""

    def __init__(self, name: str):
        self.name = name
        self.port: int | None = None
        self.behaviors = BehaviorBook()
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._seq = 0
        self._prompt_cache: set[str] = set()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task] = set()

    # --- state shared with the test thread ------------------------------------------

    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> int:
        """Forget recorded requests and the prompt cache; returns how many requests were dropped."""
        with self._lock:
            dropped = len(self._requests)
            self._requests.clear()
            self._prompt_cache.clear()
            return dropped

    def _record(self, request: Request) -> int:
        recorded = RecordedRequest(
            instance=self.name,
            method=request.method,
            path=request.target,
            headers=[[name, value] for name, value in request.headers],
            body=request.body,
            json=_parse_json(request.body),
            time=time.time(),
        )
        with self._lock:
            self._requests.append(recorded)
            self._seq += 1
            return self._seq

    # --- lifecycle --------------------------------------------------------------------

    async def listen(self, port: int = 0) -> int:
        self._server = await asyncio.start_server(
            self._serve_connection, "127.0.0.1", port, limit=MAX_HEAD_BYTES, backlog=1024, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(self._connections, timeout=2)

    # --- serving ----------------------------------------------------------------------

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                request = await read_request(reader, writer)
                if request is None or not await self._handle(request, reader, writer):
                    break
        except BadRequest as exc:
            with contextlib.suppress(ConnectionError):
                await self._send_plain(writer, 400, {"error": {"message": str(exc), "type": "bad_request"}}, False)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            writer.transport.abort()
        finally:
            writer.close()
            self._connections.discard(task)

    async def _handle(self, request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must not be reused."""
        if request.path.startswith(CONTROL_PREFIX):
            status, body = self._control(request)
            return await self._send_plain(writer, status, body, request.keep_alive)

        seq = self._record(request)
        route, params = _find_route(request.method, request.path)
        error = route.error if route else openai.error
        try:
            behavior = self._behavior_for(request)
        except ValueError as exc:
            return await self._deliver(
                writer, error(400, f"bad {FAULT_HEADER} header: {exc}", None), {}, request.keep_alive, seq
            )

        if behavior.get("reset"):
            reset_connection(writer)
            return False
        if behavior.get("hang"):
            await self._hang(reader)
            return False
        if behavior.get("status"):
            status = behavior["status"]
            answer = error(
                status, behavior.get("message") or default_error_message(status), behavior.get("retry_after")
            )
        elif route is None:
            answer = error(404, f"the mock has no route for {request.method} {request.path}", None)
        else:
            call = Call(
                self.name,
                request,
                params,
                seq,
                self._prompt_cache,
                spend_allowance=bool(behavior.get("spend_allowance")),
                say=behavior.get("say"),
                usage=behavior.get("usage"),
            )
            answer = self._answer(route, call)
        return await self._deliver(writer, answer, behavior, request.keep_alive, seq)

    def _behavior_for(self, request: Request) -> Behavior:
        header = request.header(FAULT_HEADER)
        if header is None:
            behavior = self.behaviors.next()
        else:
            try:
                behavior = validate(json.loads(header))
            except json.JSONDecodeError as exc:
                raise ValueError(f"not JSON: {exc}") from None
        return behavior if applies_to(behavior, request.header) else {}

    @staticmethod
    def _answer(route: Route, call: Call) -> Answer:
        try:
            return route.handle(call)
        except ClientError as exc:
            return route.error(exc.status, exc.message, None)
        except Exception as exc:  # a mock bug must show up as a loud 500, not a dropped connection
            traceback.print_exc(file=sys.stderr)
            return route.error(500, f"mock provider crashed: {exc!r}", None)

    async def _deliver(
        self, writer: asyncio.StreamWriter, answer: Answer, behavior: Behavior, keep_alive: bool, seq: int
    ) -> bool:
        """Write the answer with the behavior's timing, cutting and resets applied."""
        if behavior.get("delay_ms"):
            await asyncio.sleep(behavior["delay_ms"] / 1000)
        headers = [*answer.headers, ("x-mock-instance", self.name)]
        if not keep_alive:
            headers.append(("connection", "close"))
        events = answer.events if answer.streamed else [answer.body]
        reset_after = behavior.get("reset_after_events")
        if reset_after is not None:
            events = events[:reset_after]

        out = ResponseWriter(writer)
        await out.start(answer.status, headers, None if answer.streamed else len(answer.body))
        await self._write_events(out, events, behavior, random.Random(seq))
        if reset_after is not None:
            await out.flushed()
            await asyncio.sleep(RESET_GRACE_S)
            reset_connection(writer)
            return False
        await out.finish()
        return keep_alive

    @staticmethod
    async def _write_events(out: ResponseWriter, events: list[bytes], behavior: Behavior, rng: random.Random) -> None:
        """One write per event; with "split", back-to-back events are joined and re-cut,
        so pieces straddle event boundaries the way TCP reads can."""
        split = behavior.get("split")
        pending = b""

        async def flush() -> None:
            nonlocal pending
            for index, piece in enumerate(cut(pending, split, rng)):
                if index:
                    await asyncio.sleep(SPLIT_GAP_S)
                await out.write(piece)
            pending = b""

        for index, event in enumerate(events):
            delay_ms = behavior.get("first_token_delay_ms" if index == 0 else "chunk_delay_ms")
            if delay_ms:
                await flush()
                await asyncio.sleep(delay_ms / 1000)
            if split:
                pending += event
            else:
                await out.write(event)
        await flush()

    @staticmethod
    async def _hang(reader: asyncio.StreamReader) -> None:
        """Never answer; return once the client goes away (or after HANG_LIMIT_S)."""

        async def until_eof() -> None:
            while await reader.read(65536):
                pass

        with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
            await asyncio.wait_for(until_eof(), HANG_LIMIT_S)

    async def _send_plain(self, writer: asyncio.StreamWriter, status: int, body: Any, keep_alive: bool) -> bool:
        answer = json_answer(body, status)
        return await self._deliver(writer, answer, {}, keep_alive, 0)

    def _control(self, request: Request) -> tuple[int, Any]:
        """The /__mock/ endpoints: same operations as the Python API, over HTTP."""
        resource = request.path[len(CONTROL_PREFIX) :]
        if (request.method, resource) == ("GET", "health"):
            return 200, {"name": self.name, "port": self.port}
        if (request.method, resource) == ("GET", "requests"):
            return 200, [r.to_dict() for r in self.requests()]
        if (request.method, resource) == ("DELETE", "requests"):
            return 200, {"cleared": self.clear()}
        if (request.method, resource) == ("GET", "behavior"):
            return 200, self.behaviors.snapshot()
        if (request.method, resource) == ("DELETE", "behavior"):
            self.behaviors.clear()
            return 200, self.behaviors.snapshot()
        if (request.method, resource) == ("POST", "behavior"):
            try:
                self.behaviors.configure(json.loads(request.body or b"{}"))
            except ValueError as exc:  # includes malformed JSON
                return 400, {"error": str(exc)}
            return 200, self.behaviors.snapshot()
        return 404, {"error": f"no control endpoint {request.method} {request.path}"}
