"""Embeds in probe selects against a real PostgreSQL 15 + PostgREST 12.0.2: stale relationship or config error."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from bot.core.diagnosis import Diagnosis
from bot.core.foreign_keys import ForeignKey, embed_select
from bot.core.recovery import Outcome
from bot.core.verdicts import Verdict
from bot.ops.recovery import RecoveryOperator
from bot.postgres.diagnose import diagnose
from bot.postgres.relationships import embedded_pairs
from bot.postgrest.probe import Prober
from bot.postgrest.requests import make_http_client
from tests.bot.postgrest.test_schemas import reload_until_served
from tests.conftest import build_settings, targets_for

TABLES = """
CREATE TABLE public.authors (id int primary key, name text);
CREATE TABLE public.books (id int primary key, author_id int, title text);
CREATE TABLE public.tags (id int primary key, label text);
GRANT SELECT ON public.authors, public.books, public.tags TO anon, authenticated;
"""
FK = "ALTER TABLE public.books ADD CONSTRAINT books_author_fk FOREIGN KEY (author_id) REFERENCES public.authors (id);"
BOOKS_WITH_AUTHORS = [{"name": "books", "select": "id,authors(id)"}]


async def cached(stack, sql: str) -> None:
    """Run DDL and wait until PostgREST's cache has the tables (a reload takes ~0.2 s here)."""
    stack.sql(sql)
    stack.notify()
    async with httpx.AsyncClient(base_url=stack.postgrest.url, timeout=3) as client:
        for _ in range(50):
            if (await client.options("/tags")).status_code == 200:
                return
            await asyncio.sleep(0.1)
    raise AssertionError("the reload did not happen")


def target_of(stack, **overrides):
    settings = build_settings({"env": stack.env_config(**overrides)})
    (target,) = targets_for(settings, stack.env_vars, need_dsn=True)
    return settings, target


async def probe_and_diagnose(stack, **overrides) -> Diagnosis:
    _, target = target_of(stack, **overrides)
    async with make_http_client() as client:
        report = await Prober(client).probe(target)
    return await diagnose(target, report, connect_timeout=3, command_timeout=5)


async def test_embed_of_a_foreign_key_added_behind_the_caches_back_is_stale(make_stack):
    stack = make_stack()
    await cached(stack, TABLES)
    stack.sql(FK)
    diagnosis = await probe_and_diagnose(stack, probe_tables=BOOKS_WITH_AUTHORS)
    assert diagnosis.verdict is Verdict.STALE_SCHEMA_CACHE
    data = next(c for c in diagnosis.report.checks if c.name == "data:books")
    assert (data.status, data.code) == (400, "PGRST200")
    cause = diagnosis.cause
    assert cause is not None and cause.cause == "stale_relationship"
    assert "public.books and public.authors are joined in the database (books_author_fk)" in cause.evidence
    assert "/reload" in cause.fix


async def test_embed_nothing_joins_is_a_config_error_in_words_not_a_stale_cache(make_stack):
    stack = make_stack()
    await cached(stack, TABLES + FK)
    diagnosis = await probe_and_diagnose(stack, probe_tables=[{"name": "books", "select": "id,tags(id)"}])
    assert diagnosis.verdict is Verdict.MISSING_IN_DATABASE
    cause = diagnosis.cause
    assert cause is not None and cause.cause == "relationship_missing"
    assert "config error" in cause.title
    assert "no foreign key joins public.books and public.tags" in cause.evidence
    assert "fix `select` of probe table books" in cause.fix and "a reload cannot help" in cause.fix


async def test_many_to_many_through_a_junction_table_counts_as_a_relationship(make_stack):
    stack = make_stack()
    await cached(stack, TABLES)
    stack.sql(
        "CREATE TABLE public.book_tags (book_id int references public.books (id), "
        "tag_id int references public.tags (id), primary key (book_id, tag_id));"
        "GRANT SELECT ON public.book_tags TO anon;"
    )
    diagnosis = await probe_and_diagnose(stack, probe_tables=[{"name": "books", "select": "id,tags(id)"}])
    assert diagnosis.verdict is Verdict.STALE_SCHEMA_CACHE
    assert diagnosis.cause is not None and "junction book_tags" in diagnosis.cause.evidence


async def test_fix_recovers_a_stale_embed_with_one_notify(make_stack):
    stack = make_stack()
    await cached(stack, TABLES)
    stack.sql(FK)
    settings, target = target_of(stack, probe_tables=BOOKS_WITH_AUTHORS)
    async with make_http_client() as client:
        result = await RecoveryOperator(Prober(client), settings.recovery).recover(target)
    assert result.outcome is Outcome.RECOVERED, result.reason
    assert result.verdict_before is Verdict.STALE_SCHEMA_CACHE and result.verdict_after is Verdict.HEALTHY
    assert result.notify_sent
    assert result.diagnosis is not None and result.diagnosis.cause is not None
    assert result.diagnosis.cause.cause == "stale_relationship"


