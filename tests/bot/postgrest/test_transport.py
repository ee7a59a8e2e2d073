"""The shared HTTP client's transport: its cost does not grow with the environments, and one origin's pool is
capped, so an environment that hangs every connection cannot starve another."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
from aiohttp import web

from bot.config import parse_settings
from bot.postgrest.requests import PER_ORIGIN_LIMITS, OriginPools, make_http_client
from tests.support.localhttp import LocalServer


async def ok(request: web.Request) -> web.Response:
    return web.json_response([])


async def test_one_transport_whatever_the_number_of_environments() -> None:
    async with LocalServer.catch_all(ok) as a, LocalServer.catch_all(ok) as b, LocalServer.catch_all(ok) as c:
        envs = {f"e{i}": {"rest_url": f"http://127.0.0.{1 + i % 200}:{7000 + i}"} for i in range(500)}
        envs |= {"a": {"rest_url": a}, "b": {"rest_url": b}, "c": {"rest_url": c}}
        settings = parse_settings({"environments": envs})
        async with make_http_client(settings.environments.values()) as client, httpx.AsyncClient() as plain:
            # No mount per origin: httpx scans every mount on every request.
            assert len(client._mounts) == len(plain._mounts)
            transport = client._transport_for_url(httpx.URL(a))
            assert isinstance(transport, OriginPools)
            assert client._transport_for_url(httpx.URL("http://127.0.0.200:7499/x")) is transport
            for url in (a, b, c, a, b, c):
                assert (await client.get(f"{url}/t")).status_code == 200
            # A pool per origin asked, not per environment configured.
            assert transport.origins == 3


async def test_an_origin_that_holds_every_connection_leaves_another_served() -> None:
    release = asyncio.Event()
    in_flight: set[object] = set()
    most = 0
    full = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        nonlocal most
        peer = request.transport.get_extra_info("peername") if request.transport else None
        in_flight.add(peer)
        most = max(most, len(in_flight))
        if len(in_flight) >= PER_ORIGIN_LIMITS.max_connections:
            full.set()
        await release.wait()
        in_flight.discard(peer)
        return web.json_response([])

    cap = PER_ORIGIN_LIMITS.max_connections
    async with LocalServer.catch_all(hang) as slow, LocalServer.catch_all(ok) as other:
        async with make_http_client() as client:
            waiting = [asyncio.create_task(client.get(f"{slow}/t", timeout=30)) for _ in range(cap + 4)]
            await asyncio.wait_for(full.wait(), 20)
            # The slow origin's pool is full and 4 requests queue in it; the other origin is not queued behind.
            answer = await asyncio.wait_for(client.get(f"{other}/t", timeout=30), 10)
            assert answer.status_code == 200
            assert most == cap, f"{most} connections to one origin, cap {cap}"
            release.set()
            assert [r.status_code for r in await asyncio.gather(*waiting)] == [200] * (cap + 4)


def test_the_open_files_limit_is_raised_for_thousands_of_kept_connections() -> None:
    # In a child: the limit is the process's. It starts at 1,024, as under many service managers.
    code = (
        "import resource\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))\n"
        "from bot.postgrest.transport import OPEN_FILES_WANTED, OriginPools\n"
        "OriginPools()\n"
        "now = resource.getrlimit(resource.RLIMIT_NOFILE)[0]\n"
        "print(now == (OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else min(OPEN_FILES_WANTED, hard)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "True"
