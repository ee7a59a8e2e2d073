"""The Management API client against the local fake: answers, 401/403/429/5xx, bounded reads, timeouts, cache."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from pydantic import SecretStr

from bot.config import resolve_targets
from bot.core.project import ServiceHealth
from bot.postgrest.requests import make_http_client
from bot.supabase.management import ManagementClient, ManagementError, RateLimiter
from bot.supabase.watch import ProjectWatch
from tests.conftest import build_settings
from tests.support.supabase_api import ALL_SCOPES, READ, FakeManagementApi, restarts_postgrest

REF = "abcdefghijklmnopqrst"
TOKEN = "sbp_test_token_0123456789abcdef"
READ_ONLY = "sbp_read_only_token_0123456789"
NO_SCOPE = "sbp_no_scope_token_0123456789"


@pytest.fixture
async def api() -> AsyncIterator[FakeManagementApi]:
    tokens = {TOKEN: ALL_SCOPES, READ_ONLY: frozenset({READ}), NO_SCOPE: frozenset()}
    async with FakeManagementApi(tokens=tokens, rate_limit=5) as fake:
        fake.add_project(REF)
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with make_http_client() as client:
        yield client


def client(http: httpx.AsyncClient, api: FakeManagementApi, token: str = TOKEN, **kw) -> ManagementClient:
    return ManagementClient(http, api.url, SecretStr(token), limiter=kw.pop("limiter", RateLimiter()), **kw)


async def test_status_health_and_postgrest_settings_as_documented(api, http) -> None:
    api.projects[REF].set_status("ACTIVE_UNHEALTHY", db="ACTIVE_HEALTHY", pooler="ACTIVE_HEALTHY")
    api.projects[REF].service_errors["rest"] = "connection refused"
    api.projects[REF].postgrest["db_schema"] = "public, storage, graphql_public"
    c = client(http, api)
    assert await c.project_status(REF) == "ACTIVE_UNHEALTHY"
    assert await c.service_health(REF) == (
        ServiceHealth("rest", False, "ACTIVE_UNHEALTHY", "connection refused"),
        ServiceHealth("db", True, "ACTIVE_HEALTHY"),
        ServiceHealth("pooler", True, "ACTIVE_HEALTHY"),
    )
    settings = await c.postgrest_settings(REF)
    assert settings.db_schema == ("public", "storage", "graphql_public") and settings.max_rows == 1000
    assert settings.db_extra_search_path == ("public", "extensions")
    assert api.calls("GET", "/health") == [f"/v1/projects/{REF}/health?services=rest&services=db&services=pooler"]


async def test_a_bad_token_says_the_token_lacks_access(api, http) -> None:
    with pytest.raises(ManagementError) as err:
        await client(http, api, "sbp_wrong_token_0123456789").project_status(REF)
    assert err.value.kind == ManagementError.AUTH and err.value.status == 401
    assert "projects:read" in str(err.value) and "sbp_wrong" not in str(err.value)


async def test_a_token_without_the_scope_is_refused_with_the_scope_named(api, http) -> None:
    with pytest.raises(ManagementError) as err:
        await client(http, api, NO_SCOPE).project_status(REF)
    assert err.value.status == 403 and "needs projects:read" in str(err.value)
    with pytest.raises(ManagementError) as err:
        await client(http, api, READ_ONLY).restart(REF)
    assert err.value.status == 403 and "needs projects:write" in str(err.value)
    assert api.projects[REF].status == "ACTIVE_HEALTHY"  # nothing restarted


async def test_429_waits_as_told_and_sends_nothing_until_then(api, http) -> None:
    c = client(http, api)
    for _ in range(5):
        await c.project_status(REF)
    with pytest.raises(ManagementError) as err:
        await c.project_status(REF)
    assert err.value.kind == ManagementError.RATE_LIMITED and err.value.status == 429
    assert err.value.retry_after_s is not None and 50 <= err.value.retry_after_s <= 60
    sent = len(api.requests)
    for _ in range(3):  # blocked by our own limiter: the API is not hammered
        with pytest.raises(ManagementError) as again:
            await c.project_status(REF)
        assert again.value.kind == ManagementError.RATE_LIMITED and again.value.status is None
    assert len(api.requests) == sent


async def test_our_own_limiter_stays_below_the_limit(api, http) -> None:
    c = client(http, api, limiter=RateLimiter(per_minute=3))
    for _ in range(3):
        await c.project_status(REF)
    with pytest.raises(ManagementError) as err:
        await c.project_status(REF)
    assert err.value.kind == ManagementError.RATE_LIMITED and err.value.status is None  # never sent
    assert len(api.requests) == 3


async def test_a_server_error_is_reported_and_not_retried(api, http) -> None:
    api.fail_next(503)
    with pytest.raises(ManagementError) as err:
        await client(http, api).project_status(REF)
    assert err.value.kind == ManagementError.SERVER and "503" in str(err.value) and "not retried" in str(err.value)
    assert len(api.requests) == 1


async def test_a_huge_answer_is_not_read_past_the_cap(api, http) -> None:
    api.huge_body_bytes = 2 * 1024 * 1024
    with pytest.raises(ManagementError) as err:
        await client(http, api, max_body_bytes=64 * 1024).project_status(REF)
    assert err.value.kind == ManagementError.ANSWER and "larger than 65536 bytes" in str(err.value)


async def test_a_hung_api_times_out(api, http) -> None:
    api.delay_s = 1.0
    slow = client(http, api, timeout=httpx.Timeout(0.3), budget_s=1.0)
    with pytest.raises(ManagementError) as err:
        await slow.project_status(REF)
    assert err.value.kind == ManagementError.NETWORK and "in time" in str(err.value)


async def test_restart_and_restore_follow_the_documented_states(api, http) -> None:
    c = client(http, api)
    await c.restart(REF)
    assert api.projects[REF].status == "RESTARTING"
    api.projects[REF].set_status("INACTIVE")
    await c.restore(REF)
    assert api.projects[REF].status == "RESTORING"


def watch_for(api: FakeManagementApi, http: httpx.AsyncClient, **supabase) -> ProjectWatch:
    settings = build_settings(
        {
            "dev": {
                "rest_url": "http://127.0.0.1:9",
                "supabase": {"project_ref": REF, "access_token": {"env": "SB"}, "api_url": api.url, **supabase},
            }
        }
    )
    watch = ProjectWatch.build(http, resolve_targets(settings, environ={"SB": TOKEN}))
    assert watch is not None
    return watch


async def test_the_watch_caches_and_never_logs_the_token(api, http, caplog) -> None:
    watch = watch_for(api, http, unhealthy_cache_s=30, healthy_cache_s=300)
    caplog.set_level(logging.DEBUG)
    first = await watch.state("dev", healthy=False)
    assert first is not None and first.status == "ACTIVE_HEALTHY" and len(first.services) == 3
    for _ in range(5):
        assert await watch.state("dev", healthy=False) is first  # within 30 s: cached
    assert len(api.requests) == 2  # one status, one health
    real_now = watch.now
    watch.now = lambda: real_now() + timedelta(seconds=31)
    assert await watch.state("dev", healthy=True) is first  # /status's slow refresh: 300 s
    await watch.state("dev", healthy=False)  # a failing probe wants a fresh one
    assert len(api.requests) == 4
    api.tokens.clear()  # now every call is a 401
    watch.now = lambda: real_now() + timedelta(seconds=62)
    kept = await watch.state("dev", healthy=False)  # the last known state, marked as not refreshed
    assert kept is not None and kept.status == "ACTIVE_HEALTHY" and "projects:read" in (kept.error or "")
    watch.now = lambda: real_now() + timedelta(seconds=400)  # too old to keep: unknown
    unknown = await watch.state("dev", healthy=False)
    assert unknown is not None and unknown.status is None and "projects:read" in (unknown.error or "")
    assert TOKEN not in caplog.text and "401" in caplog.text


async def test_a_restart_in_progress_keeps_its_start_across_refreshes(api, http) -> None:
    watch = watch_for(api, http, unhealthy_cache_s=5)
    api.projects[REF].set_status("RESTARTING")
    first = await watch.state("dev", healthy=False)
    assert first is not None and first.transition_since is not None
    real_now = watch.now
    watch.now = lambda: real_now() + timedelta(seconds=6)
    api.projects[REF].set_status("COMING_UP")
    later = await watch.state("dev", healthy=False)
    assert later is not None and later.status == "COMING_UP" and later.transition_since == first.transition_since


async def test_a_schema_mismatch_is_a_startup_warning(api, http, caplog) -> None:
    api.projects[REF].postgrest["db_schema"] = "public, api"
    watch = watch_for(api, http)
    settings = build_settings({"dev": {"rest_url": "http://127.0.0.1:9"}})
    target = resolve_targets(settings, environ={})[0]
    caplog.set_level(logging.WARNING)
    note = await watch.config_check(target)
    assert note is not None and "not in exposed_schemas: api" in note
    assert "dev: PostgREST's db_schema is public, api" in caplog.text
    await watch.config_check(target)
    assert caplog.text.count("db_schema is public, api") == 1  # said once, not at every check


async def test_a_failed_refresh_keeps_the_last_known_state_and_says_so(api, http) -> None:
    watch = watch_for(api, http, unhealthy_cache_s=5)
    api.projects[REF].set_status("RESTARTING")
    first = await watch.state("dev", healthy=False)
    assert first is not None and first.in_transition
    api.fail_next(500)
    real_now = watch.now
    watch.now = lambda: real_now() + timedelta(seconds=6)
    kept = await watch.state("dev", healthy=False)
    assert kept is not None and kept.status == "RESTARTING" and kept.transition_since == first.transition_since
    assert kept.error is not None and kept.error.startswith("not refreshed: 500")


async def test_the_fakes_restart_really_restarts_the_local_postgrest(api, http, make_stack) -> None:
    stack = make_stack()
    api.on_restart = restarts_postgrest(stack.postgrest)
    before = stack.postgrest.proc
    await client(http, api).restart(REF)
    seen = [api.projects[REF].status]
    for _ in range(500):  # follow the fake's state as the restart goes
        if api.projects[REF].status != seen[-1]:
            seen.append(api.projects[REF].status)
        if seen[-1] == "ACTIVE_HEALTHY":
            break
        await asyncio.sleep(0.02)
    assert seen == ["RESTARTING", "COMING_UP", "ACTIVE_HEALTHY"]
    assert before is not None and before.poll() is not None and stack.postgrest.proc is not before  # really restarted
    assert (await http.get(f"{stack.postgrest.url}/judgments")).status_code == 200  # answering again
