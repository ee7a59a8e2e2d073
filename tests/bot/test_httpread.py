"""Bodies are bounded in decoded bytes: a gzip bomb stops at the cap, fast and in bounded memory."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from bot.core.drift import DriftStatus
from bot.core.verdicts import Verdict
from bot.httpread import BoundedDecoder, send_capped
from bot.ops.drift import check_drift
from bot.postgrest.probe import Prober
from bot.postgrest.requests import make_http_client
from tests.conftest import build_settings, targets_for, write_config
from tests.support.gzipbomb import GIB, GzipBomb, Hit, gzip_bomb_server
from tests.support.localhttp import LocalServer

BODY = json.dumps([{"id": i, "title": f"judgment {i}"} for i in range(2000)]).encode()


def decode_all(decoder: BoundedDecoder, data: bytes, *, feed: int = 7, step: int = 100) -> bytes:
    """Feed in small raw pieces and read in small steps, as a slow network would deliver them."""
    out = bytearray()
    for i in range(0, len(data), feed):
        decoder.feed(data[i : i + feed])
        while piece := decoder.read(step):
            assert len(piece) <= step
            out += piece
    return bytes(out)


ENCODED = [
    ("gzip", "gzip", gzip.compress(BODY)),
    ("deflate, zlib-wrapped (RFC)", "deflate", zlib.compress(BODY)),
    ("deflate, raw (some servers)", "deflate", zlib.compress(BODY)[2:-4]),
    ("gzip applied twice", "gzip, gzip", gzip.compress(gzip.compress(BODY))),
    ("upper case, identity listed", "identity, GZIP", gzip.compress(BODY)),
    ("no encoding", "", BODY),
    ("junk after the stream", "gzip", gzip.compress(BODY) + b"junk" * 1000),
    ("junk after the inner stream", "gzip, gzip", gzip.compress(gzip.compress(BODY) + b"\0" * 10_000_000)),
]


@pytest.mark.parametrize(("encoding", "data"), [e[1:] for e in ENCODED], ids=[e[0] for e in ENCODED])
def test_decoder_round_trips_whatever_the_chunking(encoding, data):
    assert decode_all(BoundedDecoder(encoding), data) == BODY
    assert decode_all(BoundedDecoder(encoding), data, feed=len(data), step=1 << 20) == BODY


def test_decoder_is_finished_at_the_end_of_the_body_whatever_follows():
    decoder = BoundedDecoder("gzip, gzip")
    decoder.feed(gzip.compress(gzip.compress(BODY) + bytes(200_000_000)))
    started = time.perf_counter()
    out = bytearray()
    while piece := decoder.read(1 << 20):
        out += piece
    assert out == BODY and decoder.finished
    assert time.perf_counter() - started < 0.1  # the 200 MB of junk after the body are not inflated


@pytest.mark.parametrize("encoding", ["gzip", "gzip, gzip"])
def test_decoder_hands_out_no_more_than_asked_from_a_bomb(encoding):
    bomb = b"".join(GzipBomb(GIB).chunks())  # ~1 MB that inflate to 1 GiB
    if encoding == "gzip, gzip":
        bomb = gzip.compress(bomb)  # a few KB
    decoder = BoundedDecoder(encoding)
    decoder.feed(bomb[: 64 * 1024])  # one network chunk
    started = time.perf_counter()
    assert len(decoder.read(1000)) == 1000
    assert len(decoder.read(256 * 1024)) == 256 * 1024
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    ("encoding", "data", "message"),
    [
        ("br", b"\x1b\x00", "unsupported content encoding 'br'"),
        ("zstd", b"(\xb5/\xfd", "unsupported content encoding 'zstd'"),
        ("gzip, " * 4, b"", "too many content encodings"),
        ("gzip", b"\x1f\x8b\x08\x00" + b"\xff" * 64, "invalid gzip data"),
        ("deflate", b"\x78\x9c" + b"\xff" * 64, "invalid deflate data"),
    ],
    ids=["brotli", "zstd", "too many", "corrupt gzip", "corrupt deflate"],
)
def test_undecodable_bodies_are_decoding_errors(encoding, data, message):
    with pytest.raises(httpx.DecodingError, match=message):
        decoder = BoundedDecoder(encoding)
        decoder.feed(data)
        decoder.read(1024)


async def test_bomb_over_http_is_cut_at_the_cap_and_only_decodable_encodings_are_asked_for():
    seen: list[Hit] = []
    async with gzip_bomb_server(GzipBomb(), hits=seen) as url, make_http_client() as client:
        started = time.perf_counter()
        answer = await send_capped(client, client.build_request("GET", f"{url}/t"), 256 * 1024)
    assert answer.status == 200 and answer.truncated and answer.body == bytes(256 * 1024)
    assert time.perf_counter() - started < 2
    assert [(path, headers.get("Accept-Encoding")) for _, path, headers in seen] == [("/t", "gzip, deflate")]


async def test_small_compressed_answer_is_read_whole():
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(BODY), headers={"Content-Encoding": "gzip"})

    async with LocalServer.catch_all(handler) as url, make_http_client() as client:
        answer = await send_capped(client, client.build_request("GET", url), len(BODY))
    assert answer.body == BODY and not answer.truncated


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("br", b"\x1b\x03\x00\xf8\xa5\x02"),
        ("zstd", b"\x28\xb5\x2f\xfd\x00\x58\x11\x00\x00"),
        ("gzip", gzip.compress(BODY)[:40] + b"corrupt" * 10),
    ],
    ids=["brotli", "zstd", "corrupt gzip"],
)
async def test_an_undecodable_answer_is_unexpected_and_says_so(encoding, body):
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Encoding": encoding})

    async with LocalServer.catch_all(handler) as url, make_http_client() as client:
        with pytest.raises(httpx.DecodingError):
            await send_capped(client, client.build_request("GET", url), 1024 * 1024)
        settings = build_settings({"dev": {"rest_url": url, "probe_tables": ["t"]}})
        (report,) = await Prober(client).probe_many(targets_for(settings, {}))
    assert report.verdict is Verdict.UNEXPECTED
    assert {(c.verdict, c.status, c.detail) for c in report.checks} == {
        (Verdict.UNEXPECTED, 200, f"response body could not be decoded (Content-Encoding: {encoding})")
    }
    assert report.explanation.endswith(f"could not be decoded (Content-Encoding: {encoding}).")


def cli_check_peak_rss_kb(config: Path) -> tuple[int, dict, float]:
    """Run `python -m bot.cli check --json` in its own process: its peak RSS, its report, its wall time."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "--config", str(config), "check", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 1  # reaped by wait4
    return usage.ru_maxrss, json.loads(out), time.perf_counter() - started


