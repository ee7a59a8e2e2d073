"""A gzip bomb served over HTTP: about 1 MB on the wire per GiB once inflated.

The body is a valid gzip stream of zeros: one deflate block of PIECE zeros (about 16 KB compressed, since a
full flush resets the compressor, the same block may be repeated), sent as many times as asked.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from functools import cache

from aiohttp import web

from tests.support.localhttp import LocalServer

PIECE = 16 * 1024 * 1024
GIB = 1024 * 1024 * 1024


@cache
def _blocks() -> tuple[bytes, bytes]:
    zeros = bytes(PIECE)
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)  # with the gzip header
    repeat = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    return first, repeat


@cache
def _crc_of_zeros(pieces: int) -> int:
    zeros, crc = bytes(PIECE), 0
    for _ in range(pieces):
        crc = zlib.crc32(zeros, crc)
    return crc


class GzipBomb:
    def __init__(self, decoded_bytes: int = 2 * GIB) -> None:
        self.pieces = max(1, decoded_bytes // PIECE)
        self.decoded_bytes = self.pieces * PIECE
        first, repeat = _blocks()
        # An empty final stored block, then the gzip trailer: CRC-32 and size (mod 2**32) of the zeros.
        self.wire_bytes = len(first) + len(repeat) * (self.pieces - 1) + 5 + 8

    def chunks(self) -> Iterator[bytes]:
        first, repeat = _blocks()
        yield first
        for _ in range(self.pieces - 1):
            yield repeat
        # Only a reader that inflates everything gets here.
        yield b"\x01\x00\x00\xff\xff" + struct.pack("<II", _crc_of_zeros(self.pieces), self.decoded_bytes % 2**32)


Hit = tuple[str, str, dict[str, str]]  # method, path with query, headers


def gzip_bomb_server(bomb: GzipBomb, *, hits: list[Hit] | None = None) -> LocalServer:
    """Answers every request with the bomb (200, JSON, gzip); `hits` collects the requests."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if hits is not None:
            hits.append((request.method, request.path_qs, dict(request.headers)))
        response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
        response.content_length = bomb.wire_bytes
        try:
            await response.prepare(request)
            for chunk in bomb.chunks():
                await response.write(chunk)
            await response.write_eof()
        except ConnectionError:
            pass  # the reader stopped at its cap and closed the connection: the expected end
        return response

    return LocalServer.catch_all(handler)
