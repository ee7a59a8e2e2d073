"""`incidents.store`: an SQLite path, or a PostgreSQL DSN by reference; `store_path` is its older name.

A DSN written inline is refused without being echoed; `store` and `store_path` together are one error.
"""

from __future__ import annotations

import io
import textwrap

import pytest

from bot.cli import main
from bot.config import SecretRef, load_settings

CONFIG = """
environments:
  dev:
    rest_url: http://127.0.0.1:9/
    probe_tables: [judgments]
incidents:
"""
PASSWORD = "s3cret-Store-pw"
DSN = f"postgresql://ops:{PASSWORD}@db.example.com:5432/ops"


def write(tmp_path, incidents: str):
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(CONFIG) + textwrap.indent(textwrap.dedent(incidents), "  "))
    return path


def check(path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["--config", str(path), "check"], out=out, err=err)
    return code, out.getvalue() + err.getvalue()


def test_a_dsn_by_reference_names_a_postgresql_store(tmp_path):
    incidents = load_settings(write(tmp_path, "store: {env: PGRST_OPS_STORE_DSN}\n")).incidents
    assert incidents.store_dsn == SecretRef(env="PGRST_OPS_STORE_DSN") and incidents.store_path == ""
    from_file = load_settings(write(tmp_path, "store: {file: /run/secrets/store_dsn}\n")).incidents
    assert from_file.store_dsn is not None and str(from_file.store_dsn.file) == "/run/secrets/store_dsn"


@pytest.mark.parametrize("key", ["store", "store_path"])
def test_a_path_under_either_name_is_the_sqlite_file(tmp_path, key):
    incidents = load_settings(write(tmp_path, f"{key}: /var/lib/pgrst-ops/incidents.db\n")).incidents
    assert incidents.store_path == "/var/lib/pgrst-ops/incidents.db" and incidents.store_dsn is None


@pytest.mark.parametrize(
    "value",
    [f"'{DSN}'", f"'host=db.example.com user=ops password={PASSWORD}'", f"{{env: '{DSN}'}}"],
    ids=["URL", "key=value", "DSN as the variable name"],
)
def test_an_inline_dsn_is_refused_without_echoing_it(tmp_path, value):
    code, text = check(write(tmp_path, f"store: {value}\n"))
    assert code == 2 and text.count("\n") == 1 and "incidents.store" in text, text
    assert "never write the secret itself" in text and "{env: VARIABLE}" in text, text
    assert PASSWORD not in text and "db.example.com" not in text, text
    assert ".str:" not in text and "function-after" not in text, text  # one error, not one per union branch


def test_store_and_store_path_together_are_refused(tmp_path):
    code, text = check(write(tmp_path, "store: {env: PGRST_OPS_STORE_DSN}\nstore_path: incidents.db\n"))
    assert code == 2 and "either store (new) or store_path (older name), not both" in text, text
