"""Gateway (websocket) side of the fake: HELLO / IDENTIFY / READY / heartbeats, zlib-stream or zstd-stream."""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

log = logging.getLogger("fakediscord.gateway")

HEARTBEAT_INTERVAL_MS = 41250

# op codes
DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE, VOICE_STATE = 0, 1, 2, 3, 4
RESUME, RECONNECT, REQUEST_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 6, 7, 8, 9, 10, 11


class _Compressor:
    """Transport compression for one connection (a single shared stream, flushed per message)."""

    def __init__(self, kind: str | None) -> None:
        self.kind = kind
        self._zlib: Any = None
        self._zstd: Any = None
        self._zstd_flush: Any = None
        if kind == "zlib-stream":
            self._zlib = zlib.compressobj()
        elif kind == "zstd-stream":
            try:  # same library choice order as discord.utils
                import zstandard

                self._zstd = zstandard.ZstdCompressor().compressobj()
                self._zstd_flush = zstandard.COMPRESSOBJ_FLUSH_BLOCK
            except ImportError:
                from compression import zstd

                self._zstd = zstd.ZstdCompressor()
                self._zstd_flush = None
        elif kind is not None:
            raise ValueError(f"unsupported gateway compression {kind!r}")

    def encode(self, text: str) -> str | bytes:
        data = text.encode()
        if self._zlib is not None:
            return bytes(self._zlib.compress(data) + self._zlib.flush(zlib.Z_SYNC_FLUSH))
        if self._zstd is not None:
            if self._zstd_flush is not None:  # zstandard
                return bytes(self._zstd.compress(data) + self._zstd.flush(self._zstd_flush))
            return bytes(self._zstd.compress(data, mode=self._zstd.FLUSH_BLOCK))  # compression.zstd
        return text


class GatewaySession:
    """One websocket connection from the client."""

    def __init__(self, ws: web.WebSocketResponse, compress: str | None) -> None:
        self.ws = ws
        self.compressor = _Compressor(compress)
        self.seq = 0
        self.session_id: str | None = None
        self.identify: dict[str, Any] | None = None
        self.received: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.close_code: int | None = None  # close code the client sent (None while open)
        self._lock = asyncio.Lock()

    @property
    def closed(self) -> bool:
        return self.ws.closed

    async def send(self, op: int, d: Any, t: str | None = None) -> None:
        async with self._lock:
            payload: dict[str, Any] = {"op": op, "d": d, "s": None, "t": t}
            if op == DISPATCH:
                self.seq += 1
                payload["s"] = self.seq
            self.sent.append(payload)
            encoded = self.compressor.encode(json.dumps(payload))
            if self.ws.closed:
                raise ConnectionResetError("gateway connection is closed")
            if isinstance(encoded, bytes):
                await self.ws.send_bytes(encoded)
            else:
                await self.ws.send_str(encoded)

    async def dispatch(self, event: str, data: Any) -> None:
        await self.send(DISPATCH, data, event)


Handler = Callable[[GatewaySession, dict[str, Any]], Awaitable[None]]


async def serve_gateway(
    request: web.Request,
    *,
    on_open: Callable[[GatewaySession], None],
    on_identify: Handler,
    on_resume: Handler,
    on_request_members: Handler,
    on_close: Callable[[GatewaySession], None],
) -> web.WebSocketResponse:
    encoding = request.query.get("encoding", "json")
    compress = request.query.get("compress") or None
    ws = web.WebSocketResponse(max_msg_size=0)
    await ws.prepare(request)
    if encoding != "json":
        await ws.close(code=4002, message=b"Decode error (only encoding=json is faked)")
        return ws
    try:
        session = GatewaySession(ws, compress)
    except ValueError as exc:
        await ws.close(code=4002, message=str(exc).encode())
        return ws
    log.debug("gateway connected (v=%s compress=%s)", request.query.get("v"), compress)
    on_open(session)
    try:
        await session.send(HELLO, {"heartbeat_interval": HEARTBEAT_INTERVAL_MS, "_trace": ["fakediscord"]})
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                raw = msg.data
            elif msg.type == WSMsgType.BINARY:
                raw = msg.data.decode()
            else:
                break
            try:
                payload = json.loads(raw)
            except ValueError:
                await ws.close(code=4002, message=b"Error while decoding payload")
                break
            session.received.append(payload)
            op = payload.get("op")
            d = payload.get("d")
            if op == HEARTBEAT:
                await session.send(HEARTBEAT_ACK, None)
            elif op == IDENTIFY:
                if session.identify is not None:
                    await ws.close(code=4005, message=b"Already authenticated")
                    break
                session.identify = d
                await on_identify(session, d)
            elif op == RESUME:
                await on_resume(session, d)
            elif op == REQUEST_MEMBERS:
                await on_request_members(session, d)
            elif op in (PRESENCE, VOICE_STATE):
                pass
            else:
                log.warning("fake gateway: unknown op %r from client: %r", op, payload)
                await ws.close(code=4001, message=b"Unknown opcode")
                break
    except ConnectionResetError:
        pass
    finally:
        session.close_code = ws.close_code
        on_close(session)
        if not ws.closed:
            await ws.close()
    return ws
