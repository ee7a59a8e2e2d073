"""One HTTP/1.1 connection on an asyncio Protocol: write a request, parse the answer's head, frame its body.

Why not httpcore: behind httpx its pool bookkeeping, anyio's socket wrappers and h11's event machinery cost
~5 ms of CPU per three-request check, the whole budget of 2,000 environments on one core (bench/README.md,
"Many environments in one process"). This parser reads only what a client needs: the status line, bounded
headers, and a body framed by Content-Length, chunked coding or the connection's close. Every wait has its
own timeout and raises the httpx exception the callers already catch (ReadTimeout, RemoteProtocolError, ...);
reading pauses while the caller has not taken what is buffered, so a huge answer costs at most READ_AHEAD.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import httpx

# The head of an answer (status line and headers) may not be larger: a server sending endless headers is refused.
MAX_HEAD_BYTES = 64 * 1024
# A chunk-size line (hex size and any chunk extensions) longer than this is not HTTP.
MAX_CHUNK_LINE = 1024
# Bytes buffered before the socket stops being read until the caller takes them.
READ_AHEAD = 256 * 1024
# Body bytes handed out at once.
PIECE_BYTES = 64 * 1024

_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: (.*))?")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FORBIDDEN_IN_HEADERS = re.compile(rb"[\r\n\x00]")


class Expired(Exception):
    """A wait ran out of time (turned into the httpx timeout of what was waited for)."""


def request_head(request: httpx.Request) -> bytes:
    """The request line and headers as sent. A CR, LF or NUL in any name or value is refused (header injection)."""
    lines = [request.method.encode("ascii") + b" " + request.url.raw_path + b" HTTP/1.1"]
    for name, value in request.headers.raw:
        if not _TOKEN.fullmatch(name) or _FORBIDDEN_IN_HEADERS.search(value):
            raise httpx.LocalProtocolError(f"invalid header {name[:40]!r}", request=request)
        lines.append(name + b": " + value)
    return b"\r\n".join(lines) + b"\r\n\r\n"


class Head:
    """A parsed status line and headers."""

    __slots__ = ("headers", "keep_alive", "reason", "status", "version")

    def __init__(self, data: bytes) -> None:
        lines = data.split(b"\n")
        match = _STATUS_LINE.fullmatch(lines[0].rstrip(b"\r"))
        if match is None:
            raise httpx.RemoteProtocolError(f"not an HTTP/1.x status line: {lines[0][:60]!r}")
        minor, status, reason = match.groups()
        self.version = b"HTTP/1." + minor
        self.status = int(status)
        self.reason = reason or b""
        self.headers: list[tuple[bytes, bytes]] = []
        for line in lines[1:]:
            name, colon, value = line.rstrip(b"\r").partition(b":")
            if not colon or not _TOKEN.fullmatch(name):  # also a folded line (leading space): obsolete, refused
                raise httpx.RemoteProtocolError(f"malformed header line: {line[:60]!r}")
            self.headers.append((name, value.strip(b" \t")))
        connection = self.values(b"connection").lower()
        self.keep_alive = b"close" not in connection and (minor == b"1" or b"keep-alive" in connection)

    def text_headers(self) -> dict[str, str]:
        """Names lower-cased, repeated headers joined by ", ", values decoded as httpx does (ASCII, UTF-8,
        else Latin-1)."""
        merged: dict[str, str] = {}
        for raw_name, raw_value in self.headers:
            name = raw_name.decode("ascii").lower()
            try:
                value = raw_value.decode("utf-8")
            except UnicodeDecodeError:
                value = raw_value.decode("iso-8859-1")
            merged[name] = f"{merged[name]}, {value}" if name in merged else value
        return merged

    def values(self, name: bytes) -> bytes:
        """Every value of one header (lower-case name), joined by commas."""
        return b",".join(v for n, v in self.headers if n.lower() == name)


class Wire(asyncio.Protocol):
    """One TCP (or TLS) connection. The pool owns it; one request at a time uses it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._closed = False  # the server closed, or the connection was lost
        self._lost: Exception | None = None  # why it was lost, when it was not a clean close
        self._waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._writing_paused = False
        self.received = 0  # bytes received over the connection's life: 0 means no answer began
        self.on_lost: Callable[[Wire], None] | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self.received += len(data)
        if len(self._buffer) > READ_AHEAD and not self._reading_paused and self.transport is not None:
            self.transport.pause_reading()
            self._reading_paused = True
        self._wake()

    def eof_received(self) -> bool:
        self._closed = True
        self._wake()
        return False  # let asyncio close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._lost = exc
        self._writing_paused = False
        self._wake()
        if self.on_lost is not None:
            self.on_lost(self)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake()

    # for the pool
    @property
    def usable(self) -> bool:
        """Open, nothing unread: a request may be sent on it."""
        transport = self.transport
        return not self._closed and not self._buffer and transport is not None and not transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self._closed = True

    # for one request
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self, within_s: float | None) -> None:
        waiter = self._waiter = self._loop.create_future()
        timer = self._loop.call_later(within_s, _expire, waiter) if within_s is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    async def send(self, data: bytes, within_s: float | None) -> None:
        if self._closed or self.transport is None or self.transport.is_closing():
            raise httpx.WriteError("connection closed before the request was sent")
        self.transport.write(data)
        while self._writing_paused and not self._closed:
            try:
                await self._wait(within_s)
            except Expired:
                raise httpx.WriteTimeout("timed out sending the request") from None

    async def _more(self, within_s: float | None) -> bool:
        """Wait for more bytes; False at the end of the connection."""
        if self._closed:
            if self._lost is not None:
                raise httpx.ReadError(str(self._lost) or type(self._lost).__name__)
            return False
        if self._reading_paused and self.transport is not None:
            self.transport.resume_reading()
            self._reading_paused = False
        try:
            await self._wait(within_s)
        except Expired:
            raise httpx.ReadTimeout("timed out waiting for the answer") from None
        if self._lost is not None and not self._buffer:
            raise httpx.ReadError(str(self._lost) or type(self._lost).__name__)
        return bool(self._buffer) or not self._closed

    def take_exactly(self, expected: re.Pattern[bytes]) -> bool:
        """Consume what is buffered if it is exactly `expected` (nothing after it), without waiting."""
        if len(self._buffer) > MAX_HEAD_BYTES or not expected.fullmatch(self._buffer):
            return False
        self._buffer.clear()
        return True

    def _take(self, size: int) -> bytes:
        piece = bytes(self._buffer[:size])
        del self._buffer[:size]
        return piece

    async def read_head(self, within_s: float | None) -> Head:
        """The next final answer's head (1xx interim answers are skipped)."""
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            while end < 0:
                if len(self._buffer) > MAX_HEAD_BYTES:
                    raise httpx.RemoteProtocolError(f"answer head larger than {MAX_HEAD_BYTES} bytes")
                searched = len(self._buffer)
                if not await self._more(within_s):
                    raise httpx.RemoteProtocolError("server disconnected without sending a complete answer head")
                end = self._buffer.find(b"\r\n\r\n", max(0, searched - 3))
            if end > MAX_HEAD_BYTES:
                raise httpx.RemoteProtocolError(f"answer head larger than {MAX_HEAD_BYTES} bytes")
            head = Head(self._take(end))
            del self._buffer[:4]
            if not 100 <= head.status < 200 or head.status == 101:
                return head

    async def read_some(self, limit: int, within_s: float | None) -> bytes:
        """Up to `limit` bytes (at least one); b"" when the connection ended."""
        while not self._buffer:
            if not await self._more(within_s):
                return b""
        return self._take(min(limit, PIECE_BYTES))

    async def read_line(self, within_s: float | None) -> bytes:
        """One CRLF-ended line of a chunked body, without the line end."""
        while (end := self._buffer.find(b"\n")) < 0:
            if len(self._buffer) > MAX_CHUNK_LINE:
                raise httpx.RemoteProtocolError("chunk line too long")
            if not await self._more(within_s):
                raise httpx.RemoteProtocolError("server disconnected inside a chunked body")
        if end > MAX_CHUNK_LINE:
            raise httpx.RemoteProtocolError("chunk line too long")
        return self._take(end + 1).rstrip(b"\r\n")


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(Expired())