async def test_fix_sends_no_notify_for_an_embed_nothing_joins(make_stack):
    stack = make_stack()
    await cached(stack, TABLES)
    settings, target = target_of(stack, probe_tables=[{"name": "books", "select": "id,tags(id)"}])
    async with make_http_client() as client:
        result = await RecoveryOperator(Prober(client), settings.recovery).recover(target)
    assert result.outcome is Outcome.ESCALATED and not result.notify_sent
    assert result.verdict_after is Verdict.MISSING_IN_DATABASE
    assert "config error" in (result.reason or "")


async def test_stale_embed_in_the_second_exposed_schema_is_stale_and_fix_recovers_it(make_stack):
    # The same two tables in public have no foreign key: looked up in the wrong schema, the embed would read as
    # a config error and no NOTIFY would be sent.
    stack = make_stack(extra_env={"PGRST_DB_SCHEMAS": "public,extra"})
    stack.sql(
        TABLES
        + "CREATE SCHEMA extra; GRANT USAGE ON SCHEMA extra TO anon, authenticated;"
        + TABLES.replace("public.", "extra.")
    )
    await reload_until_served(stack, "extra", "books")
    stack.sql(FK.replace("public.", "extra."))
    probe = {"name": "extra.books", "select": "id,authors(id)"}
    diagnosis = await probe_and_diagnose(stack, exposed_schemas=["public", "extra"], probe_tables=[probe])
    assert diagnosis.verdict is Verdict.STALE_SCHEMA_CACHE, diagnosis.report.explanation
    cause = diagnosis.cause
    assert cause is not None and cause.cause == "stale_relationship"
    assert "extra.books and extra.authors are joined in the database (books_author_fk)" in cause.evidence
    settings, target = target_of(stack, exposed_schemas=["public", "extra"], probe_tables=[probe])
    async with make_http_client() as client:
        result = await RecoveryOperator(Prober(client), settings.recovery).recover(target)
    assert result.outcome is Outcome.RECOVERED, result.reason
    assert result.verdict_before is Verdict.STALE_SCHEMA_CACHE and result.verdict_after is Verdict.HEALTHY
    assert result.notify_sent
    embed = next(c for c in result.report_after.checks if c.name == "data:extra.books")
    assert (embed.status, embed.code) == (200, None)


async def test_embed_joined_only_in_another_exposed_schema_is_a_config_error(make_stack):
    # PostgREST embeds within the request's schema: public's foreign key cannot help extra.books.
    stack = make_stack(extra_env={"PGRST_DB_SCHEMAS": "public,extra"})
    stack.sql(
        TABLES
        + FK
        + "CREATE SCHEMA extra; GRANT USAGE ON SCHEMA extra TO anon, authenticated;"
        + TABLES.replace("public.", "extra.")
    )
    await reload_until_served(stack, "extra", "books")
    probe = {"name": "extra.books", "select": "id,authors(id)"}
    diagnosis = await probe_and_diagnose(stack, exposed_schemas=["public", "extra"], probe_tables=[probe])
    assert diagnosis.verdict is Verdict.MISSING_IN_DATABASE, diagnosis.report.explanation
    cause = diagnosis.cause
    assert cause is not None and cause.cause == "relationship_missing"
    assert "no foreign key joins extra.books and extra.authors" in cause.evidence


@pytest.mark.parametrize(
    ("select", "pairs"),
    [
        ("id,title", []),
        ("id,authors(id)", [("books", "authors")]),
        ("id,writer:authors!books_author_fk(id,name)", [("books", "authors")]),
        ("id,...authors!inner(name)", [("books", "authors")]),
        (
            "id,authors(id,publishers(name)),tags(id)",
            [("books", "authors"), ("authors", "publishers"), ("books", "tags")],
        ),
    ],
)
def test_embedded_pairs_are_read_from_the_select(select, pairs):
    assert embedded_pairs("books", select) == pairs


def test_embed_select_names_the_constraint_and_quotes_what_needs_it():
    fk = ForeignKey("public", "books", "authors", "books_author_fk", "author_id", "id")
    assert embed_select(fk) == "author_id,authors!books_author_fk(id)"
    odd = ForeignKey("public", "my books", "my authors", "fk 1", "author id", "id")
    assert embed_select(odd) == '"author id","my authors"!"fk 1"(id)'
