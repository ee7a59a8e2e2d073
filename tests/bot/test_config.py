"""Bad configuration files get one readable error naming the key, and exit code 2."""

from __future__ import annotations

import io
import textwrap

import pytest

from bot.cli import main
from bot.config import ConfigError, load_settings, resolve_targets

GOOD = """
environments:
  dev:
    rest_url: http://127.0.0.1:9/
    probe_tables: [judgments]
    api_key: {env: T_DEV_KEY}
    database_dsn: {env: T_DEV_DSN}
"""


def write(tmp_path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


BAD = [
    ("yaml syntax", "environments:\n  dev: [unclosed\n", "YAML syntax error at line"),
    ("unknown key", GOOD + "    colour: blue\n", "environments.dev.colour: unknown key"),
    ("wrong type", GOOD.replace("probe_tables: [judgments]", "probe_tables: 5"), "environments.dev.probe_tables"),
    (
        "missing required key",
        "environments:\n  dev:\n    probe_tables: []\n",
        "environments.dev.rest_url: required key is missing",
    ),
    ("not a URL", GOOD.replace("http://127.0.0.1:9/", "not-a-url"), "environments.dev.rest_url"),
    ("secret written inline", GOOD.replace("{env: T_DEV_KEY}", "eyJhbGciOi.secret"), "environments.dev.api_key"),
    ("both env and file", GOOD.replace("{env: T_DEV_KEY}", "{env: A, file: /x}"), "exactly one of"),
    ("bad recovery value", GOOD + "recovery:\n  retries: 0\n", "recovery.retries"),
    ("no environments", "environments: {}\n", "at least one environment"),
    ("top level not a mapping", "- a\n- b\n", "expected a mapping"),
    (
        "bad table name",
        GOOD.replace("[judgments]", "['judgments; drop']"),
        "environments.dev.probe_tables.0: not a [schema.]name",
    ),
    ("bad function", GOOD + "    probe_functions: ['add(a b)']\n", "environments.dev.probe_functions.0: expected ','"),
    (
        "bad exposed schema",
        GOOD + "    exposed_schemas: ['']\n",
        "environments.dev.exposed_schemas: an identifier cannot be empty",
    ),
    (
        "version guard without a source",
        GOOD + "    schema_version: {query: 'select 1'}\n",
        "environments.dev.schema_version: set expected or expected_env",
    ),
]


@pytest.mark.parametrize(("text", "expected"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_exits_2_naming_the_key(tmp_path, text, expected):
    code, out, err = run_cli("--config", str(write(tmp_path, text)), "check")
    assert code == 2
    assert expected in err
    assert "Traceback" not in err and out == ""


def test_missing_config_file_exits_2(tmp_path):
    code, _, err = run_cli("--config", str(tmp_path / "nope.yaml"), "check")
    assert code == 2 and "config file not found" in err


def test_unknown_environment_exits_2_and_lists_known(tmp_path, monkeypatch):
    monkeypatch.setenv("T_DEV_KEY", "k")
    code, _, err = run_cli("--config", str(write(tmp_path, GOOD)), "check", "--env", "qa")
    assert code == 2 and "unknown environment 'qa'" in err and "dev" in err


def test_missing_secret_is_named_not_shown(tmp_path, monkeypatch):
    monkeypatch.delenv("T_DEV_KEY", raising=False)
    code, _, err = run_cli("--config", str(write(tmp_path, GOOD)), "check")
    assert code == 2 and "environments.dev.api_key: environment variable T_DEV_KEY is not set" in err


def test_check_does_not_need_the_dsn_but_fix_does(tmp_path, monkeypatch):
    monkeypatch.setenv("T_DEV_KEY", "k")
    monkeypatch.delenv("T_DEV_DSN", raising=False)
    settings = load_settings(write(tmp_path, GOOD))
    assert resolve_targets(settings, need_dsn=False)[0].secrets.database_dsn is None
    with pytest.raises(ConfigError, match="T_DEV_DSN"):
        resolve_targets(settings)


def test_secret_from_file(tmp_path, monkeypatch):
    secret = tmp_path / "key"
    secret.write_text("file-key\n")
    settings = load_settings(write(tmp_path, GOOD.replace("{env: T_DEV_KEY}", f"{{file: {secret}}}")))
    target = resolve_targets(settings, need_dsn=False)[0]
    assert target.secrets.api_key is not None and target.secrets.api_key.get_secret_value() == "file-key"
    assert "file-key" not in repr(target)


def test_config_path_from_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("PGRST_OPS_CONFIG", str(tmp_path / "elsewhere.yaml"))
    code, _, err = run_cli("check")
    assert code == 2 and "elsewhere.yaml" in err


def test_example_config_is_valid_and_holds_no_secret():
    settings = load_settings("config.example.yaml")
    assert {"dev", "prod"} <= set(settings.environments)
    text = open("config.example.yaml").read()
    assert "eyJ" not in text and "postgresql://" not in text and "discord.com/api/webhooks" not in text


# -- [schema.]name probes and PostgreSQL identifiers -----------------------------------------------------------
def env_of(**env):
    from bot.config import parse_settings

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
    from bot.identifiers import quote_ident

    assert quote_ident(name) == sql
