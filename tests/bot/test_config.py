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
