"""What a recovery asks PostgREST for, read from PostgREST's own request log (log-level info logs every request).

After the NOTIFY the operator re-checks only the stale objects, then confirms with one whole probe whose root
check is OPTIONS /: PostgREST never builds its OpenAPI document for a recovery (GET / costs ~1.6 s at 5,000
tables, see bench/README.md).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter

from bot.core.recovery import Outcome, StepKind
from bot.core.verdicts import Verdict
from bot.ops.recovery import RecoveryOperator
from bot.postgrest.probe import Prober
from bot.postgrest.requests import make_http_client
from tests.conftest import build_settings, targets_for

_REQUEST = re.compile(r'"([A-Z]+) (/[^ ?]*)\S* HTTP/1\.1" (\d{3})')


def logged(stack, paths: set[str]) -> Counter[tuple[str, str]]:
    """(method, path) of every logged API request to one of `paths` (the query string dropped)."""
    text = stack.postgrest.logfile.read_text(errors="replace")
    return Counter((m, p) for m, p, _ in _REQUEST.findall(text) if p in paths)


async def wait_logged(stack, paths: set[str], key: tuple[str, str], count: int) -> Counter[tuple[str, str]]:
    """The log once it holds `count` requests `key` (PostgREST writes its log asynchronously)."""
    deadline = time.monotonic() + 10
    while (seen := logged(stack, paths))[key] < count:
        assert time.monotonic() < deadline, f"{key} logged {seen[key]} times, expected {count}: {seen}"
        await asyncio.sleep(0.05)
    return seen


async def test_rechecks_after_the_notify_ask_only_for_the_stale_table_and_never_get_the_root(make_stack):
    stack = make_stack()
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    settings = build_settings({"env": stack.env_config(probe_tables=["orders"])})
    (target,) = targets_for(settings, stack.env_vars, need_dsn=True)
    steps = []
    async with make_http_client() as client:
        result = await RecoveryOperator(Prober(client), settings.recovery).recover(target, on_step=steps.append)
    assert result.outcome is Outcome.RECOVERED, result.reason
    assert result.verdict_after is Verdict.HEALTHY and result.notify_sent

    rechecks = [s for s in steps if s.kind is StepKind.RECHECK]
    assert len(rechecks) == result.attempts >= 2
    *targeted, confirming = rechecks
    assert all([c.name for c in s.report.checks] == ["cache:orders"] for s in targeted)
    assert "whole probe" in confirming.message and confirming.report.healthy
    # The first probe and the confirming one each ask once for the root and the data; every re-check in between
    # asks only OPTIONS /orders.
    paths = {"/", "/orders"}
    seen = await wait_logged(stack, paths, ("OPTIONS", "/orders"), 1 + len(targeted) + 1)
    assert seen == Counter({("OPTIONS", "/orders"): len(targeted) + 2, ("OPTIONS", "/"): 2, ("GET", "/orders"): 2}), (
        seen
    )
    assert ("GET", "/") not in seen and ("HEAD", "/") not in seen


async def test_the_cheap_root_check_still_sees_a_schema_cache_that_cannot_load(make_stack):
    stack = make_stack(steady_pgrst002=True)
    stack.sql(f"ALTER ROLE authenticator IN DATABASE {stack.db} SET statement_timeout = '1ms'")
    stack.notify()
    await stack.wait_for_code("PGRST002")
    settings = build_settings({"env": stack.env_config(probe_tables=[])})
    (target,) = targets_for(settings, stack.env_vars)
    async with make_http_client() as client:
        report = await Prober(client).probe(target, only={"root"})
    (root,) = report.checks
    assert (root.method, root.status, root.code) == ("OPTIONS", 503, "PGRST002")
    assert report.verdict is Verdict.SCHEMA_CACHE_UNAVAILABLE
