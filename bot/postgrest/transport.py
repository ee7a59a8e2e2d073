"""The shared client's one transport: a small HTTP/1.1 keep-alive pool per origin, on asyncio (bot/postgrest/wire.py).

Why one transport with a pool per origin: httpx finds a mounted transport by scanning every mount on every
request (155 us per request at 1,000 origins), while this is one dict lookup whatever the number of
environments; and one environment can never use up the connections another needs (a cap per origin, waiting
requests served first come, first served). Every https origin shares the process's one SSL context.

What a connection may be used for: it goes back to its pool only after its answer was read to the end of
its framing and neither side asked to close; an error, a timeout, a cancelled request or a body left half
read closes it. An idle connection the server closes leaves the pool at once (the Protocol sees it), and one
idle longer than KEEPALIVE_EXPIRY_S is closed. A GET, HEAD or OPTIONS that finds its reused connection closed
by the server before any answer byte is sent once more on a new connection (the race every keep-alive client
has); nothing else is ever sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import ssl
from collections import deque
from collections.abc import Callable

import httpx

from bot.httpread import CappedAnswer, capped_answer
from bot.postgrest.wire import PIECE_BYTES, Expired, Head, Wire, request_head

# Longer than the 10 s check interval thousands of environments use, so each check finds its connections
# open; shorter than the idle timeout of PostgREST's server (warp: 30 s) and of the common gateways (60 s+).
KEEPALIVE_EXPIRY_S = 15.0
PER_ORIGIN_LIMITS = httpx.Limits(max_connections=16, max_keepalive_connections=8, keepalive_expiry=KEEPALIVE_EXPIRY_S)
# Sent again once when a kept-alive connection turned out closed before any byte of the answer.
_REPLAYABLE = frozenset({"GET", "HEAD", "OPTIONS"})
# What ends a chunked body after its data: the data's CRLF (unless already read), the zero-size chunk, trailers.
_LAST_CHUNK_NEXT = re.compile(rb"0+(?:[ \t;][^\r\n]*)?\r\n(?:[^\r\n]+\r\n)*\r\n")
_LAST_CHUNK = re.compile(rb"\r\n" + _LAST_CHUNK_NEXT.pattern)
# Open files asked for (sockets among them) when the soft limit is lower: 3 connections x 10,000 environments.
OPEN_FILES_WANTED = 32_768
_HAPPY_EYEBALLS_S = 0.25  # as anyio, which httpcore used: a second address family tried after 250 ms


class OriginPool:
    """Connections to one origin: at most `max_connections` open, at most `max_keepalive_connections` idle."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None, limits: httpx.Limits) -> None:
        self._loop = asyncio.get_running_loop()
        self._host, self._port, self._tls = host, port, tls
        self._literal = _is_ip_literal(host)
        self._cap = limits.max_connections or 1 << 30
        self._keep = limits.max_keepalive_connections if limits.max_keepalive_connections is not None else self._cap
        self._expiry = limits.keepalive_expiry
        self._idle: list[Wire] = []
        self._timers: dict[Wire, asyncio.TimerHandle] = {}
        self._wires: set[Wire] = set()  # every open connection, idle or in use
        self._slots = 0  # connections counted against the cap: open, connecting, or handed to a waiter
        self._waiters: deque[asyncio.Future[Wire | None]] = deque()
        self._closed = False

    @property
    def connections(self) -> int:
        return len(self._wires)

    async def acquire(self, timeouts: dict[str, float | None]) -> tuple[Wire, bool]:
        """A connection and whether it was reused. Raises httpx.PoolTimeout, ConnectTimeout or ConnectError."""
        while self._idle:
            wire = self._take_idle(self._idle[-1])
            if wire.usable:
                return wire, True
            self._drop(wire)
        if self._slots < self._cap and not self._waiters:
            self._slots += 1
            return await self._connect(timeouts.get("connect")), False
        handed = await self._wait_turn(timeouts.get("pool"))
        if handed is not None:
            return handed, True
        return await self._connect(timeouts.get("connect")), False

    async def _wait_turn(self, within_s: float | None) -> Wire | None:
        """Queue for a connection: an idle one handed over, or None for a slot to connect in."""
        turn: asyncio.Future[Wire | None] = self._loop.create_future()
        self._waiters.append(turn)
        timer = self._loop.call_later(within_s, _expire, turn) if within_s is not None else None
        try:
            return await turn
        except Expired:
            raise httpx.PoolTimeout(f"no free connection to {self._host} in time") from None
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled() and turn.exception() is None:
                handed = turn.result()  # handed over as we were cancelled: pass it on
                if handed is None:
                    self._slots -= 1
                    self._free_slot()
                else:
                    self.release(handed, reusable=True)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    async def _connect(self, within_s: float | None) -> Wire:
        """Open a connection in a slot already counted; the slot is given back when this fails."""
        try:
            async with asyncio.timeout(within_s):
                _, wire = await self._loop.create_connection(
                    lambda: Wire(self._loop),
                    self._host,
                    self._port,
                    ssl=self._tls,
                    server_hostname=self._host if self._tls is not None else None,
                    # An IP literal has one address: the race would only cost CPU (twice a plain connect's).
                    happy_eyeballs_delay=None if self._literal else _HAPPY_EYEBALLS_S,
                )
        except BaseException as err:
            self._slots -= 1
            self._free_slot()
            if isinstance(err, TimeoutError):
                raise httpx.ConnectTimeout(f"timed out connecting to {self._host}") from None
            if isinstance(err, OSError):
                raise httpx.ConnectError(str(err) or type(err).__name__) from err
            raise
        if self._closed:
            wire.close()
            self._slots -= 1
            raise httpx.ConnectError("the client was closed")
        self._wires.add(wire)
        return wire

    def release(self, wire: Wire, *, reusable: bool) -> None:
        """A request is done with `wire`: kept for the next (handed to a waiter first), or closed."""
        if reusable and wire.usable and not self._closed:
            while self._waiters:
                turn = self._waiters.popleft()
                if not turn.done():
                    turn.set_result(wire)
                    return
            if len(self._idle) < self._keep:
                self._idle.append(wire)
                wire.on_lost = self._lost_idle
                if self._expiry is not None:
                    self._timers[wire] = self._loop.call_later(self._expiry, self._expire_idle, wire)
                return
        self._drop(wire)

    def _take_idle(self, wire: Wire) -> Wire:
        self._idle.remove(wire)
        wire.on_lost = None
        timer = self._timers.pop(wire, None)
        if timer is not None:
            timer.cancel()
        return wire

    def _lost_idle(self, wire: Wire) -> None:
        if wire in self._idle:
            self._drop(self._take_idle(wire))

    def _expire_idle(self, wire: Wire) -> None:
        if wire in self._idle:
            self._drop(self._take_idle(wire))

    def _drop(self, wire: Wire) -> None:
        """Close `wire` and give its slot to the first waiter."""
        wire.on_lost = None
        wire.close()
        if wire in self._wires:
            self._wires.discard(wire)
            self._slots -= 1
            self._free_slot()

    def _free_slot(self) -> None:
        while self._waiters and not self._closed:
            turn = self._waiters.popleft()
            if not turn.done():
                self._slots += 1
                turn.set_result(None)
                return

    def close(self) -> None:
        self._closed = True
        for wire in list(self._idle):
            self._take_idle(wire)
        for wire in list(self._wires):
            wire.on_lost = None
            wire.close()
        self._wires.clear()
        for turn in self._waiters:
            if not turn.done():
                turn.set_exception(httpx.PoolTimeout("the client was closed"))
        self._waiters.clear()


