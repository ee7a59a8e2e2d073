"""Read an HTTP answer bounded in *decoded* bytes: a compressed body can never inflate past the cap.

httpx decompresses a whole network chunk before the caller sees it, so a cap checked per chunk lets one
64 KB gzip chunk become ~64 MB. Here the raw bytes are decoded by us, each decompression step asked for
at most what is still allowed, and reading stops as soon as the cap is passed.

Only encodings whose decoder bounds its output are asked for and accepted: gzip and deflate (zlib's
`decompress(data, max_length)`). Brotli and zstd are not: neither package is a dependency, and we send
our own `Accept-Encoding` so that installing one cannot make httpx advertise an encoding we cannot bound.
An answer in any other encoding raises `httpx.DecodingError` (an `httpx.HTTPError`), as corrupt data does;
`send_capped` raises it as `UndecodableBody`, which keeps the status and the encoding for the report.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import AsyncIterable
from dataclasses import dataclass

import httpx

DECODABLE_ENCODINGS = ("gzip", "deflate")
ACCEPT_ENCODING = ", ".join(DECODABLE_ENCODINGS)
# Servers use one encoding; a header listing many would otherwise buy a decompressor (and window) each.
MAX_ENCODINGS = 3
# Decoded bytes asked of one decompression step: temporaries stay small whatever the cap.
_STEP_BYTES = 64 * 1024


class _Inflater:
    """One zlib stage: input is held as zlib's unconsumed tail, output only ever produced on demand."""

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        self._obj: zlib._Decompress | None = (
            zlib.decompressobj(zlib.MAX_WBITS | 16) if encoding == "gzip" else None  # deflate: see _start
        )
        self._pending = b""

    @property
    def eof(self) -> bool:
        return self._obj is not None and self._obj.eof

    def feed(self, data: bytes) -> None:
        if not self.eof:  # bytes after the end of the stream are ignored, as httpx does
            self._pending += data

    def _start(self) -> zlib._Decompress | None:
        # "deflate" is zlib-wrapped by the RFC, raw deflate by some servers: the 2-byte zlib header tells.
        if len(self._pending) < 2:
            return None
        cmf, flg = self._pending[0], self._pending[1]
        wrapped = cmf & 0x0F == 8 and (cmf * 256 + flg) % 31 == 0
        return zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)

    def read(self, max_length: int) -> bytes:
        """At most `max_length` decoded bytes from what was fed; b"" when more input is needed."""
        if self._obj is None:
            self._obj = self._start()
            if self._obj is None:
                return b""
        try:
            out = self._obj.decompress(self._pending, max_length)
        except zlib.error as err:
            raise httpx.DecodingError(f"invalid {self._encoding} data ({err})") from None
        self._pending = self._obj.unconsumed_tail
        return out


class BoundedDecoder:
    """Decodes a body in the encodings of its `Content-Encoding` header, handing out bounded pieces.

    `feed` raw bytes, then `read(n)` until it returns b"": nothing buffered is ever larger than one raw
    chunk per stage plus what `read` was asked for.
    """

    def __init__(self, content_encoding: str) -> None:
        names = [e.strip().lower() for e in content_encoding.split(",")]
        names = [e for e in names if e and e != "identity"]
        if len(names) > MAX_ENCODINGS:
            raise httpx.DecodingError(f"too many content encodings ({len(names)})")
        unknown = [e for e in names if e not in DECODABLE_ENCODINGS]
        if unknown:
            raise httpx.DecodingError(f"unsupported content encoding {unknown[0][:32]!r}")
        # Content-Encoding lists encodings in the order applied: decode from the last one.
        self._stages = [_Inflater(e) for e in reversed(names)]
        self._raw = b""

    @property
    def finished(self) -> bool:
        """The stream holding the body itself ended: whatever follows is junk, not worth reading."""
        return bool(self._stages) and self._stages[-1].eof

    def feed(self, data: bytes) -> None:
        if self._stages:
            self._stages[0].feed(data)
        else:
            self._raw += data

    def read(self, max_length: int) -> bytes:
        if not self._stages:
            out, self._raw = self._raw[:max_length], self._raw[max_length:]
            return out
        return self._read_stage(len(self._stages) - 1, max_length)

    def _read_stage(self, index: int, max_length: int) -> bytes:
        stage = self._stages[index]
        while True:
            out = stage.read(max_length)
            if out or index == 0 or stage.eof:
                return out  # at eof, pulling more from upstream would only inflate junk
            upstream = self._read_stage(index - 1, _STEP_BYTES)
            if not upstream:
                return b""
            stage.feed(upstream)


async def read_capped(response: httpx.Response, cap: int) -> tuple[bytes, bool]:
    """The decoded body, at most `cap` bytes, and whether it was longer (reading stopped there)."""
    return await read_decoded(response.aiter_raw(), response.headers.get("content-encoding", ""), cap)


async def read_decoded(raw_body: AsyncIterable[bytes], content_encoding: str, cap: int) -> tuple[bytes, bool]:
    """`read_capped` over raw body bytes in `content_encoding` (bot/postgrest/transport.py reads its own)."""
    decoder = BoundedDecoder(content_encoding)
    # BytesIO hands its buffer over without a copy (getvalue), and small steps keep temporaries small:
    # a 16 MiB cap costs about 16 MiB, not twice that.
    body = io.BytesIO()
    size = 0
    async for raw in raw_body:
        decoder.feed(raw)
        while piece := decoder.read(min(_STEP_BYTES, cap + 1 - size)):
            size += body.write(piece)
            if size > cap:
                body.truncate(cap)
                return body.getvalue(), True
        if decoder.finished:
            break
    return body.getvalue(), False


class UndecodableBody(httpx.DecodingError):
    """An answer arrived, but its body cannot be decoded: an encoding we do not accept, or corrupt data."""

    def __init__(self, message: str, *, status: int, content_encoding: str) -> None:
        super().__init__(message)
        self.status = status
        self.content_encoding = content_encoding  # as the server sent it: untrusted, shown only cut and cleaned


@dataclass(frozen=True)
class CappedAnswer:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes  # decoded, at most the cap
    truncated: bool  # the decoded body was longer than the cap


async def capped_answer(status: int, headers: dict[str, str], raw_body: AsyncIterable[bytes], cap: int) -> CappedAnswer:
    """The one way an answer's body is read: at most `cap` decoded bytes; an undecodable body is UndecodableBody.
    `headers` have lower-case names; the caller closes the body."""
    encoding = headers.get("content-encoding", "")
    try:
        body, truncated = await read_decoded(raw_body, encoding, cap)
    except httpx.DecodingError as err:
        raise UndecodableBody(str(err), status=status, content_encoding=encoding) from None
    return CappedAnswer(status, headers, body, truncated)


async def send_capped(client: httpx.AsyncClient, request: httpx.Request, cap: int) -> CappedAnswer:
    """Send, read at most `cap` decoded bytes, close. Raises httpx.HTTPError like `client.send`."""
    request.headers["Accept-Encoding"] = ACCEPT_ENCODING
    response = await client.send(request, stream=True)
    try:
        headers = {k.lower(): v for k, v in response.headers.items()}
        return await capped_answer(response.status_code, headers, response.aiter_raw(), cap)
    finally:
        await response.aclose()
