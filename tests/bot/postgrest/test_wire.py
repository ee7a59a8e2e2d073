"""The shared client's own HTTP/1.1 transport against servers that misbehave byte by byte: every answer is bounded,
every failure is the httpx error the probe classifies, and a connection is reused only after a complete answer."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from bot.postgrest.requests import PER_ORIGIN_LIMITS, OriginPools, make_http_client, send

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]"


class Scripted:
    """A raw TCP server on a free loopback port: `handler` writes exactly the bytes a test wants."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head)
        return head

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(Exception, asyncio.CancelledError):  # a test's end cancels a handler still waiting
            await self.handler(reader, writer)
        writer.close()


@contextlib.asynccontextmanager
async def scripted(
    make: Callable[[Scripted], Handler], tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[Scripted, str]]:
    server = Scripted(lambda r, w: asyncio.sleep(0))
    server.handler = make(server)
    listener = await asyncio.start_server(server._serve, "127.0.0.1", 0, ssl=tls)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield server, f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        listener.close()


def get(client: httpx.AsyncClient, url: str, read_s: float = 10.0, method: str = "GET") -> Awaitable:  # type: ignore[type-arg]
    timeout = httpx.Timeout(connect=5.0, read=read_s, write=5.0, pool=5.0)
    return send(client, client.build_request(method, url, timeout=timeout), 64 * 1024)


async def test_keep_alive_reuses_the_connection_after_a_complete_answer() -> None:
    def make(server: Scripted) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await server.read_request(reader)
                writer.write(OK)

        return handler

    async with scripted(make) as (server, url), make_http_client() as client:
        for _ in range(5):
            answer = await get(client, f"{url}/t")
            assert (answer.status, answer.body) == (200, b"[]")
        assert server.connections == 1


async def test_chunked_and_gzip_bodies_are_decoded_and_a_huge_one_is_cut_at_the_cap() -> None:
    small = gzip.compress(b'[{"id":1}]')
    bomb = gzip.compress(b"0" * (50 * 1024 * 1024))  # ~50 KB on the wire, 50 MB decoded

    def chunked(data: bytes) -> bytes:
        parts = [data[i : i + 700] for i in range(0, len(data), 700)]
        return b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\nX-Trailer: y\r\n\r\n"

    def make(server: Scripted) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                head = await server.read_request(reader)
                body = bomb if b"/bomb" in head else small
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(body)
                )

        return handler

    async with scripted(make) as (server, url), make_http_client() as client:
        assert (await get(client, f"{url}/small")).body == b'[{"id":1}]'
        assert (await get(client, f"{url}/small")).body == b'[{"id":1}]'
        assert server.connections == 1  # the chunked answers were read to their end: reused
        capped = await get(client, f"{url}/bomb")
        assert capped.truncated and len(capped.body) == 64 * 1024
        assert (await get(client, f"{url}/small")).status == 200
        assert server.connections == 2  # the body left half read closed that connection


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", httpx.RemoteProtocolError),  # garbage status line
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (200 * 1024), httpx.RemoteProtocolError),  # endless headers
        (b"HTTP/1.1 200 OK\r\nbad header line\r\n\r\n", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n[1,2", httpx.RemoteProtocolError),  # early close
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n[]", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\n[]", httpx.DecodingError),
        (b"", httpx.RemoteProtocolError),  # closed without a byte
    ],
)
async def test_a_broken_answer_is_the_httpx_error_the_probe_classifies(answer: bytes, error: type[Exception]) -> None:
    def make(server: Scripted) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(answer)
            await writer.drain()

        return handler

    async with scripted(make) as (server, url), make_http_client() as client:
        with pytest.raises(error):
            await get(client, f"{url}/t")
        with pytest.raises(error):  # the broken connection was not reused: a new one failed the same way
            await get(client, f"{url}/t")
        assert server.connections == 2


async def test_a_hung_server_times_out_on_time_and_another_origin_is_answered_meanwhile() -> None:
    def hang(server: Scripted) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            await asyncio.sleep(60)

        return handler

    def fine(server: Scripted) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(OK)

        return handler

    async with scripted(hang) as (_, slow), scripted(fine) as (_, quick), make_http_client() as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        hung = asyncio.create_task(get(client, f"{slow}/t", read_s=1.0))
        assert (await asyncio.wait_for(get(client, f"{quick}/t"), 10)).status == 200
        with pytest.raises(httpx.ReadTimeout):
            await hung
        assert 0.9 <= loop.time() - started < 5


async def test_a_kept_connection_the_server_closed_is_replaced_for_a_get_but_a_post_is_never_sent_twice() -> None:
    def make(server: Scripted) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(OK)  # keep-alive by HTTP/1.1's default, then gone without a word

        return handler

    async with scripted(make) as (server, url), make_http_client() as client:
        assert (await get(client, f"{url}/a")).status == 200
        await asyncio.sleep(0.05)  # the server's close may or may not have arrived: both must work
        assert (await get(client, f"{url}/b")).status == 200
        assert server.connections == 2
        posted = len(server.requests)
        with contextlib.suppress(httpx.HTTPError):
            await get(client, f"{url}/c", method="POST")
        assert len(server.requests) - posted <= 1


async def test_cancelled_requests_give_their_connections_back() -> None:
    release = asyncio.Event()

    all_in = asyncio.Event()

    def make(server: Scripted) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            if len(server.requests) >= cap:
                all_in.set()
            await release.wait()
            writer.write(OK)

        return handler

    cap = PER_ORIGIN_LIMITS.max_connections
    assert cap is not None
    async with scripted(make) as (_, url), make_http_client() as client:
        stuck = [asyncio.create_task(get(client, f"{url}/t")) for _ in range(cap + 3)]
        await asyncio.wait_for(all_in.wait(), 10)  # every connection the origin may have is taken
        for task in stuck:
            task.cancel()
        await asyncio.gather(*stuck, return_exceptions=True)
        release.set()
        answers = await asyncio.wait_for(asyncio.gather(*(get(client, f"{url}/t") for _ in range(cap))), 10)
        assert [a.status for a in answers] == [200] * cap


async def test_header_injection_is_refused_before_anything_is_sent() -> None:
    def make(server: Scripted) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(OK)

        return handler

    async with scripted(make) as (server, url), make_http_client() as client:
        request = client.build_request("GET", f"{url}/t", headers={"Accept-Profile": "api\r\nX-Evil: 1"})
        with pytest.raises(httpx.LocalProtocolError):
            await send(client, request, 1024)
        assert server.requests == []


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subject = ["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", *subject, *files],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_https_verifies_the_server_by_its_certificate_and_name(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)

    def make(server: Scripted) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await server.read_request(reader)
                writer.write(OK)

        return handler

    def trusting() -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(cert))

    async with scripted(make, server_tls) as (_, a), scripted(make, server_tls) as (_, b):
        pools = OriginPools(PER_ORIGIN_LIMITS, trusting)
        async with httpx.AsyncClient(transport=pools) as client:
            for url in (a, b, a):
                assert (await client.get(f"{url}/t")).status_code == 200
            assert pools.origins == 2
        # The real client verifies with the CA bundle: a self-signed server is refused, never read.
        async with make_http_client() as real:
            with pytest.raises(httpx.ConnectError):
                await get(real, f"{a}/t")