class AnswerBody(httpx.AsyncByteStream):
    """An answer's body as it arrives: framing removed, content coding kept (bot/httpread.py decodes it under
    its cap). Closing it gives the connection back, for reuse only when the body was read to its end."""

    def __init__(self, pool: OriginPool, wire: Wire, head: Head, method: str, within_s: float | None) -> None:
        self._pool, self._wire, self._timeout = pool, wire, within_s
        self._keep_alive = head.keep_alive
        self._remaining = 0  # bytes left: of the body (length), of the current chunk (chunked)
        self._chunk_ended = False
        self.complete = False
        encoding = head.values(b"transfer-encoding").lower()
        if method == "HEAD" or head.status in (204, 304) or 100 <= head.status < 200:
            self._mode, self.complete = "none", True
        elif encoding:
            self._mode = "chunked" if encoding.rsplit(b",", 1)[-1].strip() == b"chunked" else "close"
            if self._mode == "close" or head.values(b"content-length"):
                self._keep_alive = False  # both framings at once (smuggling-shaped): never reused (RFC 9112 6.3)
        elif length := head.values(b"content-length"):
            sizes = {v.strip() for v in length.split(b",")}
            if len(sizes) != 1 or not (size := sizes.pop()).isdigit():
                raise httpx.RemoteProtocolError(f"invalid Content-Length {length[:40]!r}")
            self._mode, self._remaining = "length", int(size)
            self.complete = self._remaining == 0
        else:
            self._mode, self._keep_alive = "close", False
        self._released = False

    def __aiter__(self) -> AnswerBody:
        return self

    async def __anext__(self) -> bytes:
        if self.complete:
            raise StopAsyncIteration
        if self._mode == "length":
            piece = await self._wire.read_some(self._remaining, self._timeout)
            if not piece:
                raise httpx.RemoteProtocolError("server closed the connection inside the answer body")
            self._remaining -= len(piece)
            self.complete = self._remaining == 0
            return piece
        if self._mode == "chunked":
            return await self._next_chunk_piece()
        piece = await self._wire.read_some(PIECE_BYTES, self._timeout)
        if not piece:  # the close ends a close-delimited body
            self.complete = True
            raise StopAsyncIteration
        return piece

    async def _next_chunk_piece(self) -> bytes:
        wire, within_s = self._wire, self._timeout
        if self._remaining == 0:
            if self._chunk_ended:
                if await wire.read_line(within_s):
                    raise httpx.RemoteProtocolError("chunk data longer than its size")
                self._chunk_ended = False
            line = (await wire.read_line(within_s)).split(b";", 1)[0].strip()
            if not line or len(line) > 16 or line.strip(b"0123456789abcdefABCDEF"):
                raise httpx.RemoteProtocolError(f"invalid chunk size {line[:20]!r}")
            self._remaining = int(line, 16)
            if self._remaining == 0:
                trailer_bytes = 0
                while trailer := await wire.read_line(within_s):  # trailers are read and ignored
                    trailer_bytes += len(trailer)
                    if trailer_bytes > 64 * 1024:
                        raise httpx.RemoteProtocolError("chunked trailers too large")
                self.complete = True
                raise StopAsyncIteration
        piece = await wire.read_some(self._remaining, within_s)
        if not piece:
            raise httpx.RemoteProtocolError("server closed the connection inside a chunked body")
        self._remaining -= len(piece)
        self._chunk_ended = self._remaining == 0
        return piece

    def _finish_buffered(self) -> None:
        """The reader stops at the end of the decoded data (bot/httpread.py): a chunked body's last-chunk marker
        may then be left unread though it already arrived. Taken without waiting, so the connection is reused."""
        if self._mode == "chunked" and not self.complete and self._remaining == 0:
            self.complete = self._wire.take_exactly(_LAST_CHUNK if self._chunk_ended else _LAST_CHUNK_NEXT)

    async def aclose(self) -> None:
        if not self._released:
            self._released = True
            self._finish_buffered()
            self._pool.release(self._wire, reusable=self.complete and self._keep_alive)


