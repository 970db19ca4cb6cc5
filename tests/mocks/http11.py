"""A deliberately small HTTP/1.1 server side on asyncio streams.

Hand-written instead of http.server so the mocks control every byte and every
socket write: keep-alive, chunked request bodies (Envoy sends them after a
filter rewrote a body), chunked streaming responses cut at arbitrary points,
and connection resets with no response at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qsl, urlsplit

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024


class BadRequest(Exception):
    """The peer sent something that is not acceptable HTTP/1.1."""


@dataclass
class Request:
    method: str
    target: str  # path including the query string, as sent
    version: str
    headers: list[tuple[str, str]]  # names lowercased, order and duplicates kept
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.target).query, keep_blank_values=True))

    def header(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return default

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in (self.header("connection") or "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


async def read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Request | None:
    """Read one request; None when the peer closed cleanly between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise BadRequest("connection closed inside the request head") from None
        return None
    except asyncio.LimitOverrunError:
        raise BadRequest("request head too large") from None
    if len(head) > MAX_HEAD_BYTES:
        raise BadRequest("request head too large")

    lines = head[:-4].decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise BadRequest(f"malformed request line {lines[0]!r}") from None
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequest(f"unsupported version {version!r}")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(f"malformed header line {line!r}")
        headers.append((name.lower(), value.strip()))
    request = Request(method, target, version, headers, b"")

    if (request.header("expect") or "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    transfer_encoding = (request.header("transfer-encoding") or "").lower()
    if "chunked" in transfer_encoding:
        request.body = await _read_chunked_body(reader)
    elif request.header("content-length") is not None:
        try:
            length = int(request.header("content-length"))
        except ValueError:
            raise BadRequest("invalid content-length") from None
        if not 0 <= length <= MAX_BODY_BYTES:
            raise BadRequest("content-length out of range")
        request.body = await reader.readexactly(length)
    return request


async def _read_chunked_body(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BadRequest(f"bad chunk size line {size_line!r}") from None
        if size == 0:
            break
        if len(body) + size > MAX_BODY_BYTES:
            raise BadRequest("chunked body too large")
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise BadRequest("chunk not terminated by CRLF")
    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailer fields, ignored
        pass
    return bytes(body)


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Overloaded" if status == 529 else "Status"


class ResponseWriter:
    """Writes one response; each write() is a separate socket write."""

    def __init__(self, writer: asyncio.StreamWriter):
        self._writer = writer
        self._chunked = False

    async def start(self, status: int, headers: list[tuple[str, str]], content_length: int | None) -> None:
        """Send the status line and headers; content_length None means a chunked body."""
        self._chunked = content_length is None
        lines = [f"HTTP/1.1 {status} {reason_phrase(status)}"]
        lines += [f"{name}: {value}" for name, value in headers]
        lines.append("transfer-encoding: chunked" if self._chunked else f"content-length: {content_length}")
        await self._send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    async def write(self, data: bytes) -> None:
        if not data:
            return
        if self._chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        await self._send(data)

    async def finish(self) -> None:
        if self._chunked:
            await self._send(b"0\r\n\r\n")

    async def _send(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def flushed(self) -> None:
        """Wait until asyncio handed every buffered byte to the kernel."""
        transport = self._writer.transport
        while transport.get_write_buffer_size() and not transport.is_closing():
            await asyncio.sleep(0.001)


def reset_connection(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0) instead of an orderly FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
