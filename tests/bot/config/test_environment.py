"""An environment's `[schema.]name` probes and PostgreSQL identifiers (bot/config/environment.py)."""

from __future__ import annotations

import pytest

from bot.config import ConfigError, parse_settings
from bot.core.identifiers import quote_ident


def env_of(**env):
    return parse_settings({"environments": {"dev": {"rest_url": "http://127.0.0.1:9/", **env}}}).environments["dev"]


SPECIAL = 'SPECIAL "@/\\#~_-'


@pytest.mark.parametrize(
    ("entry", "schema", "name", "shown"),
    [
        ("judgments", "public", "judgments", "judgments"),
        ("public.judgments", "public", "judgments", "judgments"),  # the default schema is not repeated
        ("storage.objects", "storage", "objects", "storage.objects"),
        ("تست.x", "تست", "x", "تست.x"),
        ('"SPECIAL ""@/\\#~_-".items', SPECIAL, "items", '"SPECIAL ""@/\\#~_-".items'),
        ('storage."my table"', "storage", "my table", 'storage."my table"'),
        ('"a.b"', "public", "a.b", '"a.b"'),
        ("Items", "public", "Items", "Items"),  # taken literally, as PostgREST takes a URL
    ],
)
def test_probe_tables_name_their_schema(entry, schema, name, shown):
    env = env_of(exposed_schemas=["public", "storage", "تست", SPECIAL], probe_tables=[entry])
    (table,) = env.probe_tables
    assert (table.schema_in(env), table.name, table.display(env)) == (schema, name, shown)
    # The display form reads back as the same object: check names and labels are unambiguous.
    again = env_of(exposed_schemas=env.exposed_schemas, probe_tables=[shown]).probe_tables[0]
    assert (again.schema_in(env), again.name) == (schema, name)


def test_probe_functions_parse_schema_and_arguments_once():
    env = env_of(
        exposed_schemas=["public", SPECIAL],
        probe_functions=["ping", "add(a, b)", '"SPECIAL ""@/\\#~_-".search( "the prefix" , limit )', "now()"],
    )
    parsed = [(f.schema_in(env), f.name, f.args) for f in env.probe_functions]
    assert parsed == [
        ("public", "ping", []),
        ("public", "add", ["a", "b"]),
        (SPECIAL, "search", ["the prefix", "limit"]),
        ("public", "now", []),
    ]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"probe_tables": ["storage.objects"]}, "probe_tables.0: schema 'storage' is not in exposed_schemas (public)"),
        ({"probe_functions": ["ping", "graphql.resolve"]}, "probe_functions.1: schema 'graphql' is not in"),
        ({"probe_tables": ["a.b.c"]}, "probe_tables.0: not a [schema.]name: 'a.b.c'"),
        ({"probe_tables": ['"open']}, "probe_tables.0: unterminated quoted name"),
        ({"probe_tables": ["x" * 64]}, "longer than 63 bytes"),
        ({"probe_tables": ["ت" * 32]}, "longer than 63 bytes"),  # 64 bytes in UTF-8
        ({"probe_functions": ["add(a b)"]}, "probe_functions.0: expected ',' or ')'"),
        ({"probe_tables": [{"name": "t", "columns": [""]}]}, "columns: an identifier cannot be empty"),
        ({"api_roles": ["anon", "bad\x00role"]}, "api_roles: an identifier cannot contain NUL"),
        ({"authenticator_role": ""}, "authenticator_role: an identifier cannot be empty"),
        ({"exposed_schemas": []}, "exposed_schemas"),
    ],
)
def test_bad_schema_names_and_identifiers_name_the_key(env, message):
    with pytest.raises(ConfigError) as err:
        env_of(**env)
    assert "environments.dev" in str(err.value) and message in str(err.value)


def test_any_schema_and_role_postgrest_serves_is_accepted():
    env = env_of(
        exposed_schemas=["public", "تست", SPECIAL, "ت" * 31],  # 62 bytes: within PostgreSQL's 63
        api_roles=["anon", "Role With Spaces", 'quote"role'],
        authenticator_role="authenticator-ä",
    )
    assert env.exposed_schemas[2] == SPECIAL and env.default_schema == "public"
    assert env.api_roles[2] == 'quote"role'


@pytest.mark.parametrize(
    ("name", "sql"),
    [
        ("judgments", "judgments"),
        ("Items", '"Items"'),
        ("order", '"order"'),  # a reserved word
        ("تست", '"تست"'),
        (SPECIAL, '"SPECIAL ""@/\\#~_-"'),
    ],
)
def test_one_quoting_helper_writes_identifiers_as_sql_needs(name, sql):
    assert quote_ident(name) == sql
