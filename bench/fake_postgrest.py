"""Many cheap PostgREST stand-ins for the scale benchmark: every request on every port gets `200 []`.

A path that starts with a number (`/0.625/judgments`) is answered after that many seconds: the CLI sweep's
environments answering after 0-800 ms. Unlike one aiohttp app serving every port (bench/slow_server.py, ~1 ms
of CPU per request in one process), answering 300 requests at once here costs a few ms, so the sweep measures
the client, not a server's queue (100 real environments are 100 servers).

One asyncio protocol per connection, no web framework, so thousands of environments' probes cost this process
little; it runs in its own process, so its CPU never counts against the monitor measured. Each port is an
origin of its own, as each of thousands of projects would be. Prints `ready` once every port listens.

Run: `python -m bench.fake_postgrest FIRST_PORT COUNT`.
"""

from __future__ import annotations

import asyncio
import sys

BODY = b"[]"
ANSWER = (
    b"HTTP/1.1 200 OK\r\nServer: postgrest/12.0.2\r\nContent-Type: application/json; charset=utf-8\r\n"
    b"Content-Range: 0-0/*\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
)


class Answer(asyncio.Protocol):
    """HTTP/1.1 keep-alive: each request head (and its Content-Length body) gets ANSWER."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = 0
            at = head.find(b"content-length:")
            if at >= 0:
                length = int(head[at + 15 :].split(b"\r\n", 1)[0])
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            assert self.transport is not None
            delay = answer_delay(head)
            if delay:
                asyncio.get_running_loop().call_later(delay, self.answer)
            else:
                self.transport.write(ANSWER)

    def answer(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(ANSWER)


def answer_delay(head: bytes) -> float:
    """Seconds from the first path segment (`GET /0.625/t HTTP/1.1`), 0 when it is not a number."""
    target = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b"/"
    first = target.split(b"/", 2)[1] if target.startswith(b"/") else b""
    try:
        return max(0.0, float(first))
    except ValueError:
        return 0.0


async def serve(first_port: int, count: int) -> None:
    loop = asyncio.get_running_loop()
    servers = [
        await loop.create_server(Answer, "127.0.0.1", port, backlog=256)
        for port in range(first_port, first_port + count)
    ]
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), int(sys.argv[2])))
