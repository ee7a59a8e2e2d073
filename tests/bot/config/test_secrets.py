"""Secrets are read by reference when an environment is used; a missing one is named, never shown
(bot/config/secrets.py)."""

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