class OriginPools(httpx.AsyncBaseTransport):
    """The client's one transport: an `OriginPool` per origin, made on its first request."""

    def __init__(self, limits: httpx.Limits = PER_ORIGIN_LIMITS, tls: Callable[[], ssl.SSLContext] | None = None):
        raise_open_files_limit()
        self.limits = limits
        self._tls = tls or httpx.create_ssl_context
        self._pools: dict[tuple[bytes, bytes, int | None], OriginPool] = {}
        self._closed = False

    @property
    def origins(self) -> int:
        """How many origins have a pool (one per origin asked so far)."""
        return len(self._pools)

    def _pool(self, url: httpx.URL) -> OriginPool:
        key = (url.raw_scheme, url.raw_host, url.port)
        pool = self._pools.get(key)
        if pool is None:
            if url.raw_scheme not in (b"http", b"https"):
                raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
            https = url.raw_scheme == b"https"
            port = url.port or (443 if https else 80)
            tls = self._tls() if https else None
            pool = self._pools[key] = OriginPool(url.raw_host.decode("ascii"), port, tls, self.limits)
        return pool

    async def send_capped(self, request: httpx.Request, cap: int) -> CappedAnswer:
        """bot/httpread.py `send_capped` without httpx's client and response objects (most of a request's CPU
        there): the same bounded decoding, the same exceptions."""
        head, body = await self.exchange(request)
        try:
            return await capped_answer(head.status, head.text_headers(), body, cap)
        finally:
            await body.aclose()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        head, body = await self.exchange(request)
        return httpx.Response(
            head.status,
            headers=head.headers,
            stream=body,
            extensions={"http_version": head.version, "reason_phrase": head.reason},
        )

    async def exchange(self, request: httpx.Request) -> tuple[Head, AnswerBody]:
        """Send `request`; its answer's head, and its body to read and then close."""
        if self._closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        timeouts = request.extensions.get("timeout", {})
        pool = self._pool(request.url)
        message = request_head(request) + await _body_bytes(request)
        for attempt in (1, 2):
            wire, reused = await pool.acquire(timeouts)
            received = wire.received
            try:
                await wire.send(message, timeouts.get("write"))
                head = await wire.read_head(timeouts.get("read"))
                body = AnswerBody(pool, wire, head, request.method, timeouts.get("read"))
            except BaseException as err:
                pool.release(wire, reusable=False)
                stale = (
                    reused
                    and wire.received == received
                    and isinstance(err, httpx.NetworkError | httpx.RemoteProtocolError)
                )
                if attempt == 1 and stale and request.method in _REPLAYABLE:
                    continue
                raise
            if body.complete:
                await body.aclose()  # nothing to read: the connection is free for the next request now
            return head, body
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        self._closed = True
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()


async def _body_bytes(request: httpx.Request) -> bytes:
    """The request body as sent: known bodies as they are, a streamed one collected (and chunk-coded when its
    headers say so); what this project sends are small JSON bodies."""
    try:
        return request.content
    except httpx.RequestNotRead:
        data = b"".join([part async for part in request.stream])  # type: ignore[union-attr]
    if request.headers.get("transfer-encoding", "").lower() == "chunked":
        return (b"%x\r\n%s\r\n" % (len(data), data) if data else b"") + b"0\r\n\r\n"
    return data


def raise_open_files_limit(wanted: int = OPEN_FILES_WANTED) -> None:
    """Raise the process's soft limit on open files towards its hard limit, as Go's runtime does for every
    program: thousands of environments keep three connections each open between checks, and the soft limit
    many service managers start a process with (1,024) would fail connects from about the 340th environment."""
    try:
        import resource
    except ImportError:  # not on this platform: nothing to raise
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _expire(turn: asyncio.Future[Wire | None]) -> None:
    if not turn.done():
        turn.set_exception(Expired())