ENV = {"probe_tables": [{"name": "t", "columns": ["a"]}], "timeouts": {"connect_s": 2, "read_s": 5, "total_s": 8}}


async def test_probe_of_a_gzip_bomb_is_unexpected_quickly_and_in_bounded_memory(tmp_path):
    """Root, data, cache and columns checks each get a 2 GiB bomb; before the fix each took ~64 MB."""

    async def small(request: web.Request) -> web.Response:
        return web.json_response([])

    async with gzip_bomb_server(GzipBomb()) as bomb_url, LocalServer.catch_all(small) as small_url:
        idle_config = write_config(tmp_path / "idle.yaml", {"dev": {"rest_url": small_url, **ENV}})
        bomb_config = write_config(tmp_path / "bomb.yaml", {"dev": {"rest_url": bomb_url, **ENV}})
        idle_kb, idle, _ = await asyncio.to_thread(cli_check_peak_rss_kb, idle_config)
        bomb_kb, report, seconds = await asyncio.to_thread(cli_check_peak_rss_kb, bomb_config)
    assert idle["environments"][0]["verdict"] == "healthy"
    (env,) = report["environments"]
    assert env["verdict"] == "unexpected"
    assert {c["name"]: c["detail"] for c in env["checks"] if c["verdict"] == "unexpected"} == {
        "data:t": "200 response body too large",
        "cache:t": "200 response body too large",
        "columns:t": "200 response body too large",
    }
    assert seconds < 8
    assert (bomb_kb - idle_kb) / 1024 < 40, f"peak RSS grew by {(bomb_kb - idle_kb) / 1024:.0f} MB"


async def test_drift_against_a_gzip_bomb_is_unknown_never_in_sync(make_stack):
    stack = make_stack()
    async with gzip_bomb_server(GzipBomb()) as url:
        settings = build_settings({"env": stack.env_config(rest_url=url)})
        (target,) = targets_for(settings, stack.env_vars, need_dsn=True)
        async with make_http_client() as client:
            report = await check_drift(client, target, max_body_bytes=1 << 20, connect_timeout=3, command_timeout=3)
    assert report.status is DriftStatus.UNKNOWN, report.summary
    assert any("larger than 1048576 bytes" in note for note in report.notes), report.notes
